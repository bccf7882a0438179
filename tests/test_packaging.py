"""Packaging is proven, not assumed: build the wheel, install it in a fresh venv, run the demo there."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A venv that reuses the test run's installed dependencies but holds our wheel and the example plugin."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = (work / "dist").glob("classifier_audit-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    python = work / "venv" / "bin" / "python"
    # `--system-site-packages` would reach the base interpreter's packages, not the ones this test run has
    # (a fresh machine's base Python has none). A path file appends this run's site-packages after the new
    # venv's own, so its wheel comes first; that folder's own .pth files (an editable install) are not read.
    new_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    Path(new_site, "zz_test_run_packages.pth").write_text("".join(f"{folder}\n" for folder in ours))
    # --ignore-installed: the same version of audit, seen through the path file, must not count as installed here.
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, text=True)
    # A non-editable copy, so the plugin is installed exactly as a user's pip would.
    shutil.copytree(ROOT / "examples" / "audit-example", work / "audit-example", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    subprocess.run([*install, str(work / "audit-example")], check=True, capture_output=True, text=True)
    return work, wheel, python


def test_wheel_contents(venv):
    import zipfile

    _, wheel, _ = venv
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("audit/__init__.py", "audit/templates/report.html", "audit/templates/analysis/_default.html",
                     "audit/demo_assets/credit.onnx", "audit/demo_assets/digits.pt", "audit_bias/__init__.py",
                     "audit_robustness/__init__.py", "audit_attribution/__init__.py", "audit_performance/__init__.py"):
        assert expected in names, expected
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    for line in ("performance = audit_performance", "bias = audit_bias", "robustness = audit_robustness", "attribution = audit_attribution"):
        assert line in entry_points


def test_demo_runs_from_the_installed_wheel(venv, tmp_path):
    work, _, python = venv
    env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_DB", "AUDIT_LOAD_PLUGINS", "PYTHONPATH")}
    env["AUDIT_LOAD_PLUGINS"] = "classifier-audit,audit-example"
    where = subprocess.run([str(python), "-c", "import audit, audit_bias; print(audit.__file__); print(audit_bias.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(work / "venv") in path for path in where), where
    audit_cli = work / "venv" / "bin" / "audit"
    result = subprocess.run([str(audit_cli), "demo", "--analysis", "performance", "--analysis", "example", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    documents = json.loads(result.stdout)
    assert [Path(d["model"]["path"]).name for d in documents] == ["credit.onnx", "digits.pt", "digits.onnx", "text.onnx", "text.pt"]
    for document in documents:
        assert {a["name"] for a in document["analyses"]} == {"performance", "example.accuracy_floor", "example.prediction_balance"}
        assert any(f["analysis"] == "example.accuracy_floor" for f in document["findings"])
        html, pdf = document["reports"]
        assert (tmp_path / pdf).read_bytes()[:5] == b"%PDF-"
        page = (tmp_path / html).read_text()
        assert "example.accuracy_floor" in page and "Predictive performance" in page
    assert (tmp_path / ".audit" / "audit.db").exists()
