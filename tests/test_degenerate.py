"""Degenerate inputs are not audited as valid: non-finite outputs, too few rows, runs that assessed nothing."""

import json

import numpy as np
import pytest

from tests.test_bad_input import assert_clean_error


@pytest.fixture
def nan_model(tmp_path):
    import torch

    class NaNHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x) * float("nan")

    path = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(NaNHead()), str(path))
    return path


def test_non_finite_outputs_are_refused_before_the_database(nan_model, cli, assets, tmp_path):
    result = cli("run", nan_model, "--data", assets.data_npz, "-a", "bias.group_fairness")
    assert_clean_error(result, "nan.pt", "NaN or infinite outputs for 200 of 200 rows")
    assert not (tmp_path / "audit.db").exists()


def test_nan_outputs_on_nan_inputs_are_allowed(cli, assets, tmp_path):
    x = assets.x.copy()
    x[5, 0] = np.nan
    np.savez(tmp_path / "holes.npz", x=x, y=assets.labels)
    code, out, err = cli("run", assets.mlp_pt, "--data", tmp_path / "holes.npz", "-a", "performance", "--set", "data.allow_nan=true")
    assert "NaN or infinite outputs" not in err


def test_too_few_rows_are_refused_unless_accepted(cli, assets, tmp_path):
    np.savez(tmp_path / "one.npz", x=assets.x[:1], y=assets.labels[:1])
    assert_clean_error(cli("run", assets.mlp_onnx, "--data", tmp_path / "one.npz", "-a", "performance"), "one.npz", "1 row,", "--min-rows")
    assert not (tmp_path / "audit.db").exists()
    code, out, err = cli("run", assets.mlp_onnx, "--data", tmp_path / "one.npz", "-a", "performance", "--min-rows", "1")
    assert code == 0, err
    np.savez(tmp_path / "enough.npz", x=assets.x[:29], y=assets.labels[:29])
    code, out, err = cli("run", assets.mlp_onnx, "--data", tmp_path / "enough.npz", "-a", "performance")
    assert code == 0, err


def test_a_run_that_assessed_nothing_is_not_ok(cli, assets, tmp_path):
    np.savez(tmp_path / "bare.npz", x=assets.x)  # no labels, no attributes
    code, out, err = cli("run", assets.mlp_onnx, "--data", tmp_path / "bare.npz", "-a", "performance", "-a", "bias.group_fairness", "--json")
    document = json.loads(out)
    assert {a["status"] for a in document["analyses"]} == {"skipped"}
    assert (code, document["status"], document["exit_code"]) == (3, "skipped", 3)
    code, out, err = cli("show", "latest")
    assert "Nothing was assessed" in out and "status skipped, exit code 3" in out
