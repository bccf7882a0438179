"""scikit-learn pipelines through skl2onnx, white-box: the ONNX-ML probability path converted to torch and checked."""

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, Normalizer, StandardScaler  # noqa: E402

from audit.models import LoadOptions, load  # noqa: E402


def _export(estimator, x, path, **options):
    from skl2onnx import to_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path.write_bytes(to_onnx(estimator, x[:1], options=options or None).SerializeToString())
    model = load(path, LoadOptions(device="cpu"))
    model.prepare_for(x[:64])
    return model


def _pipelines():
    return {
        "scaler_logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "mlp": lambda: MLPClassifier((16,), max_iter=300, random_state=0),
        "scaler_normalizer_mlp": lambda: make_pipeline(MinMaxScaler(), Normalizer(), MLPClassifier((8, 4), max_iter=300, random_state=0)),
        "normalizers_logistic": lambda: make_pipeline(Normalizer("l1"), Normalizer("max"), LogisticRegression(max_iter=1000)),
    }


@pytest.mark.parametrize("name", list(_pipelines()))
@pytest.mark.parametrize("dataset", ["cancer", "iris"])
def test_converted_pipeline_equals_onnxruntime(request, tmp_path, name, dataset):
    x, y = request.getfixturevalue(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence on a small budget
        estimator = _pipelines()[name]().fit(x, y)
    model = _export(estimator, x, tmp_path / "model.onnx")
    assert "gradients" in model.capabilities, model.gradient_reason
    with torch.no_grad():
        converted = model.torch_module()(torch.as_tensor(x)).numpy()
    onnxruntime = model.predict(x)  # the ZipMap maps as a matrix, through onnxruntime
    np.testing.assert_allclose(converted, onnxruntime, atol=1e-5)
    np.testing.assert_allclose(converted, estimator.predict_proba(x), atol=1e-5)


def test_logistic_pipeline_gradient_is_the_closed_form(iris, tmp_path):
    """d log p_c / d x = scale * (W_c - sum_k p_k W_k) for softmax(W ((x - mean) * scale) + b)."""
    x, y = iris
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    model = _export(pipeline, x, tmp_path / "lr.onnx")
    targets = np.arange(len(x)) % 3
    got = model.gradient(x, targets, output="log_probability")
    scaler, logistic = pipeline[0], pipeline[1]
    weights = logistic.coef_ / scaler.scale_  # (classes, features)
    p = pipeline.predict_proba(x)
    expected = weights[targets] - p @ weights
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_one_score_linear_classifier_and_integer_one_hot(tmp_path):
    """Hand-built graphs for the branches skl2onnx rarely writes: a one-row binary LinearClassifier, OneHotEncoder on integers."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    x[:, 2] = rng.integers(0, 3, size=50)
    ml = helper.make_operatorsetid("ai.onnx.ml", 1)
    nodes = [
        helper.make_node("Cast", ["X"], ["codes"], to=TensorProto.INT64),
        helper.make_node("Gather", ["codes", "third"], ["column"], axis=1),
        helper.make_node("OneHotEncoder", ["column"], ["onehot3"], domain="ai.onnx.ml", cats_int64s=[0, 1, 2], zeros=1),
        helper.make_node("Flatten", ["onehot3"], ["onehot"], axis=1),
        helper.make_node("Concat", ["X", "onehot"], ["features"], axis=1),
        helper.make_node("LinearClassifier", ["features"], ["label", "probabilities"], domain="ai.onnx.ml",
                         coefficients=[0.5, -1.0, 0.25, 0.3, -0.7, 1.1], intercepts=[0.1], classlabels_ints=[0, 1], post_transform="LOGISTIC"),
    ]
    initializers = [helper.make_tensor("third", TensorProto.INT64, [1], [2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])], initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13), ml])
    proto.ir_version = 8
    (tmp_path / "hand.onnx").write_bytes(proto.SerializeToString())
    onnx.checker.check_model(proto)
    from audit.models.onnx_torch import convert

    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {"X": x})[0]
    module = convert(proto, "X", "probabilities")
    np.testing.assert_allclose(module(torch.as_tensor(x)).detach().numpy(), expected, atol=1e-6)
    # The converted one-hot block, on its own.
    from audit.models.onnx_torch import _run_ml_node

    onehot = _run_ml_node(torch, "OneHotEncoder", torch.as_tensor(x[:, 2:3]), {"cats_int64s": [0, 1, 2]}).numpy()
    np.testing.assert_array_equal(onehot.reshape(len(x), 3), np.eye(3)[x[:, 2].astype(int)])


def test_linear_regressor_converts(cancer):
    """skl2onnx writes LinearRegression as an ONNX-ML LinearRegressor; the conversion matches onnxruntime."""
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    from audit.models.onnx_torch import convert

    x, y = cancer
    proto = to_onnx(make_pipeline(StandardScaler(), LinearRegression()).fit(x, y), x[:1])
    assert any(n.op_type == "LinearRegressor" for n in proto.graph.node)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = convert(proto, proto.graph.input[0].name, proto.graph.output[0].name)(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-5)


def test_label_branch_is_not_converted(cancer, tmp_path):
    """A plain MLPClassifier computes its label with ArrayFeatureExtractor; only the probability branch is converted."""
    x, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _export(MLPClassifier((8,), max_iter=100, random_state=0).fit(x, y), x, tmp_path / "mlp.onnx")
    assert any(n.op_type == "ArrayFeatureExtractor" for n in model.proto.graph.node)
    assert "gradients" in model.capabilities, model.gradient_reason


@pytest.mark.parametrize("name", ["scaler_logistic", "scaler_normalizer_mlp"])
def test_audit_run_on_sklearn_pipelines(cli, cancer, tmp_path, name):
    x, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = _pipelines()[name]().fit(x[:300], y[:300])
        from skl2onnx import to_onnx

        (tmp_path / "model.onnx").write_bytes(to_onnx(estimator, x[:1]).SerializeToString())
    np.savez(tmp_path / "data.npz", x=x[300:], y=y[300:], group=(x[300:, 0] > np.median(x[300:, 0])).astype(int), attributes=np.array(["group"]))
    code, out, err = cli("run", tmp_path / "model.onnx", "--data", tmp_path / "data.npz", "-a", "robustness.adversarial",
                         "-a", "attribution.faithfulness", "-a", "bias.leakage",
                         "--set", "attribution.faithfulness.rows=16", "--set", "attribution.faithfulness.rise_masks=50",
                         "--set", "attribution.faithfulness.sobol_designs=8", "--set", "attribution.faithfulness.ig_steps=8",
                         "--set", "attribution.faithfulness.compare_ig_baselines=false", "--json", "--fail-on", "never")
    assert code == 0, err
    document = json.loads(out)
    status = {a["name"]: (a["status"], a["reason"]) for a in document["analyses"]}
    assert status["robustness.adversarial"][0] == "ok", status
    assert status["attribution.faithfulness"][0] == "ok", status
    explained = {f.get("subject") for f in document["findings"] if f["analysis"] == "attribution.faithfulness"}
    assert {"saliency", "integrated_gradients"} <= explained
    adversarial = [a for a in document["analyses"] if a["name"] == "robustness.adversarial"][0]
    assert adversarial["backward_rows"] > 0
    if name.endswith("mlp"):
        # The MLP's hidden layers are plain MatMul/Add/Relu nodes: leakage probes read them.
        assert status["bias.leakage"][0] == "ok", status
    else:
        assert status["bias.leakage"][0] == "skipped"
