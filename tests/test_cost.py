"""The cost model: durations, plans equal to the passes counted, cheap analyses first, the budget and its knobs, the stored plan."""

from __future__ import annotations

import pytest

import audit
from audit import cost
from audit.analysis import Plan, PlanInfo
from audit.errors import AuditError


# -- durations and the budget setting --------------------------------------------

@pytest.mark.parametrize("text, seconds", [("90s", 90), ("90", 90), (90, 90), (2.5, 2.5), ("5m", 300), ("1.5m", 90),
                                           ("1h", 3600), ("2 min", 120), ("quick", cost.QUICK_BUDGET), ("QUICK", cost.QUICK_BUDGET)])
def test_durations_parse(text, seconds):
    assert cost.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "", "-3", "0", "0s", True, "1e3"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(ValueError):
        cost.parse_duration(text)


def test_budget_in_the_config_is_type_checked(tmp_path):
    from audit.config import RunSpec, apply_config

    spec = RunSpec()
    apply_config(spec, {"budget": "5m"}, tmp_path)
    assert spec.budget == 300
    for bad, words in ((True, "boolean"), ("soon", "duration such as 90s"), ([1], "budget")):
        with pytest.raises(AuditError, match="budget") as raised:
            apply_config(RunSpec(), {"budget": bad}, tmp_path)
        assert words in str(raised.value)


def test_bad_budget_flag_is_one_error_line_and_no_database(cli, assets, tmp_path):
    code, out, err = cli("run", str(assets.mlp_onnx), "--data", str(assets.data_npz), "--budget", "five minutes")
    assert code == 2
    assert err.strip().startswith("Error: --budget") and "5m" in err and "Traceback" not in err
    assert not (tmp_path / "audit.db").exists()


# -- the knobs a budget scales ---------------------------------------------------

class Knobbed(audit.Analysis):
    name = "test.knobbed"
    budget_knobs = {"masks": 10, "rows": 2, "absent": 1}

    class Options(audit.Options):
        masks: int = 100
        rows: int = 8


def test_knobs_reduce_in_their_stated_order_never_below_their_minimum():
    assert cost.knob_values(Knobbed, {}, 0.0) == {}
    # Geometric from the default to the minimum over one stage, then the next knob.
    assert cost.knob_values(Knobbed, {}, 0.5) == {"masks": [100, round(100 * 0.1 ** 0.5)]}
    assert cost.knob_values(Knobbed, {}, 1.0) == {"masks": [100, 10]}
    assert cost.knob_values(Knobbed, {}, 1.5) == {"masks": [100, 10], "rows": [8, 4]}
    assert cost.knob_values(Knobbed, {}, 99) == {"masks": [100, 10], "rows": [8, 2]}


def test_a_knob_the_user_set_is_left_as_set():
    assert cost.knob_values(Knobbed, {"masks": 500}, 99) == {"rows": [8, 2]}


# -- plans, run order and shared passes -----------------------------------------

def test_estimated_seconds_from_the_calibrated_speed():
    speed = cost.Speed(forward=1e-3, backward=4e-3, batch_size=64, gradient_batch_size=16)
    # 1,000 rows forward of which 200 also backward, plus 1.5 s of other work.
    assert speed.seconds(Plan(1000, 200, 1.5)) == pytest.approx(800 * 1e-3 + 200 * 4e-3 + 1.5)


def test_rows_sent_in_small_calls_cost_the_small_batch_rate():
    speed = cost.Speed(forward=1e-3, backward=4e-3, batch_size=64, gradient_batch_size=16, forward_small=3e-3, backward_small=9e-3)
    # 1,000 rows forward (200 of them backward); of those, 300 forward in small calls, 100 of which backward.
    plan = Plan(1000, 200, 1.5, small_batches=(300, 100))
    assert speed.seconds(plan) == pytest.approx(600 * 1e-3 + 200 * 3e-3 + 100 * 4e-3 + 100 * 9e-3 + 1.5)
    # A speed measured before small calls were timed (a cached calibration) charges them at the large-batch rate.
    assert cost.Speed(1e-3, 4e-3, 64, 16).seconds(plan) == pytest.approx(800 * 1e-3 + 200 * 4e-3 + 1.5)


