"""Attribution on text: token occlusion and Integrated Gradients on the embeddings, judged by ERASER (AOPC).

Tokens, never numbers: occlusion replaces one token at a time by the
tokenizer's mask (or unknown, or padding) token; Integrated Gradients walks
from the embeddings of that baseline token to the row's own embeddings;
ERASER removes the top-k% tokens (comprehensiveness) or keeps only them
(sufficiency). Special tokens ([CLS], [SEP]) are never occluded or removed.
"""

from __future__ import annotations

import math

import numpy as np

import audit

from ._explainers import integration_nodes
from ._run import judge_rows, row_interval

TEXT_EXPLAINERS = ("occlusion", "integrated_gradients")
ERASER_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)


def _scores(probabilities, logits, targets, score: str) -> np.ndarray:
    chosen = logits if score == "logit" else probabilities
    return chosen[np.arange(len(targets)), targets]


def occlusion(model, sequences, special, targets, score: str = "probability") -> list[np.ndarray]:
    """Leave-one-out per token: score(row) - score(row with that token replaced by the baseline token); one batched call.

    Special tokens get 0. Equal to Captum's FeatureAblation on the token ids
    with the same baseline id, one feature per position.
    """
    variants, owners = [], []
    for r, (ids, is_special) in enumerate(zip(sequences, special)):
        for i in np.flatnonzero(~is_special):
            changed = ids.copy()
            changed[i] = model.baseline_id
            variants.append(changed)
            owners.append(r)
    probabilities, logits = model.predict_ids(list(sequences) + variants)
    n = len(sequences)
    clean = _scores(probabilities[:n], logits[:n], targets, score)
    owners = np.asarray(owners, dtype=np.int64)
    occluded = _scores(probabilities[n:], logits[n:], targets[owners], score) if len(owners) else np.empty(0)
    result, k = [], 0
    for r, is_special in enumerate(special):
        values = np.zeros(len(is_special))
        positions = np.flatnonzero(~is_special)
        values[positions] = clean[r] - occluded[k : k + len(positions)]
        k += len(positions)
        result.append(values)
    return result


def integrated_gradients(model, sequences, special, targets, steps: int = 32, method: str = "gausslegendre",
                         score: str = "probability") -> list[np.ndarray]:
    """IG per token on the embedding output, from the baseline token's embedding (special tokens kept), summed over dims."""
    baselines = [np.where(is_special, ids, model.baseline_id) for ids, is_special in zip(sequences, special)]
    alphas, weights = integration_nodes(steps, method)
    return model.embedding_gradients(list(sequences), baselines, targets, alphas, weights, score=score)


def top_k_counts(n_tokens: int) -> list[int]:
    """Tokens in the top k% for each ERASER fraction: rounded up, at least one."""
    return [max(1, math.ceil(f * n_tokens)) for f in ERASER_FRACTIONS]


