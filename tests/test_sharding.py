"""`ctx.map_rows`: row shards with seeds from the shard index, in one process (the Ray pool is in test_executor.py).

The analyses that shard (corruptions, the Square and PGD attacks, the explainer maps, the
counterfactual variants) are checked here to give, sharded, what they give in one shard
where they draw nothing; test_executor.py checks a Ray run of them against one process.
"""

import numpy as np
import pytest

from audit.analysis import derive_seed
from audit.sharding import map_rows, rows_on, run_shard, shard_bounds, shard_seeds


class FakeModel:
    class counters:  # noqa: N801 - stands in for Counters
        forward_rows = backward_rows = 0
        forward_seconds = backward_seconds = 0.0


class FakeContext:
    def __init__(self, seed):
        self.seed = seed
        self.model = FakeModel()


def noisy_double(model, rng, x, y):
    return 2 * x + rng.normal(size=x.shape), y[:, None] * np.ones((1, 3))


def test_shard_bounds_cover_the_rows_once_in_order():
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_bounds(8, 4) == [(0, 4), (4, 8)]
    assert shard_bounds(4, 4) == [(0, 4)]
    assert shard_bounds(0, 4) == [(0, 0)]
    with pytest.raises(ValueError, match="shard_rows must be at least 1"):
        shard_bounds(5, 0)


def test_shard_seeds_come_from_the_seed_purpose_and_index_not_the_shard_count():
    assert shard_seeds(7, "noise", 3) == [derive_seed(7, "noise/shard0"), derive_seed(7, "noise/shard1"), derive_seed(7, "noise/shard2")]
    assert shard_seeds(7, "noise", 5)[:3] == shard_seeds(7, "noise", 3)
    assert len(set(shard_seeds(7, "noise", 50))) == 50
    assert shard_seeds(7, "noise", 1) != shard_seeds(8, "noise", 1) != shard_seeds(7, "other", 1)


def test_map_rows_concatenates_each_shard_computed_with_its_own_stream():
    x, y = np.arange(23.0).reshape(23, 1), np.arange(23)
    got_x, got_y = map_rows(FakeContext(5), noisy_double, (x, y), "p", shard_rows=10)
    # Independently: shard i of rows [10i, 10i+10) draws from default_rng(derive_seed(5, "p/shard<i>")).
    expected = np.concatenate([2 * x[a:b] + np.random.default_rng(derive_seed(5, f"p/shard{i}")).normal(size=(b - a, 1))
                               for i, (a, b) in enumerate([(0, 10), (10, 20), (20, 23)])])
    assert np.array_equal(got_x, expected)
    assert np.array_equal(got_y, np.repeat(y[:, None], 3, axis=1))


class RoundRobin:
    """A stand-in for a pool of ``workers``: shard i goes to worker i mod workers, and each worker runs its shards last first."""

    def __init__(self, workers: int):
        self.workers = workers

    def map(self, model, fn, arrays, bounds, seeds):
        results = [None] * len(bounds)
        for worker in range(self.workers):
            for i in reversed(range(worker, len(bounds), self.workers)):
                start, stop = bounds[i]
                results[i] = run_shard(model, fn, seeds[i], [a[start:stop] for a in arrays])
        return results


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_the_results_do_not_depend_on_the_number_of_workers_or_the_order_they_run_shards(workers):
    x, y = np.arange(23.0).reshape(23, 1), np.arange(23)
    here = map_rows(FakeContext(5), noisy_double, (x, y), "p", shard_rows=4)
    with rows_on(RoundRobin(workers)):
        pooled = map_rows(FakeContext(5), noisy_double, (x, y), "p", shard_rows=4)
    assert all(np.array_equal(a, b) for a, b in zip(here, pooled))


def test_a_given_seed_replaces_the_analysis_seed():
    x, y = np.arange(23.0).reshape(23, 1), np.arange(23)
    given = map_rows(FakeContext(5), noisy_double, (x, y), "p", shard_rows=10, seed=9)
    assert np.array_equal(given[0], map_rows(FakeContext(9), noisy_double, (x, y), "p", shard_rows=10)[0])
    assert not np.array_equal(given[0], map_rows(FakeContext(5), noisy_double, (x, y), "p", shard_rows=10)[0])


def test_one_shard_passes_the_arrays_themselves():
    x = np.ones((5, 2))
    seen = []
    map_rows(FakeContext(0), lambda model, rng, rows: seen.append(rows) or rows, (x,), "p", shard_rows=5)
    assert seen[0] is x  # not a slice, not a copy: the in-process path is the unsharded call


def test_arrays_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different numbers of rows"):
        map_rows(FakeContext(0), noisy_double, (np.ones(3), np.ones(4)), "p", shard_rows=2)


