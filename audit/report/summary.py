"""The executive summary: the few findings that matter most, in plain words for a deployer."""

from __future__ import annotations

from typing import Any

# What a failed check means for whoever deploys the model. Plugins can say it
# themselves in ``Finding.details["meaning"]``; this covers the built-in checks.
MEANINGS = {
    "accuracy": "The model is wrong too often on data like the audit set; decisions based on it will carry that error rate.",
    "balanced_accuracy": "Averaged over classes the model does poorly: a rare class is likely being missed.",
    "worst_class_recall": "One class is mostly missed; cases of that class will be handled as something else.",
    "demographic_parity_difference": "Groups defined by a protected attribute receive positive outcomes at clearly different rates.",
    "demographic_parity_ratio": "A group's selection rate is below four fifths of another's: the common threshold for evidence of disparate impact.",
    "equalized_odds_difference": "Error rates (false positives or false negatives) differ between groups: one group bears more of the model's mistakes.",
    "equal_opportunity_difference": "Qualified members of one group are recognised less often than those of another.",
    "worst_group_accuracy": "The model is markedly less accurate for at least one group.",
    "accuracy_gap": "Accuracy differs between groups by more than the tolerated gap.",
    "distance_covariance": "The model's scores depend on the protected attribute (possibly non-linearly), beyond chance.",
    "score_js_divergence": "The distribution of scores differs between groups.",
    "counterfactual_flip_rate": "Changing only the protected attribute of an applicant changes the decision for a share of rows: the model uses the attribute directly.",
    "counterfactual_score_shift": "Changing only the protected attribute shifts the model's score: the attribute itself moves decisions.",
    "attribute_leakage": "The protected attribute can be read off the model's internal representation; downstream use may discriminate even if the input is removed.",
    "leakage_after_erasure": "The attribute stays readable after linear erasure: it is encoded non-linearly or redundantly.",
    "corruption_accuracy_drop": "Common input degradations (noise, blur, compression) cost a lot of accuracy; field data of lower quality will be handled worse.",
    "mean_corruption_error": "Across corruptions the model's error grows well beyond its clean error.",
    "robust_accuracy": "Small, deliberately chosen input changes flip the model's decisions: it can be manipulated.",
    "median_queries": "Few queries suffice to find inputs that fool the model.",
    "expected_calibration_error": "The model's confidence does not match how often it is right; its probabilities cannot be used as risk estimates as they are.",
    "brier_score": "The probabilities the model gives are poor overall.",
    "selective_risk_at_90": "Even keeping only the 90% of cases it is most confident about, the model errs too often to defer the rest to people.",
    "ood_auroc": "The model cannot tell unfamiliar inputs from familiar ones by its confidence; it will be confidently wrong outside its domain.",
    "deletion_auc": "Removing the features an explainer marks as important barely changes the prediction: the explanation is not faithful.",
    "insertion_auc": "Adding back the features an explainer marks as important does not restore the prediction: the explanation is not faithful.",
    "faithful_vs_random": "The explainer does no better than a random ranking of features; its explanations should not be shown to users.",
    "ig_completeness_error": "Integrated Gradients attributions do not add up to the change in output: the attribution was computed with too few steps or the model is badly behaved.",
    "grid_share": "The explainer puts attribution on parts of the input that provably cannot affect the output.",
    "randomization_rank_correlation": "The explanation barely changes when the model's weights are randomised: it reflects the input, not the model.",
}

SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}


def exceedance(finding: dict[str, Any]) -> float:
    value, threshold = finding.get("value"), finding.get("threshold")
    if value is None or threshold is None:
        return 0.0
    return abs(value - threshold) / max(abs(threshold), 1e-9)


def executive_summary(findings: list[dict[str, Any]], limit: int = 5, per_analysis: int = 2) -> list[dict[str, Any]]:
    """The most important failed checks: highest severity first, then furthest past the threshold.

    At most ``per_analysis`` come from one analysis, so one noisy analysis
    cannot crowd out the rest.
    """
    failed = [f for f in findings if not f["passed"] and not f.get("waiver")]
    failed.sort(key=lambda f: (-SEVERITY_RANK.get(f["severity"], 0), -exceedance(f)))
    chosen, per = [], {}
    for finding in failed:
        if per.get(finding["analysis"], 0) >= per_analysis:
            continue
        per[finding["analysis"]] = per.get(finding["analysis"], 0) + 1
        meaning = (finding.get("details") or {}).get("meaning") or MEANINGS.get(finding["check"]) or \
            f"This {finding['severity']}-severity check failed; see the analysis section for what was measured."
        chosen.append({**finding, "meaning": meaning})
        if len(chosen) == limit:
            break
    return chosen
