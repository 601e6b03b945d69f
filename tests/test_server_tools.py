"""Built-in tools the server runs itself (``--server-tools``): real uvicorn on a loopback port,
the official ``openai`` SDK, the trained demo model and the real python tool (a child process).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import openai
import pytest
from conftest import wait_until

from harmony_tui.demo.corpus import SCRIPTS, WEATHER_TOOL
from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.events import Stats
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ConfigError
from harmony_tui.server.cli_args import add_serve_arguments, server_tool_names, server_toolset
from harmony_tui.server.runner import EmbeddedServer
from harmony_tui.server.tool_loop import merge_stats
from harmony_tui.tools.config import ToolsConfig

PYTHON = next(s for s in SCRIPTS if s.prompt == "What is 17 * 23? Use python.")
WEATHER = next(s for s in SCRIPTS if s.prompt == "What's the weather in Paris?")
REASONING = f"{PYTHON.analysis}\n\n{PYTHON.tool.analysis_after}"  # both sub-turns
TOOLS = [{"type": "function", "function": {
    "name": WEATHER_TOOL.name, "description": WEATHER_TOOL.description,
    "parameters": WEATHER_TOOL.parameters}}]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def records():
    return []


@pytest.fixture(scope="module")
def tools_url(demo_engine, records):
    tools = server_toolset(("python",), ToolsConfig(python={"timeout_s": 20}))
    with EmbeddedServer(demo_engine, port=0, on_request=records.append, tools=tools) as srv:
        yield srv.url + "/v1"


@pytest.fixture(scope="module")
def client(tools_url):
    return openai.OpenAI(base_url=tools_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def plain_client(demo_engine):
    with EmbeddedServer(demo_engine, port=0) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0,
                            timeout=120)


def test_python_runs_on_the_server_and_the_client_gets_the_answer(client, demo_engine,
                                                                  records):
    done = len(records)
    reply = client.chat.completions.create(model="demo", messages=user(PYTHON.prompt),
                                           temperature=0)
    choice = reply.choices[0]
    assert choice.message.content == PYTHON.final
    assert choice.message.reasoning == REASONING
    assert choice.message.reasoning_content == REASONING
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    # usage sums both sub-turns; the second prompt holds the real tool's output "391"
    setup = server_toolset(("python",)).declare(PromptSetup())
    params = GenerationParams(temperature=0)
    first = [Message("user", PYTHON.prompt)]
    second = [*first, Message("assistant", PYTHON.analysis, channel="analysis"),
              PYTHON.tool.call_message(),
              Message("tool", "391", channel="analysis", name="python")]
    expected = sum(len(demo_engine.render(TurnRequest(m, setup, params)))
                   for m in (first, second))
    assert reply.usage.prompt_tokens == expected
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.prompt_tokens_details.cached_tokens > 0  # sub-turn 2 reuses sub-turn 1
    def ends() -> list:
        return [r for r in records[done:] if r.endpoint == "/v1/chat/completions"
                and r.state != "running"]

    # the end record is made after the last byte is sent: the client may see the reply first
    wait_until(lambda: bool(ends()), timeout=10, message="the request's end record")
    end = ends()[-1]
    assert (end.state, end.finish_reason, end.prompt_tokens) == ("done", "stop", expected)


def test_streamed_reasoning_continues_across_sub_turns(client):
    chunks = list(client.chat.completions.create(
        model="demo", messages=user(PYTHON.prompt), temperature=0, stream=True,
        stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning", None) or "" for d in deltas) == REASONING
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == REASONING
    assert "".join(d.content or "" for d in deltas) == PYTHON.final
    assert not any(d.tool_calls for d in deltas)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and not any(finals[:-1])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens > 20
    assert len({c.id for c in chunks}) == 1


def test_without_server_tools_the_python_call_is_refused_not_returned(plain_client):
    # issue 10 item 7: a call to a tool the client did not declare never reaches it; the model
    # is told the tool is not available and answers (tests/test_server_tool_choice.py)
    reply = plain_client.chat.completions.create(model="demo", messages=user(PYTHON.prompt),
                                                 temperature=0, max_tokens=60)
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    assert choice.message.reasoning.startswith(PYTHON.analysis)


def test_request_function_tools_are_still_returned(client):
    for stream in (False, True):
        if stream:
            chunks = list(client.chat.completions.create(
                model="demo", messages=user(WEATHER.prompt), tools=TOOLS, temperature=0,
                stream=True))
            calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
            name = next(t.function.name for t in calls if t.function.name)
            arguments = "".join(t.function.arguments or "" for t in calls)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            choice = client.chat.completions.create(
                model="demo", messages=user(WEATHER.prompt), tools=TOOLS,
                temperature=0).choices[0]
            (call,) = choice.message.tool_calls
            name, arguments, finish = call.function.name, call.function.arguments, \
                choice.finish_reason
        assert (name, json.loads(arguments), finish) == (
            "get_weather", {"location": "Paris"}, "tool_calls")


def test_a_built_in_tool_the_server_was_not_given_is_refused_not_returned(client):
    search = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "browser.search")
    choice = client.chat.completions.create(model="demo", messages=user(search.prompt),
                                            temperature=0, max_tokens=60).choices[0]
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    assert choice.message.reasoning.startswith(search.analysis)


def test_responses_api_runs_server_tools_too(client):
    response = client.responses.create(model="demo", input=PYTHON.prompt, temperature=0)
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "reasoning", "message"]
    assert [item.content[0].text for item in response.output[:2]] == [
        PYTHON.analysis, PYTHON.tool.analysis_after]
    assert response.output_text == PYTHON.final
    assert response.status == "completed" and response.usage.output_tokens > 20


def test_server_toolset_takes_settings_from_the_prompt_config():
    configured = ToolsConfig(python={"timeout_s": 7}, browser=True, apply_patch=True,
                             max_calls_per_turn=3)
    tools = server_toolset(("python",), configured)
    assert tools.python.settings.timeout_s == 7 and tools.max_calls == 3
    assert tools.browser is None and tools.names() == ["python"]  # only what the server names
    both = server_toolset(("browser", "python"), None)
    assert sorted(both.names()) == ["browser", "python"]
    assert both.python.settings.timeout_s == ToolsConfig(python=True).python.timeout_s
    assert server_toolset((), configured) is None


def test_server_tool_names_precedence():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    config = SimpleNamespace(tools=["browser"])  # the user config's server section
    assert server_tool_names(parser.parse_args([]), None) == ()
    assert server_tool_names(parser.parse_args([]), config) == ("browser",)
    assert server_tool_names(parser.parse_args([]), SimpleNamespace(tools="python, browser")) \
        == ("python", "browser")
    assert server_tool_names(parser.parse_args(["--server-tools", "python"]), config) == \
        ("python",)
    assert server_tool_names(parser.parse_args(["--server-tools", "none"]), config) == ()
    with pytest.raises(ConfigError, match=r"server.tools=\['pyhton'\]: unknown tool 'pyhton'"):
        server_tool_names(parser.parse_args([]), SimpleNamespace(tools=["pyhton"]))


def test_merge_stats_sums_sub_turns():
    one = Stats(100, 0, 10, 0.5, 200.0, 20.0, 1.0)
    two = Stats(130, 100, 30, 0.1, 300.0, 60.0, 2.0)
    merged = merge_stats([one, two])
    assert (merged.prompt_tokens, merged.cached_tokens, merged.generation_tokens) == (230, 100, 40)
    assert merged.ttft_s == 0.5 and merged.peak_memory_gb == 2.0
    assert merged.generation_tps == pytest.approx(40 / (0.5 + 0.5))
    assert merged.prompt_tps == pytest.approx(130 / (0.5 + 0.1))
    assert merge_stats([one]) is one and merge_stats([]) is None


# -- as a user runs it ---------------------------------------------------------------------------

SERVE = [sys.executable, "-m", "harmony_tui", "--serve"]


def test_serve_with_server_tools_in_a_subprocess(demo_engine):
    proc = subprocess.Popen([*SERVE, "--model", "demo", "--port", "0", "--temperature", "0",
                             "--server-tools", "python"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.rstrip("\n") for line in proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("serving demo at" in x for x in lines) or proc.poll() is not None,
                   timeout=120, message="the server to listen")
        text = "\n".join(lines)
        match = re.search(r"serving demo at (http://127\.0\.0\.1:\d+/v1)", text)
        assert match, text
        assert "runs these built-in tools for API requests, without asking: python" in text
        client = openai.OpenAI(base_url=match.group(1), api_key="unused", max_retries=0,
                               timeout=60)
        reply = client.chat.completions.create(model="demo", messages=user(PYTHON.prompt))
        assert reply.choices[0].message.content == PYTHON.final
        assert reply.choices[0].message.reasoning == REASONING
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        reader.join(timeout=10)
    assert code == 0, "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)


def test_serve_rejects_an_unknown_server_tool():
    result = subprocess.run([*SERVE, "--server-tools", "python,nope"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, result.stderr
    assert "--server-tools" in lines[0] and "unknown tool 'nope'" in lines[0]
    assert "python, browser" in lines[0]

