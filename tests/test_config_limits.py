"""Config files written to exhaust the machine: alias bombs, deep nesting, huge files and values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_tui.config.files import MAX_CONFIG_BYTES, MAX_NODES, read_mapping
from harmony_tui.config.prompt_config import load_prompt_config
from harmony_tui.config.user_config import load_user_config
from harmony_tui.errors import ConfigError, short_repr

# Nine levels of ten aliases each: 10**9 strings once expanded, a few hundred bytes on disk.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [{', '.join(['*' + chr(97 + level)] * 10)}]\n"
    for level in range(8))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_alias_bomb_in_placeholders_is_refused_before_it_expands(tmp_path: Path) -> None:
    text = BILLION_LAUGHS + "placeholders:\n  laughs: *i\n"
    path = write(tmp_path, "bomb.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_prompt_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: the YAML aliases expand to more than {MAX_NODES}")
    assert len(message) < 300


def test_an_alias_bomb_in_a_function_schema_is_refused(tmp_path: Path) -> None:
    text = BILLION_LAUGHS.replace("\n", "\n  ").replace("a: &a", "  a: &a", 1)
    path = write(tmp_path, "tools.yaml", "x-anchors:\n" + text.rstrip() + "\n"
                 "tools:\n  functions:\n    - name: f\n      command: [true]\n"
                 "      parameters: {type: object, properties: {p: {enum: *i}}}\n")
    with pytest.raises(ConfigError, match="aliases expand"):
        load_prompt_config(path)


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", "x: &greet Hello\nplaceholders: {a: *greet, b: *greet}\n")
    assert read_mapping(path)["placeholders"] == {"a": "Hello", "b": "Hello"}


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "placeholders: &x {self: *x}\n")
    with pytest.raises(ConfigError, match="alias refers to a value that contains it"):
        read_mapping(path)


@pytest.mark.parametrize(("name", "text"), [
    ("deep.json", '{"placeholders": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("deep.yaml", "placeholders: " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deep2.json", '{"a": ' + "[" * 70 + "]" * 70 + "}"),
], ids=["json-100000", "yaml-100000", "json-70"])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path: Path, name: str,
                                                        text: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        read_mapping(path)
    assert str(caught.value) == f"{path}: values are nested more than 64 levels deep"


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "huge.yaml", "system_prompt: " + "x" * (MAX_CONFIG_BYTES + 1) + "\n")
    with pytest.raises(ConfigError, match=r"may be at most 1048576 bytes"):
        read_mapping(path)


def test_errors_never_echo_a_huge_value(tmp_path: Path) -> None:
    path = write(tmp_path, "config.yaml", "server:\n  port: [" + ", ".join(["1"] * 5000) + "]\n")
    with pytest.raises(ConfigError) as caught:
        load_user_config(path)
    assert "server.port=" in str(caught.value)
    assert len(str(caught.value)) < 300
    path = write(tmp_path, "prompt.json", json.dumps({"temperature": "9" * 100_000}))
    with pytest.raises(ConfigError) as caught:
        load_prompt_config(path)
    assert "temperature=" in str(caught.value) and len(str(caught.value)) < 300


def test_short_repr_bounds_shared_structures() -> None:
    shared: list[object] = ["x"] * 10
    for _ in range(30):  # 10**31 leaves if printed in full
        shared = [shared] * 10
    assert len(short_repr(shared)) <= 81
    assert short_repr("y" * 10_000).startswith("'yyy") and len(short_repr("y" * 10_000)) <= 81
    assert short_repr(0.5) == "0.5"


def test_the_cli_answers_a_bomb_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.yaml", BILLION_LAUGHS + "placeholders:\n  laughs: *i\n")
    done = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "--model", "demo", "--prompt-config",
         str(path), "-p", "Hello!"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "aliases expand" in lines[0] and len(lines[0]) < 300
    assert "Traceback" not in done.stderr
