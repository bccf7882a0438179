"""ONNX models with several inputs: skl2onnx ColumnTransformer pipelines (one tensor per column, strings included) and float blocks."""

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

import pandas as pd  # noqa: E402

from audit.errors import AuditError  # noqa: E402

NUMERIC = ["radius", "texture", "perimeter"]
CATEGORICAL = ["size", "shape"]


def _frame() -> pd.DataFrame:
    """Breast-cancer rows with two categorical columns derived from them (text, as a CSV holds them)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:, :4].copy()
    frame.columns = ["radius", "texture", "perimeter", "area"]
    frame[NUMERIC] = frame[NUMERIC].astype(np.float32)  # what the CSV reader will see
    frame["size"] = pd.cut(frame["area"], [0, 500, 900, np.inf], labels=["small", "medium", "large"]).astype(str)
    smooth = data.frame["mean smoothness"]
    frame["shape"] = np.where(smooth > smooth.median(), "rough", "smooth")
    frame["label"] = data.target
    return frame.drop(columns="area")


def _pipeline(estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer([("numbers", StandardScaler(), NUMERIC), ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
    return Pipeline([("columns", columns), ("model", estimator)])


def _export(pipeline, path):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [(c, FloatTensorType([None, 1])) for c in NUMERIC] + [(c, StringTensorType([None, 1])) for c in CATEGORICAL]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path.write_bytes(convert_sklearn(pipeline, initial_types=inputs, target_opset=17).SerializeToString())
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A StandardScaler + OneHotEncoder + LogisticRegression pipeline as ONNX, and its CSV (columns in another order)."""
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("mixed")
    frame = _frame()
    pipeline = _pipeline(LogisticRegression(max_iter=2000)).fit(frame[NUMERIC + CATEGORICAL], frame["label"])
    _export(pipeline, folder / "model.onnx")
    frame[["label", "shape", *NUMERIC, "size"]].to_csv(folder / "data.csv", index=False)

    class Mixed:
        path = folder
        model = folder / "model.onnx"
        data = folder / "data.csv"

    Mixed.frame = frame
    Mixed.pipeline = pipeline
    return Mixed


def _load(model_path, data_path, **data_options):
    from audit import data as data_module
    from audit import models

    model = models.load(model_path, models.LoadOptions(device="cpu"))
    dataset = data_module.load(data_path, data_module.DataOptions(**data_options), model_features=model.feature_names,
                               string_features=getattr(model, "string_features", None))
    data_module.validate_against_model(dataset, model)
    return model, dataset


def test_inputs_map_to_columns_by_name_and_predictions_equal_sklearn(mixed):
    model, dataset = _load(mixed.model, mixed.data, label="label")
    assert model.feature_names == NUMERIC + CATEGORICAL  # the graph's order, not the file's
    assert dataset.feature_names == NUMERIC + CATEGORICAL
    assert dataset.categories == {"size": ["large", "medium", "small"], "shape": ["rough", "smooth"]}
    assert dataset.categorical_columns == [3, 4] and dataset.numeric_columns == [0, 1, 2]
    size_codes = dataset.x[:, 3].astype(int)
    assert [dataset.categories["size"][c] for c in size_codes] == mixed.frame["size"].tolist()
    expected = mixed.pipeline.predict_proba(mixed.frame[NUMERIC + CATEGORICAL])
    np.testing.assert_allclose(model.predict(dataset.x), expected, atol=1e-5)
    described = model.describe()
    assert described["input_columns"][3] == "size: string [batch, 1] <- column size"
    assert "categorical columns are not differentiable" in model.gradient_reason
    assert dataset.describe()["categorical_columns"] == {"size": 3, "shape": 2}


def test_a_category_code_perturbed_as_a_number_is_refused(mixed):
    model, dataset = _load(mixed.model, mixed.data, label="label")
    shifted = dataset.x[:4].copy()
    shifted[:, 3] += 0.5
    with pytest.raises(AuditError, match="categorical column 'size' got the value .*perturbed it as a number"):
        model.predict(shifted)
    kept = dataset.keep_categorical(shifted, dataset.x[:4])
    np.testing.assert_array_equal(kept[:, 3], dataset.x[:4, 3])


