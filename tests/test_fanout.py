"""`audit run` over several models (a list or a manifest): one run each, checked before any runs, worst exit code."""

import json
import os
from pathlib import Path

import pytest

from audit.cli.fanout import worst_exit_code


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def stored_runs():
    from audit.store import Store

    if not Path(os.environ["AUDIT_DB"]).exists():
        return []
    return Store(os.environ["AUDIT_DB"], create=False).runs()


def test_worst_exit_code_ranks_refused_over_error_over_failed_over_pass():
    assert worst_exit_code([0, 1, 0]) == 1
    assert worst_exit_code([1, 3, 0]) == 3
    assert worst_exit_code([3, 2, 1]) == 2
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([]) == 0
    assert worst_exit_code([2, 143, 3]) == 143  # a stop ends them all


def test_two_models_on_the_command_line_are_two_runs(cli, assets):
    code, out, err = cli("run", assets.mlp_onnx, assets.mlp_pt, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    documents = json.loads(out)
    assert [d["model"]["path"] for d in documents] == [str(assets.mlp_onnx), str(assets.mlp_pt)]
    assert {r.id for r in stored_runs()} == {d["run_id"] for d in documents}
    # The same MLP exported twice: the same accuracy finding in both runs.
    values = [[(f["check"], f["value"]) for f in d["findings"]] for d in documents]
    assert values[0] == values[1] and values[0]


def test_a_manifest_runs_each_entry_with_its_own_data_and_options_and_exits_with_the_worst(cli, assets, tmp_path):
    manifest = write(tmp_path / "models.toml", f'''
[[run]]
model = "{assets.mlp_onnx}"
data = "{assets.data_npz}"
analyses = ["performance"]
fail_on = "never"

[[run]]  # no protected attributes in this data: the only analysis is skipped, nothing assessed, exit 3
model = "{assets.cnn_onnx}"
data = "{assets.images_npz}"
analyses = ["bias.group_fairness"]
set = ["bias.group_fairness.n_bootstrap=20"]
''')
    code, out, err = cli("run", "--manifest", manifest)
    assert code == 3, err
    runs = {Path(r.model_path).name: r for r in stored_runs()}
    assert set(runs) == {"mlp.onnx", "cnn.onnx"}
    assert (runs["mlp.onnx"].status, runs["mlp.onnx"].exit_code, runs["mlp.onnx"].fail_on) == ("ok", 0, "never")
    assert (runs["cnn.onnx"].status, runs["cnn.onnx"].exit_code) == ("skipped", 3)
    assert runs["cnn.onnx"].config["options"] == {"bias.group_fairness": {"n_bootstrap": 20}}
    assert out.count("exit code") == 2  # one summary per run


@pytest.mark.parametrize("entry, message", [
    ('model = "MLP"\ndata = "DATA"\nseed = "seven"', "seed: input should be a valid integer, got 'seven' (a string)"),
    ('model = "MLP"\ndata = "DATA"\ncolour = "red"', "unknown key"),
    ('data = "DATA"', "no model; write model = \"PATH\" in each [[run]] table"),
    ('model = "MLP"\ndata = "DATA"\ndb = "other.db"', "db is not allowed in a manifest entry"),
    ('model = "MLP"\ndata = "DATA"\ntrust_model_code = true', "a manifest may not turn on unpickling"),
    ('model = "missing.onnx"\ndata = "DATA"', "missing.onnx does not exist"),
    ('model = "MLP"\ndata = "DATA"\nanalyses = ["bias.no_such"]', "unknown analysis 'bias.no_such'"),
    ('model = "MLP"\ndata = "DATA"\nset = ["performance.no_such=1"]', "unknown option performance.no_such"),
    ('model = "MLP"\ndata = "DATA"\nset = "performance.x=1"', "set must be a list"),
])
def test_a_bad_second_entry_is_refused_before_the_first_runs(cli, assets, tmp_path, entry, message):
    good = f'[[run]]\nmodel = "{assets.mlp_onnx}"\ndata = "{assets.data_npz}"\nanalyses = ["performance"]\n'
    bad = entry.replace("MLP", str(assets.mlp_onnx)).replace("DATA", str(assets.data_npz))
    manifest = write(tmp_path / "models.toml", f"{good}\n[[run]]\n{bad}\n")
    code, out, err = cli("run", "--manifest", manifest)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ") and message in err, err
    assert "Traceback" not in err
    assert stored_runs() == []  # nothing ran, nothing stored


def test_manifest_and_model_arguments_and_a_shared_report_are_refused(cli, assets, tmp_path):
    manifest = write(tmp_path / "models.toml", f'[[run]]\nmodel = "{assets.mlp_onnx}"\ndata = "{assets.data_npz}"\n')
    code, out, err = cli("run", assets.mlp_onnx, "--manifest", manifest)
    assert code == 2 and "not both" in err
    code, out, err = cli("run", assets.mlp_onnx, assets.mlp_pt, "--data", assets.data_npz, "--report", tmp_path / "r.html")
    assert code == 2 and "several models would overwrite it" in err
    code, out, err = cli("run", "--manifest", tmp_path / "none.toml")
    assert code == 2 and err.strip().startswith("Error: --manifest") and "no such file" in err
    empty = write(tmp_path / "empty.toml", "title = 'x'\n")
    code, out, err = cli("run", "--manifest", empty)
    assert code == 2 and "a manifest holds only [[run]] tables" in err
    assert stored_runs() == []


def test_a_model_refused_when_loaded_is_its_runs_exit_2_and_the_others_still_run(cli, assets, tmp_path):
    broken = write(tmp_path / "broken.onnx", "not an onnx file")
    code, out, err = cli("run", broken, assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 2, err
    first, second = json.loads(out)
    assert first["status"] == "rejected" and first["model"] == str(broken) and first["exit_code"] == 2
    assert second["status"] == "ok"
    assert [line for line in err.splitlines() if line.startswith("Error: ")] == [f"Error: {broken}: {first['error']}"]
    assert [Path(r.model_path).name for r in stored_runs()] == ["mlp.onnx"]
