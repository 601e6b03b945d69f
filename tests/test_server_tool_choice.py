"""Only the client's own function tools come back as tool calls (issue 10, item 7).

A call to a tool the request did not declare (python, browser.* or an unknown function), or any
call with ``tool_choice: "none"``, is never returned: the model is told the tool is not
available and answers. Real uvicorn on a loopback port, the ``openai`` SDK, the demo model
(trained to call python, browser.search and get_weather for its documented prompts).
"""

from __future__ import annotations

import json

import openai
import pytest

from harmony_tui.demo.corpus import SCRIPTS, WEATHER_TOOL
from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.events import ToolCall
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.server.runner import EmbeddedServer
from harmony_tui.server.tool_loop import MAX_REFUSED, declare, refusal

PYTHON = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "python")
SEARCH = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "browser.search")
WEATHER = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "functions.get_weather")
TOOLS = [{"type": "function", "function": {
    "name": WEATHER_TOOL.name, "description": WEATHER_TOOL.description,
    "parameters": WEATHER_TOOL.parameters}}]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def client(demo_engine):
    with EmbeddedServer(demo_engine, port=0) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0,
                            timeout=120)


def chat(client, prompt: str, stream: bool, **extra):
    """(content, reasoning, tool call names, finish_reason) of one chat completion."""
    if not stream:
        choice = client.chat.completions.create(model="demo", messages=user(prompt),
                                                temperature=0, max_tokens=60,
                                                **extra).choices[0]
        calls = [c.function.name for c in choice.message.tool_calls or ()]
        return choice.message.content, choice.message.reasoning, calls, choice.finish_reason
    chunks = list(client.chat.completions.create(model="demo", messages=user(prompt),
                                                 temperature=0, max_tokens=60, stream=True,
                                                 **extra))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [t.function.name for d in deltas for t in d.tool_calls or () if t.function.name]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    return ("".join(d.content or "" for d in deltas),
            "".join(getattr(d, "reasoning", None) or "" for d in deltas), calls, finish)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("script", [PYTHON, SEARCH], ids=["python", "browser.search"])
def test_undeclared_built_in_tools_are_never_returned(client, script, stream):
    content, reasoning, calls, finish = chat(client, script.prompt, stream)
    assert calls == [] and finish in ("stop", "length")
    assert reasoning.startswith(script.analysis)  # the thinking before the refused call
    assert content  # the model answered after being told the tool is not available


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_never_returns_tool_calls(client, stream):
    content, _, calls, finish = chat(client, WEATHER.prompt, stream, tools=TOOLS,
                                             tool_choice="none")
    assert calls == [] and finish in ("stop", "length") and content
    # the same request with tool_choice auto still calls the declared function
    _, _, calls, finish = chat(client, WEATHER.prompt, stream, tools=TOOLS)
    assert (calls, finish) == (["get_weather"], "tool_calls")


def test_returned_calls_follow_openai_rules(client):
    """Whatever the prompt, a returned call names a declared function and carries JSON."""
    for script in (PYTHON, SEARCH, WEATHER):
        choice = client.chat.completions.create(model="demo", messages=user(script.prompt),
                                                temperature=0, tools=TOOLS,
                                                max_tokens=60).choices[0]
        for call in choice.message.tool_calls or ():
            assert call.function.name == WEATHER_TOOL.name
            json.loads(call.function.arguments)


def test_responses_api_refuses_undeclared_tools_too(client):
    response = client.responses.create(model="demo", input=PYTHON.prompt, temperature=0,
                                       max_output_tokens=60)
    assert [item.type for item in response.output if item.type == "function_call"] == []
    assert response.output_text and response.status in ("completed", "incomplete")
    response = client.responses.create(model="demo", input=WEATHER.prompt, temperature=0,
                                       max_output_tokens=60,
                                       tools=[{"type": "function", **TOOLS[0]["function"]}],
                                       tool_choice="none")
    assert [item.type for item in response.output if item.type == "function_call"] == []
    assert response.output_text


def test_the_refusal_is_what_the_model_reads(client, demo_engine):
    """Usage counts both sub-turns: the second prompt holds the call and the refusal."""
    reply = client.chat.completions.create(model="demo", messages=user(PYTHON.prompt),
                                           temperature=0, max_tokens=60)
    params = GenerationParams(temperature=0, max_tokens=60)
    first = [Message("user", PYTHON.prompt)]
    call = PYTHON.tool.call_message()
    said = refusal(ToolCall("call_x", call.recipient, call.channel, call.content_type,
                            call.content))
    assert said.name == "python" and "not available" in said.content
    second = [*first, Message("assistant", PYTHON.analysis, channel="analysis"), call, said]
    expected = sum(len(demo_engine.render(TurnRequest(m, PromptSetup(), params)))
                   for m in (first, second))
    assert reply.usage.prompt_tokens == expected
    assert MAX_REFUSED >= 1


def test_declare_hides_tools_the_server_does_not_run():
    setup = PromptSetup(builtin_tools=("python", "browser"), function_tools=(WEATHER_TOOL,))
    assert declare(None, setup, "auto").builtin_tools == ()
    assert declare(None, setup, "auto").function_tools == (WEATHER_TOOL,)
    off = declare(None, setup, "none")
    assert (off.builtin_tools, off.function_tools) == ((), ())