def test_cli_run_end_to_end_findings_equal_sklearn(mixed, cli, tmp_path):
    """Every analysis runs (none errors), and performance and group fairness equal the same metrics from sklearn's own predictions."""
    from audit.store import Store

    db = tmp_path / "audit.db"
    code, out, err = cli("run", mixed.model, "--data", mixed.data, "--label", "label", "--attribute", "size", "--db", db,
                         "--fail-on", "never", "--json")
    assert code == 0, err
    result = json.loads(out)
    statuses = {a["name"]: a["status"] for a in result["analyses"]}
    assert "error" not in statuses.values(), statuses
    assert statuses["robustness.adversarial"] == "skipped"
    for name in ("robustness.corruptions", "robustness.blackbox_attack", "robustness.ood", "attribution.faithfulness", "bias.counterfactual"):
        assert statuses[name] == "ok", name

    predicted = mixed.pipeline.predict(mixed.frame[NUMERIC + CATEGORICAL])
    labels = mixed.frame["label"].to_numpy()
    accuracy = next(f for f in result["findings"] if f["analysis"] == "performance" and f["check"] == "accuracy")
    assert accuracy["value"] == pytest.approx(float(np.mean(predicted == labels)), abs=1e-12)
    store = Store(str(db))
    metrics = store.metrics(result["run_id"])
    rates = {m.group: m.value for m in metrics if m.analysis == "bias.group_fairness" and m.name == "selection_rate" and m.subject == "size"}
    for group in ("small", "medium", "large"):
        rows = mixed.frame["size"].to_numpy() == group
        assert rates[group] == pytest.approx(float(np.mean(predicted[rows] == 1)), abs=1e-12), group
    swaps = {m.subject for m in metrics if m.analysis == "robustness.corruptions" and m.name == "flip_rate"}
    assert {f"category_swap s={s}" for s in range(1, 6)} <= swaps
    notes = {r.analysis: " ".join(r.notes or []) for r in store.results(result["run_id"])}
    for name in ("robustness.corruptions", "robustness.blackbox_attack", "robustness.ood"):
        assert "categorical column(s) size, shape left as they are" in notes[name], name
    assert "removed by setting the most frequent category" in notes["attribution.faithfulness"]

    # Gated on medium findings, the same model fails on group fairness: exit 1, as the gate's own verdict in the JSON says.
    code, out, _ = cli("run", mixed.model, "--data", mixed.data, "--label", "label", "--attribute", "size", "--db", db,
                       "-a", "performance", "-a", "bias.group_fairness", "--fail-on", "medium", "--json")
    gated = json.loads(out)
    assert code == gated["exit_code"] == 1
    assert any(f["passed"] is False and f["severity"] in ("medium", "high", "critical") for f in gated["findings"])


def _one_error_line(code, out, err):
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_missing_column_names_it_and_the_fix(mixed, cli, tmp_path):
    frame = mixed.frame.rename(columns={"size": "tumour_size"})
    frame.to_csv(tmp_path / "renamed.csv", index=False)
    db = tmp_path / "audit.db"
    line = _one_error_line(*cli("run", mixed.model, "--data", tmp_path / "renamed.csv", "--label", "label", "--db", db))
    assert "no feature column size (named by the model's input names" in line and "rename the columns" in line and "--features" in line
    assert not db.exists()


def test_text_in_a_numeric_input_is_refused(mixed, cli, tmp_path):
    frame = mixed.frame.astype({"radius": object})
    frame.loc[7, "radius"] = "n/a"
    frame.to_csv(tmp_path / "text.csv", index=False)
    line = _one_error_line(*cli("run", mixed.model, "--data", tmp_path / "text.csv", "--label", "label"))
    assert "column 'radius' is not numeric (it holds 'n/a')" in line and "numeric tensor" in line


def test_numbers_in_a_string_input_of_a_parquet_file_are_refused(mixed, cli, tmp_path):
    frame = mixed.frame.copy()
    frame["size"] = frame["size"].map({"small": 0, "medium": 1, "large": 2}).astype(np.int64)
    frame.to_parquet(tmp_path / "codes.parquet")
    line = _one_error_line(*cli("run", mixed.model, "--data", tmp_path / "codes.parquet", "--label", "label"))
    assert "column 'size' holds int64 values, but the model's input 'size' is a string tensor" in line


def test_a_blank_category_is_refused_unless_allowed(mixed, cli, tmp_path):
    frame = mixed.frame.copy()
    frame.loc[[5, 9], "shape"] = ""
    frame.to_csv(tmp_path / "blank.csv", index=False)
    line = _one_error_line(*cli("run", mixed.model, "--data", tmp_path / "blank.csv", "--label", "label"))
    assert "column 'shape' (the model's string input) has 2 empty or missing value(s), first in data row 6" in line
    model, dataset = _load(mixed.model, tmp_path / "blank.csv", label="label", allow_nan=True)
    assert dataset.categories["shape"] == ["", "rough", "smooth"]
    expected = mixed.pipeline.predict_proba(frame[NUMERIC + CATEGORICAL])  # OneHotEncoder(handle_unknown="ignore"): "" is all zeros
    np.testing.assert_allclose(model.predict(dataset.x), expected, atol=1e-5)


