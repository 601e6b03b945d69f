"""The one conversation loop (``harmony_tui/conversation/``), without Textual or HTTP.

The demo model (real engine) drives the paths it was trained for: a python call approved, denied,
turned off, stopped while it runs. Paths no trained model takes on demand (a model that keeps
calling tools past the limit, calls unknown tools again and again, or never hands a stopped turn
back) use ``ScriptedEngine``: a stand-in for the engine that replays fixed events through the
engine's own ``TurnStream``; the loop, the tools and the transcript are real.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from harmony_tui.conversation import (
    ApiCalls,
    Conversation,
    LocalCalls,
    MemoryTranscript,
    ToolFinished,
    ToolLimitReached,
    ToolOff,
    ToolRunning,
    ToolStopped,
    ToolWaiting,
    TurnFinished,
)
from harmony_tui.conversation.routing import MAX_REFUSED
from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.engine import TurnRequest, TurnStream
from harmony_tui.engine.events import MessageDone, Stats, TextDelta, ToolCall, TurnEnd
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.store import read_chat
from harmony_tui.tools.config import ToolsConfig
from harmony_tui.tools.toolset import ToolSet

PYTHON = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "python")
GREEDY = GenerationParams(temperature=0)


async def run(conversation: Conversation, request: TurnRequest, **kwargs) -> list:
    """Every event of one turn, flattened."""
    events = []
    async for batch in conversation.run_turn(request, **kwargs):
        events.extend(batch)
    return events


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, TextDelta)]


def python_chat(tmp_path, demo_engine, approver=None, tools=True):
    session = ChatSession(path=tmp_path / "chat.json")
    session.add_user(PYTHON.prompt)
    toolset = ToolSet(ToolsConfig(python={"timeout_s": 20}) if tools else ToolsConfig())
    conversation = Conversation(demo_engine.submit, session, toolset, approver=approver,
                                policy=LocalCalls(toolset))
    request = TurnRequest(session.messages, toolset.declare(PromptSetup()), GREEDY)
    return conversation, request, toolset


# -- the demo model through the real engine ---------------------------------------------------


async def test_an_approved_call_runs_and_the_turn_continues_to_the_answer(tmp_path, demo_engine):
    asked = []

    async def approve(call, request):
        asked.append(call.recipient)
        return "once"

    conversation, request, toolset = python_chat(tmp_path, demo_engine, approve)
    try:
        events = await run(conversation, request, model="demo")
    finally:
        await toolset.aclose()
    assert asked == ["python"]
    order = [k for k in kinds(events) if k.startswith("Tool")]
    assert order == ["ToolCall", "ToolWaiting", "ToolRunning", "ToolFinished"]
    every = kinds(events)
    assert every.index("SubTurnStarted") > every.index("ToolFinished")
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.reason == "return"
    assert finished.answer == PYTHON.final and finished.calls == 1 and finished.subturns == 2
    result = next(e for e in events if isinstance(e, ToolFinished))
    assert result.status == "done" and result.text.strip() == "391"
    # summed figures of both sub-turns
    parts = [e for e in events if isinstance(e, Stats)]
    assert len(parts) == 2
    assert finished.stats.generation_tokens == sum(p.generation_tokens for p in parts)
    # recorded as it happened: the call, the tool's answer (linked), the final answer
    records = read_chat(tmp_path / "chat.json").path()
    shape = [(r.role, r.recipient) for r in records
             if r.role != "assistant" or r.channel != "analysis" or r.recipient]
    assert shape == [("user", None), ("assistant", "python"), ("tool", None),
                     ("assistant", None)]
    tool = next(r for r in records if r.role == "tool")
    call = next(r for r in records if r.recipient == "python")
    assert tool.tool_call_id == call.tool_call_id and tool.content.strip() == "391"
    assert records[-1].channel == "final" and records[-1].finish_reason == "return"
    assert not conversation.active


async def test_a_denied_call_is_said_denied_and_the_model_reads_it(tmp_path, demo_engine):
    async def deny(call, request):
        return "deny"

    conversation, request, toolset = python_chat(tmp_path, demo_engine, deny)
    try:
        events = await run(conversation, request)
    finally:
        await toolset.aclose()
    result = next(e for e in events if isinstance(e, ToolFinished))
    assert result.status == "denied" and "denied" in result.text
    assert not any(isinstance(e, ToolRunning) for e in events)  # never ran
    tool = next(r for r in read_chat(tmp_path / "chat.json").path() if r.role == "tool")
    assert tool.is_error and "denied" in tool.content
    assert isinstance(events[-1], TurnFinished)


async def test_a_call_to_a_tool_that_is_off_ends_the_turn_with_the_way_to_turn_it_on(
        tmp_path, demo_engine):
    conversation, request, _ = python_chat(tmp_path, demo_engine, tools=False)
    events = await run(conversation, request)
    off = next(e for e in events if isinstance(e, ToolOff))
    assert off.tool == "python" and "--python" in off.hint
    finished = events[-1]
    assert finished.reason == "call" and finished.calls == 0
    assert [c.recipient for c in finished.end.tool_calls] == ["python"]  # left for the person
    assert finished.no_answer is None  # a call is an answer of sorts: no "no answer" note
    assert not any(r.role == "tool" for r in read_chat(tmp_path / "chat.json").path())


async def test_stopping_while_the_approval_waits_marks_the_call_stopped(tmp_path, demo_engine):
    waiting = asyncio.Event()

    async def never(call, request):
        waiting.set()
        await asyncio.Event().wait()

    conversation, request, toolset = python_chat(tmp_path, demo_engine, never)
    events = []

    async def read():
        async for batch in conversation.run_turn(request):
            events.extend(batch)

    reader = asyncio.ensure_future(read())
    try:
        await asyncio.wait_for(waiting.wait(), 60)
        assert conversation.stop()
        await asyncio.wait_for(reader, 30)
    finally:
        await toolset.aclose()
    assert any(isinstance(e, ToolWaiting) for e in events)
    assert any(isinstance(e, ToolStopped) for e in events)
    assert events[-1].reason == "cancelled"
    records = read_chat(tmp_path / "chat.json").path()
    assert records[-1].recipient == "python" and records[-1].finish_reason == "cancelled"
    assert not any(r.role == "tool" for r in records)  # the tool never ran
    assert conversation.active is None


async def test_a_reader_that_leaves_mid_answer_still_leaves_the_text_saved(tmp_path,
                                                                           gpt_oss_engine):
    session = ChatSession(path=tmp_path / "chat.json")
    session.add_user("go")
    conversation = Conversation(gpt_oss_engine.submit, session, policy=LocalCalls(None))
    endless = GenerationParams(temperature=1.0, seed=3, max_tokens=100000)
    turn = conversation.run_turn(TurnRequest(session.messages, PromptSetup(), endless))
    seen = ""
    async for batch in turn:
        seen += "".join(e.text for e in batch if isinstance(e, TextDelta))
        if len(seen) > 30:
            break
    await turn.aclose()  # e.g. a client that disconnected
    records = read_chat(tmp_path / "chat.json").path()
    assert records[-1].role == "assistant" and records[-1].finish_reason == "cancelled"
    assert "".join(r.content for r in records[1:]).startswith(seen[:20])
    assert conversation.active is None


async def test_two_turns_at_once_are_refused(gpt_oss_engine):
    conversation = Conversation(gpt_oss_engine.submit, MemoryTranscript([Message("user", "a")]),
                                policy=LocalCalls(None))
    request = TurnRequest([Message("user", "a")], PromptSetup(),
                          GenerationParams(max_tokens=3))
    first = conversation.run_turn(request)
    await first.__anext__()
    with pytest.raises(RuntimeError, match="already running"):
        await conversation.run_turn(request).__anext__()
    await first.aclose()


# -- scripted model streams for what no trained model does on demand --------------------------


class ScriptedEngine:
    """Stands in for the engine (see the module docstring): each submitted turn replays what
    ``script(index)`` returns, ``(events, end)``, through a real ``TurnStream``; an ``end`` of
    None never ends the turn (an engine that does not answer a stop)."""

    def __init__(self, script) -> None:
        self.script = script
        self.requests: list[TurnRequest] = []

    def submit(self, request: TurnRequest, notify=None) -> TurnStream:
        self.requests.append(request)
        stream = TurnStream(request.request_id, notify)
        events, end = self.script(len(self.requests) - 1)
        for event in [*events, *([end] if end is not None else [])]:
            stream.put(event)
        return stream


def calling(recipient: str, arguments: str = "print(1)"):
    """A script whose every turn calls ``recipient``."""

    def script(index: int):
        call = ToolCall(f"call-{index}", recipient, "analysis", None, arguments)
        message = Message("assistant", arguments, channel="analysis", recipient=recipient)
        return [call, MessageDone(message)], TurnEnd("call", (message,), tool_calls=(call,))

    return script


async def test_past_the_call_limit_the_model_is_told_then_the_turn_ends():
    toolset = ToolSet(ToolsConfig(python={"timeout_s": 20}, max_calls_per_turn=2))
    engine = ScriptedEngine(calling("python"))
    conversation = Conversation(engine.submit, MemoryTranscript([Message("user", "loop")]),
                                toolset, policy=LocalCalls(toolset))
    try:
        events = await run(conversation, TurnRequest([Message("user", "loop")]))
    finally:
        await toolset.aclose()
    statuses = [e.status for e in events if isinstance(e, ToolFinished)]
    assert statuses == ["done", "done", "limit"]  # two ran, the third was told the limit
    assert isinstance(events[-2], ToolLimitReached) and events[-2].limit == 2
    assert len(engine.requests) == 4  # the fourth call ends the turn: no fifth sub-turn
    limit = [m for m in conversation.transcript.messages if m.role == "tool"][-1]
    assert "limit" in limit.content
    assert events[-1].calls == 4


async def test_calls_nobody_answers_on_the_api_are_refused_at_most_twice():
    engine = ScriptedEngine(calling("functions.secret", "{}"))
    policy = ApiCalls(None, client_tools=frozenset())
    conversation = Conversation(engine.submit, MemoryTranscript([Message("user", "x")]),
                                policy=policy)
    events = await run(conversation, TurnRequest([Message("user", "x")]))
    refused = [e for e in events if isinstance(e, ToolFinished)]
    assert [e.status for e in refused] == ["refused"] * MAX_REFUSED
    assert "not available" in refused[0].text
    assert len(engine.requests) == MAX_REFUSED + 1
    assert events[-1].reason == "call"  # the server shows it as a plain stop (tool_loop.py)


async def test_client_tools_go_back_to_the_client_unrun():
    engine = ScriptedEngine(calling("functions.get_weather", "{}"))
    conversation = Conversation(
        engine.submit, MemoryTranscript([Message("user", "x")]),
        policy=ApiCalls(None, client_tools=frozenset({"functions.get_weather"})))
    events = await run(conversation, TurnRequest([Message("user", "x")]))
    assert not any(isinstance(e, ToolFinished | ToolOff) for e in events)
    assert [c.recipient for c in events[-1].end.tool_calls] == ["functions.get_weather"]
    assert len(engine.requests) == 1


async def test_a_tool_that_raises_becomes_an_error_the_model_reads():
    class Exploding(ToolSet):
        async def handle(self, call, approver, channel=None):
            raise RuntimeError("boom")

    toolset = Exploding(ToolsConfig(python=True, max_calls_per_turn=1))
    engine = ScriptedEngine(calling("python"))
    conversation = Conversation(engine.submit, MemoryTranscript([Message("user", "x")]),
                                toolset, policy=LocalCalls(toolset))
    try:
        events = await run(conversation, TurnRequest([Message("user", "x")]))
    finally:
        await toolset.aclose()
    first = next(e for e in events if isinstance(e, ToolFinished))
    assert first.status == "error" and "RuntimeError: boom" in first.text
    assert isinstance(events[-1], TurnFinished)


async def test_an_engine_that_never_hands_back_a_stopped_turn_keeps_what_arrived(tmp_path):
    session = ChatSession(path=tmp_path / "chat.json")
    session.add_user("x")

    def script(index):
        return [TextDelta("final", "Half an ans"), TextDelta("final", "wer")], None

    engine = ScriptedEngine(script)
    conversation = Conversation(engine.submit, session, policy=LocalCalls(None))
    turn = conversation.run_turn(TurnRequest(session.messages))
    batch = await turn.__anext__()
    assert "".join(e.text for e in batch) == "Half an answer"
    await conversation.stop_and_save(0.2)
    records = read_chat(tmp_path / "chat.json").path()
    assert records[-1].content == "Half an answer" and records[-1].finish_reason == "cancelled"
    assert conversation.active is None
    await turn.aclose()


def test_the_conversation_layer_imports_no_front_end():
    import subprocess

    code = ("import sys, harmony_tui.conversation; bad = [m for m in sys.modules if m.split('.')"
            "[0] in ('textual', 'fastapi', 'uvicorn') or m in ('harmony_tui.app', "
            "'harmony_tui.cli', 'harmony_tui.oneshot') or m.startswith('harmony_tui.server')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
