"""The compliance frameworks audit ships: EU AI Act articles and NIST AI RMF MEASURE subcategories."""

from __future__ import annotations

from audit.hookspecs import hookimpl

# Requirement texts are short paraphrases for orientation; the report links a
# finding to a requirement only through the finding's tags.
EU_AI_ACT = {
    "art9": "Article 9 - Risk management system: identify, estimate and evaluate risks; test the system to find the most appropriate risk management measures.",
    "art10": "Article 10(2)(f)-(g) - Data and data governance: examine data sets for possible biases likely to affect health, safety or fundamental rights, and take measures to detect, prevent and mitigate them.",
    "art13": "Article 13 - Transparency and provision of information to deployers: enable deployers to interpret the system's output and use it appropriately.",
    "art15": "Article 15 - Accuracy, robustness and cybersecurity: achieve an appropriate level of accuracy, robustness (including against errors, faults and inconsistencies) and resilience against attempts to alter outputs (e.g. adversarial examples).",
    "annex-iv-2g": "Annex IV 2(g) - Technical documentation: validation and testing procedures used, metrics to measure accuracy, robustness and compliance, and potentially discriminatory impacts.",
}
NIST_AI_RMF = {
    "measure-2.3": "MEASURE 2.3 - AI system performance or assurance criteria are measured qualitatively or quantitatively and demonstrated for conditions similar to deployment setting(s).",
    "measure-2.5": "MEASURE 2.5 - The AI system to be deployed is demonstrated to be valid and reliable; limitations of the generalizability beyond the conditions under which the technology was developed are documented.",
    "measure-2.7": "MEASURE 2.7 - AI system security and resilience are evaluated and documented.",
    "measure-2.9": "MEASURE 2.9 - The AI model is explained, validated, and documented, and AI system output is interpreted within its context to inform responsible use and governance.",
    "measure-2.11": "MEASURE 2.11 - Fairness and bias, as identified in the MAP function, are evaluated and results are documented.",
}


class BuiltinFrameworks:
    @hookimpl(trylast=True)
    def register_frameworks(self, register):
        register("eu-ai-act", "EU AI Act (Regulation (EU) 2024/1689)", EU_AI_ACT)
        register("nist-ai-rmf", "NIST AI Risk Management Framework 1.0", NIST_AI_RMF)