def test_sanity_plans_the_randomised_maps_of_each_row_as_small_calls():
    from audit_attribution import Sanity

    info = PlanInfo(rows=1000, row_shape=(3, 8, 8), modality="image", n_classes=10, capabilities=frozenset({"torch", "gradients"}))
    plan = Sanity().plan(info)
    options = Sanity.Options()
    rows = min(1000, options.rows)
    assert plan.small_batches[1] == rows * (1 + 1 + options.ig_steps + options.smoothgrad_samples)
    assert 0 < plan.small_batches[0] - plan.small_batches[1] < plan.forward_rows - plan.backward_rows
    onnx_only = PlanInfo(rows=1000, row_shape=(3, 8, 8), modality="image", n_classes=10, capabilities=frozenset({"gradients"}))
    assert Sanity().plan(onnx_only).small_batches == (0, 0)  # no randomised copy without a torch module


def test_durations_format_without_sixty_seconds():
    assert [cost.format_seconds(s) for s in (59.94, 479.6, 207.0, 5400)] == ["59.9s", "8m00s", "3m27s", "1.5h"]


def test_calibration_times_a_call_twice_even_when_the_first_alone_fills_its_time(monkeypatch):
    """The first full-size call pays for growing the allocator's pools: a single call would be taken as the speed."""
    clock = iter([0.0, 2.0, 2.0, 2.1, 2.1, 2.2, 2.2, 2.3, 2.3, 2.4])  # a first call of 2 s, then 0.1 s each
    monkeypatch.setattr(cost.time, "perf_counter", lambda: next(clock))
    calls = []
    assert cost._best_per_row(lambda: calls.append(1), 100) == pytest.approx(0.1 / 100)
    assert len(calls) == 2  # the second call is timed; past CALIBRATION_SECONDS, no third


def test_attacks_that_stop_on_a_fooled_row_plan_a_range_and_count_only_rows_the_model_gets_right():
    from audit_robustness import Adversarial, BlackBoxAttack

    info = PlanInfo(rows=1000, row_shape=(3, 8, 8), modality="image", n_classes=10, capabilities=frozenset({"torch", "gradients"}),
                    accuracy=0.9)
    # 500 rows sampled, 450 of them right: 2 attacks x 2 norms x 5 epsilons; FGSM 1 step, PGD 10, each + 1 forward.
    plan = Adversarial().plan(info)
    assert (plan.forward_rows, plan.backward_rows) == (450 * 2 * 5 * (2 + 11), 450 * 2 * 5 * (1 + 10))
    assert plan.at_least == (4 * 450, 4 * 450)
    exhaustive = Adversarial(Adversarial.Options(early_stop=False)).plan(info)
    assert (exhaustive.forward_rows, exhaustive.at_least) == (500 * 2 * 5 * (2 + 11), None)
    square = BlackBoxAttack().plan(info)
    assert (square.forward_rows, square.at_least) == (90 * 1000, (90, 0))
    entries = {"robustness.adversarial": cost.Planned("robustness.adversarial", plan)}
    speed = cost.Speed(0.001, 0.004, 256, 128)
    order = cost.order_and_count(entries, {"robustness.adversarial": "robustness"}, speed)
    entry = entries["robustness.adversarial"]
    assert entry.fewest_seconds == pytest.approx(1800 * 0.004)
    assert entry.seconds == pytest.approx((58_500 - 49_500) * 0.001 + 49_500 * 0.004)
    lines = cost.plan_lines(entries, order, speed, None, True)
    assert "at most" in lines[1] and "7.2s to 3m27s" in lines[1]
    assert "estimated total 7.2s to 3m27s (attacks stop on a row once it is fooled)" in lines[-1]


