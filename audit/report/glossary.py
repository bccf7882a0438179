"""Plain meanings of the method names a report uses, listed in its appendix when the run used them."""

from __future__ import annotations

import re
from typing import Any

# (term, pattern that finds it in the run's findings, meaning). Meanings say what
# the method does for a reader who does not know it, and name its source.
TERMS = [
    ("Confidence interval (CI)", r"\bCI\b|interval", "A range that covers the true value with the stated probability (usually 95%) given the rows audited; a check passes or fails only when its whole interval lies on one side of the threshold, else it is inconclusive."),
    ("Wilson / Clopper-Pearson", r"wilson|clopper", "Intervals for a proportion (accuracy, a selection rate); Clopper-Pearson is exact and conservative."),
    ("Holm / Benjamini-Hochberg", r"holm|benjamini|\bbh\b|comparisons", "Corrections for testing many groups or settings at once, so that one of many comparisons failing by chance is not reported as a finding."),
    ("DeLong", r"delong", "An interval for the area under a ROC curve (AUROC)."),
    ("Bootstrap", r"bootstrap", "Re-computing a metric on resampled rows to see how much it varies; the spread gives its interval."),
    ("Four-fifths rule", r"four-fifths|parity_ratio", "US employment guidance: a group selected at under 80% of the rate of the most-selected group is evidence of disparate impact."),
    ("Demographic parity", r"parity", "Whether groups receive the positive outcome at the same rate, whatever their labels."),
    ("Equalized odds / equal opportunity", r"equalized_odds|equal_opportunity", "Whether true and false positive rates (equal opportunity: true positive rates only) are the same across groups."),
    ("Counterfactual flip rate", r"counterfactual", "The share of predictions that change when only the protected attribute is changed, all other inputs fixed."),
    ("Distance covariance / correlation", r"distance_cov|distance corr", "A dependence measure between scores and an attribute that also catches non-linear dependence; 0 means independent."),
    ("Jensen-Shannon divergence", r"jensen|js_divergence", "How different two score distributions are, in bits: 0 identical, 1 disjoint."),
    ("Linear probe / leakage", r"leakage|probe", "A simple classifier trained on the model's hidden layer to recover the protected attribute; high accuracy means the model encodes it."),
    ("LEACE", r"leace", "LEAst-squares Concept Erasure (Belrose et al., 2023): removes the linear subspace that encodes an attribute; leakage left after it is non-linear."),
    ("FGSM / PGD", r"fgsm|pgd", "Gradient attacks: the Fast Gradient Sign Method takes one step, Projected Gradient Descent several, to find the smallest input change that flips a prediction within a budget (eps)."),
    ("Square attack", r"square", "A black-box attack that needs only the model's scores, not its gradients; few queries to success means a cheap attack suffices."),
    ("Robust accuracy", r"robust_accuracy", "Accuracy when each input may be perturbed within the stated budget by an attacker."),
    ("Corruptions / mCE", r"corruption", "Accuracy under natural noise (dropped features, blur, noise) at five severities; mCE is the mean error increase."),
    ("Calibration (ECE, Brier)", r"calibration|brier", "Whether the model's confidence matches how often it is right: ECE is the mean gap over confidence bins; Brier the mean squared error of the probabilities."),
    ("Selective risk", r"selective", "The error rate when the model abstains on its least confident rows."),
    ("OOD detection (AUROC)", r"ood|out-of-distribution", "How well a score separates the audit data from out-of-distribution inputs: 0.5 is chance, 1 perfect."),
    ("MSP", r"\bmsp\b|maximum softmax", "Maximum softmax probability: the model's top-class confidence, used as an out-of-distribution score (Hendrycks and Gimpel, 2017)."),
    ("Energy score", r"\benergy\b", "The log-sum-exp of the logits, an out-of-distribution score (Liu et al., 2020)."),
    ("Saliency / Input x Gradient", r"saliency|input_x_gradient", "Attribution maps from the model's gradient (times the input)."),
    ("Integrated Gradients (IG)", r"integrated_gradients|\big\b", "Attribution by integrating gradients from a baseline to the input (Sundararajan et al., 2017); its attributions sum to the change in output (completeness)."),
    ("SmoothGrad", r"smoothgrad", "Gradients averaged over noisy copies of the input, for less noisy maps."),
    ("Occlusion", r"occlusion", "Attribution by hiding each feature or patch and measuring the change in output."),
    ("RISE", r"\brise\b", "Randomized Input Sampling for Explanation (Petsiuk et al., 2018): attribution from the outputs on many randomly masked inputs."),
    ("Sobol", r"sobol", "Variance-based attribution: the share of the output's variance due to each feature under random masks (Fel et al., 2021)."),
    ("Deletion / insertion AUC", r"deletion|insertion|faithful", "Faithfulness: removing features in attribution order should drop the output fast (low deletion area), adding them back should raise it fast (high insertion area), better than a random order."),
    ("DiFull grid", r"difull|grid_share", "A sanity test (Rao et al., 2022): inputs made of blocks where the output depends on one block only; a faithful map puts its attribution there."),
    ("Randomisation test", r"randomi[sz]ation", "A sanity test (Adebayo et al., 2018): maps should change when the model's weights are re-initialised; maps that do not change explain the input, not the model."),
]


def glossary(findings: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The terms this run's findings and analyses use, with their meanings, in the order above."""
    text = " ".join(
        " ".join(str(part) for part in (f.get("analysis"), f.get("check"), f.get("title"), f.get("subject"), f.get("message"), f.get("method")) if part)
        for f in findings
    ) + " " + " ".join(str(r.get("analysis")) for r in results if r.get("status") == "ok")
    return [(term, meaning) for term, pattern, meaning in TERMS if re.search(pattern, text, re.IGNORECASE)]
