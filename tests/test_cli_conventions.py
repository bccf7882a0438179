"""What a new user expects of a command line: --version, completion, readable option types, JSON errors."""

import json
from typing import Annotated, Literal, Optional

import pytest
from pydantic import BaseModel, Field

import audit
from audit.store import Store


def test_version(cli):
    assert cli("--version") == (0, f"audit {audit.__version__}\n", "")


def test_shell_completion(cli, monkeypatch):
    code, out, _ = cli("--help")
    assert "--install-completion" in out and "--show-completion" in out
    # What the installed completion script asks the program for when the user presses tab after `audit ru`.
    monkeypatch.setenv("_AUDIT_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "audit ru")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, out, _ = cli()
    assert code == 0 and out.split() == ["run", "runs"]


def test_demo_threads_reach_the_run_and_the_runner_is_called_directly(cli):
    code, out, err = cli("demo", "--threads", "1", "--analysis", "performance", "--no-pdf", "--json")
    assert code == 0, err
    documents = json.loads(out)
    assert len(documents) == 5 and len({d["run_id"] for d in documents}) == 5
    store = Store()
    assert [store.resolve_run(d["run_id"]).config["threads"] for d in documents] == [1] * 5
    code, out, err = cli("demo", "--threads", "0", "--json")
    assert code == 2 and "--threads" in err and "got 0" in err and json.loads(out)["status"] == "rejected"


class Chatty(audit.Analysis):
    name = "test.chatty"
    title = "Prints to stdout"

    def run(self, ctx):
        print("hello from a plugin")
        yield audit.Finding(check="spoke", title="Spoke", severity="low", passed=True)


class ChattyPlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Chatty)


@pytest.fixture
def chatty():
    from audit.plugins import get_plugin_manager

    manager = get_plugin_manager()
    manager.register(ChattyPlugin(), name="chatty")
    yield
    manager.unregister(name="chatty")


def test_json_stdout_holds_only_the_document(cli, assets, chatty):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "test.chatty", "--json")
    assert code == 0 and json.loads(out)["findings"][0]["check"] == "spoke"
    assert "hello from a plugin" in err
    # The demo builds its list from the runner's results, not by re-reading what it printed. One run after
    # another: this plugin is registered in this process only, so worker processes would not know it.
    code, out, err = cli("demo", "-a", "test.chatty", "--no-pdf", "--json", "--jobs", "1")
    assert code == 0 and [d["findings"][0]["check"] for d in json.loads(out)] == ["spoke"] * 5
    assert err.count("hello from a plugin") == 5


@pytest.mark.parametrize("args, fragment", [
    (["run", "nope.onnx", "--data", "nope.npz", "--json"], "nope.onnx does not exist"),
    (["runs", "--json", "--colour"], "No such option"),
    (["show", "latest", "--json"], "no audit database"),
])
def test_json_error_document_on_exit_2(cli, args, fragment):
    code, out, err = cli(*args)
    assert code == 2
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    document = json.loads(out)
    assert document == {"status": "rejected", "exit_code": 2, "error": err.strip()[len("Error: "):]}
    assert fragment in document["error"]


def test_no_json_no_document(cli):
    code, out, err = cli("run", "nope.onnx", "--data", "nope.npz")
    assert code == 2 and out == ""
    # --json after `--` is an argument, not the option.
    code, out, err = cli("show", "--", "--json")
    assert code == 2 and out == ""


def test_report_out_error_names_out(cli):
    code, out, err = cli("report", "latest", "--out", "x.txt")
    assert code == 2
    assert err.startswith("Error: --out x.txt: unknown format .txt") and "--report" not in err


def test_runs_status_must_be_a_status(cli, assets):
    code, _, err = cli("runs", "--status", "bogus")
    assert code == 2
    assert "--status 'bogus'" in err and "ok, failed, error, interrupted" in err
    cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance")
    code, out, _ = cli("runs", "--status", "interrupted")
    assert code == 0 and out == "No runs match.\n"


def test_db_and_json_read_the_same_in_every_command():
    from typer.main import get_command

    from audit.cli import build_app

    group = get_command(build_app())
    helps = {"db": set(), "as_json": set()}
    for name, command in group.commands.items():
        for param in command.params:
            if param.name in helps:
                helps[param.name].add(param.help)
    assert len(helps["db"]) == 1 and "$AUDIT_DB" in next(iter(helps["db"]))
    assert len(helps["as_json"]) == 1 and '"status": "rejected"' in next(iter(helps["as_json"]))


def test_analyses_show_readable_types(cli):
    code, out, _ = cli("analyses")
    assert code == 0
    assert "--set robustness.adversarial.epsilons_linf=<list of float >= 0>  (default None)" in out
    assert "--set attribution.sanity.removal=<one of: mean, zeros>" in out
    assert "--set robustness.corruptions.severities=<list of int from 0 to 5, at least 1>" in out
    assert "Annotated" not in out and "FieldInfo" not in out and "<Literal>" not in out
    rows = json.loads(cli("analyses", "--json")[1])
    options = {(row["name"], o["name"]): o["type"] for row in rows for o in row["options"]}
    assert options[("robustness.calibration", "max_brier")] == "float >= 0"
    assert options[("robustness.adversarial", "attacks")] == "list of (one of: fgsm, pgd), at least 1"


def test_describe_type():
    from audit.cli.inspect import describe_type

    class Example(BaseModel):
        share: float = Field(0.5, ge=0, le=1)
        count: Optional[int] = Field(None, gt=0)
        mode: Literal["a", "b"] = "a"
        names: list[str] = []
        limits: dict[str, float] = {}
        radii: list[Annotated[float, Field(lt=2)]] = Field([1.0], max_length=3)
        flag: bool = False

    described = {name: describe_type(info.annotation, info.metadata) for name, info in Example.model_fields.items()}
    assert described == {
        "share": "float from 0 to 1", "count": "int > 0", "mode": "one of: a, b", "names": "list of text",
        "limits": "table of text to float", "radii": "list of float < 2, at most 3", "flag": "true or false",
    }
