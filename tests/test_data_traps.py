"""Data traps a new user falls into: undeclared attributes, unused columns, blanks, bombs, ties, unloadable models."""

import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import audit
from audit.data import DataOptions, load
from audit.errors import AuditError
from audit.testing import export_onnx, linear_model, run_analysis, tiny_mlp


# -- attributes only as declared -----------------------------------------------------------------------
def test_npz_attributes_only_as_declared(tmp_path):
    n = 40
    x = np.zeros((n, 3), np.float32)
    arrays = dict(x=x, y=np.arange(n) % 2, sex=np.arange(n) % 2, row_id=np.arange(n), weight=np.ones(n))
    np.savez(tmp_path / "plain.npz", **arrays)
    assert load(tmp_path / "plain.npz").attributes == {}  # row ids and weights are not protected attributes
    np.savez(tmp_path / "declared.npz", **arrays, attributes=np.array(["sex"]))
    assert list(load(tmp_path / "declared.npz").attributes) == ["sex"]
    assert list(load(tmp_path / "plain.npz", DataOptions(attributes=["weight"])).attributes) == ["weight"]
    assert sorted(load(tmp_path / "plain.npz", DataOptions(attributes_from_arrays=True)).attributes) == ["row_id", "sex", "weight"]
    with pytest.raises(AuditError, match="no attribute array race .*row_id, sex, weight"):
        load(tmp_path / "plain.npz", DataOptions(attributes=["race"]))


def test_undeclared_arrays_give_no_parity_findings(cli, assets, tmp_path):
    np.savez(tmp_path / "stray.npz", x=assets.x, y=assets.labels, row_id=np.arange(len(assets.x)))
    code, out, err = cli("run", assets.mlp_onnx, "--data", tmp_path / "stray.npz", "-a", "bias.group_fairness", "--json")
    import json

    (analysis,) = json.loads(out)["analyses"]
    assert analysis["status"] == "skipped" and "declare them with --attribute" in analysis["reason"]
    code, out, err = cli("run", assets.mlp_onnx, "--data", tmp_path / "stray.npz", "-a", "bias.group_fairness", "--json",
                         "--set", "data.attributes_from_arrays=true")
    assert {f["subject"] for f in json.loads(out)["findings"]} >= {"row_id"}


# -- feature columns ------------------------------------------------------------------------------------
def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows))


def test_csv_columns_the_model_names_are_the_features(tmp_path):
    rows = [(i, i * 2, 99, i % 2, ["a", "b"][i % 2], f"note {i}") for i in range(10)]
    _csv(tmp_path / "d.csv", ["f1", "f2", "row_id", "label", "group", "note"], rows)
    data = load(tmp_path / "d.csv", DataOptions(label="label", attributes=["group"]), model_features=["f2", "f1"])
    assert data.feature_names == ["f2", "f1"] and data.x[3].tolist() == [6.0, 3.0]
    described = data.describe()
    assert described["features"] == ["f2", "f1"] and described["feature_source"] == "the model's input names"
    assert described["ignored_columns"] == ["row_id", "note"]
    # --features wins over the model's names; names the file lacks are an error naming where they came from.
    assert load(tmp_path / "d.csv", DataOptions(label="label", features=["f1"]), model_features=["f2", "f1"]).feature_names == ["f1"]
    with pytest.raises(AuditError, match="no feature column age .named by the model's input names"):
        load(tmp_path / "d.csv", DataOptions(label="label"), model_features=["f1", "age"])


