"""The one-way flow of DESIGN.md, enforced: import-linter's contracts hold, and they break on a forbidden import."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / "lint-imports"
    if not executable.exists():
        executable = shutil.which("lint-imports")
    if executable is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run([str(executable), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    result = lint_imports(ROOT, [ROOT, ROOT / "plugins"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        ("audit/report/summary.py", "import audit.runner", "The report reads the store only"),
        ("audit/store/artifacts.py", "import audit.cli", "Layers"),
        ("audit/runner.py", "import audit_bias", "The core never imports a plugin"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden_import, contract):
    # A copy of the tree with one forbidden import added: the same contracts must fail on it.
    for name in ("audit", "plugins"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{forbidden_import}  # added by the test\n")
    result = lint_imports(tmp_path, [tmp_path, tmp_path / "plugins"])
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout, result.stdout