def eraser_variants(ids: np.ndarray, is_special: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """For each ERASER fraction: the row without its top-k tokens, then the row with only them (special tokens always kept).

    ``order`` ranks the non-special positions, most important first.
    """
    removed, kept = [], []
    for k in top_k_counts(len(order)):
        top = np.zeros(len(ids), dtype=bool)
        top[order[:k]] = True
        removed.append(ids[~top])
        kept.append(ids[top | is_special])
    return removed + kept


def eraser(model, sequences, special, targets, orders_per_row: list[list[np.ndarray]]):
    """(comprehensiveness, sufficiency) AOPC per row and per order: arrays (rows, orders).

    comprehensiveness_k = p(x) - p(x without the top k%), sufficiency_k = p(x) - p(only the top k%),
    each averaged over k in 1, 5, 10, 20, 50% (DeYoung et al. 2020), p the
    probability of the predicted class. All variants of all rows go through
    the model in one batched call.
    """
    n_fractions = len(ERASER_FRACTIONS)
    variants = []
    for ids, is_special, orders in zip(sequences, special, orders_per_row):
        for order in orders:
            variants.extend(eraser_variants(ids, is_special, order))
    probabilities, _ = model.predict_ids(list(sequences) + variants)
    n = len(sequences)
    clean = probabilities[np.arange(n), targets]
    n_orders = len(orders_per_row[0])
    per = 2 * n_fractions
    scores = probabilities[n:].reshape(n, n_orders, per, -1)
    picked = np.take_along_axis(scores, targets[:, None, None, None], axis=3)[..., 0]
    comprehensiveness = (clean[:, None, None] - picked[:, :, :n_fractions]).mean(axis=2)
    sufficiency = (clean[:, None, None] - picked[:, :, n_fractions:]).mean(axis=2)
    return comprehensiveness, sufficiency


def _ranking(values: np.ndarray, is_special: np.ndarray) -> np.ndarray:
    positions = np.flatnonzero(~is_special)
    return positions[np.argsort(-values[positions], kind="stable")]


def _setup(analysis, ctx):
    o = analysis.options
    model = ctx.model
    n = len(ctx.data)
    rows = np.sort(ctx.rng.choice(n, size=min(o.rows, n), replace=False))
    sequences, special = model.encode(ctx.data.x[rows])
    usable = [i for i, s in enumerate(special) if (~s).sum() >= 1]
    rows = rows[usable]
    sequences = [sequences[i] for i in usable]
    special = [special[i] for i in usable]
    targets = np.asarray(ctx.predicted[rows], dtype=np.int64)
    asked = list(TEXT_EXPLAINERS) if o.explainers is None else list(dict.fromkeys(o.explainers))  # default: both text explainers
    explainers = [e for e in asked if e in TEXT_EXPLAINERS]
    dropped = [e for e in asked if e not in TEXT_EXPLAINERS]
    if dropped:
        ctx.note(f"explainers {', '.join(dropped)} work on numeric inputs and do not apply to text; text uses "
                 f"{', '.join(TEXT_EXPLAINERS)}")
    if "integrated_gradients" in explainers and "token_gradients" not in model.capabilities:
        explainers.remove("integrated_gradients")
        ctx.note("Integrated Gradients needs the embedding table of a TorchScript or torch.export model, or of an ONNX graph "
                 f"the torch conversion covers ({getattr(model, 'token_gradient_reason', lambda: 'none')()}); "
                 "this model is explained by token occlusion only")
    return rows, sequences, special, targets, explainers


def attributions_for(analysis, ctx, sequences, special, targets, explainers):
    o = analysis.options
    maps = {}
    with ctx.progress(len(explainers), "text explainers") as bar:
        for name in explainers:
            if name == "occlusion":
                maps[name] = occlusion(ctx.model, sequences, special, targets, o.score)
            else:
                maps[name] = integrated_gradients(ctx.model, sequences, special, targets, o.ig_steps, o.ig_method, o.score)
            bar.advance(1)
    return maps


def run_faithfulness(analysis, ctx):
    o = analysis.options
    model = ctx.model
    rows, sequences, special, targets, explainers = _setup(analysis, ctx)
    if not explainers:
        ctx.note("no text explainer selected (occlusion, integrated_gradients)")
        return
    maps = attributions_for(analysis, ctx, sequences, special, targets, explainers)
    rng = ctx.rng
    orders = []
    for r, is_special in enumerate(special):
        positions = np.flatnonzero(~is_special)
        row_orders = [_ranking(maps[name][r], is_special) for name in explainers]
        row_orders += [rng.permutation(positions) for _ in range(o.random_orders)]
        orders.append(row_orders)
    comprehensiveness, sufficiency = eraser(model, sequences, special, targets, orders)
    random_comp = comprehensiveness[:, len(explainers):].mean(axis=1)
    random_suff = sufficiency[:, len(explainers):].mean(axis=1)
    n = len(rows)
    yield audit.Metric("eraser_comprehensiveness", float(random_comp.mean()), subject="random", count=n)
    yield audit.Metric("eraser_sufficiency", float(random_suff.mean()), subject="random", count=n)
    # Higher is better for both: removing its top tokens hurts more than random ones; its top tokens alone keep more of the score.
    comp_gains = {name: comprehensiveness[:, j] - random_comp for j, name in enumerate(explainers)}
    judged = judge_rows(comp_gains, o.min_gain, True, o, strict=True)
    for j, name in enumerate(explainers):
        comp, suff = comprehensiveness[:, j], sufficiency[:, j]
        comp_gain, suff_gain = comp_gains[name], random_suff - suff
        clo, chi = row_interval(comp_gain, o.level)
        slo, shi = row_interval(suff_gain, o.level)
        v = judged[name]
        yield audit.Metric("eraser_comprehensiveness", float(comp.mean()), subject=name, count=n)
        yield audit.Metric("eraser_sufficiency", float(suff.mean()), subject=name, count=n)
        yield audit.Metric("comprehensiveness_gain_vs_random", float(comp_gain.mean()), subject=name, lower=clo, upper=chi, count=n)
        yield audit.Metric("sufficiency_gain_vs_random", float(suff_gain.mean()), subject=name, lower=slo, upper=shi, count=n)
        ending = {"passed": "", "failed": "; removing its top tokens hurts less than removing random ones: worse than chance",
                  "inconclusive": "; the explanation is not shown to be better than chance"}[v.verdict]
        yield audit.Finding(
            check="faithful_vs_random", title="Explainer beats random token orders (ERASER)", severity=audit.Severity.MEDIUM,
            subject=name,
            message=(f"removing the top-k% tokens by {name} lowers the predicted class's probability by {comp.mean():.3f} on "
                     f"average over k in 1-50% (ERASER comprehensiveness AOPC) against {random_comp.mean():.3f} for random "
                     f"tokens: gain {comp_gain.mean():+.3f} ({v.interval_text(unit='texts')}, paired); keeping "
                     f"only them changes it by {-suff.mean():+.3f} (sufficiency {suff.mean():.3f}, lower is better) against "
                     f"{-random_suff.mean():+.3f} for random tokens" + ending),
            details=v.details(comprehensiveness=float(comp.mean()), sufficiency=float(suff.mean()),
                              random_comprehensiveness=float(random_comp.mean()), random_sufficiency=float(random_suff.mean()),
                              sufficiency_gain_ci=[slo, shi], fractions=list(ERASER_FRACTIONS), random_orders=o.random_orders,
                              removal="tokens deleted from the sequence (ERASER)"),
            **{**v.fields(), "method": f"paired t over texts against {o.random_orders} random order(s)"},
        )
    if "integrated_gradients" in maps:
        yield from _completeness(analysis, ctx, sequences, special, targets, maps["integrated_gradients"])
    yield from _token_influence(ctx, sequences, special, targets, maps)


def _completeness(analysis, ctx, sequences, special, targets, ig):
    """IG's completeness: its sum per row against score(x) - score(baseline); large errors mean too few steps."""
    o = analysis.options
    model = ctx.model
    baselines = [np.where(s, ids, model.baseline_id) for ids, s in zip(sequences, special)]
    probabilities, logits = model.predict_ids(list(sequences) + baselines)
    n = len(sequences)
    scores = _scores(probabilities, logits, np.concatenate([targets, targets]), o.score)
    expected = scores[:n] - scores[n:]
    total = np.array([a.sum() for a in ig])
    error = float(np.max(np.abs(total - expected)) / max(1e-12, float(np.max(np.abs(expected)))))
    # A numerical check of the quadrature, with no sampling error: the point value decides.
    yield audit.Finding.against_limit(
        "ig_completeness_error", "Integrated Gradients completeness (text)", error, severity=audit.Severity.LOW,
        ceiling=o.ig_completeness_tolerance, subject="integrated_gradients",
        message=(f"token IG sums differ from score(text) - score(baseline tokens) by at most {error:.2%} of the largest "
                 f"difference over {n} texts ({o.ig_steps} {o.ig_method} steps; allowed {o.ig_completeness_tolerance:.0%}; "
                 "a numerical check, with no sampling error, so no interval)"),
        details={"rows": n, "no_interval": "deterministic numerical check"},
    )


def _token_influence(ctx, sequences, special, targets, maps):
    """Words the model leans on: mean occlusion effect per token on P(second class) (binary models, probability score)."""
    if "occlusion" not in maps or ctx.n_classes != 2:
        return
    sign = np.where(targets == 1, 1.0, -1.0)
    totals: dict[str, list[float]] = {}
    for r, (ids, is_special) in enumerate(zip(sequences, special)):
        tokens = ctx.model.tokens(ids)
        for i in np.flatnonzero(~is_special):
            totals.setdefault(tokens[i], []).append(sign[r] * maps["occlusion"][r][i])
    names = ctx.data.class_names or ["0", "1"]
    ranked = sorted(((float(np.mean(v)), t, len(v)) for t, v in totals.items() if len(v) >= 3), key=lambda item: -abs(item[0]))
    for value, token, count in ranked[:12]:
        yield audit.Metric("token_influence", value, subject=f"P({names[1]})", group=token, count=count,
                           details={"definition": "mean change of P(class) when the token is masked out, sign towards the class"})
    if ranked:
        top = ", ".join(f"{t} ({v:+.3f})" for v, t, _ in ranked[:6])
        ctx.note(f"tokens that move P({names[1]}) most when masked (mean over explained texts): {top}")


def run_agreement(analysis, ctx):
    """Rank agreement between token occlusion and IG (a diagnostic only)."""
    rows, sequences, special, targets, explainers = _setup(analysis, ctx)
    if len(explainers) < 2:
        ctx.note("agreement needs two text explainers; only " + (", ".join(explainers) or "none") + " available for this model")
        return
    maps = attributions_for(analysis, ctx, sequences, special, targets, explainers)
    correlations = []
    for r, is_special in enumerate(special):
        keep = ~is_special
        if keep.sum() < 3:
            continue
        a, b = maps[explainers[0]][r][keep], maps[explainers[1]][r][keep]
        ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        if np.std(ra) > 0 and np.std(rb) > 0:
            correlations.append(float(np.corrcoef(ra, rb)[0, 1]))
    if correlations:
        lower, upper = row_interval(correlations, analysis.options.level)
        yield audit.Metric("spearman", float(np.mean(correlations)), subject=f"{explainers[0]} vs {explainers[1]}",
                           count=len(correlations), lower=lower, upper=upper, details={"diagnostic": True, "method": "t over texts"})
