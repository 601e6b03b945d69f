"""Prompt configs: parsing, validation and the errors users see."""

from __future__ import annotations

import json

import pytest

from harmony_tui.config.prompt_config import load_prompt_config
from harmony_tui.errors import ConfigError


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        load_prompt_config(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_full_config_round_trips_into_setup_and_params(tmp_path):
    path = write(tmp_path, "p.yaml", """
system_model_identity: You are Pat.
reasoning_effort: low
conversation_start_date: "2026-01-02"
knowledge_cutoff: 2025-06
developer_instructions: Be kind.
builtin_tools: [python]
example_dialogues:
  - - {role: user, content: "2+2?"}
    - {role: assistant, content: "4"}
temperature: 0.7
top_k: 40
max_tokens: 100
seed: 5
""")
    config, overrides, warnings = load_prompt_config(path)
    assert warnings == []
    setup = config.setup()
    assert setup.model_identity == "You are Pat."
    assert setup.conversation_start_date == "2026-01-02"
    assert setup.developer_instructions == "Be kind."
    assert config.tools.enabled() == ["python"]  # builtin_tools turns the tool on
    assert setup.example_dialogues[0][1].content == "4"
    assert setup.example_dialogues[0][1].channel == "final"
    assert overrides == {"reasoning_effort": "low", "temperature": 0.7, "top_k": 40,
                         "max_tokens": 100, "seed": 5}


def test_invalid_json_names_line_and_column(tmp_path):
    path = write(tmp_path, "p.json", '{\n  "temperature": 0.5,\n  oops\n}')
    assert error_of(path).startswith(f"{path}:3:3: invalid JSON")


def test_invalid_yaml_names_line_and_column(tmp_path):
    path = write(tmp_path, "p.yaml", "temperature: 0.5\ndeveloper_instructions: [unclosed\n")
    assert f"{path}:3:1: invalid YAML" in error_of(path)


def test_out_of_range_value_names_key_value_and_rule(tmp_path):
    path = write(tmp_path, "p.json", json.dumps({"top_p": 3}))
    message = error_of(path)
    assert message.startswith(f"{path}: top_p=3:") and "less than or equal to 1" in message


def test_wrong_type(tmp_path):
    path = write(tmp_path, "p.yaml", "max_tokens: lots\n")
    assert "max_tokens='lots'" in error_of(path)


def test_bad_reasoning_effort_and_date(tmp_path):
    assert "reasoning_effort='extreme'" in error_of(write(tmp_path, "a.yaml",
                                                          "reasoning_effort: extreme\n"))
    assert "conversation_start_date='tomorrow'" in error_of(
        write(tmp_path, "b.yaml", "conversation_start_date: tomorrow\n"))


def test_unknown_builtin_tool(tmp_path):
    assert "'calculator' is not a built-in tool" in error_of(
        write(tmp_path, "a.yaml", "builtin_tools: [calculator]\n"))


def test_unknown_keys_warn_with_suggestions(tmp_path):
    path = write(tmp_path, "p.yaml", "temprature: 0.3\nfoo: 1\n")
    _, overrides, warnings = load_prompt_config(path)
    assert overrides == {}
    assert warnings == [
        f"{path}: unknown setting 'temprature' ignored (did you mean 'temperature'?)",
        f"{path}: unknown setting 'foo' ignored",
    ]


def test_missing_file_and_non_mapping(tmp_path):
    assert error_of(tmp_path / "missing.yaml") == f"{tmp_path / 'missing.yaml'}: file not found"
    assert "expected a mapping" in error_of(write(tmp_path, "list.yaml", "- 1\n- 2\n"))


def test_xtc_special_tokens_and_mlock_are_config_fields(tmp_path):
    path = write(tmp_path, "p.yaml", "xtc_special_tokens: [10, 200002]\nmlock: true\n")
    config, overrides, warnings = load_prompt_config(path)
    assert warnings == [] and config.mlock is True
    from harmony_tui.engine.params import GenerationParams

    assert GenerationParams().updated(**overrides).xtc_special_tokens == (10, 200002)
    bad = write(tmp_path, "bad.yaml", "xtc_special_tokens: [ten]\n")
    assert "xtc_special_tokens" in error_of(bad)