def test_onnx_feature_names_pick_the_csv_columns_and_the_report_shows_them(cli, tmp_path):
    import onnx

    model = tiny_mlp(n_features=3, n_classes=2, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    export_onnx(model, tmp_path / "m.onnx", x)
    proto = onnx.load(tmp_path / "m.onnx")
    onnx.helper.set_model_props(proto, {"feature_names": "income,age,debt"})
    onnx.save(proto, tmp_path / "named.onnx")
    y = model.predict(x).argmax(1)
    rows = [(i, x[i, 1], x[i, 0], 7.5, x[i, 2], y[i]) for i in range(60)]
    _csv(tmp_path / "d.csv", ["row_id", "age", "income", "score", "debt", "label"], rows)
    code, out, err = cli("run", tmp_path / "named.onnx", "--data", tmp_path / "d.csv", "--label", "label", "-a", "performance",
                         "--report", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "income, age, debt" in page and "row_id, score" in page
    accuracy = [line for line in out.splitlines() if "performance" in line][0]
    assert "0 failed" in accuracy


# -- missing attribute values ---------------------------------------------------------------------------
def test_blank_attribute_values_are_a_missing_group(tmp_path):
    rows = [(i, i % 2, ["north", "", "south"][i % 3], "" if i % 4 == 0 else 20 + i) for i in range(12)]
    _csv(tmp_path / "d.csv", ["f", "label", "region", "age"], rows)
    data = load(tmp_path / "d.csv", DataOptions(label="label", attributes=["region", "age"], features=["f"]))
    assert sorted(set(data.attributes["region"].tolist())) == ["missing", "north", "south"]
    from audit_bias import _stats

    grouping = _stats.group_attribute("age", data.attributes["age"], max_categories=5, n_bins=2)
    assert grouping.names[-1] == "missing" and (grouping.codes == len(grouping.names) - 1).sum() == 3
    assert len(grouping.names) == 3  # two quantile bins of the ages given, and the missing ones
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 1), np.float32), city=np.array(["Paris", " ", "Lyon"]), attributes=np.array(["city"]))
    assert load(tmp_path / "d.npz").attributes["city"].tolist() == ["Paris", "missing", "Lyon"]


# -- Parquet --------------------------------------------------------------------------------------------
def test_parquet_is_in_the_default_install():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    assert any(dep.replace(" ", "").startswith("pyarrow>=") for dep in project["dependencies"])


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(AuditError, match="needs pyarrow.*pip install pyarrow"):
        load(tmp_path / "d.parquet", DataOptions(label="y"))


# -- models audit cannot load ---------------------------------------------------------------------------
def test_joblib_model_gets_a_conversion_hint(cli, assets, tmp_path):
    (tmp_path / "forest.joblib").write_bytes(b"\x80\x04not really")
    code, _, err = cli("run", tmp_path / "forest.joblib", "--data", assets.data_npz)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "skl2onnx" in err and "load_model" in err


def test_pickled_module_whose_class_is_not_importable(cli, assets, tmp_path, monkeypatch):
    import importlib

    import torch

    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "smallnets.py").write_text(
        "import torch\n\nclass SmallNet(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.layer = torch.nn.Linear(4, 2)\n\n"
        "    def forward(self, x):\n        return self.layer(x)\n"
    )
    monkeypatch.syspath_prepend(str(code_dir))
    torch.save(importlib.import_module("smallnets").SmallNet(), tmp_path / "net.pt")
    monkeypatch.delitem(sys.modules, "smallnets")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(code_dir)])
    code, _, err = cli("run", tmp_path / "net.pt", "--data", assets.data_npz, "--trust-model-code")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "smallnets" in err and "PYTHONPATH" in err


# -- ties in the predicted class ------------------------------------------------------------------------
def test_ties_go_to_the_lowest_class():
    scores = np.array([[0.5, 0.5], [0.49999997, 0.50000006], [0.50000006, 0.49999997], [0.3, 0.7],
                       [0.2, 0.4, 0.4], [0.1, 0.45, 0.45000003]], dtype=object)
    two = np.array(scores[:4].tolist(), np.float32)
    three = np.array(scores[4:].tolist(), np.float32)
    assert audit.predicted_classes(two).tolist() == [0, 0, 0, 1]
    assert audit.predicted_classes(three).tolist() == [1, 1]
    logits = np.array([[1000.0, 1000.001], [3.0, 3.5]], np.float32)
    assert audit.predicted_classes(logits).tolist() == [0, 1]


def test_verdicts_do_not_depend_on_rounding_noise():
    from audit_performance import Performance

    # Logits 0 and 4e-7: probabilities 0.4999999/0.5000001, a tie that rounding noise decides (as with thread counts).
    model = linear_model(np.zeros((2, 3)), bias=np.array([0.0, 4e-7]))
    from audit.data import Dataset

    data = Dataset(x=np.zeros((20, 3), np.float32), y=np.zeros(20, np.int64), modality="tabular")
    assert model.predict(data.x)[0, 1] > model.predict(data.x)[0, 0]
    records = run_analysis(Performance, model, data)
    assert records.finding("accuracy").value == 1.0


