"""The texts of the compliance frameworks audit ships: EU AI Act articles and NIST AI RMF MEASURE subcategories.

They are registered by `audit.builtins` and stored with every run; the report
reads them from the run, so a text changed here never alters a past report.

A requirement is a text, or a table:

- ``text``: what the provision asks (paraphrased);
- ``kind``: ``"test"`` (findings can show it met or not), ``"documentation"``
  (a duty to document the testing, which the report itself fulfils once the run
  finished) or ``"attestation"`` (a process no test can show: a person states it,
  under ``[report] attestations`` in the config);
- ``categories``: the analysis categories whose findings bear on it;
- ``requires``: the categories that must all have findings for it to be met
  (with one missing, it is partly met at best);
- ``needs_statement``: a ``[report]`` key that must be stated for it to be met
  (limitations documented, intended use).

A plain text is a test requirement assessed through findings tagged
``framework:requirement``, as before.
"""

from __future__ import annotations

# Requirement texts paraphrase the provisions (Regulation (EU) 2024/1689; NIST
# AI 100-1) for orientation; the authentic texts are the published ones.
ALL = ["performance", "bias", "robustness", "attribution"]
EU_AI_ACT = {
    "art9": {"text": "Article 9(6)-(8) - Risk management: the system is tested to identify appropriate risk management measures and to ensure it performs consistently for its intended purpose, against prior defined metrics and probabilistic thresholds.",
             "kind": "test", "categories": ALL, "requires": ["performance"], "needs_statement": "intended_use"},
    "art10": {"text": "Article 10(2)(f)-(g) - Data and data governance: examination of possible biases likely to affect health and safety, fundamental rights or lead to discrimination, and measures to detect, prevent and mitigate them.",
              "kind": "test", "categories": ["bias"], "requires": ["bias"]},
    "art10-governance": {"text": "Article 10(2)(a)-(e), (3)-(4) - Data governance practices: design choices, collection and origin of the data, preparation, assumptions, and data sets relevant, representative and complete for the intended purpose.",
                         "kind": "attestation"},
    "art13": {"text": "Article 13 - Transparency: the system's operation is sufficiently transparent to enable deployers to interpret its output and use it appropriately.",
              "kind": "test", "categories": ["attribution"], "requires": ["attribution"], "needs_statement": "intended_use"},
    "art14": {"text": "Article 14 - Human oversight: the system can be effectively overseen by natural persons while in use, including the ability to disregard, override or stop its output.",
              "kind": "attestation"},
    "art15": {"text": "Article 15 - Accuracy, robustness and cybersecurity: an appropriate level of accuracy (with the metrics declared), resilience to errors, faults and inconsistencies, and resilience against attempts to alter outputs, such as adversarial examples.",
              "kind": "test", "categories": ["performance", "robustness"], "requires": ["performance", "robustness"]},
    "annex-iv-2g": {"text": "Annex IV 2(g) - Technical documentation: validation and testing procedures, the metrics used to measure accuracy, robustness and compliance with the other requirements, and potentially discriminatory impacts; test logs and reports.",
                    "kind": "documentation"},
    "annex-iv-3": {"text": "Annex IV 3 - Monitoring, functioning and control: capabilities and limitations in performance, including the degrees of accuracy for specific persons or groups on which the system is intended to be used, and foreseeable unintended outcomes and sources of risks of discrimination.",
                   "kind": "test", "categories": ["performance", "bias"], "requires": ["performance", "bias"], "needs_statement": "limitations"},
}
NIST_AI_RMF = {
    "measure-2.3": {"text": "MEASURE 2.3 - AI system performance or assurance criteria are measured qualitatively or quantitatively and demonstrated for conditions similar to deployment setting(s); measures are documented.",
                    "kind": "test", "categories": ["performance"], "requires": ["performance"]},
    "measure-2.5": {"text": "MEASURE 2.5 - The AI system to be deployed is demonstrated to be valid and reliable; limitations of generalizability beyond the conditions under which it was developed are documented.",
                    "kind": "test", "categories": ["performance", "robustness"], "requires": ["performance", "robustness"], "needs_statement": "limitations"},
    "measure-2.7": {"text": "MEASURE 2.7 - AI system security and resilience, as identified in the MAP function, are evaluated and documented.",
                    "kind": "test", "categories": ["robustness"], "requires": ["robustness"]},
    "measure-2.9": {"text": "MEASURE 2.9 - The AI model is explained, validated, and documented, and AI system output is interpreted within its context to inform responsible use and governance.",
                    "kind": "test", "categories": ["attribution"], "requires": ["attribution"]},
    "measure-2.11": {"text": "MEASURE 2.11 - Fairness and bias, as identified in the MAP function, are evaluated and results are documented.",
                     "kind": "test", "categories": ["bias"], "requires": ["bias"]},
    "measure-2.13": {"text": "MEASURE 2.13 - Effectiveness of the employed TEVV (test, evaluation, verification and validation) metrics and processes in the MEASURE function are evaluated and documented.",
                     "kind": "attestation"},
}


BUILTIN_FRAMEWORKS = [
    {"id": "eu-ai-act", "title": "EU AI Act (Regulation (EU) 2024/1689)", "plugin": "audit.builtins", "requirements": EU_AI_ACT},
    {"id": "nist-ai-rmf", "title": "NIST AI Risk Management Framework 1.0 (MEASURE function)", "plugin": "audit.builtins",
     "requirements": NIST_AI_RMF},
]
