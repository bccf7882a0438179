"""What the terminal shows: `audit runs` as a table, `audit compare` rounded and with its caveats, a line per analysis."""

import json
import re

import numpy as np


def test_runs_is_a_table_with_a_header_and_counts(cli, assets):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, _ = cli("runs")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["RUN", "STARTED", "(UTC)"] and "PASS" in lines[0] and "FAIL" in lines[0]
    row = next(line for line in lines if line.startswith(run_id))
    assert re.search(r"\bok\s+0\s+high\s+3\s+0\s+0\s+200\b", row), row
    assert lines[-1] == "1 run: 1 ok"
    [listed] = json.loads(cli("runs", "--json")[1])
    assert (listed["passed"], listed["failed"], listed["inconclusive"]) == (3, 0, 0)


def test_compare_rounds_and_says_when_the_runs_differ(cli, assets):
    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    _, out_a, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    _, out_b, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "-a", "performance", "--json", "--seed", "5")
    a, b = json.loads(out_a), json.loads(out_b)
    code, out, _ = cli("compare", a["run_id"], b["run_id"])
    assert "Note: different seeds (0 vs 5)" in out and "Note: different data" in out
    accuracy = next(line for line in out.splitlines() if ".accuracy:" in line)
    # Values rounded to three digits, the change signed: never 0.030000000000000027.
    assert re.search(r": [01](\.\d{1,3})? -> 0\.\d{1,3} \(-0\.\d{1,3}\)$", accuracy), accuracy
    assert not re.search(r"\d\.\d{5,}", out)
    diff = json.loads(cli("compare", a["run_id"], b["run_id"], "--json")[1])
    assert any(d.startswith("different seeds") for d in diff["differences"])
    assert json.loads(cli("compare", a["run_id"], a["run_id"], "--json")[1])["differences"] == []


def test_a_line_per_analysis_with_its_place_in_the_run(capsys):
    from types import SimpleNamespace

    from audit.cli.progress import AnalysisLines

    lines = AnalysisLines()
    for position, name in enumerate(["performance", "bias.leakage"]):
        lines.starting(name, position, 2)
        lines(SimpleNamespace(name=name, status="ok" if position == 0 else "skipped", seconds=1.25, reason="no attributes"))
    assert capsys.readouterr().err.splitlines() == [
        "  [1/2] performance: ok in 1.2 s", "  [2/2] bias.leakage: skipped in 1.2 s (no attributes)"]


def test_the_live_display_names_the_running_analysis():
    from types import SimpleNamespace

    from audit.cli.progress import AnalysisLines

    class Bar:
        def __init__(self):
            self.tasks, self.printed, self.console = {}, [], self

        def add_task(self, description, total=None):
            self.tasks[len(self.tasks) + len(self.printed)] = description
            return len(self.tasks) + len(self.printed) - 1

        def remove_task(self, task):
            self.tasks.pop(task)

        def print(self, line, **_):
            self.printed.append(line)

    bar = Bar()
    lines = AnalysisLines(bar)
    lines.starting("robustness.adversarial", 2, 12)
    assert list(bar.tasks.values()) == ["[3/12] robustness.adversarial"]  # shown while it runs, with its elapsed time
    lines(SimpleNamespace(name="robustness.adversarial", status="ok", seconds=3.0, reason=None))
    assert bar.tasks == {} and bar.printed == ["  [3/12] robustness.adversarial: ok in 3.0 s"]


def test_the_demo_judges_its_models_by_the_default_gate_and_still_succeeds(cli):
    """The README's first command: the biased credit model's run says "failed" at --fail-on high, the demo exits 0."""
    code, out, err = cli("demo", "-a", "performance", "-a", "bias.counterfactual", "--no-pdf")
    assert code == 0, err
    credit = out.split("== ")[1]
    assert "credit.onnx" in credit and "status failed, exit code 1" in credit
    assert "changing sex from female to male" in credit  # groups by their labels, from credit.npz's value_labels
    assert "fails the default gate (--fail-on high) by design" in credit and "`audit demo` itself still succeeds" in credit
    digits = out.split("== ")[2]
    assert "status ok, exit code 0" in digits and "by design" not in digits