# -- NPZ bombs and complex inputs -----------------------------------------------------------------------
def test_npz_inflating_past_the_limit_is_refused_before_decompressing(tmp_path):
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((3 * 2**20 // 4, 1), np.float32))  # 3 MB of zeros, a few KB on disk
    assert (tmp_path / "bomb.npz").stat().st_size < 50_000
    tracemalloc.start()
    try:
        with pytest.raises(AuditError, match=r"inflate to 3 MB .* over the 2 MB limit.*data.max_inflated_mb=4"):
            load(tmp_path / "bomb.npz", DataOptions(max_inflated_mb=2))
        assert tracemalloc.get_traced_memory()[1] < 2**20  # refused from the zip's directory, nothing inflated
    finally:
        tracemalloc.stop()
    assert load(tmp_path / "bomb.npz", DataOptions(max_inflated_mb=4)).x.shape == (3 * 2**20 // 4, 1)


def test_npy_header_larger_than_its_member_is_refused(tmp_path):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 4)})
    with zipfile.ZipFile(tmp_path / "crafted.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(AuditError, match=r"declares shape \(1000000000, 4\)"):
        load(tmp_path / "crafted.npz")


def test_complex_inputs_are_refused(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.ones((4, 2), np.complex64), y=np.zeros(4, int))
    with pytest.raises(AuditError, match="complex"):
        load(tmp_path / "c.npz")


# -- streaming CSV --------------------------------------------------------------------------------------
def test_csv_is_read_in_bounded_memory(tmp_path, monkeypatch):
    from audit.data import tabular

    rows, columns = 40_000, 30
    rng = np.random.default_rng(0)
    values = rng.normal(size=(rows, columns)).astype(np.float32)
    with open(tmp_path / "big.csv", "w") as handle:
        handle.write(",".join(f"f{j}" for j in range(columns)) + ",label,group\n")
        for i in range(rows):
            handle.write(",".join(f"{v:.6g}" for v in values[i]) + f",{i % 2},{'ab'[i % 2]}\n")
    monkeypatch.setattr(tabular, "BLOCK_ROWS", 1024)
    tracemalloc.start()
    try:
        data = load(tmp_path / "big.csv", DataOptions(label="label", attributes=["group"]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    float32_size = rows * columns * 4
    assert data.x.shape == (rows, columns) and data.attributes["group"][:2].tolist() == ["a", "b"]
    np.testing.assert_allclose(data.x, values, rtol=1e-5)
    assert peak <= 3 * float32_size, (peak, float32_size)


def test_csv_blocks_agree_with_csv_module_on_awkward_files(tmp_path, monkeypatch):
    from audit.data import tabular

    monkeypatch.setattr(tabular, "BLOCK_ROWS", 4)
    # CRLF endings, a blank line, a blank feature (NaN), then a quoted field holding the delimiter and a line break.
    text = "a,b,label,note\r\n1,2,0,x\r\n3,4,1,y\r\n\r\n5,,0,z\r\n7,8,1,w\r\n9,10,0,\"p,\nq\"\r\n11,12,1,v\r\n"
    (tmp_path / "d.csv").write_text(text, newline="")
    data = load(tmp_path / "d.csv", DataOptions(label="label", features=["a", "b"], allow_nan=True))
    np.testing.assert_array_equal(data.x, np.array([[1, 2], [3, 4], [5, np.nan], [7, 8], [9, 10], [11, 12]], np.float32))
    assert data.y.tolist() == [0, 1, 0, 1, 0, 1] and data.ignored_columns == ["note"]
    with pytest.raises(AuditError, match="NaN"):
        load(tmp_path / "d.csv", DataOptions(label="label", features=["a", "b"]))
    (tmp_path / "short.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,0\n11,1\n")
    with pytest.raises(AuditError, match="line 7 has 2 fields, the header has 3"):
        load(tmp_path / "short.csv", DataOptions(label="label"))
    (tmp_path / "quoted.csv").write_text('"a","b","label"\n1,2,0\n3,4,1\n')
    assert load(tmp_path / "quoted.csv", DataOptions(label="label")).x.tolist() == [[1, 2], [3, 4]]
