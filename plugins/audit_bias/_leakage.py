"""Attribute leakage: cross-validated linear and attentive probes per layer, LEACE erasure, re-probe."""

from __future__ import annotations

import numpy as np

import audit
from audit import stats

from . import _stats
from ._optim import Adam, minimise_lbfgs
from ._verdicts import Check, decide, max_of


# -- probes ---------------------------------------------------------------------------------
def fold_ids(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded assignment of rows to k folds of near-equal size."""
    ids = np.arange(n) % folds
    return ids[rng.permutation(n)]


def linear_probe_cv(features: np.ndarray, target: np.ndarray, n_classes: int, folds: np.ndarray, l2: float = 1e-3,
                    max_iter: int = 300) -> np.ndarray:
    """Held-out logits (n, K) of a multinomial logistic regression, k-fold cross-validated.

    ``features`` is (n, d), or (F, n, d) when each fold sees its own version
    (features erased by an eraser fit on that fold's training rows).

    All k fits are one problem: the folds' weights are independent, so the
    sum of their losses is minimised by the per-fold minimisers, and one
    full-batch L-BFGS run trains them together. The loss and its gradient are
    written out (softmax minus one-hot) rather than taken by autograd, which
    halves the cost of each of L-BFGS's evaluations. The demo's probes reach
    the optimum (gradient below 1e-7) within 200 iterations; ``max_iter`` only
    bounds pathological cases.
    """
    import torch

    x = torch.as_tensor(features, dtype=torch.float64)  # (n, d) broadcasts over folds in the matmuls
    n, d = x.shape[-2:]
    k_folds = int(folds.max()) + 1
    fold = torch.as_tensor(folds)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(target, dtype=torch.int64), n_classes).to(torch.float64)
    train = (fold[None, :] != torch.arange(k_folds)[:, None]).to(torch.float64)  # (F, n)
    row_weight = (train / train.sum(dim=1, keepdim=True)).unsqueeze(-1)  # each fold's mean over its training rows
    n_weights = k_folds * d * n_classes

    def unpack(flat: np.ndarray):
        theta = torch.from_numpy(flat)
        return theta[:n_weights].view(k_folds, d, n_classes), theta[n_weights:].view(k_folds, 1, n_classes)

    def loss_and_gradient(flat: np.ndarray):
        weights, bias = unpack(flat)
        logits = torch.matmul(x, weights) + bias  # (F, n, K)
        log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        loss = -(log_p * onehot * row_weight).sum() + l2 * (weights * weights).sum()
        residual = (log_p.exp() - onehot) * row_weight  # d loss / d logits
        gradient = torch.cat([(torch.matmul(x.transpose(-1, -2), residual) + 2 * l2 * weights).reshape(-1),
                              residual.sum(dim=1).reshape(-1)])
        return float(loss), gradient.numpy()

    from audit.toolkit import one_torch_thread

    with one_torch_thread():
        solution = minimise_lbfgs(loss_and_gradient, np.zeros(n_weights + k_folds * n_classes), max_iter=max_iter)
    weights, bias = unpack(solution)
    held_out = (torch.matmul(x, weights) + bias)[fold, torch.arange(n)]
    return held_out.numpy()


def attentive_probe_cv(tokens: np.ndarray, target: np.ndarray, n_classes: int, folds: np.ndarray, n_queries: int,
                       epochs: int, l2: float, seed: int, device: str = "cpu") -> np.ndarray:
    """Held-out logits of an efficient attentive probe (multi-query cross-attention), k-fold.

    Following efficient probing: M learned queries attend directly over the
    tokens (no key or value projections); each query's attention-pooled token
    feeds its own linear head and the heads' logits are summed. All folds train
    together (independent parameters, summed losses) with full-batch Adam.
    """
    import torch

    generator = torch.Generator().manual_seed(int(seed) % (2**63))
    t = torch.as_tensor(tokens, dtype=torch.float32, device=device)  # (n, T, d)
    n, _, d = t.shape
    k_folds = int(folds.max()) + 1
    fold = torch.as_tensor(folds, device=device)
    z = torch.as_tensor(target, dtype=torch.int64, device=device)
    train = (fold[None, :] != torch.arange(k_folds, device=device)[:, None]).float()
    train_sizes = train.sum(dim=1, keepdim=True)
    queries = (torch.randn(k_folds, n_queries, d, generator=generator) * 0.02).to(device).requires_grad_(True)
    heads = torch.zeros(k_folds, n_queries, d, n_classes, device=device, requires_grad=True)
    bias = torch.zeros(k_folds, 1, n_classes, device=device, requires_grad=True)
    optimiser = Adam([queries, heads, bias], lr=0.02)
    scale = d**-0.5

    def forward():
        attention = torch.softmax(torch.einsum("ntd,fmd->fnmt", t, queries) * scale, dim=-1)
        pooled = torch.einsum("fnmt,ntd->fnmd", attention, t)
        return torch.einsum("fnmd,fmdk->fnk", pooled, heads) + bias

    for _ in range(epochs):
        logits = forward()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), z.repeat(k_folds), reduction="none")
        loss = ((nll.reshape(k_folds, n) * train) / train_sizes).sum() + l2 * (heads**2).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        held_out = forward()[fold, torch.arange(n, device=device)]
    return held_out.cpu().numpy().astype(np.float64)


def probe_scores(logits: np.ndarray, target: np.ndarray, n_classes: int) -> dict:
    accuracy = float((logits.argmax(axis=1) == target).mean())
    out = {"accuracy": accuracy}
    if n_classes == 2:
        out["auroc"] = stats.auroc((logits[:, 1] - logits[:, 0])[target == 1], (logits[:, 1] - logits[:, 0])[target != 1])
    return out


# -- erasure --------------------------------------------------------------------------------
def leace_eraser(features: np.ndarray, target: np.ndarray, n_classes: int, tol: float = 1e-8):
    """LEACE (Belrose et al., "LEACE: Perfect linear concept erasure in closed form").

    Returns (mean, E) with the erased features x - E (x - mean), where
    E = W^+ P W, W = Sigma_xx^(-1/2) (pseudo-inverse on the support) and P the
    orthogonal projection onto the column space of W Sigma_xz. After it the
    class-conditional means coincide, so no linear classifier beats a constant;
    I - E is an (oblique) projection: (I - E)^2 = I - E.
    """
    x = np.asarray(features, dtype=np.float64)
    onehot = np.eye(n_classes)[target]
    mean = x.mean(axis=0)
    centred = x - mean
    sigma_xx = centred.T @ centred / len(x)
    sigma_xz = centred.T @ (onehot - onehot.mean(axis=0)) / len(x)
    eigval, eigvec = np.linalg.eigh(sigma_xx)
    keep = eigval > tol * max(float(eigval.max()), 1e-300)
    root = np.sqrt(eigval[keep])
    whiten = (eigvec[:, keep] / root) @ eigvec[:, keep].T
    unwhiten = (eigvec[:, keep] * root) @ eigvec[:, keep].T
    u, s, _ = np.linalg.svd(whiten @ sigma_xz, full_matrices=False)
    u = u[:, s > tol * max(float(s.max(initial=0.0)), 1e-300)]
    eraser = unwhiten @ (u @ u.T) @ whiten
    return mean, eraser


def erase(features: np.ndarray, mean: np.ndarray, eraser: np.ndarray) -> np.ndarray:
    return features - (features - mean) @ eraser.T


def erased_per_fold(features: np.ndarray, target: np.ndarray, n_classes: int, folds: np.ndarray):
    """(F, n, d) features, each copy erased by a LEACE eraser fit on that fold's training rows only.

    Fitting the eraser on all rows and then cross-validating makes held-out
    probes anti-predict (the training folds' class means are pushed the other
    way), so the eraser is cross-fitted like the probe.
    """
    copies, ranks = [], []
    for f in range(int(folds.max()) + 1):
        train = folds != f
        mean, eraser = leace_eraser(features[train], target[train], n_classes)
        copies.append(erase(features, mean, eraser))
        ranks.append(int(np.linalg.matrix_rank(eraser, tol=1e-6)))
    return np.stack(copies), max(ranks)


# -- activations ----------------------------------------------------------------------------
def _as_tokens(activation: np.ndarray):
    """(pooled (n, d), tokens (n, T, d) or None): channels-first conv maps become H*W tokens."""
    a = np.asarray(activation, dtype=np.float32)
    if a.ndim == 2:
        return a, None
    if a.ndim == 3:  # (n, tokens, features), as transformers lay them out
        tokens = a
    else:  # (n, channels, *spatial)
        tokens = a.reshape(a.shape[0], a.shape[1], -1).transpose(0, 2, 1)
    return tokens.mean(axis=1), tokens


def _reduce(pooled: np.ndarray, tokens, max_features: int):
    """Standardise, and project onto the top principal components when wider than max_features."""
    mean = pooled.mean(axis=0)
    std = pooled.std(axis=0)
    live = std > 1e-8  # dead units carry nothing and break standardisation
    scale = np.where(live, std, 1.0)
    x = ((pooled - mean) / scale)[:, live]
    basis = None
    if x.shape[1] > max_features:
        _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        basis = vt[:max_features].T
        x = x @ basis
    if tokens is not None:
        tokens = ((tokens - mean) / scale)[..., live]
        if basis is not None:
            tokens = tokens @ basis.astype(np.float32)
    return x, tokens, int(live.sum()), basis is not None


def choose_layers(model, options, ctx, x_sample, logits_sample):
    """Probed layers and their activations: named ones, or the last few hidden layers (output layer dropped)."""
    available = model.layers()
    if options.layers:
        missing = [layer for layer in options.layers if layer not in available]
        if missing:
            raise audit.AuditError(f"bias.leakage: unknown layer(s) {', '.join(missing)}; layers are: {', '.join(available)}")
        return list(options.layers), model.activations(x_sample, list(options.layers))
    candidates = available[-(options.n_layers + 1):]
    acts = model.activations(x_sample, candidates)
    hidden = []
    for layer in candidates:
        a = acts[layer].reshape(len(x_sample), -1)
        if a.shape == logits_sample.shape and np.allclose(a, logits_sample, atol=1e-4, rtol=1e-4):
            continue  # the model's own output, not a hidden representation
        hidden.append(layer)
    hidden = hidden[-options.n_layers:]
    return hidden, {layer: acts[layer] for layer in hidden}


# -- the analysis ---------------------------------------------------------------------------
def run(analysis, ctx):
    options = analysis.options
    data = ctx.data
    model = ctx.model
    names = list(options.attributes) if options.attributes else sorted(data.attributes)
    unknown = [n for n in names if n not in data.attributes]
    if unknown:
        raise audit.AuditError(f"bias.leakage: unknown attribute(s) {', '.join(unknown)}; the data has: {', '.join(sorted(data.attributes))}")
    n_total = len(data)
    index = ctx.sample_rows(options.max_rows, note="probes trained on a seeded random subsample of {max_rows} of {n} rows")
    if index is None:
        index = np.arange(n_total)
    x = data.x[index]
    logits_sample = np.asarray(ctx.logits)[index]
    with ctx.progress(len(index), "activations"):
        layers, activations = choose_layers(model, options, ctx, x, logits_sample)
    if not layers:
        ctx.note("no hidden layer found to probe (the candidate layers were the model's output)")
        return
    folds = fold_ids(len(index), options.folds, ctx.rng)
    prepared = _prepare_layers(ctx, options, layers, activations)
    head = _linear_head(model, layers, activations, logits_sample)
    if head is None:
        ctx.note("task cost of erasure not computed: it needs a torch model whose output layer is a Linear fed directly "
                 "by a probed layer (ONNX graphs and other heads are not rewired)")

    pending = []
    for name in names:
        grouping = _stats.group_attribute(name, data.attributes[name][index], options.max_categories, options.numeric_bins)
        if grouping.binned:
            ctx.note(f"{name} is numeric with many values: probed as {grouping.n_groups} quantile groups")
        target = grouping.codes
        n_classes = grouping.n_groups
        if n_classes < 2:
            ctx.note(f"{name} has a single value in the probed rows; nothing to probe")
            continue
        baseline = float(np.bincount(target).max() / len(target))
        per_layer = []
        for layer in layers:
            per_layer.append(_probe_layer(ctx, options, layer, prepared[layer], target, n_classes, folds))
            yield from _layer_metrics(name, layer, per_layer[-1]["linear"], per_layer[-1]["attentive"], per_layer[-1]["after"],
                                      baseline, len(target), ctx.rng)
        task_cost = _task_cost(head, data, index, target, n_classes, activations) if head else None
        pending.extend(_checks(name, per_layer, baseline, len(target), task_cost, head, options, ctx))
        yield _leakage_figure(name, layers, per_layer, baseline, options)
    yield from decide(pending, options.level, options.correction)


def _prepare_layers(ctx, options, layers, activations) -> dict:
    """layer -> (features, tokens, live units, reduced?): pooled, and reduced to principal components when wide."""
    prepared = {}
    for layer in layers:
        pooled, tokens = _as_tokens(activations[layer])
        features, tokens, live, reduced = _reduce(pooled, tokens, options.max_features)
        prepared[layer] = (features, tokens, live, reduced)
        if reduced:
            ctx.note(f"layer {layer}: {live} live units reduced to {options.max_features} principal components before probing")
        if tokens is not None and not options.attentive:
            ctx.note(f"layer {layer} has a token/spatial axis; the attentive probe is off (option attentive)")
    return prepared


def _probe_layer(ctx, options, layer, prepared_layer, target, n_classes, folds) -> dict:
    """Cross-validated linear (and attentive) probe scores on one layer, before and after LEACE erasure."""
    features, tokens, _, _ = prepared_layer
    linear = probe_scores(linear_probe_cv(features, target, n_classes, folds, options.l2), target, n_classes)
    attentive = None
    if tokens is not None and options.attentive:
        attentive = probe_scores(
            attentive_probe_cv(tokens, target, n_classes, folds, options.n_queries, options.attentive_epochs, options.l2, ctx.seed,
                               device="cpu"), target, n_classes)
    erased, rank = erased_per_fold(features, target, n_classes, folds)
    after = probe_scores(linear_probe_cv(erased, target, n_classes, folds, options.l2), target, n_classes)
    return {"layer": layer, "linear": linear, "attentive": attentive, "after": after, "rank": rank}


def _leakage_figure(name, layers, per_layer, baseline, options):
    from ._figures import leakage_curve

    rows = {"linear probe": [r["linear"]["accuracy"] for r in per_layer]}
    if any(r["attentive"] for r in per_layer):
        rows["attentive probe"] = [r["attentive"]["accuracy"] if r["attentive"] else None for r in per_layer]
    rows["linear probe after erasure"] = [r["after"]["accuracy"] for r in per_layer]
    return audit.Figure(
        f"leakage:{name}", f"Leakage of {name} per layer", leakage_curve(name, layers, rows, baseline),
        caption=(f"{options.folds}-fold cross-validated accuracy of probes predicting {name} from each layer, before and "
                 "after closed-form linear concept erasure (LEACE); dotted: always guessing the majority value."),
        subject=name,
    )


def _accuracy_ci(accuracy, n):
    """95% Wilson interval of a cross-validated accuracy over n held-out predictions."""
    lo, hi = stats.wilson(int(round(accuracy * n)), n, 0.95)
    return float(lo), float(hi)


def _layer_metrics(name, layer, linear, attentive, after, baseline, n, rng):
    lo, hi = _accuracy_ci(linear["accuracy"], n)
    yield audit.Metric("probe_accuracy", linear["accuracy"], subject=name, group=layer, lower=lo, upper=hi, count=n,
                       details={"probe": "linear", "majority_rate": baseline})
    if "auroc" in linear:
        yield audit.Metric("probe_auroc", linear["auroc"], subject=name, group=layer, count=n, details={"probe": "linear"})
    if attentive is not None:
        lo, hi = _accuracy_ci(attentive["accuracy"], n)
        yield audit.Metric("attentive_probe_accuracy", attentive["accuracy"], subject=name, group=layer, lower=lo, upper=hi,
                           count=n, details={"probe": "attentive", "majority_rate": baseline})
    lo, hi = _accuracy_ci(after["accuracy"], n)
    yield audit.Metric("probe_accuracy_after_erasure", after["accuracy"], subject=name, group=layer, lower=lo, upper=hi,
                       count=n, details={"probe": "linear", "majority_rate": baseline})
    yield audit.Metric("majority_rate", baseline, subject=name, group=layer, count=n)


def _accuracy_interval(accuracy: float, rows: int, baseline: float):
    """Wilson interval of a cross-validated probe accuracy (each row predicted once, held out), less the majority rate.

    The majority rate is the fixed rate of always guessing the commonest value on the same rows; the folds' probes
    are not independent, so the binomial interval is the usual approximation for cross-validated accuracy."""
    correct = int(round(accuracy * rows))
    return lambda level: tuple(float(v) - baseline for v in stats.wilson(correct, rows, level))


def _checks(name, per_layer, baseline, n, task_cost, head, options, ctx):
    """The leakage and residual-leakage checks of one attribute; each is the max over probed layers (and probes)."""
    def best(r):
        return max(r["linear"]["accuracy"], r["attentive"]["accuracy"] if r["attentive"] else -1.0)

    top = max(per_layer, key=best)
    accuracy = best(top)
    lift = accuracy - baseline
    probe = "attentive" if top["attentive"] and top["attentive"]["accuracy"] > top["linear"]["accuracy"] else "linear"
    auroc = top[probe]["auroc"] if "auroc" in top[probe] else None
    probes = [r["linear"]["accuracy"] for r in per_layer] + [r["attentive"]["accuracy"] for r in per_layer if r["attentive"]]
    yield Check(
        "attribute_leakage", "Protected attribute readable from representations", name, lift,
        max_of([_accuracy_interval(a, n, baseline) for a in probes]), options.lift_medium, False, "medium",
        "wilson on cross-validated accuracy" + (f", max over {len(probes)} probes" if len(probes) > 1 else ""), n,
        lambda lo, hi: (f"a {probe} probe recovers {name} from layer {top['layer']} with {options.folds}-fold cross-validated accuracy "
                        f"{accuracy:.3f} against the majority rate {baseline:.3f}: lift {lift:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}, "
                        f"over all {len(probes)} probes]" + (f", AUROC {auroc:.3f}" if auroc is not None else "")
                        + f"; {n} rows; a lift above {options.lift_medium:g} is medium, above {options.lift_high:g} high"),
        {"layer": top["layer"], "probe": probe, "accuracy": accuracy, "majority_rate": baseline, "auroc": auroc,
                 "per_layer": {r["layer"]: {"linear": r["linear"], "attentive": r["attentive"]} for r in per_layer},
                 "thresholds": {"medium": options.lift_medium, "high": options.lift_high}},
        high=options.lift_high,
    )
    worst_after = max(per_layer, key=lambda r: r["after"]["accuracy"])
    residual = worst_after["after"]["accuracy"] - baseline
    cost_text = ""
    details = {"layer": worst_after["layer"], "accuracy": worst_after["after"]["accuracy"], "majority_rate": baseline,
               "per_layer": {r["layer"]: r["after"] for r in per_layer},
               "erased_rank": {r["layer"]: r["rank"] for r in per_layer},
               "threshold": options.residual_lift, "method": "LEACE (closed-form least-squares concept erasure), fit on each training fold and applied to its held-out fold"}
    if task_cost is not None:
        details["task"] = task_cost
        if task_cost.get("accuracy_change") is not None:
            cost_text = (f"; erasing it at {task_cost['layer']} (the input of the linear head) changes task accuracy by "
                         f"{task_cost['accuracy_change']:+.3f} and {task_cost['changed_predictions']:.1%} of predictions")
        else:
            cost_text = (f"; erasing it at {task_cost['layer']} (the input of the linear head) changes "
                         f"{task_cost['changed_predictions']:.1%} of predictions (no labels for the accuracy change)")
    else:
        details["task"] = None
    details["erasure"] = details.pop("method")
    yield Check(
        "leakage_after_erasure", "Leakage left after linear concept erasure", name, residual,
        max_of([_accuracy_interval(r["after"]["accuracy"], n, baseline) for r in per_layer]), options.residual_lift, False,
        "medium", "wilson on cross-validated accuracy" + (f", max over {len(per_layer)} layers" if len(per_layer) > 1 else ""), n,
        lambda lo, hi: (f"after LEACE erasure of the linear {name} subspace, the best linear probe ({worst_after['layer']}) "
                        f"reaches {worst_after['after']['accuracy']:.3f} against the majority rate {baseline:.3f}: lift "
                        f"{residual:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}, over all layers]; a lift above {options.residual_lift:g} "
                        "means the erasure did not remove it" + cost_text),
        details,
    )


def _linear_head(model, layers, activations, logits_sample):
    """(layer, weight, bias) when the model ends in a torch Linear fed by a probed 2-D layer and that reproduces the logits."""
    if "torch" not in model.capabilities:
        return None
    try:
        import torch

        modules = dict(model.torch_module().named_modules())
        all_layers = model.layers()
        last = modules.get(all_layers[-1]) if all_layers else None
        if not isinstance(last, torch.nn.Linear) or len(all_layers) < 2 or all_layers[-2] not in layers:
            return None
        feeding = all_layers[-2]
        act = np.asarray(activations[feeding], dtype=np.float64)
        if act.ndim != 2 or act.shape[1] != last.in_features:
            return None
        weight = last.weight.detach().cpu().double().numpy()
        bias = last.bias.detach().cpu().double().numpy() if last.bias is not None else np.zeros(weight.shape[0])
        reproduced = act @ weight.T + bias
        if reproduced.shape != logits_sample.shape or not np.allclose(reproduced, logits_sample, atol=1e-3, rtol=1e-3):
            return None
        return feeding, weight, bias
    except Exception:  # noqa: BLE001 - any mismatch means we cannot do it cleanly
        return None


def _task_cost(head, data, index, target, n_classes, activations):
    layer, weight, bias = head
    act = np.asarray(activations[layer], dtype=np.float64)
    mean, eraser = leace_eraser(act, target, n_classes)
    before = (act @ weight.T + bias).argmax(axis=1)
    after = (erase(act, mean, eraser) @ weight.T + bias).argmax(axis=1)
    out = {"layer": layer, "changed_predictions": float((before != after).mean()), "accuracy_change": None}
    if data.y is not None:
        y = np.asarray(data.y)[index]
        out.update(accuracy_before=float((before == y).mean()), accuracy_after=float((after == y).mean()))
        out["accuracy_change"] = out["accuracy_after"] - out["accuracy_before"]
    return out
