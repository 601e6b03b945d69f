"""The tool loop end to end: the demo model calls python, the person approves, the real tool runs
in a child process, its result goes back to the model, and the model answers."""

from __future__ import annotations

import json
import subprocess
import sys

from test_app import WIDE, make_app, ready, wait_for

from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.screens.approval import ApprovalScreen
from harmony_tui.sessions.store import read_chat
from harmony_tui.tools.base import ApprovalRequest, ToolInvocation
from harmony_tui.tools.config import ToolsConfig
from harmony_tui.tools.toolset import ToolSet

PYTHON = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "python")
WEATHER = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "functions.get_weather")
GREEDY = GenerationParams(temperature=0)


async def test_engine_python_call_is_approved_run_and_answered(demo_engine):
    toolset = ToolSet(ToolsConfig(python={"timeout_s": 20}))
    asked: list[ApprovalRequest] = []

    async def approve(call: ToolInvocation, request: ApprovalRequest):
        asked.append(request)
        return "once"

    messages = [Message("user", PYTHON.prompt)]
    setup = toolset.declare(PromptSetup())
    assert setup.builtin_tools == ("python",)
    try:
        reply = demo_engine.chat(messages, setup, GREEDY)
        assert reply.reason == "call" and reply.tool_calls[0].recipient == "python"
        call = reply.tool_calls[0]
        messages += reply.messages
        outcome = await toolset.handle(ToolInvocation(call.recipient, call.arguments,
                                                      call.call_id, "chat"), approve,
                                       call.channel)
        assert [r.kind for r in asked] == ["code"] and "print(17 * 23)" in asked[0].body
        assert outcome.result.text.strip() == "391" and not outcome.result.is_error
        assert outcome.message.role == "tool" and outcome.message.name == "python"
        assert outcome.message.channel == call.channel
        messages.append(outcome.message)
        final = demo_engine.chat(messages, setup, GREEDY)
        assert final.reason == "return"
        assert final.final == PYTHON.final
    finally:
        await toolset.aclose()


async def test_denied_and_unknown_calls_come_back_as_tool_errors():
    toolset = ToolSet(ToolsConfig(python=True))

    async def deny(call, request):
        return "deny"

    try:
        denied = await toolset.handle(ToolInvocation("python", "print(1)", "c1", "x"), deny)
        assert denied.result.is_error and "denied" in denied.result.text
        unknown = await toolset.handle(ToolInvocation("functions.nope", "{}", "c2", "x"), deny)
        assert unknown.result.is_error and "unknown tool" in unknown.result.text
        assert "python" in unknown.result.text  # it lists what can be called
        # "allow for this chat" covers later calls of that chat only
        calls = []

        async def allow_chat(call, request):
            calls.append(call.call_id)
            return "chat"

        await toolset.handle(ToolInvocation("python", "print(2)", "c3", "x"), allow_chat)
        await toolset.handle(ToolInvocation("python", "print(3)", "c4", "x"), allow_chat)
        await toolset.handle(ToolInvocation("python", "print(4)", "c5", "y"), allow_chat)
        assert calls == ["c3", "c5"]
    finally:
        await toolset.aclose()


def test_generate_runs_python_without_asking_and_reports_json(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "--python", "--json",
         "--temperature", "0", "-p", PYTHON.prompt],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["final"] == PYTHON.final
    assert data["tool_calls"] == [{"recipient": "python", "arguments": "print(17 * 23)",
                                   "result": "391", "is_error": False}]
    assert data["finish_reason"] == "return"


def test_generate_without_the_tool_lists_the_call_unrun(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "--json", "--temperature", "0",
         "-p", WEATHER.prompt], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["finish_reason"] == "call"
    assert data["tool_calls"] == [{"recipient": "functions.get_weather",
                                   "arguments": {"location": "Paris"}, "result": None}]


def test_generate_says_on_stderr_how_to_turn_an_off_tool_on(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "--temperature", "0",
         "-p", PYTHON.prompt], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[tool off] python: not run (the python tool is off; run it with --python)" \
        in result.stderr


async def ask_for_python(pilot) -> None:
    """Send the demo's python prompt and wait for the approval dialog."""
    app = pilot.app
    await ready(pilot)
    app.prompt.set_text(PYTHON.prompt)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen),
                   what="the approval dialog")


async def test_app_asks_runs_python_and_continues_the_turn(tmp_path):
    app = make_app(tools=ToolsConfig(python=True), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ask_for_python(pilot)
        assert "print(17 * 23)" in str(app.screen.request.body)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.turn is None and app.session.final_answers(),
                       what="the answer after the tool ran")
        entry = next(iter(app.tools.entries.values()))
        assert entry.status == "done" and entry.result.strip() == "391"
        widget = app.conversation.last_assistant()
        assert widget.answer == PYTHON.final
        assert "← python answered" in widget.notes
        assert len(app.conversation.assistant_entries()) == 1  # one turn, continued in place
        log = read_chat(app.session.path)
        tool = next(r for r in log.path() if r.role == "tool")
        assert tool.tool_call_id and tool.content.strip() == "391" and tool.name == "python"
        assert log.path()[-1].content == PYTHON.final


async def test_app_denial_reaches_the_model_and_the_turn_ends(tmp_path):
    app = make_app(tools=ToolsConfig(python=True), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ask_for_python(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.turn is None, what="the turn to end", timeout=90)
        entry = next(iter(app.tools.entries.values()))
        assert entry.status == "denied" and "denied" in entry.result
        tool = next(r for r in app.session.records() if r.role == "tool")
        assert tool.is_error and "denied" in tool.content
        # the conversation says denied too, as the pane does (not "failed")
        notes = app.conversation.last_assistant().notes
        assert "← python denied" in notes and not any("failed" in n for n in notes)


async def test_app_call_to_a_tool_that_is_off_says_how_to_turn_it_on(tmp_path):
    app = make_app(chats_dir=tmp_path)  # no tools
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        app.prompt.set_text(PYTHON.prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turn is None and app.turns_started, what="the turn")
        notes = "\n".join(app.conversation.last_assistant().notes)
        assert "python not run" in notes and "--python" in notes
        assert 'Ctrl+P → "Tools: python"' in notes  # how to turn it on now, with the key
        entry = next(iter(app.tools.entries.values()))
        assert entry.status == "not run" and "Ctrl+P" in entry.result
        assert not any(r.role == "tool" for r in app.session.records())  # nothing ran


WEATHER_COMMAND = (
    "import json, sys; assert json.load(sys.stdin) == {'location': 'Paris'}; "
    "print(json.dumps({'temperature': 18, 'unit': 'celsius', 'conditions': 'sunny'}))"
)


def test_generate_runs_a_config_function_tool(tmp_path):
    config = tmp_path / "weather.yaml"
    command = json.dumps([sys.executable, "-c", WEATHER_COMMAND])
    config.write_text(f"""
tools:
  functions:
    - name: get_weather
      description: Get the current weather for a location.
      parameters:
        type: object
        properties: {{location: {{type: string, description: City name}}}}
        required: [location]
      command: {command}
      auto_approve: true
""")
    result = subprocess.run(
        [sys.executable, "-m", "harmony_tui", "generate", "--json", "--temperature", "0",
         "--prompt-config", str(config), "-p", WEATHER.prompt],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    call = data["tool_calls"][0]
    assert call["recipient"] == "functions.get_weather"
    assert call["arguments"] == {"location": "Paris"}
    # the command checked the arguments it received on stdin (it fails otherwise)
    assert json.loads(call["result"])["temperature"] == 18 and not call["is_error"]
    assert data["finish_reason"] == "return" and data["final"] == WEATHER.final
