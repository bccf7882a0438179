"""A full `audit run` of every analysis on each demo model, against the comparable work done by the peers back to back.

Ours: the `audit run` command in a fresh process (load, shared clean pass, every
analysis with its defaults, storing), wall time of the whole process. Peers:
one fresh process doing the parts of that work the peers offer, with the same
settings, also timed from start-up to exit:

* credit (ONNX MLP, 2,000 rows): Fairlearn MetricFrame (selection rate,
  accuracy, TPR, FPR, precision) for sex, age (4 quantile bins), region and the
  intersections, with 200 bootstrap resamples each (bias.group_fairness);
  Captum occlusion per feature on 64 rows through onnxruntime (the
  attribution analyses' black-box part). ART's Square attack refuses non-image
  data, so robustness.blackbox_attack has no peer here.
* digits (TorchScript CNN, 500 rows): Captum saliency, input x gradient, IG
  (32 steps), SmoothGrad (16 samples) and occlusion on 64 rows; Quantus
  PixelFlipping (32 steps) and FaithfulnessCorrelation (64 subsets) for each of
  those maps (attribution.faithfulness, without insertion, random baselines,
  infidelity, sanity and agreement); ART FGSM and PGD (10 steps) in L-inf and L2
  at the analysis' five radii on the 500 rows (robustness.adversarial); ART
  Square attack, 1,000 queries, on the 500 rows (robustness.blackbox_attack).

Not covered by any peer, so absent from their side: corruptions, calibration,
OOD, counterfactual substitution, leakage probes, Sobol, RISE, DiFull, model
randomisation, explainer agreement, distance covariance and JS divergence.
The peers' side therefore does less work than ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ._setup import DEMO, worker_env

NOTE = __doc__.split("\n\n", 1)[1].strip()

MODELS = {"credit": ("credit.onnx", "credit.npz", "onnx"), "digits": ("digits.pt", "digits.npz", "torch")}


def full_run(args, device: str, limits: dict, tmp: Path) -> dict:
    from .__main__ import run_worker

    rows = []
    for name, (model_file, data_file, backend) in MODELS.items():
        db = tmp / f"full-{name}.db"
        command = [sys.executable, "-m", "audit", "run", str(DEMO / model_file), "--data", str(DEMO / data_file), "--device", device,
                   "--fail-on", "never", "--db", str(db), "--json"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, env=worker_env(args.threads), timeout=1800)
        seconds = time.perf_counter() - start
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            tail = (done.stderr or done.stdout).strip().splitlines()
            rows.append({"model": name, "error": tail[-1] if tail else f"exit {done.returncode}"})
            continue
        analyses = report["analyses"]
        clean_rows = len(np.load(DEMO / data_file)["y"])
        forward = clean_rows + sum(a["forward_rows"] for a in analyses)
        backward = sum(a["backward_rows"] for a in analyses)
        item = {"model": name, "seconds": seconds, "forward_rows": forward - backward, "backward_rows": backward,
                "analyses": sum(a["status"] == "ok" for a in analyses),
                "per_analysis": {a["name"]: a["seconds"] for a in analyses if a["status"] == "ok"}}
        lim = limits.get(f"{name}/{backend}", {})
        if lim and "error" not in lim:
            item["limit"] = (forward - backward) * lim["forward"] + backward * (lim.get("backward") or 0.0)
            item["x_limit"] = seconds / item["limit"]
        if args.quick:
            item["peers"] = {"error": "skipped in --quick"}
        else:
            start = time.perf_counter()
            result = run_worker({"kind": "full-peers", "model": name, "device": device, "threads": args.threads}, args.threads, timeout=1800)
            result["seconds"] = time.perf_counter() - start if "error" not in result else None
            item["peers"] = result
        print(f"  {device:6s} full audit run     {name:6s} ours {seconds:.1f} s, peers "
              f"{item['peers'].get('seconds') or item['peers'].get('error')}", flush=True)
        rows.append(item)
    return {"note": NOTE, "rows": rows}


def _timed(parts: dict, label: str, function):
    start = time.perf_counter()
    result = function()
    parts[label] = time.perf_counter() - start
    return result


def peers(job: dict) -> dict:
    """The peers' side of the full run, in this (fresh) process; returns the seconds of each part."""
    parts: dict[str, float] = {}
    if job["model"] == "credit":
        _credit_peers(job, parts)
    else:
        _digits_peers(job, parts)
    return {"parts": parts}