def test_an_npz_for_a_model_with_string_inputs_is_refused(mixed, cli, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((40, 5), np.float32), y=np.zeros(40, np.int64))
    line = _one_error_line(*cli("run", mixed.model, "--data", tmp_path / "data.npz"))
    assert "reads size, shape as strings" in line and "CSV or Parquet" in line


def test_features_map_renamed_columns_by_position(mixed, tmp_path):
    frame = mixed.frame.rename(columns={"size": "tumour_size", "radius": "r"})
    frame.to_csv(tmp_path / "renamed.csv", index=False)
    features = ["r", "texture", "perimeter", "tumour_size", "shape"]
    model, dataset = _load(mixed.model, tmp_path / "renamed.csv", label="label", features=features)
    assert sorted(dataset.categories) == ["shape", "tumour_size"]
    np.testing.assert_allclose(model.predict(dataset.x), mixed.pipeline.predict_proba(mixed.frame[NUMERIC + CATEGORICAL]), atol=1e-5)


def test_a_tree_pipeline_over_mixed_columns_runs_black_box(mixed, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    frame = mixed.frame
    pipeline = _pipeline(RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0)).fit(frame[NUMERIC + CATEGORICAL], frame["label"])
    model, dataset = _load(_export(pipeline, tmp_path / "forest.onnx"), mixed.data, label="label")
    np.testing.assert_allclose(model.predict(dataset.x), pipeline.predict_proba(frame[NUMERIC + CATEGORICAL]), atol=1e-5)
    assert "trees" not in model.capabilities and "gradients" not in model.capabilities


# -- several float inputs -----------------------------------------------------------------
@pytest.fixture(scope="module")
def two_floats(tmp_path_factory):
    """softmax(concat(a, b) @ W + c) with a: [batch, 2] and b: [batch, 1], written with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("floats")
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 2)).astype(np.float32)
    bias = np.array([0.3, -0.3], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["a", "b"], ["ab"], axis=1), helper.make_node("MatMul", ["ab", "W"], ["z"]),
         helper.make_node("Add", ["z", "c"], ["logits"]), helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "c")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, folder / "model.onnx")
    x = rng.normal(size=(300, 3)).astype(np.float32)
    logits = x @ weight + bias
    y = (logits.argmax(1) + (rng.random(300) < 0.1)) % 2
    pd.DataFrame({"b": x[:, 2], "a_1": x[:, 1], "a_0": x[:, 0], "label": y}).to_csv(folder / "data.csv", index=False, float_format="%.9g")
    np.savez(folder / "data.npz", x=x, y=y)

    class Floats:
        model = folder / "model.onnx"
        csv = folder / "data.csv"
        npz = folder / "data.npz"

    Floats.x, Floats.weight, Floats.bias = x, weight, bias
    return Floats


def test_two_float_inputs_read_their_columns_and_have_exact_gradients(two_floats):
    model, dataset = _load(two_floats.model, two_floats.csv, label="label")
    assert model.feature_names == ["a_0", "a_1", "b"]
    np.testing.assert_array_equal(dataset.x, two_floats.x)
    logits = two_floats.x @ two_floats.weight + two_floats.bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict(dataset.x), expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert "gradients" in model.capabilities, model.gradient_reason
    target = np.zeros(len(dataset.x), np.int64)
    # d log-softmax_0 / dx = W[:, 0] - sum_k p_k W[:, k], exactly what the converted graph must give
    probabilities = model.predict(dataset.x)
    closed_form = two_floats.weight[:, 0][None] - probabilities @ two_floats.weight.T
    np.testing.assert_allclose(model.gradient(dataset.x, target, output="log_probability"), closed_form, atol=1e-5)


def test_two_float_inputs_from_an_npz_and_the_white_box_attack_runs(two_floats, cli, tmp_path):
    model, dataset = _load(two_floats.model, two_floats.npz)
    np.testing.assert_array_equal(dataset.x, two_floats.x)
    code, out, err = cli("run", two_floats.model, "--data", two_floats.csv, "--label", "label", "-a", "robustness.adversarial",
                         "-a", "performance", "--fail-on", "never", "--json", "--db", tmp_path / "audit.db")
    assert code == 0, err
    assert {a["name"]: a["status"] for a in json.loads(out)["analyses"]} == {"robustness.adversarial": "ok", "performance": "ok"}


def test_ray_workers_bind_the_categories_and_find_what_one_process_finds(mixed, cli, tmp_path):
    """A Ray worker loads the model itself: the data's categories must reach it, or every perturbed pass would fail."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed; pip install '.[ray]'")
    import ray

    from audit.store import Store

    db = tmp_path / "audit.db"
    # 569 rows in shards of 200: the row workers, Ray actors of their own, must bind the categories too.
    common = [mixed.model, "--data", mixed.data, "--label", "label", "--attribute", "size", "-a", "robustness.corruptions",
              "-a", "bias.counterfactual", "--set", "robustness.corruptions.shard_rows=200", "--set", "bias.counterfactual.shard_rows=200",
              "--seed", "3", "--fail-on", "never", "--json", "--db", db]
    code, out, err = cli("run", *common)
    assert code == 0, err
    local = json.loads(out)["run_id"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, out, err = cli("run", *common, "--executor", "ray")
    finally:
        ray.shutdown()
    assert code == 0, err
    distributed = json.loads(out)["run_id"]
    store = Store(str(db))
    assert [r.status for r in store.results(distributed)] == ["ok", "ok"]
    assert ([(f.check, f.subject, f.value, f.message) for f in store.findings(distributed)]
            == [(f.check, f.subject, f.value, f.message) for f in store.findings(local)])


def test_category_swap_changes_the_asked_share_to_other_valid_categories():
    from audit_robustness import _corruptions as C

    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=20000), rng.integers(0, 3, 20000), rng.integers(0, 2, 20000)], axis=1).astype(np.float32)
    for severity in range(6):
        swapped = C.swap_categories(x, severity, np.random.default_rng(severity), [1, 2], [3, 2])
        np.testing.assert_array_equal(swapped[:, 0], x[:, 0])  # numbers untouched
        for column, count in ((1, 3), (2, 2)):
            assert set(np.unique(swapped[:, column])) <= set(range(count))
            changed = np.mean(swapped[:, column] != x[:, column])
            assert changed == pytest.approx(C.TABULAR_DROPOUT[severity], abs=0.012), (severity, column)


