"""The texts of the compliance frameworks audit ships: EU AI Act articles and NIST AI RMF MEASURE subcategories.

They are registered by `audit.builtins` and stored with every run; the report
reads them from the run, so a text changed here never alters a past report.
"""

from __future__ import annotations

# Requirement texts paraphrase the provisions (Regulation (EU) 2024/1689; NIST
# AI 100-1) for orientation; the authentic texts are the published ones. A
# finding bears on a requirement through its tags ("eu-ai-act:art15"): the
# analyses that own the evidence say so in their own `tags`.
EU_AI_ACT = {
    "art9": "Article 9(6)-(8) - Risk management: the system is tested to identify appropriate risk management measures and to ensure it performs consistently for its intended purpose, against prior defined metrics and probabilistic thresholds.",
    "art10": "Article 10(2)(f)-(g) - Data and data governance: examination of possible biases likely to affect health and safety, fundamental rights or lead to discrimination, and measures to detect, prevent and mitigate them.",
    "art13": "Article 13 - Transparency: the system's operation is sufficiently transparent to enable deployers to interpret its output and use it appropriately.",
    "art15": "Article 15 - Accuracy, robustness and cybersecurity: an appropriate level of accuracy (with the metrics declared), resilience to errors, faults and inconsistencies, and resilience against attempts to alter outputs, such as adversarial examples.",
    "annex-iv-2g": "Annex IV 2(g) - Technical documentation: validation and testing procedures, the metrics used to measure accuracy, robustness and compliance with the other requirements, and potentially discriminatory impacts; test logs and reports.",
    "annex-iv-3": "Annex IV 3 - Monitoring, functioning and control: capabilities and limitations in performance, including the degrees of accuracy for specific persons or groups on which the system is intended to be used, and foreseeable unintended outcomes and sources of risks of discrimination.",
}
NIST_AI_RMF = {
    "measure-2.3": "MEASURE 2.3 - AI system performance or assurance criteria are measured qualitatively or quantitatively and demonstrated for conditions similar to deployment setting(s); measures are documented.",
    "measure-2.5": "MEASURE 2.5 - The AI system to be deployed is demonstrated to be valid and reliable; limitations of generalizability beyond the conditions under which it was developed are documented.",
    "measure-2.7": "MEASURE 2.7 - AI system security and resilience, as identified in the MAP function, are evaluated and documented.",
    "measure-2.9": "MEASURE 2.9 - The AI model is explained, validated, and documented, and AI system output is interpreted within its context to inform responsible use and governance.",
    "measure-2.11": "MEASURE 2.11 - Fairness and bias, as identified in the MAP function, are evaluated and results are documented.",
}


BUILTIN_FRAMEWORKS = [
    {"id": "eu-ai-act", "title": "EU AI Act (Regulation (EU) 2024/1689)", "plugin": "audit.builtins", "requirements": EU_AI_ACT},
    {"id": "nist-ai-rmf", "title": "NIST AI Risk Management Framework 1.0 (MEASURE function)", "plugin": "audit.builtins",
     "requirements": NIST_AI_RMF},
]