def _credit_peers(job, parts):
    import torch
    from captum.attr import Occlusion
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, precision_score

    from ._setup import CountingSession, onnx_session

    archive = np.load(DEMO / "credit.npz")
    x, y = archive["x"], archive["y"]
    forward = CountingSession(onnx_session("credit", job["threads"], job["device"]), 4096)
    logits = forward(x)
    predicted = logits.argmax(1)
    age = np.digitize(archive["age"], np.quantile(archive["age"], [0.25, 0.5, 0.75]))
    attributes = {"sex": archive["sex"], "age": age, "region": archive["region"]}
    metrics = {"selection_rate": selection_rate, "accuracy": accuracy_score, "tpr": true_positive_rate, "fpr": false_positive_rate,
               "precision": precision_score}

    def fairness():
        names = list(attributes)
        groupings = [attributes[n] for n in names] + [np.stack([attributes[a], attributes[b]], axis=1)
                                                       for i, a in enumerate(names) for b in names[i + 1 :]]
        for sensitive in groupings:
            MetricFrame(metrics=metrics, y_true=y, y_pred=predicted, sensitive_features=sensitive, n_boot=200,
                        ci_quantiles=[0.025, 0.975], random_state=0)

    import warnings

    warnings.filterwarnings("ignore")
    _timed(parts, "fairlearn", fairness)
    rows = np.random.default_rng(0).choice(len(x), 64, replace=False)
    explainer = Occlusion(lambda t: torch.softmax(torch.from_numpy(forward(t.numpy())), dim=1))
    mean = torch.as_tensor(x.mean(axis=0, keepdims=True))
    _timed(parts, "captum occlusion", lambda: explainer.attribute(torch.as_tensor(x[rows]), sliding_window_shapes=(1,), baselines=mean,
                                                                  target=torch.as_tensor(predicted[rows]), perturbations_per_eval=6))


def _digits_peers(job, parts):
    import quantus
    import torch
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier
    from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    from ._setup import torch_module

    device = job["device"]
    archive = np.load(DEMO / "digits.npz")
    x, y = archive["x"], archive["y"]
    module = torch_module("digits", device)
    with torch.no_grad():
        predicted = module(torch.as_tensor(x, device=device)).argmax(1).cpu().numpy()
    rows = np.sort(np.random.default_rng(0).choice(len(x), 64, replace=False))
    x_t = torch.as_tensor(x[rows], device=device)
    t_t = torch.as_tensor(predicted[rows], device=device)
    probability = lambda t: torch.softmax(module(t), dim=1)  # noqa: E731
    mean = torch.as_tensor(x.mean(axis=0, keepdims=True), device=device)
    maps = {}
    maps["saliency"] = _timed(parts, "captum saliency", lambda: Saliency(probability).attribute(x_t, target=t_t))
    maps["input_x_gradient"] = _timed(parts, "captum input x gradient", lambda: InputXGradient(probability).attribute(x_t, target=t_t))
    maps["integrated_gradients"] = _timed(parts, "captum IG", lambda: IntegratedGradients(probability).attribute(
        x_t, baselines=torch.zeros_like(x_t), target=t_t, n_steps=32, method="gausslegendre"))
    maps["smoothgrad"] = _timed(parts, "captum smoothgrad", lambda: NoiseTunnel(Saliency(probability)).attribute(
        x_t, nt_type="smoothgrad", nt_samples=16, stdevs=0.15, target=t_t))
    maps["occlusion"] = _timed(parts, "captum occlusion", lambda: Occlusion(probability).attribute(
        x_t, sliding_window_shapes=(1, 1, 1), baselines=mean, target=t_t, perturbations_per_eval=64))
    flipping = quantus.PixelFlipping(features_in_step=2, perturb_baseline="mean", abs=False, normalise=False, disable_warnings=True,
                                     display_progressbar=False)
    correlation = quantus.FaithfulnessCorrelation(nr_runs=64, subset_size=13, perturb_baseline="mean", abs=False, normalise=False,
                                                  return_aggregate=False, disable_warnings=True, display_progressbar=False)
    for name, attribution in maps.items():
        a = attribution.detach().cpu().numpy()
        for label, metric in (("quantus pixel flipping", flipping), ("quantus faithfulness correlation", correlation)):
            _timed(parts, f"{label} {name}", lambda metric=metric, a=a: metric(
                model=module, x_batch=x[rows], y_batch=predicted[rows], a_batch=a, device=device, softmax=True, channel_first=True,
                batch_size=64))
    classifier = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=10,
                                   clip_values=(0.0, 1.0), device_type="gpu" if device.startswith("cuda") else "cpu")
    span = float(x.max() - x.min())
    for norm, unit in ((np.inf, span), (2, span * 8.0)):
        for fraction in (0.01, 0.02, 0.05, 0.1, 0.2):
            eps = fraction * unit
            label = "linf" if norm == np.inf else "l2"
            fgsm = FastGradientMethod(classifier, norm=norm, eps=eps, eps_step=eps, batch_size=4096)
            _timed(parts, f"art fgsm {label} {fraction}", lambda fgsm=fgsm: classifier.predict(fgsm.generate(x, y=y)))
            pgd = ProjectedGradientDescent(classifier, norm=norm, eps=eps, eps_step=0.25 * eps, max_iter=10, num_random_init=0,
                                           batch_size=4096, verbose=False)
            _timed(parts, f"art pgd {label} {fraction}", lambda pgd=pgd: classifier.predict(pgd.generate(x, y=y)))
    square = SquareAttack(classifier, norm=np.inf, eps=0.05 * span, max_iter=1000, p_init=0.05, nb_restarts=1, batch_size=500, verbose=False)
    _timed(parts, "art square", lambda: square.generate(x, y=y))
