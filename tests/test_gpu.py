"""CUDA paths: torch on cuda and onnxruntime's CUDA provider (skipped where there is no GPU)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_torch_model_on_cuda_matches_cpu(assets):
    from audit.models import LoadOptions, load

    cpu = load(assets.mlp_pt, LoadOptions(device="cpu"))
    gpu = load(assets.mlp_pt, LoadOptions(device="cuda"))
    assert gpu.device == "cuda:0" and gpu.provider == "torch-cuda:0"
    np.testing.assert_allclose(gpu.predict(assets.x), cpu.predict(assets.x), atol=1e-5)
    grad = gpu.gradient(assets.x[:8], np.zeros(8, int))
    np.testing.assert_allclose(grad, cpu.gradient(assets.x[:8], np.zeros(8, int)), atol=1e-5)


def test_onnx_cuda_provider_really_used(assets):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    from audit.models import LoadOptions, load

    model = load(assets.mlp_onnx, LoadOptions(device="cuda"))
    assert model.provider == "CUDAExecutionProvider" and model.device == "cuda:0"
    cpu = load(assets.mlp_onnx, LoadOptions(device="cpu"))
    np.testing.assert_allclose(model.predict(assets.x), cpu.predict(assets.x), atol=1e-5)
