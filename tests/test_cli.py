"""``harmony-tui`` run as a user runs it: real subprocesses, real files, no network."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_tui.engine.params import cli_fields

CMD = [sys.executable, "-m", "harmony_tui"]


def run(*args: str, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_help_lists_commands_and_every_sampling_flag():
    result = run("--help")
    assert result.returncode == 0
    assert "generate" in result.stdout and "demo-model" in result.stdout
    for name in cli_fields():
        assert "--" + name.replace("_", "-") in result.stdout
    gen = run("generate", "--help")
    for flag in ("--prompt", "--show-thinking", "--json", "--model", "--prompt-config",
                 "--temperature", "--reasoning-effort"):
        assert flag in gen.stdout


def test_console_script_is_installed():
    exe = shutil.which("harmony-tui") or str(Path(sys.executable).parent / "harmony-tui")
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("harmony-tui ")


@pytest.mark.parametrize("args,needles", [
    (["generate", "--prompt", "hi", "--temperature", "-1"],
     ["--temperature=-1.0", "greater than or equal to 0"]),
    (["generate", "--prompt", "hi", "--top-p", "1.5"], ["--top-p=1.5"]),
    (["generate", "--prompt", "hi", "--max-tokens", "0"], ["--max-tokens=0"]),
    (["generate", "--prompt", "hi", "--temperature", "warm"], ["--temperature", "'warm'"]),
    (["generate", "--prompt", "hi", "--reasoning-effort", "extreme"], ["invalid choice"]),
    (["generate"], ["--prompt"]),
    (["generate", "--prompt", "   "], ["the prompt is empty"]),
    (["generate", "--prompt", "hi", "--model", "/no/such/model"],
     ["model folder /no/such/model does not exist"]),
    (["generate", "--prompt", "hi", "--model", "nobody/uncached-model"],
     ["nobody/uncached-model", "HF_HUB_OFFLINE=1"]),
    (["demo-model"], ["ACTION"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_bad_input_is_one_line_with_status_2(args, needles):
    assert_one_line_error(run(*args), *needles)


def test_empty_stdin_prompt_is_refused():
    assert_one_line_error(run("generate", "--prompt", "-", stdin=""), "standard input was empty")


def test_model_folder_without_config_is_refused(tmp_path):
    assert_one_line_error(run("generate", "--prompt", "hi", "--model", str(tmp_path)),
                          str(tmp_path), "config.json")


def test_bad_prompt_config_points_at_line_and_column(tmp_path):
    config = tmp_path / "prompt.yaml"
    config.write_text("developer_instructions: fine\ntemperature: [1, 2\n")
    assert_one_line_error(run("generate", "--prompt", "hi", "--prompt-config", str(config)),
                          f"{config}:3:1", "invalid YAML")


def test_prompt_config_value_out_of_range(tmp_path):
    config = tmp_path / "prompt.json"
    config.write_text(json.dumps({"temperature": 9}))
    assert_one_line_error(run("generate", "--prompt", "hi", "--prompt-config", str(config)),
                          str(config), "temperature=9")


def test_json_output_and_stdin_prompt_on_a_tiny_model(tiny_gpt_oss):
    result = run("generate", "--prompt", "-", "--model", str(tiny_gpt_oss), "--json",
                 "--max-tokens", "8", "--seed", "1", stdin="Hello from stdin")
    # 8 random tokens are no answer: exit 3 and a one-line note, the JSON still complete
    assert result.returncode == 3, result.stderr
    assert "harmony-tui: no answer" in result.stderr
    data = json.loads(result.stdout)
    assert data["no_answer"]
    assert {"final", "analysis", "tool_calls", "stats"} <= set(data)
    for key in ("prompt_tokens", "generation_tokens", "generation_tps", "ttft_s"):
        assert key in data["stats"]
    assert data["stats"]["generation_tokens"] == 8
    assert data["stats"]["prompt_tokens"] > 10


def test_flags_before_the_command_are_kept(tiny_llama):
    result = run("--model", str(tiny_llama), "--max-tokens", "3", "generate", "--prompt", "x",
                 "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["generation_tokens"] == 3


def test_prompt_config_reaches_the_prompt(tmp_path, tiny_llama):
    config = tmp_path / "prompt.yaml"
    config.write_text("developer_instructions: Always be brief.\nmax_tokens: 2\n"
                      "temperture: 0.5\n")
    result = run("generate", "--prompt", "x", "--model", str(tiny_llama), "--json",
                 "--prompt-config", str(config))
    # a random model's two tokens may be all blank: that is "no answer" (status 3), still JSON
    assert result.returncode in (0, 3), result.stderr
    data = json.loads(result.stdout)
    assert data["stats"]["generation_tokens"] == 2
    assert "unknown setting 'temperture' ignored (did you mean 'temperature'?)" in result.stderr
    # the instructions are in the prompt: the rendered prompt is longer than without them
    plain = json.loads(run("generate", "--prompt", "x", "--model", str(tiny_llama), "--json",
                           "--max-tokens", "2").stdout)
    assert data["stats"]["prompt_tokens"] > plain["stats"]["prompt_tokens"] + 3


def test_demo_model_prompts_are_json_lines():
    result = run("demo-model", "prompts")
    assert result.returncode == 0
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(entries) >= 7
    tools = {e["tool"] for e in entries}
    assert {None, "python", "browser", "get_weather"} <= tools
    assert all(isinstance(e["prompt"], str) and e["prompt"] for e in entries)


def test_generate_streams_the_demo_answer_before_exiting():
    """The first bytes of the answer arrive while the process is still generating."""
    proc = subprocess.Popen([*CMD, "generate", "--prompt", "Why is the sky blue?",
                             "--temperature", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.read(1)
        still_running = proc.poll() is None
        rest = proc.stdout.read()
        proc.wait(timeout=240)
    finally:
        proc.kill()
    assert first and still_running
    assert len(first + rest) > 100
    assert proc.returncode == 0


def test_show_thinking_goes_to_stderr_and_answer_to_stdout():
    result = run("generate", "--prompt", "Hello!", "--show-thinking", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert "harmony-tui demo model" in result.stdout
    assert "[analysis] The user greets me." in result.stderr
    assert "greets me" not in result.stdout


def test_demo_json_reports_a_tool_call():
    result = run("generate", "--prompt", "What is 17 * 23? Use python.", "--json",
                 "--temperature", "0")
    data = json.loads(result.stdout)
    # no --python: the call is listed, not run
    assert data["tool_calls"] == [{"recipient": "python", "arguments": "print(17 * 23)",
                                   "result": None}]
    assert data["finish_reason"] == "call"


def test_demo_model_build_is_deterministic(tmp_path):
    for name in ("a", "b"):
        result = run("demo-model", "build", "--steps", "2", "--examples", "24", "--output",
                     str(tmp_path / name), timeout=600)
        assert result.returncode == 0, result.stderr
    a = (tmp_path / "a" / "demo-compact.safetensors").read_bytes()
    b = (tmp_path / "b" / "demo-compact.safetensors").read_bytes()
    assert a == b
    assert (tmp_path / "a" / "config.json").is_file()


def test_demo_model_check_reports_the_share_of_right_answers():
    result = run("demo-model", "check", "--chats", "1", "--turns", "6", "--seed", "2",
                 timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines[:7]] == ["ok"] * 7
    assert re.search(r"^\d+/\d+ documented prompts answered as documented \(100\.0%\) in 1 "
                     r"random 6-turn chats", lines[-1]), lines[-1]


def test_demo_model_check_refuses_bad_counts():
    assert_one_line_error(run("demo-model", "check", "--turns", "0"), "--turns")
