"""`ctx.map_rows`: row shards with seeds from the shard index, in one process (the Ray pool is in test_executor.py)."""

import numpy as np
import pytest

from audit.analysis import derive_seed
from audit.sharding import map_rows, shard_bounds, shard_seeds


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
