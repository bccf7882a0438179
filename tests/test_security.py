"""Untrusted model files: nothing in a torch.export archive is unpickled or executed without --trust-model-code."""

import io
import json
import pickle
import zipfile

import pytest

from tests.test_bad_input import assert_clean_error


class Payload:
    """Unpickling this creates the marker file: proof that the file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def evil_pickle(marker) -> bytes:
    return pickle.dumps(Payload(marker), protocol=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A genuine torch.export archive of a small model with a buffer and a dynamic batch."""
    import torch

    from audit.testing import tiny_mlp

    folder = tmp_path_factory.mktemp("export")
    module = tiny_mlp(n_features=4, n_classes=2, seed=0).module
    module.register_buffer("offset", torch.zeros(2))
    program = torch.export.export(module, (torch.zeros(3, 4),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    path = folder / "model.pt2"
    torch.export.save(program, str(path))
    return path


def rewrite(source, target, edit):
    """Copy a .pt2 archive, letting ``edit(entries)`` change its {name below the root: bytes} map."""
    with zipfile.ZipFile(source) as archive:
        names = archive.namelist()
        root = names[0].split("/")[0] + "/"
        entries = {name[len(root):]: archive.read(name) for name in names}
    edit(entries)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for name, content in entries.items():
            archive.writestr(root + name, content)
    return target


def pickled_weight(marker):
    def edit(entries):
        config = json.loads(entries["data/weights/model_weights_config.json"])
        name, payload = next(iter(config["config"].items()))
        payload["use_pickle"] = True
        entries["data/weights/" + payload["path_name"]] = evil_pickle(marker)
        entries["data/weights/model_weights_config.json"] = json.dumps(config).encode()
    return edit


def opaque_constant(marker):
    def edit(entries):
        config = json.loads(entries["data/constants/model_constants_config.json"])
        # torch unpickles opaque objects whatever their use_pickle flag says
        config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False, "tensor_meta": None}
        entries["data/constants/opaque_obj_0"] = evil_pickle(marker)
        entries["data/constants/model_constants_config.json"] = json.dumps(config).encode()
    return edit


def pickled_constant(marker):
    def edit(entries):
        config = json.loads(entries["data/constants/model_constants_config.json"])
        config["config"]["evil"] = {"path_name": "tensor_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
        entries["data/constants/tensor_0"] = evil_pickle(marker)
        entries["data/constants/model_constants_config.json"] = json.dumps(config).encode()
    return edit


def unsafe_retry(marker):
    """The sample inputs fail the safe load; torch would retry them with weights_only=False."""
    def edit(entries):
        entries["data/sample_inputs/model.pt"] = evil_pickle(marker)
    return edit


def legacy_weights(marker):
    """The legacy weights file goes through the same safe-then-unsafe load."""
    def edit(entries):
        entries["data/weights/model.pt"] = evil_pickle(marker)
    return edit


def symbolic_expression(marker):
    """Symbolic shapes are parsed by sympy.sympify, which evaluates Python."""
    def edit(entries):
        text = entries["models/model.json"].decode()
        start = text.index('"expr_str": "') + len('"expr_str": "')
        end = text.index('"', start)
        while text[end - 1] == "\\":
            end = text.index('"', end + 1)
        original = json.loads('"' + text[start:end] + '"')
        injected = f"(exec(\"open({str(marker)!r}, 'w').close()\") or {original})"
        entries["models/model.json"] = (text[:start] + json.dumps(injected)[1:-1] + text[end:]).encode()
    return edit


def callable_target(marker):
    """A graph node may name any callable reachable from torch; forward() would call it."""
    def edit(entries):
        program = json.loads(entries["models/model.json"])
        nodes = program["graph_module"]["graph"]["nodes"]
        nodes[0]["target"] = "torch.os.system"
        entries["models/model.json"] = json.dumps(program).encode()
    return edit


def native_code(marker):
    def edit(entries):
        entries["data/aotinductor/model/model.so"] = b"\x7fELF not really"
    return edit


VARIANTS = {
    "weights flagged use_pickle": pickled_weight,
    "opaque constant via pickle": opaque_constant,
    "tensor constant via pickle": pickled_constant,
    "failed safe load retried unsafely": unsafe_retry,
    "legacy weights file": legacy_weights,
    "code in a symbolic shape": symbolic_expression,
    "arbitrary callable as a graph target": callable_target,
    "AOTInductor native code": native_code,
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_crafted_export_archive_runs_nothing(variant, exported, cli, assets, tmp_path):
    marker = tmp_path / "pwned"
    crafted = rewrite(exported, tmp_path / "crafted.pt2", VARIANTS[variant](marker))
    result = cli("run", crafted, "--data", assets.data_npz, "-a", "performance")
    assert not marker.exists(), f"{variant}: the archive ran code"
    assert_clean_error(result, "crafted.pt2", "--trust-model-code")
    # Nothing stored: no database was created, or it holds no run.
    assert not (tmp_path / "audit.db").exists() or cli("runs", "--json")[1].strip() in ("", "[]")


def test_genuine_export_archive_still_loads(exported, cli, assets):
    code, out, err = cli("run", exported, "--data", assets.data_npz, "-a", "performance")
    assert code == 0, err


def test_trusted_archive_is_handed_to_torch(exported, cli, assets, tmp_path):
    """With --trust-model-code the user vouches for the file: torch loads the pickled weight (and runs it)."""
    marker = tmp_path / "ran"
    crafted = rewrite(exported, tmp_path / "crafted.pt2", pickled_weight(marker))
    cli("run", crafted, "--data", assets.data_npz, "-a", "performance", "--trust-model-code")
    assert marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a zip at all"])
def test_bad_export_archive_is_one_line(content, cli, assets, tmp_path):
    (tmp_path / "bad.pt2").write_bytes(content)
    assert_clean_error(cli("run", tmp_path / "bad.pt2", "--data", assets.data_npz), "bad.pt2")


def test_archive_missing_its_program_is_one_line(exported, cli, assets, tmp_path):
    def edit(entries):
        del entries["data/weights/model_weights_config.json"]
    crafted = rewrite(exported, tmp_path / "partial.pt2", edit)
    assert_clean_error(cli("run", crafted, "--data", assets.data_npz), "partial.pt2")


def test_torchscript_with_a_pickle_inside_is_refused(cli, assets, tmp_path):
    """A TorchScript file whose data.pkl is a plain pickle fails jit.load and is refused, not unpickled."""
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", evil_pickle(marker))
        archive.writestr("model/version", "3\n")
    (tmp_path / "evil.pt").write_bytes(buffer.getvalue())
    assert_clean_error(cli("run", tmp_path / "evil.pt", "--data", assets.data_npz), "--trust-model-code")
    assert not marker.exists()


def test_program_that_fails_to_build_its_module_is_one_line(exported, cli, assets, monkeypatch):
    """torch raises AssertionError from ExportedProgram.module() for some archives; that is bad input, not a crash."""
    import torch

    class Broken:
        def module(self):
            raise AssertionError("unlifting failed")

    monkeypatch.setattr(torch.export, "load", lambda *args, **kwargs: Broken())
    assert_clean_error(cli("run", exported, "--data", assets.data_npz), "model.pt2", "unlifting failed")
