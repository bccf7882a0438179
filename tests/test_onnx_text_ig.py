"""Integrated Gradients on ONNX text models: the graph's torch conversion, checked against onnxruntime, holds the embedding table."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")

from test_text import DEMO, demo_texts, demo_twin, load_text_model  # noqa: E402


def test_the_demo_onnx_text_model_gets_token_ig_equal_to_captum_on_its_twin():
    from captum.attr import LayerIntegratedGradients

    from audit_attribution._text import integrated_gradients

    model = load_text_model(DEMO / "text.onnx")
    assert "token_gradients" in model.capabilities, model.describe()["token_gradients"]
    assert model.describe()["token_gradients"] == "embedding output (IG) of the graph's torch conversion, checked against onnxruntime"
    twin = demo_twin()
    texts = [r["text"] for r in demo_texts(10)]
    model.predict(np.array(texts, dtype=object))  # settles the output kind, as the clean pass does
    sequences, special = model.encode(texts)
    targets = model.predict(np.array(texts, dtype=object)).argmax(1)
    before = model.counters.snapshot()
    ours = integrated_gradients(model, sequences, special, targets, steps=32, method="gausslegendre")
    assert model.counters.since(before).backward_rows == 32 * len(texts)

    def probability(ids, mask):
        return torch.softmax(twin(ids, mask), dim=1)

    for r, ids in enumerate(sequences):
        x = torch.as_tensor(ids)[None]
        reference = torch.where(torch.as_tensor(special[r])[None], x, torch.full_like(x, model.baseline_id))
        expected = LayerIntegratedGradients(probability, twin.embedding).attribute(
            x, baselines=reference, target=int(targets[r]), additional_forward_args=(torch.ones_like(x),), n_steps=32,
            method="gausslegendre").sum(-1)[0].detach().double().numpy()
        np.testing.assert_allclose(ours[r], expected, atol=1e-5)


def test_an_onnx_text_graph_the_conversion_does_not_cover_says_why(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # input_ids -> Gather(embedding) -> ReduceMax over tokens (not converted) -> Gemm
    rng = np.random.default_rng(0)
    vocab = __import__("json").loads((DEMO / "text.tokenizer.json").read_text())["model"]["vocab"]
    table = rng.normal(size=(len(vocab), 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["E", "input_ids"], ["e"]), helper.make_node("ReduceMax", ["e"], ["pooled"], axes=[1], keepdims=0),
         helper.make_node("Gemm", ["pooled", "W"], ["logits"])],
        "max_pool", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(table, "E"), numpy_helper.from_array(rng.normal(size=(4, 2)).astype(np.float32), "W")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, tmp_path / "m.onnx")
    (tmp_path / "m.tokenizer.json").write_text((DEMO / "text.tokenizer.json").read_text())
    model = load_text_model(tmp_path / "m.onnx")
    assert "token_gradients" not in model.capabilities
    assert model.describe()["token_gradients"] == ("none: the ONNX graph has no torch twin (the graph uses operator(s) ReduceMax, "
                                                   "which the ONNX-to-torch conversion does not cover)")
