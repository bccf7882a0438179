"""Configuration: audit.toml and [tool.audit], --set parsing, unknown keys."""

import pytest

from audit.config import RunSpec, apply_config, apply_set, find_config, parse_value
from audit.errors import AuditError


def test_parse_value():
    assert parse_value("0.5") == 0.5 and parse_value("3") == 3 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("logits") == "logits" and parse_value('"a b"') == "a b"


def test_set_routes_model_data_and_dotted_analysis_names():
    spec = RunSpec()
    apply_set(spec, ["model.output=probabilities", "data.sample=100", "bias.group_fairness.min_group_size=50"])
    assert spec.model_output == "probabilities" and spec.data_options.sample == 100
    assert spec.options == {"bias.group_fairness": {"min_group_size": 50}}
    assert spec.model_optimize is True
    apply_set(spec, ["model.optimize=false"])
    assert spec.model_optimize is False
    with pytest.raises(AuditError, match="unknown key data.'colour'"):
        apply_set(spec, ["data.colour=1"])
    with pytest.raises(AuditError, match="NAME.KEY=VALUE"):
        apply_set(spec, ["nonsense"])


def test_pyproject_tool_audit_and_nested_tables(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.audit]\nmodel = "m.onnx"\nfail_on = "medium"\n'
        '[tool.audit.data]\nlabel = "target"\nattributes = ["sex"]\n'
        '[tool.audit.analysis.bias.group_fairness]\nmin_group_size = 20\n'
        '[tool.audit.analysis."robustness.corruptions"]\nseverities = [1, 2]\n'
    )
    path, table = find_config(None, cwd=tmp_path)
    spec = RunSpec()
    apply_config(spec, table, path.parent)
    assert spec.model == str(tmp_path / "m.onnx") and spec.fail_on == "medium"
    assert spec.data_options.label == "target" and spec.data_options.attributes == ["sex"]
    assert spec.options == {"bias.group_fairness": {"min_group_size": 20}, "robustness.corruptions": {"severities": [1, 2]}}


def test_unknown_keys_list_the_valid_ones(tmp_path):
    spec = RunSpec()
    with pytest.raises(AuditError, match="unknown key data.'lable'.*label"):
        apply_config(spec, {"data": {"lable": "y"}}, tmp_path)
    with pytest.raises(AuditError, match="model.output must be logits or probabilities"):
        apply_config(spec, {"model": {"output": "scores"}}, tmp_path)
