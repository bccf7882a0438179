"""Bad input: exit 2, one `Error:` line naming the problem and the fix, no traceback, database unchanged."""

import hashlib
import os

import numpy as np
import pytest


@pytest.fixture
def existing_db(cli, assets, tmp_path):
    """A database holding one earlier run, whose bytes must not change."""
    code, _, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance")
    assert code == 0, err
    path = tmp_path / "audit.db"
    import sqlite3

    # Checkpoint the WAL so the comparison sees the whole database in one file.
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_clean_error(result, *fragments):
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def make_cases(assets, tmp):
    (tmp / "text.onnx").write_text("this is not a model\n")
    (tmp / "truncated.onnx").write_bytes(assets.mlp_onnx.read_bytes()[:300])
    np.savez(tmp / "wide.npz", x=np.zeros((10, 7), np.float32), y=np.zeros(10, int))
    np.savez(tmp / "nox.npz", inputs=np.zeros((10, 4), np.float32))
    (tmp / "nolabel.csv").write_text("a,b,c,d\n1,2,3,4\n")
    x = assets.x.copy()
    x[3, 1] = np.nan
    np.savez(tmp / "nan.npz", x=x, y=assets.labels)
    np.savez(tmp / "badlabels.npz", x=assets.x, y=np.full(len(assets.x), 5))
    (tmp / "readonly").mkdir()
    os.chmod(tmp / "readonly", 0o500)
    (tmp / "notadb.db").write_text("hello, I am a text file\n")
    m, d = str(assets.mlp_onnx), str(assets.data_npz)
    return {
        "missing model": (["run", tmp / "nope.onnx", "--data", d], ["nope.onnx", "does not exist"]),
        "text file named .onnx": (["run", tmp / "text.onnx", "--data", d], ["text.onnx", "not a valid ONNX model"]),
        "truncated onnx": (["run", tmp / "truncated.onnx", "--data", d], ["truncated.onnx", "not a valid ONNX model"]),
        "shape mismatch": (["run", m, "--data", tmp / "wide.npz"], ["wide.npz", "(7,)", "expects (4)"]),
        "npz without x": (["run", m, "--data", tmp / "nox.npz"], ["no array named 'x'", "inputs"]),
        "csv without label": (["run", m, "--data", tmp / "nolabel.csv", "--label", "target"], ["no label column 'target'", "a, b, c, d"]),
        "nan in x": (["run", m, "--data", tmp / "nan.npz"], ["NaN", "1 row", "allow_nan"]),
        "labels outside classes": (["run", m, "--data", tmp / "badlabels.npz"], ["labels range over 5..5", "2 classes"]),
        "unknown analysis": (["run", m, "--data", d, "--analysis", "performence"], ["unknown analysis 'performence'", "did you mean 'performance'"]),
        "unknown option": (["run", m, "--data", d, "--set", "performance.floor=0.3"], ["unknown option performance.floor", "min_accuracy"]),
        "bad device": (["run", m, "--data", d, "--device", "gpu"], ["unknown device 'gpu'", "cuda:N"]),
        "unwritable report": (["run", m, "--data", d, "--report", tmp / "readonly" / "sub" / "r.html"], ["cannot write there"]),
        "report unknown format": (["run", m, "--data", d, "--report", tmp / "r.docx"], ["unknown format .docx"]),
        "db not a database": (["run", m, "--data", d, "--db", tmp / "notadb.db"], ["notadb.db is not a SQLite database"]),
        "bad fail-on": (["run", m, "--data", d, "--fail-on", "severe"], ["--fail-on 'severe'"]),
        "bad option value": (["run", m, "--data", d, "--set", "performance.min_accuracy=lots"], ["bad option performance.min_accuracy"]),
        "unknown flag": (["run", m, "--data", d, "--colour"], ["No such option", "--colour"]),
        "pickled module refused": (None, None),
    }


CASES = [
    "missing model", "text file named .onnx", "truncated onnx", "shape mismatch", "npz without x", "csv without label",
    "nan in x", "labels outside classes", "unknown analysis", "unknown option", "bad device", "unwritable report",
    "report unknown format", "db not a database", "bad fail-on", "bad option value", "unknown flag",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, cli, assets, existing_db, tmp_path):
    if case == "unwritable report" and os.geteuid() == 0:
        # root writes anywhere; make the parent a file instead, which nobody can write into.
        (tmp_path / "afile").write_text("x")
        args = ["run", assets.mlp_onnx, "--data", assets.data_npz, "--report", tmp_path / "afile" / "r.html"]
        fragments = ["cannot write there"]
    else:
        args, fragments = make_cases(assets, tmp_path)[case]
    before = digest(existing_db)
    runs_before = cli("runs", "--json")[1]
    assert_clean_error(cli(*args), *fragments)
    assert digest(existing_db) == before
    assert cli("runs", "--json")[1] == runs_before


def test_pickled_module_refused_unless_trusted(cli, assets, tmp_path):
    import torch

    torch.save(assets.mlp_model.module, tmp_path / "pickled.pt")
    assert_clean_error(cli("run", tmp_path / "pickled.pt", "--data", assets.data_npz), "runs code from the file", "--trust-model-code")
    code, out, err = cli("run", tmp_path / "pickled.pt", "--data", assets.data_npz, "-a", "performance", "--trust-model-code")
    assert code == 0, err
    torch.save(assets.mlp_model.module.state_dict(), tmp_path / "weights.pt")
    assert_clean_error(cli("run", tmp_path / "weights.pt", "--data", assets.data_npz, "--trust-model-code"), "state_dict")


def test_bad_usage_elsewhere(cli, tmp_path):
    assert_clean_error(cli("show", "nothing"), "no audit database")
    assert_clean_error(cli("runs", "--since", "yesterday"), "--since")
    (tmp_path / "audit.toml").write_text("modle = 'x.onnx'\n")
    assert_clean_error(cli("run"), "unknown key 'modle'", "model")