def test_cheap_first_performance_first_attribution_last_shared_passes_counted_once():
    speed = cost.Speed(forward=1e-3, backward=2e-3, batch_size=64, gradient_batch_size=16)
    entries = {
        "attribution.b": cost.Planned("attribution.b", Plan(100, 0, shared={"maps": (5000, 0)})),
        "attribution.a": cost.Planned("attribution.a", Plan(2000, 0, shared={"maps": (5000, 0)})),
        "robustness.slow": cost.Planned("robustness.slow", Plan(50_000, 0)),
        "bias.cheap": cost.Planned("bias.cheap", Plan(10, 0)),
        "performance": cost.Planned("performance", Plan(0, 0, 1.0)),
    }
    categories = {"attribution.a": "attribution", "attribution.b": "attribution", "robustness.slow": "robustness",
                  "bias.cheap": "bias", "performance": "performance"}
    order = cost.order_and_count(entries, categories, speed)
    assert order == ["performance", "bias.cheap", "robustness.slow", "attribution.b", "attribution.a"]
    assert entries["attribution.b"].forward_rows == 5100  # makes the shared maps
    assert entries["attribution.a"].forward_rows == 2000  # reuses them
    assert entries["attribution.b"].seconds == pytest.approx(5.1)
    assert entries["performance"].seconds == pytest.approx(1.0)


class Planless(audit.Analysis):
    name = "test.planless"
    requires = frozenset({"gradients"})


def test_an_analysis_without_a_plan_gets_a_conservative_default():
    info = PlanInfo(rows=300, row_shape=(4,), modality="tabular", n_classes=2)
    plan = cost.plan_for(Planless(), info)
    assert (plan.forward_rows, plan.backward_rows) == (3000, 3000)
    assert "no plan()" in plan.notes[0]
    assert cost.plan_for(Planless(), info, skipped="no labels").forward_rows == 0


class BrokenPlan(audit.Analysis):
    name = "test.broken_plan"

    def __init__(self, returned=None, raises=False):
        super().__init__()
        self.returned, self.raises = returned, raises

    def plan(self, info):
        if self.raises:
            raise RuntimeError("no idea")
        return self.returned


def test_a_plan_that_raises_or_returns_something_else_falls_back_to_the_default():
    info = PlanInfo(rows=10, row_shape=(4,), modality="tabular", n_classes=2)
    raised = cost.plan_for(BrokenPlan(raises=True), info)
    assert raised.forward_rows == 100 and "RuntimeError: no idea" in raised.notes[-1]
    wrong = cost.plan_for(BrokenPlan(returned={"forward_rows": 1}), info)
    assert wrong.forward_rows == 100 and "returned dict" in wrong.notes[-1]


def _small_options(name, cls):
    options = {k: v for k, v in {"rows": 4, "rise_masks": 20, "sobol_designs": 8, "smoothgrad_samples": 2, "ig_steps": 4}.items()
               if k in cls.Options.model_fields}
    options.update({"attribution.sanity": {"grid_samples": 2, "rows": 3},
                    "attribution.faithfulness": {"subsets": 4, "infidelity_samples": 4, "curve_steps": 4},
                    "robustness.blackbox_attack": {"budget": 10, "max_rows": 20},
                    "robustness.adversarial": {"max_rows": 20}, "robustness.corruptions": {"max_rows": 20},
                    "robustness.ood": {"synthetic_rows": 20}}.get(name, {}))
    return options


EXACT = ["attribution.agreement", "attribution.faithfulness", "attribution.sanity", "bias.group_fairness", "performance",
         "robustness.adversarial", "robustness.calibration", "robustness.corruptions", "robustness.ood"]


