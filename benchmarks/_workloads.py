"""Each workload, for each implementation: a callable doing the work once, its passes, its comparable output.

``build(impl, spec)`` returns ``go``; ``go()`` does the work once and returns a
dict: ``forward_rows`` and ``backward_rows`` it sent through the model (a
forward+backward row counts in both, as in ``model.counters``),
``required`` (forward-only, forward+backward) rows the workload's definition needs (ours
only, where it depends on the run, e.g. Square's queries), ``values`` (scalars
printed beside the timings) and ``array`` (compared with ours where the
workload says the outputs must agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._setup import CountingModule, CountingSession, dataset, onnx_session, our_model, torch_module


@dataclass
class Workload:
    name: str
    title: str
    model: str  # digits | credit
    backends: tuple  # torch | onnx
    impls: tuple  # ours first, then the peers
    rows: int
    quick_rows: int
    build: object
    required: object  # (spec) -> (forward rows, backward rows) per the definition, or None when ours reports it
    agree: str = ""  # how outputs are compared: "array" (max abs difference), "values" (listed keys), ""
    agree_keys: tuple = ()
    tolerance: float = 1e-5
    single_round: bool = True  # every pass independent of the others (not an iterative attack)
    max_repeats: int | None = None  # fewer timed runs, no warm-up: a peer too slow to run four times
    params: dict = field(default_factory=dict)


def _passes(model, before):
    used = model.counters.since(before)
    return used.forward_rows, used.backward_rows


# -- Integrated Gradients ------------------------------------------------------------
IG_STEPS = 50


def build_ig(impl, spec):
    import torch

    x, _ = dataset(spec["model"], spec["rows"])
    model = our_model(spec["model"], "torch", spec["device"], spec["threads"])
    targets = model.predict(x).argmax(1)
    baseline = np.zeros_like(x)
    if impl == "ours":
        from audit_attribution._core import ModelScorer
        from audit_attribution._explainers import integrated_gradients

        scorer = ModelScorer(model, "probability")

        def go():
            before = model.counters.snapshot()
            maps = integrated_gradients(scorer, x, targets, baseline, IG_STEPS, "gausslegendre")
            f, b = _passes(model, before)
            return {"forward_rows": f, "backward_rows": b, "array": maps}

        return go
    from captum.attr import IntegratedGradients

    module = CountingModule(torch_module(spec["model"], spec["device"]))
    explainer = IntegratedGradients(lambda t: torch.softmax(module(t), dim=1))
    x_t = torch.as_tensor(x, device=spec["device"])
    t_t = torch.as_tensor(targets, device=spec["device"])

    def go():
        module.forward_rows = module.backward_rows = 0
        maps = explainer.attribute(x_t, baselines=torch.zeros_like(x_t), target=t_t, n_steps=IG_STEPS, method="gausslegendre",
                                   internal_batch_size=model.batch_size)
        return {"forward_rows": module.forward_rows, "backward_rows": module.backward_rows, "array": maps.detach().cpu().numpy()}

    return go


# -- Occlusion -----------------------------------------------------------------------
def _occlusion_setup(spec):
    x, _ = dataset(spec["model"], spec["rows"])
    model = our_model(spec["model"], spec["backend"], spec["device"], spec["threads"])
    targets = model.predict(x).argmax(1)
    baseline = np.broadcast_to(dataset(spec["model"], 2000)[0].mean(axis=0), x.shape).astype(np.float32)
    return x, model, targets, baseline


def build_occlusion(impl, spec):
    import torch

    x, model, targets, baseline = _occlusion_setup(spec)
    image = spec["model"] == "digits"
    if impl == "ours":
        from audit_attribution._core import Layout, ModelScorer
        from audit_attribution._explainers import occlusion

        scorer = ModelScorer(model, "probability")
        layout = Layout(x.shape[1:], "image" if image else "tabular")

        def go():
            before = model.counters.snapshot()
            maps = occlusion(scorer, layout, x, targets, baseline, 1)
            f, b = _passes(model, before)
            return {"forward_rows": f, "backward_rows": b, "array": maps}

        return go
    from captum.attr import Occlusion

    device = spec["device"] if spec["backend"] == "torch" else "cpu"
    if spec["backend"] == "torch":
        counter = CountingModule(torch_module(spec["model"], device))
        forward = lambda t: torch.softmax(counter(t), dim=1)  # noqa: E731
    else:
        counter = CountingSession(onnx_session(spec["model"], spec["threads"], spec["device"]), model.batch_size)
        forward = lambda t: torch.softmax(torch.from_numpy(counter(t.detach().cpu().numpy())), dim=1)  # noqa: E731
    explainer = Occlusion(forward)
    x_t = torch.as_tensor(x, device=device)
    base_t = torch.as_tensor(baseline[:1], device=device)
    window = (1, 1, 1) if image else (1,)
    n_windows = int(np.prod(x.shape[1:]))
    # "captum-batched": as many perturbations per call as fit our batch size, at least all windows of one row.
    per_eval = 1 if impl == "captum" else max(1, min(n_windows, model.batch_size // len(x) or 1))
    if impl == "captum-batched":
        per_eval = n_windows

    def go():
        counter.forward_rows = 0
        maps = explainer.attribute(x_t, sliding_window_shapes=window, strides=1, baselines=base_t,
                                   target=torch.as_tensor(targets, device=device), perturbations_per_eval=per_eval)
        return {"forward_rows": counter.forward_rows, "backward_rows": 0, "array": maps.detach().cpu().numpy().reshape(len(x), -1)}

    return go


# -- Deletion (pixel flipping) and faithfulness correlation --------------------------
def _ranked_attribution(x):
    """A fixed, tie-free attribution map (seeded noise plus the image), so both sides remove pixels in the same order."""
    rng = np.random.default_rng(1)
    return (x + 0.1 * rng.random(x.shape) + 1e-9 * np.arange(x[0].size).reshape(x.shape[1:])[None]).astype(np.float64)


def build_deletion(impl, spec):
    x, _ = dataset("digits", spec["rows"])
    model = our_model("digits", "torch", spec["device"], spec["threads"])
    targets = model.predict(x).argmax(1)
    attribution = _ranked_attribution(x)
    black = np.broadcast_to(x.reshape(len(x), -1).min(axis=1)[:, None, None, None], x.shape).astype(np.float32)
    if impl == "ours":
        from audit_attribution._core import Layout, ModelScorer
        from audit_attribution._metrics import removal_curves

        layout = Layout(x.shape[1:], "image")
        ranks = np.argsort(-attribution.reshape(len(x), -1), axis=1, kind="stable").argsort(axis=1)[None]
        scorer = ModelScorer(model, "probability")

        def go():
            before = model.counters.snapshot()
            deletion, _, _ = removal_curves(scorer, layout, x, black, targets, ranks, layout.n_units, insertion=False)
            f, b = _passes(model, before)
            # Our curve starts at the unperturbed input; Quantus' after the first pixel.
            return {"forward_rows": f, "backward_rows": b, "array": deletion[0][:, 1:]}

        return go
    import quantus

    module = CountingModule(torch_module("digits", spec["device"]))
    metric = quantus.PixelFlipping(features_in_step=1, perturb_baseline="black", abs=False, normalise=False,
                                   disable_warnings=True, display_progressbar=False)

    def go():
        module.forward_rows = 0
        curves = metric(model=module, x_batch=x, y_batch=targets, a_batch=attribution.astype(np.float32), device=spec["device"],
                        softmax=True, channel_first=True, batch_size=len(x))
        return {"forward_rows": module.forward_rows, "backward_rows": 0, "array": np.asarray(curves)}

    return go


SUBSETS = 64


def build_faithfulness_correlation(impl, spec):
    x, _ = dataset("digits", spec["rows"])
    model = our_model("digits", "torch", spec["device"], spec["threads"])
    targets = model.predict(x).argmax(1)
    attribution = _ranked_attribution(x)
    subset = int(round(0.2 * x[0].size))
    black = np.broadcast_to(x.reshape(len(x), -1).min(axis=1)[:, None, None, None], x.shape).astype(np.float32)
    if impl == "ours":
        from audit_attribution._core import Layout, ModelScorer
        from audit_attribution._metrics import faithfulness_correlation, subset_drops

        layout = Layout(x.shape[1:], "image")
        scorer = ModelScorer(model, "probability")
        maps = attribution.reshape(len(x), -1)

        def go():
            before = model.counters.snapshot()
            removed, drops = subset_drops(scorer, layout, x, black, targets, SUBSETS, subset / x[0].size, np.random.default_rng(0))
            correlation = faithfulness_correlation(maps, removed, drops)
            f, b = _passes(model, before)
            return {"forward_rows": f, "backward_rows": b, "values": {"mean_correlation": float(np.nanmean(correlation))}}

        return go
    import quantus

    module = CountingModule(torch_module("digits", spec["device"]))
    metric = quantus.FaithfulnessCorrelation(nr_runs=SUBSETS, subset_size=subset, perturb_baseline="black", abs=False, normalise=False,
                                             return_aggregate=False, disable_warnings=True, display_progressbar=False)

    def go():
        module.forward_rows = 0
        np.random.seed(0)
        scores = metric(model=module, x_batch=x, y_batch=targets, a_batch=attribution.astype(np.float32), device=spec["device"],
                        softmax=True, channel_first=True, batch_size=len(x))
        return {"forward_rows": module.forward_rows, "backward_rows": 0, "values": {"mean_correlation": float(np.nanmean(scores))}}

    return go


# -- FGSM and PGD --------------------------------------------------------------------
EPS_LINF = 0.1
PGD_STEPS = 10
STEP_FACTOR = 2.5 / PGD_STEPS


def build_gradient_attack(impl, spec):
    import torch

    steps = spec["params"]["steps"]
    factor = 1.0 if steps == 1 else STEP_FACTOR
    x, y = dataset("digits", spec["rows"])
    model = our_model("digits", "torch", spec["device"], spec["threads"])
    if impl == "ours":
        from audit_robustness._adversarial import attack

        def go():
            before = model.counters.snapshot()
            result = attack(model, x, y, [EPS_LINF], "linf", steps, factor, np.float32(0.0), np.float32(1.0), False, None)
            f, b = _passes(model, before)
            return {"forward_rows": f, "backward_rows": b,
                    "values": {"robust_accuracy": float(1.0 - result.final_wrong[0].mean()),
                               "robust_accuracy_any_iterate": float(1.0 - result.broken[0].mean())}}

        return go
    module = CountingModule(torch_module("digits", spec["device"]))
    if impl == "art":
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=10,
                                       clip_values=(0.0, 1.0), device_type="gpu" if spec["device"].startswith("cuda") else "cpu")
        if steps == 1:
            attacker = FastGradientMethod(classifier, norm=np.inf, eps=EPS_LINF, eps_step=EPS_LINF, batch_size=model.batch_size)
        else:
            attacker = ProjectedGradientDescent(classifier, norm=np.inf, eps=EPS_LINF, eps_step=EPS_LINF * factor, max_iter=steps,
                                                num_random_init=0, batch_size=model.batch_size, verbose=False)

        def go():
            module.forward_rows = module.backward_rows = 0
            x_adv = attacker.generate(x, y=y)
            robust = float(np.mean(classifier.predict(x_adv, batch_size=model.batch_size).argmax(1) == y))
            return {"forward_rows": module.forward_rows, "backward_rows": module.backward_rows, "values": {"robust_accuracy": robust}}

        return go
    import torchattacks

    attacker = (torchattacks.FGSM(module, eps=EPS_LINF) if steps == 1 else
                torchattacks.PGD(module, eps=EPS_LINF, alpha=EPS_LINF * factor, steps=steps, random_start=False))
    device = spec["device"]

    def go():
        module.forward_rows = module.backward_rows = 0
        correct = 0
        for i in range(0, len(x), model.batch_size):
            xb = torch.as_tensor(x[i : i + model.batch_size], device=device)
            yb = torch.as_tensor(y[i : i + model.batch_size], device=device)
            x_adv = attacker(xb, yb)
            with torch.no_grad():
                correct += int((module(x_adv).argmax(1) == yb).sum())
        return {"forward_rows": module.forward_rows, "backward_rows": module.backward_rows, "values": {"robust_accuracy": correct / len(x)}}

    return go


# -- Square attack -------------------------------------------------------------------
SQUARE_EPS = 0.05
SQUARE_P_INIT = 0.05


def build_square(impl, spec):
    import torch

    budget = spec["params"]["budget"]
    x, y = dataset("digits", spec["rows"])
    model = our_model("digits", spec["backend"], spec["device"], spec["threads"])
    if impl == "ours":
        from audit_robustness._square import square_attack

        class Grid:
            def to_nchw(self, a):
                return a.reshape(len(a), 1, 8, 8)

            from_nchw = to_nchw

        def go():
            clean = model.predict(x, output="logits")  # the run's shared clean pass, outside the attack's count
            before = model.counters.snapshot()
            result = square_attack(lambda b: model.predict(b, output="logits"), x, y, clean, SQUARE_EPS, budget, SQUARE_P_INIT,
                                   np.random.default_rng(0), lower=np.float32(0.0), upper=np.float32(1.0), layout=Grid())
            f, b = _passes(model, before)
            return {"forward_rows": f, "backward_rows": b, "required": (int(result.queries.sum()), 0),
                    "values": {"robust_accuracy": float(result.robust.mean())}}

        return go
    from art.attacks.evasion import SquareAttack

    if spec["backend"] == "torch":
        from art.estimators.classification import PyTorchClassifier

        counter = CountingModule(torch_module("digits", spec["device"]))
        classifier = PyTorchClassifier(model=counter, loss=torch.nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=10,
                                       clip_values=(0.0, 1.0), device_type="gpu" if spec["device"].startswith("cuda") else "cpu")
    else:
        from art.estimators.classification import BlackBoxClassifierNeuralNetwork

        counter = CountingSession(onnx_session("digits", spec["threads"], spec["device"]), model.batch_size)
        classifier = BlackBoxClassifierNeuralNetwork(counter, input_shape=x.shape[1:], nb_classes=10, clip_values=(0.0, 1.0),
                                                     channels_first=True)
    attacker = SquareAttack(classifier, norm=np.inf, eps=SQUARE_EPS, max_iter=budget, p_init=SQUARE_P_INIT, nb_restarts=1,
                            batch_size=len(x), verbose=False)

    def go():
        counter.forward_rows = 0
        np.random.seed(0)
        x_adv = attacker.generate(x, y=y)
        robust = float(np.mean(classifier.predict(x_adv, batch_size=model.batch_size).argmax(1) == y))
        return {"forward_rows": counter.forward_rows, "backward_rows": 0, "values": {"robust_accuracy": robust}}

    return go


# -- Group fairness ------------------------------------------------------------------
def build_fairness(impl, spec):
    import warnings

    from .bench_fairness import fairlearn_frames, make_data, ours_full, ours_point

    warnings.filterwarnings("ignore")
    probs, y, attributes = make_data(spec["rows"])
    boot = spec["params"].get("boot", 0)
    if impl == "ours":
        def go():
            values = ours_point(probs, y, attributes) if not boot else None
            if boot:
                ours_full(probs, y, attributes, boot)  # timed: the whole analysis with its bootstrap
                values = ours_point(probs, y, attributes)  # the same rates the analysis reports, for the comparison
            flat = np.array([v for key in sorted(values) for v in values[key].values()], dtype=np.float64)
            return {"forward_rows": 0, "backward_rows": 0, "array": flat}

        return go

    def go():
        frames = fairlearn_frames(probs, y, attributes, n_boot=boot or None)
        ours = ours_point(probs, y, attributes)  # only for the key order; not timed work of any weight
        flat = []
        for key in sorted(ours):
            subject, group = key
            frame = frames[subject].by_group
            row = frame.loc[tuple(group.split(", ")) if ", " in group else group]
            flat.extend(float(row[m]) for m in ours[key])
        return {"forward_rows": 0, "backward_rows": 0, "array": np.array(flat)}

    return go


WORKLOADS = [
    Workload("ig.digits", "Integrated Gradients, 50 Gauss-Legendre steps", "digits", ("torch",), ("ours", "captum"), 200, 40,
             build_ig, lambda s: (0, IG_STEPS * s["rows"]), agree="array", tolerance=1e-5),
    Workload("ig.credit", "Integrated Gradients, 50 Gauss-Legendre steps", "credit", ("torch",), ("ours", "captum"), 2000, 400,
             build_ig, lambda s: (0, IG_STEPS * s["rows"]), agree="array", tolerance=1e-5),
    Workload("occlusion.digits", "Occlusion, 1x1 patches (64 per image), mean baseline", "digits", ("torch", "onnx"),
             ("ours", "captum", "captum-batched"), 200, 40, build_occlusion, lambda s: (65 * s["rows"], 0), agree="array", tolerance=1e-5),
    Workload("occlusion.credit", "Occlusion, one feature at a time (6), mean baseline", "credit", ("torch", "onnx"),
             ("ours", "captum", "captum-batched"), 2000, 400, build_occlusion, lambda s: (7 * s["rows"], 0), agree="array", tolerance=1e-5),
    Workload("deletion.digits", "Deletion / pixel flipping, 64 single-pixel steps", "digits", ("torch",), ("ours", "quantus"), 200, 40,
             build_deletion, lambda s: (65 * s["rows"], 0), agree="array", tolerance=1e-5),
    Workload("faithcorr.digits", "Faithfulness correlation, 64 random subsets of 13 pixels", "digits", ("torch",), ("ours", "quantus"),
             200, 40, build_faithfulness_correlation, lambda s: (65 * s["rows"], 0), agree="values", agree_keys=("mean_correlation",),
             tolerance=None),
    Workload("fgsm.digits", "FGSM L-inf eps 0.1, robust accuracy", "digits", ("torch",), ("ours", "art", "torchattacks"), 10000, 2000,
             build_gradient_attack, lambda s: (s["rows"], s["rows"]), agree="values", agree_keys=("robust_accuracy",), tolerance=0.005,
             params={"steps": 1}),
    Workload("pgd.digits", "PGD L-inf eps 0.1, 10 steps, no random start", "digits", ("torch",), ("ours", "art", "torchattacks"), 5000,
             1000, build_gradient_attack, lambda s: (s["rows"], PGD_STEPS * s["rows"]), agree="values", agree_keys=("robust_accuracy",),
             tolerance=0.005, single_round=False, params={"steps": PGD_STEPS}),
    Workload("square.digits", "Square attack L-inf eps 0.05, 300 queries", "digits", ("torch", "onnx"), ("ours", "art"), 500, 100,
             build_square, None, agree="values", agree_keys=("robust_accuracy",), tolerance=None, single_round=False,
             params={"budget": 300}),
    Workload("fairness.1e4", "Group fairness point estimates, 10^4 rows", "credit", ("none",), ("ours", "fairlearn"), 10_000, 10_000,
             build_fairness, lambda s: (0, 0), agree="array", tolerance=1e-9),
    Workload("fairness.1e6", "Group fairness point estimates, 10^6 rows", "credit", ("none",), ("ours", "fairlearn"), 1_000_000, 100_000,
             build_fairness, lambda s: (0, 0), agree="array", tolerance=1e-9, max_repeats=1),
    Workload("fairness-boot.1e4", "Group fairness with 50 bootstrap resamples, 10^4 rows (ours: the whole analysis)", "credit",
             ("none",), ("ours", "fairlearn"), 10_000, 10_000, build_fairness, lambda s: (0, 0), agree="array", tolerance=1e-9,
             params={"boot": 50}, max_repeats=1),
]

BY_NAME = {w.name: w for w in WORKLOADS}
