"""Harmony decoding as each surface shows it (issue 10 items 9, 10, 13), on the trained demo model.

The demo model answers "Hello!" greedily with a fixed analysis and final message, so its output
can be cut at a known place: ``max_tokens=25`` stops inside the final message's header
(``<|start|>assistant<|channel|>final``), which used to be shown as the answer
``assistantfinal``. Banning ``<|end|>`` and favouring ``<|return|>`` makes it close its analysis
with ``<|return|>``: a turn with reasoning and no answer at all (the bias is small enough that
no token inside the analysis changes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.formats.harmony import END, RETURN
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.server.runner import EmbeddedServer

HELLO = SCRIPTS[0]
CUT_IN_HEADER = 25  # tokens: the analysis, <|end|>, then <|start|>assistant<|channel|>final
ANALYSIS_ONLY = {END: -100.0, RETURN: 6.0}  # the analysis ends with <|return|>: no final


# -- the engine -------------------------------------------------------------------------------


def test_engine_turn_cut_inside_a_header_has_no_answer_and_keeps_no_partial(demo_engine):
    reply = demo_engine.submit(TurnRequest(
        [Message("user", HELLO.prompt)], PromptSetup(),
        GenerationParams(temperature=0, max_tokens=CUT_IN_HEADER))).result()
    assert reply.reason == "length"
    assert reply.final == "" and reply.analysis == HELLO.analysis
    assert [m.channel for m in reply.messages] == ["analysis"]  # no partial "final" kept
    assert reply.no_answer == "the token limit was reached before the model wrote an answer"


# -- harmony-tui generate ---------------------------------------------------------------------


def generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harmony_tui", "generate", "--prompt",
                           HELLO.prompt, "--temperature", "0", *args],
                          capture_output=True, text=True, timeout=240)


def test_generate_cut_inside_a_header_prints_nothing_and_says_why():
    result = generate("--max-tokens", str(CUT_IN_HEADER))
    assert result.stdout == ""  # it printed "assistantfinal" and exited 0
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if "no answer" in line]
    assert lines == ["harmony-tui: no answer: the token limit was reached before the model "
                     "wrote an answer; --show-thinking shows its reasoning"]
    assert "Traceback" not in result.stderr


def test_generate_json_reports_reasoning_without_an_answer(tmp_path: Path):
    config = tmp_path / "analysis-only.json"
    config.write_text(json.dumps({"logit_bias": {str(k): v for k, v in ANALYSIS_ONLY.items()}}))
    result = generate("--json", "--prompt-config", str(config))
    assert result.returncode == 3, result.stderr
    data = json.loads(result.stdout)
    assert data["final"] == "" and data["analysis"] == HELLO.analysis
    assert data["finish_reason"] == "return"
    assert data["no_answer"] == "the model stopped after its reasoning without writing an answer"
    assert "harmony-tui: no answer: the model stopped after its reasoning" in result.stderr


# -- the API server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(demo_engine):
    server = EmbeddedServer(demo_engine, port=0)
    server.start()
    yield openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                        timeout=120)
    server.stop()


def hello() -> list[dict]:
    return [{"role": "user", "content": HELLO.prompt}]


def test_server_cut_inside_a_header_returns_no_header_words(client):
    reply = client.chat.completions.create(model="demo", messages=hello(), temperature=0,
                                           max_tokens=CUT_IN_HEADER)
    choice = reply.choices[0]
    assert choice.message.content == ""  # was "assistantfinal"
    assert choice.finish_reason == "length"
    assert choice.message.reasoning == HELLO.analysis
    assert choice.message.model_extra["no_answer"] == (
        "the token limit was reached before the model wrote an answer")


def test_server_stream_with_reasoning_only_says_there_is_no_answer(client):
    stream = client.chat.completions.create(
        model="demo", messages=hello(), temperature=0, stream=True,
        logit_bias={str(k): int(v) for k, v in ANALYSIS_ONLY.items()})
    content, reasoning, notes, finish = [], [], [], []
    for chunk in stream:
        delta = chunk.choices[0].delta
        content.append(delta.content or "")
        reasoning.append((delta.model_extra or {}).get("reasoning") or "")
        notes.append((delta.model_extra or {}).get("no_answer"))
        finish.append(chunk.choices[0].finish_reason)
    assert "".join(content) == ""
    assert "".join(reasoning) == HELLO.analysis  # the reasoning is kept
    assert [n for n in notes if n] == [
        "the model stopped after its reasoning without writing an answer"]
    assert [f for f in finish if f] == ["stop"]  # a valid OpenAI finish_reason


def test_server_answer_has_no_no_answer_field(client):
    reply = client.chat.completions.create(model="demo", messages=hello(), temperature=0)
    assert reply.choices[0].message.content == HELLO.final
    assert "no_answer" not in (reply.choices[0].message.model_extra or {})


def test_openapi_documents_the_no_answer_field(client):
    import httpx

    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    schema = httpx.get(root + "/openapi.json", timeout=30).json()
    field = schema["components"]["schemas"]["ChatMessageOut"]["properties"]["no_answer"]
    assert "no content and no tool calls" in field["description"]


def test_server_renders_a_system_message_after_the_first_user_message(client):
    """Item 10: HTTP 500 "cannot render a 'system' message inside the history"."""
    messages = [*hello(), {"role": "assistant", "content": HELLO.final},
                {"role": "system", "content": "Answer in French."},
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": HELLO.prompt}]
    reply = client.chat.completions.create(model="demo", messages=messages, temperature=0,
                                           max_tokens=8)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0


# -- the app ----------------------------------------------------------------------------------


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(("params", "note"), [
    (GenerationParams(temperature=0, max_tokens=CUT_IN_HEADER),
     "⚠ no answer: the token limit was reached before the model wrote an answer"),
    (GenerationParams(temperature=0, logit_bias=ANALYSIS_ONLY),
     "⚠ no answer: the model stopped after its reasoning without writing an answer"),
])
async def test_app_says_when_there_is_no_answer(params, note):
    from harmony_tui.app import HarmonyApp

    app = HarmonyApp("demo", remember_theme=False, params=params)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.model_ready, what="the model to load")
        app.prompt.set_text(HELLO.prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turns_started == 1 and app.turn is None,
                       what="the turn to end")
        widget = app.conversation.last_assistant()
        assert widget.answer == ""  # was "assistantfinal" for the cut
        assert widget.thinking == HELLO.analysis
        assert widget.notes == [note]
        assert [m.channel for m in app.session.messages if m.role == "assistant"] == [
            "analysis"]


def test_responses_api_says_when_there_is_no_answer(client):
    cut = client.responses.create(model="demo", input=HELLO.prompt, temperature=0,
                                  max_output_tokens=CUT_IN_HEADER)
    assert cut.model_extra["no_answer"] == (
        "the token limit was reached before the model wrote an answer")
    assert [item.type for item in cut.output] == ["reasoning"]  # the reasoning is kept
    answered = client.responses.create(model="demo", input=HELLO.prompt, temperature=0)
    assert answered.output_text == HELLO.final
    assert (answered.model_extra or {}).get("no_answer") is None


def test_responses_input_renders_calls_as_the_chat_api_does():
    from harmony_tui.server.mapping import call_message
    from harmony_tui.server.responses_api import input_messages
    from harmony_tui.server.schemas import ResponsesRequest

    body = ResponsesRequest.model_validate({"model": "demo", "input": [
        {"role": "user", "content": "Compute."},
        {"type": "function_call", "name": "python", "call_id": "c1", "arguments": "print(1)"},
        {"type": "function_call_output", "call_id": "c1", "output": "1"},
    ]})
    call, result = input_messages(body)[1:]
    assert call == call_message("c1", "python", "print(1)")  # the chat API's rendering
    assert (call.recipient, call.channel, call.content_type) == ("python", "analysis", "code")
    assert (result.name, result.channel) == ("python", "analysis")