@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_planned_passes_equal_the_passes_counted(kind):
    """Each built-in plan, on a tiny CNN and MLP, against the model's own counters (the clean pass not included)."""
    from audit.plugins import get_plugin_manager
    from audit.runner import build_options
    from audit.testing import run_analysis, tiny_cnn, tiny_dataset, tiny_images, tiny_mlp

    model, data = (tiny_cnn(), tiny_images(n=48)) if kind == "image" else (tiny_mlp(), tiny_dataset(n=80))
    model.predict(data.x[:2])
    registry = get_plugin_manager().analyses()
    info = cost.plan_info(model, data)
    shared = {}
    for name, stopping in [(name, False) for name in EXACT] + [("robustness.blackbox_attack", False), ("robustness.adversarial", True)]:
        cls = registry[name].cls
        options = _small_options(name, cls)
        if name == "robustness.adversarial":
            options["early_stop"] = stopping
        plan = cost.plan_for(cls(build_options(cls, options)), info)
        before = model.counters.snapshot()
        records = run_analysis(cls, model, data, shared=shared, **options)
        used = model.counters.since(before)
        used_forward = used.forward_rows - len(data)  # run_analysis makes its own clean pass
        if records.status == "skipped":
            continue
        reused = name == "attribution.faithfulness"  # agreement made the maps it shares
        forward = plan.forward_rows + (0 if reused else sum(f for f, _ in plan.shared.values()))
        backward = plan.backward_rows + (0 if reused else sum(b for _, b in plan.shared.values()))
        if name == "robustness.blackbox_attack" or options.get("early_stop") is True:
            # Queries stop once a row is fooled, and the white-box attacks leave it then: the plan is the most.
            assert 0 < used_forward <= forward and used.backward_rows <= backward, name
        else:
            assert (used_forward, used.backward_rows) == (forward, backward), name


def test_attribution_plan_closed_form_for_an_8x8_image():
    """Per explained row on a 1x8x8 image: occlusion 64 patches + 1, Sobol 32 x (16 + 2), RISE 500, IG 32, SmoothGrad 16, 2 gradients."""
    from audit_attribution import Agreement

    info = PlanInfo(rows=100, row_shape=(1, 8, 8), modality="image", n_classes=3, capabilities=frozenset({"torch", "gradients"}))
    # By default a model with gradients gets the gradient explainers and occlusion; one without, occlusion, Sobol and RISE.
    ((forward, backward),) = Agreement().plan(info).shared.values()
    assert (forward, backward) == (64 * (65 + 32 + 16 + 2), 64 * (32 + 16 + 2))
    every = Agreement(Agreement.Options(explainers=["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion",
                                                   "sobol", "rise"]))
    ((forward, backward),) = every.plan(info).shared.values()
    assert (forward, backward) == (64 * (65 + 32 * 18 + 500 + 32 + 16 + 2), 64 * (32 + 16 + 2))
    without_gradients = Agreement().plan(PlanInfo(rows=10, row_shape=(1, 8, 8), modality="image", n_classes=3))
    ((forward, backward),) = without_gradients.shared.values()
    assert (forward, backward) == (10 * (65 + 32 * 18 + 500), 0)  # rows bounded by the data, no gradient explainers


# -- the run ---------------------------------------------------------------------

def _spec(assets, **fields):
    from audit.config import RunSpec

    spec = RunSpec(model=str(assets.mlp_onnx), data=str(assets.data_npz), db="audit.db", fail_on="never")
    for key, value in fields.items():
        setattr(spec, key, value)
    spec.data_options.attributes = ["group"]
    return spec


