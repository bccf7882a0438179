"""Every config value is type-checked, from audit.toml, AUDIT_* variables and flags alike: exit 2, one line."""

import pytest

from tests.test_bad_input import assert_clean_error

M, D = "{model}", "{data}"

FILE_CASES = {
    "trust_model_code as a string": ('trust_model_code = "false"\n', ["trust_model_code", "'false' (a string)", "true or false"]),
    "seed as a string": ('seed = "abc"\n', ["seed", "'abc'"]),
    "seed as a boolean": ("seed = true\n", ["seed"]),
    "seed too large": (f"seed = {2**62 * 3}\n", ["seed", "less than or equal"]),
    "threads as a string": ('threads = "x"\n', ["threads", "whole number"]),
    "batch_size as a string": ('batch_size = "big"\n', ["batch_size", "'big'"]),
    "batch_size zero": ("batch_size = 0\n", ["batch_size", "greater than or equal to 1"]),
    "device as a number": ("device = 5\n", ["device", "5 (an integer)"]),
    "device unknown": ('device = "tpu"\n', ["device", "unknown device 'tpu'"]),
    "db as a number": ("db = 5\n", ["db", "5 (an integer)"]),
    "db with a bogus scheme": ('db = "bogus://x"\n', ["db", "unknown database URL scheme 'bogus'"]),
    "fail_on unknown": ('fail_on = "severe"\n', ["fail_on", "use one of"]),
    "allow_nan as a string": ('[data]\nallow_nan = "no"\n', ["data.allow_nan", "'no' (a string)"]),
    "sample as a string": ('[data]\nsample = "abc"\n', ["data.sample", "'abc'"]),
    "gradients as a string": ('[model]\ngradients = "off"\n', ["model.gradients"]),
    "analyses as a number": ("analyses = 3\n", ["analyses"]),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_config_file_values_are_typed(case, cli, assets, tmp_path):
    text, fragments = FILE_CASES[case]
    (tmp_path / "settings.toml").write_text(text)
    result = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "--config", tmp_path / "settings.toml", "-a", "performance")
    assert_clean_error(result, "settings.toml", *fragments)
    assert not (tmp_path / "audit.db").exists()


FLAG_CASES = {
    "--set data.allow_nan=no": (["--set", "data.allow_nan=no"], ["data.allow_nan", "'no'", "true or false"]),
    "--set data.sample=abc": (["--set", "data.sample=abc"], ["data.sample", "'abc'"]),
    "--set model.optimize=yes": (["--set", "model.optimize=yes"], ["model.optimize"]),
    "--seed 2**70": (["--seed", str(2**70)], ["--seed", "less than or equal"]),
    "--seed negative": (["--seed", "-1"], ["--seed", "greater than or equal to 0"]),
    "--batch-size 0": (["--batch-size", "0"], ["--batch-size", "greater than or equal to 1"]),
    "--threads 0": (["--threads", "0"], ["--threads"]),
    "--db bogus://x": (["--db", "bogus://x"], ["--db", "bogus"]),
    "--device 5": (["--device", "5"], ["unknown device '5'"]),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_flag_values_are_typed(case, cli, assets, tmp_path):
    flags, fragments = FLAG_CASES[case]
    result = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", *flags)
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "audit.db").exists()


def test_config_folder_is_one_line(cli, assets, tmp_path):
    (tmp_path / "conf").mkdir()
    assert_clean_error(cli("run", assets.mlp_onnx, "--data", assets.data_npz, "--config", tmp_path / "conf"), "conf", "is a folder")


@pytest.mark.parametrize("variable, value, fragment", [("AUDIT_THREADS", "x", "whole number"), ("AUDIT_THREADS", "0", "greater than"),
                                                     ("AUDIT_DB", "bogus://x", "bogus")])
def test_environment_values_are_typed(variable, value, fragment, cli, assets, monkeypatch):
    monkeypatch.setenv(variable, value)
    assert_clean_error(cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance"), variable, fragment)


def test_working_directory_config_cannot_trust_model_code(cli, assets, tmp_path):
    """A checked-in audit.toml must not turn on unpickling for whoever runs the audit in that folder."""
    import torch

    torch.save(assets.mlp_model.module, tmp_path / "pickled.pt")
    (tmp_path / "audit.toml").write_text("trust_model_code = true\n")
    assert_clean_error(cli("run", tmp_path / "pickled.pt", "--data", assets.data_npz), "audit.toml", "trust_model_code", "--trust-model-code")
    # Named explicitly, the same file is the user's own choice.
    code, out, err = cli("run", tmp_path / "pickled.pt", "--data", assets.data_npz, "-a", "performance", "--config", tmp_path / "audit.toml")
    assert code == 0, err
    assert f"Config: {tmp_path / 'audit.toml'}" in out


def test_the_run_says_which_config_it_used(cli, assets, tmp_path):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance")
    assert code == 0, err
    assert "Config: none" in out
    (tmp_path / "audit.toml").write_text("seed = 3\n")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance")
    assert code == 0, err
    assert f"Config: {tmp_path / 'audit.toml'}" in out


def test_valid_values_still_apply(cli, assets, tmp_path):
    (tmp_path / "settings.toml").write_text('seed = 7\nthreads = 1\nfail_on = "HIGH"\n[data]\nallow_nan = false\nsample = 150\n[model]\noptimize = false\n')
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--config", tmp_path / "settings.toml",
                         "--set", "data.allow_nan=true", "--json")
    assert code == 0, err
    import json

    document = json.loads(out)
    assert document["data"]["rows"] == 150 and document["config_file"] == str(tmp_path / "settings.toml")
    from audit.store import Store

    run = Store(str(tmp_path / "audit.db")).runs()[0]
    assert run.seed == 7 and run.config["threads"] == 1 and run.config["model_optimize"] is False


@pytest.mark.parametrize("command", [["runs"], ["show", "latest"], ["demo", "--no-pdf"]])
def test_commands_reading_the_store_check_audit_db(command, cli, monkeypatch):
    monkeypatch.setenv("AUDIT_DB", "bogus://x")
    assert_clean_error(cli(*command), "AUDIT_DB", "bogus")