def test_corruptions_without_randomness_do_not_depend_on_the_shards(assets):
    """Brightness draws nothing: sharded into 7-row pieces it must give the unsharded table bit for bit,
    which checks that the shards' probabilities come back in row order."""
    import audit
    from audit import data as data_module
    from audit import models
    from audit.testing import run_analysis
    from audit_robustness import Corruptions

    model = models.load(str(assets.cnn_onnx))
    data = data_module.load(str(assets.images_npz))

    def table(**options):
        records = run_analysis(Corruptions, model, data, corruptions=["brightness", "contrast"], **options)
        return [(r.name, r.subject, r.value) for r in records if isinstance(r, audit.Metric)]

    whole = table()
    assert len(whole) > 10
    assert table(shard_rows=7) == whole  # 48 images in 7 shards


def test_pgd_without_a_random_start_does_not_depend_on_the_shards():
    """Each row's attack is its own: 5-row shards give the robust accuracy of one shard, and the examples of the first rows."""
    import audit
    from audit.testing import run_analysis, tiny_cnn, tiny_images
    from audit_robustness import Adversarial

    model, data = tiny_cnn(seed=0), tiny_images(n=40, seed=2)
    for early_stop in (True, False):
        def audit_with(**options):
            records = run_analysis(Adversarial, model, data, attacks=["pgd"], norms=["linf", "l2"], steps=3, early_stop=early_stop,
                                   **options)
            figures = {r.name for r in records if isinstance(r, audit.Figure)}
            return [(r.subject, r.value) for r in records if isinstance(r, audit.Metric)], figures

        whole, figures = audit_with()
        assert audit_with(shard_rows=3) == (whole, figures)  # 14 shards, the first shorter than the 4 examples shown
        assert "adversarial_examples" in figures and len(whole) == 10


def test_counterfactual_variants_do_not_depend_on_the_shards():
    import audit
    from audit.data import Dataset
    from audit.testing import linear_model, run_analysis
    from audit_bias import Counterfactual

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    x[:, 2] = rng.integers(0, 3, 300)
    data = Dataset(x=x, y=(x[:, 0] > 0).astype(np.int64), attributes={"region": x[:, 2].astype(int).astype(str)},
                   attribute_features={"region": 2})
    model = linear_model([[0.0, 0.0, 0.0], [1.0, -0.5, 0.7]], [0.0, 0.3])

    def metrics(**options):
        records = run_analysis(Counterfactual, model, data, **options)
        return {(r.name, r.group): r.value for r in records if isinstance(r, audit.Metric)}

    before = model.counters.forward_rows
    whole = metrics()
    passes = model.counters.forward_rows - before
    sharded = metrics(shard_rows=7)  # 43 shards
    assert model.counters.forward_rows - before == 2 * passes  # the same variants, counted once each
    assert sharded.keys() == whole.keys() and len(whole) == 6
    for key, value in whole.items():
        assert sharded[key] == pytest.approx(value, abs=1e-9), key  # float32 passes of other batch sizes


def test_explainer_maps_over_shards_draw_each_shards_stream():
    """Deterministic explainers give the same maps over 5-row shards (to float32 rounding: other batches); RISE's masks and
    SmoothGrad's noise come from each shard's stream, the very stream a row explained again alone in that shard uses."""
    from audit.runner import make_context
    from audit.testing import tiny_dataset, tiny_mlp
    from audit_attribution import Faithfulness
    from audit_attribution._core import ModelScorer, TorchScorer
    from audit_attribution._run import explain_all, setup

    model, data = tiny_mlp(seed=0), tiny_dataset(n=100, seed=1)
    explainers = ["saliency", "integrated_gradients", "occlusion", "smoothgrad", "rise"]

    def maps(**options):
        analysis = Faithfulness(Faithfulness.Options(rows=16, explainers=explainers, rise_masks=40, **options))
        ctx = make_context(model, data, seed=4, analysis_name=analysis.name)
        s = setup(analysis, ctx)
        found, _ = explain_all(ctx, s, ModelScorer(model), s.x, s.targets, s.layout, s.data_mean, s.value_sd)
        return found, ctx, s

    whole, _, _ = maps()
    sharded, ctx, s = maps(shard_rows=5)  # 4 shards
    for name in ("saliency", "integrated_gradients", "occlusion"):
        np.testing.assert_allclose(sharded[name], whole[name], rtol=1e-6, atol=1e-9, err_msg=name)
    for name in ("smoothgrad", "rise"):
        assert not np.allclose(sharded[name][5:], whole[name][5:])  # later shards draw their own noise and masks
    # Row 7 (shard 1) explained alone by another scorer of the same function, on shard 1's streams, as the randomisation test does.
    one = type(s)(**{**s.__dict__, "rows": s.rows[7:8], "x": s.x[7:8], "targets": s.targets[7:8]})
    other = TorchScorer(model, lambda t: model.logits_torch(t).softmax(1))
    alone, _ = explain_all(ctx, one, other, one.x, one.targets, s.layout, s.data_mean, s.value_sd, stream=1)
    np.testing.assert_allclose(alone["rise"][0], sharded["rise"][7], rtol=1e-5, atol=1e-7)
