"""The plugin host: entry points loaded one by one, load errors, filtering, listings, start-up cost."""

import json
import subprocess
import sys
import textwrap

import pytest

import audit
from audit.errors import AuditError
from audit.plugins import get_plugin_manager, reset_plugin_manager


def make_distribution(root, name, entry_points: dict, modules: dict):
    """Write an installed-looking distribution (dist-info + modules) under ``root``."""
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[audit]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = '''
import audit

class Echo(audit.Analysis):
    """Counts rows."""
    name = "thirdparty.rows"
    title = "Row count"
    category = "performance"

    class Options(audit.Options):
        minimum: int = 1

    def run(self, ctx):
        yield audit.Metric("rows", len(ctx.data))

@audit.hookimpl
def register_analyses(register):
    register(Echo)
'''


@pytest.fixture
def fake_dists(tmp_path, monkeypatch):
    root = tmp_path / "site"
    make_distribution(root, "audit-broken", {"broken": "audit_broken_plugin"}, {"audit_broken_plugin": "raise ImportError('needs a library that is missing')\n"})
    make_distribution(root, "audit-thirdparty", {"thirdparty": "audit_thirdparty_plugin"}, {"audit_thirdparty_plugin": GOOD_PLUGIN})
    monkeypatch.syspath_prepend(str(root))
    reset_plugin_manager()
    return root


def test_broken_entry_point_warns_and_the_rest_works(fake_dists, monkeypatch, cli):
    monkeypatch.setenv("AUDIT_LOAD_PLUGINS", "classifier-audit,audit-broken,audit-thirdparty")
    code, out, err = cli("plugins", "--json")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1
    assert "audit-broken" in warnings[0] and "needs a library that is missing" in warnings[0]
    infos = {p["name"]: p for p in json.loads(out)}
    assert infos["broken"]["error"] == "ImportError: needs a library that is missing"
    assert infos["thirdparty"] == {"name": "thirdparty", "distribution": "audit-thirdparty", "version": "1.2.3",
                                   "hooks": ["register_analyses"], "error": None}
    assert infos["performance"]["distribution"] == "classifier-audit"
    code, out, _ = cli("analyses", "--json")
    analyses = {a["name"]: a for a in json.loads(out)}
    assert analyses["thirdparty.rows"]["plugin"] == "thirdparty"
    assert analyses["thirdparty.rows"]["options"] == [{"name": "minimum", "type": "int", "default": 1, "required": False, "description": ""}]
    assert analyses["performance"]["requires"] == ["labels"]


def test_load_plugins_filter(fake_dists, monkeypatch, cli):
    monkeypatch.setenv("AUDIT_LOAD_PLUGINS", "audit-thirdparty")
    code, out, err = cli("plugins", "--json")
    assert [p["name"] for p in json.loads(out)] == ["thirdparty"] and err == ""
    monkeypatch.setenv("AUDIT_LOAD_PLUGINS", "")
    reset_plugin_manager()
    code, out, err = cli("plugins", "--json")
    assert json.loads(out) == []


class Twin(audit.Analysis):
    name = "performance"
    title = "Same name as the built-in"

    def run(self, ctx):
        return []


class TwinPlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Twin)


class RaisingPlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        raise ValueError("bug in a plugin")


def test_duplicate_analysis_names_are_an_error():
    manager = get_plugin_manager()
    manager.register(TwinPlugin(), name="twin")
    with pytest.raises(AuditError, match="registered twice: by plugin 'performance' and by plugin 'twin'|registered twice: by plugin 'twin' and by plugin 'performance'"):
        manager.analyses()


def test_a_raising_hook_does_not_stop_the_others(capsys):
    manager = get_plugin_manager()
    manager.register(RaisingPlugin(), name="raising")
    registry = manager.analyses()
    assert "performance" in registry
    assert "plugin 'raising' failed in register_analyses (ValueError: bug in a plugin)" in capsys.readouterr().err


class CommandPlugin:
    @audit.hookimpl
    def register_commands(self, app):
        @app.command("hello")
        def hello(name: str = "world"):
            """Say hello."""
            print(f"hello {name}")


def test_register_commands_hook(cli):
    get_plugin_manager().register(CommandPlugin(), name="commands")
    code, out, _ = cli("hello", "--name", "auditor")
    assert code == 0 and out == "hello auditor\n"


def test_register_frameworks_hook():
    class Policy:
        @audit.hookimpl
        def register_frameworks(self, register):
            register("acme", "ACME model policy", {"p1": "Models are fair."})

    get_plugin_manager().register(Policy(), name="policy")
    frameworks = get_plugin_manager().frameworks()
    assert frameworks["acme"].requirements == {"p1": "Models are fair."}
    assert {"eu-ai-act", "nist-ai-rmf"} <= set(frameworks)


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["analyses"], ["run", "--help"]])
def test_startup_does_not_import_torch_or_onnxruntime(args):
    code = (
        "import sys\n"
        "from audit.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'weasyprint', 'matplotlib', 'ray', 'psycopg') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stderr or result.stderr.rstrip().endswith("HEAVY=")


class BrokenCommandPlugin:
    @audit.hookimpl
    def register_commands(self, app):
        raise RuntimeError("bug in a command plugin")


def test_a_raising_register_commands_does_not_kill_the_cli(cli):
    get_plugin_manager().register(BrokenCommandPlugin(), name="broken_commands")
    get_plugin_manager().register(CommandPlugin(), name="commands")
    code, out, err = cli("plugins")
    assert code == 0 and "broken_commands" in out
    assert "plugin 'broken_commands' failed in register_commands (RuntimeError: bug in a command plugin)" in err
    assert cli("hello")[1] == "hello world\n"  # the other plugin's command is still there


def test_a_plugin_claims_a_suffix_before_the_builtin_loader(cli, assets):
    """load_model is firstresult and the built-in loader trylast: a plugin's loader wins for .onnx."""
    from audit.models import load

    calls = []

    class ClaimingLoader:
        @audit.hookimpl
        def load_model(self, path, options):
            if path.suffix != ".onnx":
                return None
            calls.append(path.name)
            model = load(path, options)  # the built-in loaders, no plugin manager
            model.format = "onnx-via-plugin"
            return model

    get_plugin_manager().register(ClaimingLoader(), name="claiming")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    assert calls == ["mlp.onnx"]
    from audit.store import Store

    assert Store().resolve_run(json.loads(out)["run_id"]).model_format == "onnx-via-plugin"
    # Another suffix falls through to the built-in loaders.
    code, out, err = cli("run", assets.mlp_pt, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    assert calls == ["mlp.onnx"]


def test_every_hookspec_has_a_test():
    """Each hook of the plugin contract is implemented by a test plugin somewhere in tests/ (datasette's meta-test)."""
    import inspect
    from pathlib import Path

    from audit import hookspecs

    specs = [name for name, value in inspect.getmembers(hookspecs) if callable(value) and hasattr(value, "audit_spec")]
    assert specs, "no hookspecs found"
    sources = "\n".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    missing = [name for name in specs if f"def {name}(self" not in sources]
    assert not missing, f"hooks without a test plugin implementing them: {missing}"