def test_an_integer_input_takes_its_column_rounded_to_whole_numbers(tmp_path):
    """count: int64 [batch, 1] and x: float [batch, 1]; logits = [0, 0.5 * count - x]. Noise on the count lands on whole numbers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT), helper.make_node("Concat", ["count_f", "x"], ["both"], axis=1),
         helper.make_node("MatMul", ["both", "W"], ["logits"])],
        "int_and_float",
        [helper.make_tensor_value_info("count", TensorProto.INT64, [None, 1]), helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(np.array([[0.0, 0.5], [0.0, -1.0]], np.float32), "W")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "m.onnx")
    pd.DataFrame({"x": [0.25, 1.5, -2.0], "count": [3, 0, 7], "label": [1, 0, 1]}).to_csv(tmp_path / "d.csv", index=False)
    model, dataset = _load(tmp_path / "m.onnx", tmp_path / "d.csv", label="label")
    assert model.integer_features == ["count"] and "integer input(s) count" in model.gradient_reason
    np.testing.assert_array_equal(dataset.x, [[3, 0.25], [0, 1.5], [7, -2.0]])
    z = 0.5 * np.array([3, 0, 7]) - np.array([0.25, 1.5, -2.0])
    np.testing.assert_allclose(model.predict(dataset.x, output="logits")[:, 1], z, atol=1e-6)
    noisy = dataset.x + np.array([[0.4, 0.0], [-0.3, 0.0], [0.6, 0.0]], np.float32)  # counts 3.4, -0.3, 7.6 -> 3, 0, 8
    np.testing.assert_allclose(model.predict(noisy, output="logits")[:, 1], z + [0, 0, 0.5], atol=1e-6)


def test_a_parquet_table_feeds_the_same_rows(mixed, tmp_path):
    frame = mixed.frame.copy()
    frame.loc[3, "shape"] = None  # a null category is a blank one: refused unless allowed
    frame.to_parquet(tmp_path / "data.parquet")
    with pytest.raises(AuditError, match="column 'shape' .* 1 empty or missing value"):
        _load(mixed.model, tmp_path / "data.parquet", label="label")
    mixed.frame.to_parquet(tmp_path / "data.parquet")
    model, dataset = _load(mixed.model, tmp_path / "data.parquet", label="label")
    assert dataset.categories == {"size": ["large", "medium", "small"], "shape": ["rough", "smooth"]}
    np.testing.assert_allclose(model.predict(dataset.x), mixed.pipeline.predict_proba(mixed.frame[NUMERIC + CATEGORICAL]), atol=1e-5)
