"""The TreeSHAP explainer: exact path-dependent Shapley values of tree-ensemble models, read from the model's trees."""

from __future__ import annotations

import numpy as np


def treeshap_skip_reason(model) -> str | None:
    """Why TreeSHAP cannot explain this model, or None when it can."""
    if "trees" in model.capabilities:
        return None
    reason = getattr(model, "trees_reason", None)
    if getattr(model, "tree_op", None) is not None:
        return f"this model is a tree ensemble ({model.tree_summary}), but {reason}"
    return f"TreeSHAP explains tree ensembles only ({reason or 'this model has no trees audit can read'})"


def prepare(ctx) -> str:
    """Count node covers on the audited rows (once per run) and say what the attributions explain."""
    explainer = ctx.model.tree_shap(np.asarray(ctx.data.x))
    trees = explainer.trees
    return (f"TreeSHAP (exact, path-dependent) explains {trees.explained_space()} of the {trees.describe()}, node covers counted on "
            f"{explainer.n_reference} audited rows (the ONNX graph stores no training covers); its maps add up to that score "
            "minus its expected value, whatever the analysis's `score` option")


def treeshap(model, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Attributions (R, F) of each row's target class, in the space the graph's trees add up in."""
    return model.tree_shap().target_maps(x, targets).reshape(np.shape(x))


def select(ctx, explainers: list[str], skipped: dict[str, str], chosen: bool) -> None:
    """Keep TreeSHAP in ``explainers`` for models it explains (its covers counted now); skip it, with the reason, for others.

    The note says so when the user chose the explainers; by default TreeSHAP is
    listed for every model and skipped quietly on models without trees.
    """
    from audit import AuditError

    if "treeshap" not in explainers:
        return
    reason = treeshap_skip_reason(ctx.model)
    if reason is None:
        try:
            ctx.note(prepare(ctx))
            return
        except AuditError as error:
            reason = str(error)
    explainers.remove("treeshap")
    skipped["treeshap"] = reason
    if chosen or getattr(ctx.model, "tree_op", None) is not None:
        ctx.note(f"treeshap skipped: {reason}")


def without_treeshap(ctx, setup, why: str):
    """The setup without TreeSHAP, for checks that explain a wrapper around the model."""
    import dataclasses

    if "treeshap" not in setup.explainers:
        return setup
    ctx.note(f"treeshap left out of this check: {why}")
    return dataclasses.replace(setup, explainers=[n for n in setup.explainers if n != "treeshap"])