def test_run_plans_orders_cheap_first_stores_the_plan_and_caches_the_calibration(assets):
    from audit.runner import run_audit

    printed = []
    outcome = run_audit(_spec(assets, analyses=["attribution.agreement", "robustness.ood", "performance"]), on_plan=printed.append)
    results = outcome.store.results(outcome.run_id)
    assert [r.analysis for r in results] == ["performance", "robustness.ood", "attribution.agreement"]
    run = outcome.store.resolve_run(outcome.run_id)
    assert run.planned == ["performance", "robustness.ood", "attribution.agreement"]
    ood = next(r for r in results if r.analysis == "robustness.ood")
    assert ood.plan["forward_rows"] == ood.forward_rows == 2 * 200  # two synthetic noise sets the size of the data
    assert run.cost_plan["calibration"]["forward_seconds_per_row"] > 0 and not run.cost_plan["calibration"]["cached"]
    assert printed[0][0].startswith("Plan (") and "robustness.ood" in printed[0][2]
    again = run_audit(_spec(assets, analyses=["performance"]))
    assert again.store.resolve_run(again.run_id).cost_plan["calibration"]["cached"]


def test_a_budget_reduces_the_knobs_records_what_and_keeps_what_the_user_set(assets):
    from audit.runner import run_audit

    spec = _spec(assets, analyses=["robustness.ood", "robustness.corruptions"], budget=1e-6,
                 options={"robustness.corruptions": {"max_rows": 150}})
    outcome = run_audit(spec)
    results = {r.analysis: r for r in outcome.store.results(outcome.run_id)}
    assert results["robustness.ood"].options["synthetic_rows"] == 200 and results["robustness.ood"].forward_rows == 400
    assert results["robustness.ood"].plan["reduced"] == {"synthetic_rows": [1000, 200]}
    assert any("synthetic_rows 1000 -> 200" in note for note in results["robustness.ood"].notes)
    assert results["robustness.corruptions"].options["max_rows"] == 150 and results["robustness.corruptions"].plan["reduced"] == {}
    run = outcome.store.resolve_run(outcome.run_id)
    assert run.cost_plan["budget_seconds"] == 1e-6 and run.cost_plan["fitted"] is False
    assert "cannot be met" in run.cost_plan["lines"][-1]


def test_a_budget_the_full_plan_fits_changes_nothing(assets):
    from audit.runner import run_audit

    outcome = run_audit(_spec(assets, analyses=["robustness.ood"], budget=3600.0))
    (result,) = outcome.store.results(outcome.run_id)
    assert result.options["synthetic_rows"] == 1000 and result.plan["reduced"] == {}
    assert outcome.store.resolve_run(outcome.run_id).cost_plan["fitted"] is True


def test_the_report_shows_planned_against_actual(assets, cli):
    code, out, err = cli("run", str(assets.mlp_onnx), "--data", str(assets.data_npz), "--attribute", "group", "-a", "robustness.ood",
                         "--budget", "1s", "--report", "r.html", "--fail-on", "never")
    assert code == 0, err
    assert "Plan (" in err and "robustness.ood" in err
    html = open("r.html", encoding="utf-8").read()
    assert "Planned against actual" in html and "Reduced by the budget" in html


def test_attribution_rows_are_bounded_by_the_runs_sample(assets):
    """--sample 30: the attribution analyses explain at most the 30 sampled rows, as planned."""
    from audit.runner import run_audit

    spec = _spec(assets, analyses=["attribution.agreement"], options={"attribution.agreement": {"explainers": ["occlusion"]}})
    spec.data_options.sample = 30
    outcome = run_audit(spec)
    (result,) = outcome.store.results(outcome.run_id)
    # Occlusion of 4 features: 5 forward rows per explained row, 30 rows (not the default 64).
    assert result.forward_rows == result.plan["forward_rows"] == 30 * 5


def test_corruption_costs_name_every_image_corruption():
    from audit_robustness._corruptions import IMAGE_CORRUPTIONS
    from audit_robustness._plan import IMAGE_CORRUPTION_SECONDS_PER_VALUE

    assert tuple(IMAGE_CORRUPTION_SECONDS_PER_VALUE) == tuple(IMAGE_CORRUPTIONS)
