"""Model loading and the Model interface on ONNX Runtime and torch."""

import warnings

import numpy as np
import pytest
import torch

from audit.errors import AuditError
from audit.models import LoadOptions, load
from audit.models.base import Model, detect_output_kind, normalise_outputs, row_max, row_sum
from audit.testing import export_onnx, linear_model, model_from_module, tiny_cnn, tiny_mlp


def test_onnx_matches_torch_and_detects_logits(assets):
    model = load(assets.mlp_onnx, LoadOptions(device="cpu"))
    expected = assets.mlp_model.predict(assets.x)
    np.testing.assert_allclose(model.predict(assets.x), expected, atol=1e-6)
    assert model.output_kind == "logits" and model.n_classes == 2
    assert model.provider == "CPUExecutionProvider" and model.device == "cpu"
    assert model.counters.forward_rows == len(assets.x)


def test_auto_device_falls_back_to_cpu_without_a_gpu(assets):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model = load(assets.mlp_onnx, LoadOptions(device="auto"))
    assert model.provider == "CPUExecutionProvider"
    with pytest.raises(AuditError, match="--device cuda"):
        load(assets.mlp_pt, LoadOptions(device="cuda"))


def test_probabilities_output_detected_and_sigmoid_becomes_two_classes(tmp_path):
    torch.manual_seed(0)
    softmax_head = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Softmax(dim=1))
    sigmoid_head = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid())
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    export_onnx(softmax_head, tmp_path / "softmax.onnx", x)
    export_onnx(sigmoid_head, tmp_path / "sigmoid.onnx", x)
    soft = load(tmp_path / "softmax.onnx", LoadOptions(device="cpu"))
    np.testing.assert_allclose(soft.predict(x), softmax_head(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    assert soft.output_kind == "probabilities"
    sig = load(tmp_path / "sigmoid.onnx", LoadOptions(device="cpu"))
    p = sigmoid_head(torch.from_numpy(x)).detach().numpy()[:, 0]
    probabilities = sig.predict(x)
    assert sig.n_classes == 2 and sig.output_kind == "probabilities"
    np.testing.assert_allclose(probabilities, np.stack([1 - p, p], axis=1), atol=1e-6)
    # Overriding the detection reads the same numbers as logits.
    forced = load(tmp_path / "sigmoid.onnx", LoadOptions(device="cpu", output="logits"))
    np.testing.assert_allclose(forced.predict(x)[:, 1], 1 / (1 + np.exp(-p)), atol=1e-6)


def test_single_logit_softmax_equals_sigmoid():
    z = np.array([[-2.0], [0.0], [3.0]])
    probabilities, logits = normalise_outputs(z, "logits")
    np.testing.assert_allclose(probabilities[:, 1], 1 / (1 + np.exp(-z[:, 0])))
    np.testing.assert_allclose(logits, np.array([[0, -2.0], [0, 0], [0, 3.0]]))
    assert detect_output_kind(np.array([[0.2, 0.8], [0.5, 0.5]])) == "probabilities"
    assert detect_output_kind(np.array([[0.2, 0.7], [0.5, 0.5]])) == "logits"


def test_sklearn_converted_model(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    classifier = LogisticRegression(max_iter=500).fit(x, y)
    (tmp_path / "sk.onnx").write_bytes(to_onnx(classifier, x[:1]).SerializeToString())
    model = load(tmp_path / "sk.onnx", LoadOptions(device="cpu"))
    assert model.output_is_map and model.label_output
    np.testing.assert_allclose(model.predict(x), classifier.predict_proba(x), atol=1e-5)
    assert model.n_classes == 3


def test_fixed_batch_model_works_with_a_warning(tmp_path):
    module = tiny_mlp(n_features=4, n_classes=3, seed=3).module
    torch.onnx.export(module, torch.zeros(1, 4), str(tmp_path / "fixed.onnx"), input_names=["x"], dynamo=False)
    x = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(tmp_path / "fixed.onnx", LoadOptions(device="cpu"))
    assert any("fixed batch size of 1" in str(w.message) for w in caught)
    np.testing.assert_allclose(model.predict(x), torch.softmax(module(torch.from_numpy(x)), 1).detach().numpy(), atol=1e-6)


def test_torchscript_and_export_archives(assets, tmp_path):
    scripted = load(assets.mlp_pt, LoadOptions(device="cpu"))
    assert scripted.format == "torchscript" and "gradients" in scripted.capabilities
    np.testing.assert_allclose(scripted.predict(assets.x), assets.mlp_model.predict(assets.x), atol=1e-6)
    program = torch.export.export(assets.mlp_model.module, (torch.zeros(2, 4),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(tmp_path / "mlp.pt2"))
    exported = load(tmp_path / "mlp.pt2", LoadOptions(device="cpu"))
    assert exported.format == "torch.export" and exported.input_shape == (4,)
    np.testing.assert_allclose(exported.predict(assets.x), assets.mlp_model.predict(assets.x), atol=1e-6)


def _scripted_cnn_with_batch_norm(path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
    with torch.no_grad():  # batch-norm statistics that are not the identity, so folding them changes the weights
        module[1].running_mean.uniform_(-1, 1)
        module[1].running_var.uniform_(0.5, 2)
    torch.jit.save(torch.jit.script(module), str(path))
    return module


def test_forward_passes_use_a_checked_optimised_copy_and_gradients_the_module(tmp_path):
    module = _scripted_cnn_with_batch_norm(tmp_path / "cnn.pt")
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    model = load(tmp_path / "cnn.pt", LoadOptions(device="cpu"))
    model.prepare_for(x[:16])  # as data validation does
    assert model.describe()["forward_passes"].startswith("frozen, inference-optimised")
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-6)
    assert model.counters.forward_rows == 40
    xt = torch.from_numpy(x[:5])
    assert model._module_for(xt) is not model.module  # a forward-only pass
    assert model._module_for(xt.clone().requires_grad_(True)) is model.module  # a gradient pass
    _, grad = model.input_gradient(xt, torch.zeros(5, dtype=torch.long))
    reference = xt.clone().requires_grad_(True)
    (expected_grad,) = torch.autograd.grad(module(reference)[:, 0].sum(), reference)
    torch.testing.assert_close(grad, expected_grad)

    kept = load(tmp_path / "cnn.pt", LoadOptions(device="cpu", optimize=False))
    kept.prepare_for(x[:16])
    assert kept._module_for(xt) is kept.module and "model.optimize = false" in kept.describe()["forward_passes"]


def test_an_optimised_copy_that_changes_outputs_is_not_used(tmp_path, monkeypatch):
    _scripted_cnn_with_batch_norm(tmp_path / "cnn.pt")
    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)

    class Shifted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            return self.inner(t) + 0.01

    monkeypatch.setattr(torch.jit, "optimize_for_inference", lambda frozen: Shifted(frozen))
    model = load(tmp_path / "cnn.pt", LoadOptions(device="cpu"))
    model.prepare_for(x)
    assert model._module_for(torch.from_numpy(x)) is model.module
    assert "differed by 0.01" in model.describe()["forward_passes"]


def test_gradient_of_a_linear_model_is_its_weights():
    weights = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=np.float32)
    model = linear_model(weights)
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    target = np.array([0, 1] * 5)
    np.testing.assert_allclose(model.gradient(x, target, output="logit"), weights[target], atol=1e-6)
    assert model.counters.backward_rows == 10
    # log-probability gradient: w_t - sum_k p_k w_k
    p = model.predict(x)
    expected = weights[target] - p @ weights
    np.testing.assert_allclose(model.gradient(x, target, output="log_probability"), expected, atol=1e-5)


def test_activations_torch_hooks_and_onnx_outputs(assets):
    torch_model = tiny_mlp(n_features=4, n_classes=2, seed=0)
    acts = torch_model.activations(assets.x, ["act1"])
    hidden = torch.relu(torch_model.module.fc1(torch.from_numpy(assets.x))).detach().numpy()
    np.testing.assert_allclose(acts["act1"], hidden, atol=1e-6)
    onnx_model = load(assets.mlp_onnx, LoadOptions(device="cpu"))
    relu = [layer for layer in onnx_model.layers() if "Relu" in layer][0]
    np.testing.assert_allclose(onnx_model.activations(assets.x, [relu])[relu], hidden, atol=1e-5)
    with pytest.raises(AuditError, match="unknown layer"):
        onnx_model.activations(assets.x, ["nope"])


class FlakyModel(Model):
    """Raises out-of-memory for batches larger than 8 rows."""

    format = "fake"

    def _forward_numpy(self, x):
        if len(x) > 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x[:, :2]


def test_out_of_memory_halves_the_batch_and_retries():
    model = FlakyModel(input_shape=(2,), n_classes=2, batch_size=64)
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = model.predict(x, output="logits")
    np.testing.assert_allclose(logits, x, atol=1e-6)
    assert model.batch_size == 8
    assert model.counters.forward_rows == 40


def test_cnn_gradient_and_shapes():
    model = tiny_cnn()
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    grad = model.gradient(x, np.zeros(5, int))
    assert grad.shape == x.shape and np.abs(grad).sum() > 0
    assert model.n_classes == 3
    fresh = model_from_module(model.module)
    with pytest.raises(AuditError, match="not known until the model has run"):
        fresh.n_classes
    fresh.predict(x)
    assert fresh.n_classes == 3


def test_threads_option_pins_torch_and_onnxruntime(assets, monkeypatch):
    before = torch.get_num_threads()
    try:
        model = load(assets.mlp_onnx, LoadOptions(device="cpu", threads=1))
        assert model._session_options.intra_op_num_threads == 1
        load(assets.mlp_pt, LoadOptions(device="cpu", threads=1))
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("AUDIT_THREADS", "2")
        assert load(assets.mlp_onnx, LoadOptions(device="cpu"))._session_options.intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)


def test_default_batch_size_is_cache_sized_for_images_on_cpu():
    assert tiny_cnn().batch_size == 1024
    assert tiny_mlp().batch_size == 4096


def test_gradient_batches_are_a_quarter_for_images_on_cpu_and_follow_a_given_batch():
    assert tiny_cnn().gradient_batch_size == 256  # backward keeps activations alive: a quarter of the forward batch
    assert tiny_mlp().gradient_batch_size == 4096  # tabular rows: the same batch
    given = model_from_module(torch.nn.Conv2d(1, 2, 3), input_shape=(1, 8, 8), batch_size=100)
    assert given.gradient_batch_size == 100
    undeclared = model_from_module(torch.nn.Conv2d(1, 2, 3))
    undeclared.fit_batch_size((1, 8, 8))  # as data validation does for a TorchScript file
    assert (undeclared.batch_size, undeclared.gradient_batch_size) == (1024, 256)
    halved = tiny_cnn()
    halved.batch_size = 8  # after out-of-memory halving
    assert halved.gradient_batch_size == 2
    gpu = Model(input_shape=(1, 8, 8), n_classes=2, device="cuda:0")
    assert gpu.gradient_batch_size == gpu.batch_size


@pytest.mark.parametrize("classes", [1, 2, 7, 40])
def test_row_reductions_and_softmax_equal_numpy_reference(classes):
    rng = np.random.default_rng(classes)
    a = rng.normal(scale=30, size=(257, classes))
    a[3, 0] = np.nan
    np.testing.assert_array_equal(row_max(a), a.max(axis=1))
    np.testing.assert_allclose(row_sum(a[4:]), a[4:].sum(axis=1), rtol=1e-12, atol=1e-12)
    assert np.isnan(row_sum(a)[3])
    logits = a[4:]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities, same = normalise_outputs(logits, "logits")
    if classes > 1:
        np.testing.assert_allclose(probabilities, shifted / shifted.sum(axis=1, keepdims=True), rtol=1e-12, atol=1e-300)
        assert same is not None and np.array_equal(same, logits)


def test_onnx_gradients_through_a_checked_torch_conversion(assets, tmp_path):
    cnn = tiny_cnn(seed=4)
    x = np.random.default_rng(4).random((12, 1, 8, 8)).astype(np.float32)
    model = load(export_onnx(cnn, tmp_path / "cnn.onnx", x), LoadOptions(device="cpu"))
    assert {"gradients", "torch"} <= model.capabilities and model.gradient_reason is None
    target = np.arange(12) % 3
    np.testing.assert_allclose(model.gradient(x, target, output="log_probability"), cnn.gradient(x, target, output="log_probability"), atol=1e-5)
    assert model.counters.backward_rows == 12
    assert model.describe()["gradients"] == "torch conversion, checked against onnxruntime"
    off = load(tmp_path / "cnn.onnx", LoadOptions(device="cpu", onnx_gradients=False))
    assert "gradients" not in off.capabilities and "turned off" in off.gradient_reason


def test_onnx_graph_with_an_unconverted_operator_stays_black_box(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("HardSwish", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "hs.onnx")
    model = load(tmp_path / "hs.onnx", LoadOptions(device="cpu"))
    model.prepare_for(np.zeros((4, 3), np.float32))
    assert "gradients" not in model.capabilities
    assert "HardSwish" in model.gradient_reason
    from audit.runner import unmet_requirement
    from audit.testing import tiny_dataset
    import audit_robustness

    reason = unmet_requirement(audit_robustness.Adversarial, model, tiny_dataset(n=8, n_features=3))
    assert reason.startswith("no input gradients for this onnx model: the graph uses operator(s) HardSwish")


def test_onnx_conversion_covers_cast_softmax_and_shape_arithmetic(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["xd"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Shape", ["xf"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero_axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["xf", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["p"], axis=1),
    ]
    w = np.arange(12, dtype=np.float32).reshape(6, 2) / 10
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "zero_axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one"), numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 3])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "ops.onnx")
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    model = load(tmp_path / "ops.onnx", LoadOptions(device="cpu"))
    assert model.gradient_reason is None and "gradients" in model.capabilities
    # d log p_0 / dx for a linear softmax: (w[:, 0] - p @ w.T) reshaped to the input.
    p = model.predict(x)
    expected = (w[:, 0][None, :] - p @ w.T).reshape(x.shape)
    np.testing.assert_allclose(model.gradient(x, np.zeros(5, int), output="log_probability"), expected, atol=1e-5)
