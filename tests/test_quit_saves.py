"""Leaving while an answer streams keeps the partial answer, as Esc does (issue 10).

Ctrl+Q, Ctrl+D, ``\\quit`` and ``q``, SIGTERM and SIGHUP (the terminal closed) all stop the running
turn, save what it produced marked ``cancelled``, and only then exit; so does ``generate --chat``
on SIGTERM and SIGHUP. Real models, the real app (Pilot and a real terminal), real processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import wait_until
from test_app import WIDE, endless, make_app, ready, start_streaming, wait_for
from textual import events

from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.formats.harmony_decoder import MAX_HEADER_TOKENS
from harmony_tui.screens.approval import ApprovalScreen
from harmony_tui.sessions.chat_log import ChatRecord
from harmony_tui.sessions.store import read_chat
from harmony_tui.tools.config import ToolsConfig

PYTHON = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "python")
WEATHER = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "functions.get_weather")
# A function tool that says it started, then blocks until it is killed (it reads a pipe that
# no one writes to).
BLOCKING_TOOL = ("import os; r, w = os.pipe(); "
                 "open({started!r}, 'w').write(str(os.getpid())); os.read(r, 1)")


@contextlib.contextmanager
def log_records():
    """The records harmony-tui logs within the block."""
    from harmony_tui.logs import logger

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def key(app, name: str, character: str | None = None) -> None:
    """Press a key straight through the driver.

    ``Pilot.press`` waits for the app to look idle, which it never does while a model streams.
    """
    app._driver.send_message(events.Key(name, character))


def type_text(app, text: str) -> None:
    for char in text:
        key(app, "space" if char == " " else "backslash" if char == "\\" else char, char)


async def answer_on_screen(pilot, chars: int = 20) -> str:
    """Wait until the streaming answer shows some text; returns it."""
    app = pilot.app
    widget = app.turn.widget
    await wait_for(pilot, lambda: len(widget.answer) >= chars, what="answer text on screen")
    return widget.answer


async def wait_closed(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.return_code is not None, timeout=30, what="the app to exit")


def last_turn(path: Path) -> list[ChatRecord]:
    """The assistant records after the last user message of the chat file on disk."""
    records = read_chat(path).path()
    last_user = max(i for i, r in enumerate(records) if r.role == "user")
    return records[last_user + 1:]


def assert_partial_answer_saved(path: Path, shown: str) -> None:
    turn = last_turn(path)
    finals = [r for r in turn if r.channel == "final" and not r.recipient]
    assert finals, f"no answer saved: {[(r.channel, r.content[:30]) for r in turn]}"
    # What the screen showed is kept (the engine may have produced a few tokens more).
    assert finals[-1].content.startswith(shown), (shown, finals[-1].content)
    assert turn[-1].finish_reason == "cancelled"  # marked stopped, exactly as Esc does


# -- the app, driven with Pilot --------------------------------------------------------------


@pytest.mark.parametrize("how", ["ctrl+q", "ctrl+d", "\\quit", "q"])
async def test_quitting_mid_answer_saves_the_partial_answer(tiny_gpt_oss, tmp_path, how):
    app = make_app(str(tiny_gpt_oss), params=endless(11), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await start_streaming(pilot)
        shown = await answer_on_screen(pilot)
        if how.startswith("ctrl+"):
            key(app, how)
        else:
            type_text(app, how)
            await wait_for(pilot, lambda: app.prompt.text == how, timeout=10, what="the command")
            key(app, "enter")
        await wait_closed(pilot)
        path = app.session.path
    assert_partial_answer_saved(path, shown)


async def test_escape_and_quit_save_the_same_record_shape(tiny_gpt_oss, tmp_path):
    """A stopped answer then a quit mid-answer: both turns end the same way on disk."""
    app = make_app(str(tiny_gpt_oss), params=endless(12), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await start_streaming(pilot)
        await answer_on_screen(pilot)
        key(app, "escape")
        await wait_for(pilot, lambda: app.turn is None, what="the stop")
        stopped = last_turn(app.session.path)
        app.prompt.set_text("again")
        key(app, "enter")
        await wait_for(pilot, lambda: app.turn is not None and app.turn.generating,
                       what="the second answer")
        await answer_on_screen(pilot)
        key(app, "ctrl+q")
        await wait_closed(pilot)
        path = app.session.path
    quit_turn = last_turn(path)

    def shape(records: list[ChatRecord]) -> list[tuple]:
        return [(r.role, r.channel, r.recipient, r.finish_reason, r.stats is not None)
                for r in records]

    assert shape(quit_turn) == shape(stopped)
    assert quit_turn[-1].finish_reason == "cancelled"


async def test_quit_saves_what_was_streamed_when_the_engine_does_not_answer(tiny_gpt_oss,
                                                                             tmp_path):
    """With no time to wait for the engine, the answer the screen shows is what is saved.

    A real engine always answers a cancel within a token, so "too slow" is made by giving it
    no time at all.
    """
    app = make_app(str(tiny_gpt_oss), params=endless(13), chats_dir=tmp_path)
    app.quit_wait_seconds = 0.0
    with log_records() as records:
        async with app.run_test(size=WIDE) as pilot:
            await start_streaming(pilot)
            shown = await answer_on_screen(pilot)
            key(app, "ctrl+q")
            await wait_closed(pilot)
            path = app.session.path
    assert any("without the engine" in r.getMessage() for r in records)  # the fallback ran
    assert_partial_answer_saved(path, shown)


async def test_generate_saves_what_it_printed_when_the_engine_does_not_answer(gpt_oss_engine,
                                                                               tmp_path):
    """The conversation loop generate runs: stopped with no time to wait for the engine, the
    text already received is saved, marked stopped."""
    from harmony_tui.conversation import Conversation, LocalCalls
    from harmony_tui.engine.engine import TurnRequest
    from harmony_tui.engine.events import TextDelta
    from harmony_tui.engine.messages import PromptSetup
    from harmony_tui.sessions.chat import ChatSession

    session = ChatSession(path=tmp_path / "chat.json")
    session.add_user("go")
    conversation = Conversation(gpt_oss_engine.submit, session, policy=LocalCalls(None))
    printed = ""
    turn = conversation.run_turn(TurnRequest(session.messages, PromptSetup(), endless(14)),
                                 model="tiny")
    async for batch in turn:
        printed += "".join(e.text for e in batch
                           if isinstance(e, TextDelta) and e.channel == "final")
        if len(printed) >= 20:
            break
    await conversation.stop_and_save(0.0)  # no time for the engine to answer
    await turn.aclose()
    turn_records = last_turn(session.path)
    assert turn_records[-1].channel == "final"
    assert turn_records[-1].content.startswith(printed)  # what was shown, and what had arrived
    assert turn_records[-1].finish_reason == "cancelled"


async def test_quit_with_the_approval_dialog_open_marks_the_call_stopped(tmp_path):
    app = make_app(tools=ToolsConfig(python=True), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        app.prompt.set_text(PYTHON.prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen),
                       what="the approval dialog")
        await pilot.press("ctrl+q")
        await wait_closed(pilot)
        path = app.session.path
    turn = last_turn(path)
    assert turn[-1].recipient == "python" and turn[-1].content.strip() == "print(17 * 23)"
    assert turn[-1].finish_reason == "cancelled"
    assert not any(r.role == "tool" for r in turn)  # the tool never ran


async def test_quit_while_a_tool_runs_stops_it_and_marks_the_call_stopped(tmp_path):
    started = tmp_path / "tool-started"
    command = [sys.executable, "-c", BLOCKING_TOOL.format(started=str(started))]
    tools = ToolsConfig(functions=[{
        "name": "get_weather", "description": "Get the current weather for a location.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"]},
        "command": command, "auto_approve": True}])
    app = make_app(tools=tools, chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        app.prompt.set_text(WEATHER.prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: started.exists() and started.read_text(),
                       what="the tool to run")
        pid = int(started.read_text())
        await pilot.press("ctrl+q")
        await wait_closed(pilot)
        path = app.session.path
    turn = last_turn(path)
    assert turn[-1].recipient == "functions.get_weather"
    assert turn[-1].finish_reason == "cancelled"
    assert not any(r.role == "tool" for r in turn)
    wait_until(lambda: not alive(pid), timeout=10, message="the tool process to be stopped")


# -- real processes: the app in a real terminal, and generate --------------------------------


def endless_config(tmp_path: Path) -> Path:
    """A prompt config that keeps a random model talking and saves chats under ``tmp_path``."""
    from harmony_tui.engine.formats.harmony import FIRST_SPECIAL, VOCAB_SIZE

    bias = {str(token): -100.0 for token in range(FIRST_SPECIAL, VOCAB_SIZE)}
    path = tmp_path / "endless.json"
    path.write_text(json.dumps({"logit_bias": bias, "chats_dir": str(tmp_path / "chats"),
                                "logs_dir": str(tmp_path / "logs")}))
    return path


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def assert_saved_stopped(path: Path, prompt: str) -> None:
    records = read_chat(path).path()
    assert [r.content for r in records if r.role == "user"] == [prompt]
    turn = last_turn(path)
    finals = [r for r in turn if r.channel == "final" and not r.recipient]
    assert finals and finals[-1].content, [(r.role, r.channel, r.content[:30], r.finish_reason)
                                           for r in read_chat(path).path()]
    assert turn[-1].finish_reason == "cancelled" and turn[-1].stats is not None


class Tmux:
    """A tmux server of its own (``tmux -L``), so no other session is ever touched."""

    def __init__(self) -> None:
        self.socket = f"harmony-quit-{uuid.uuid4().hex[:10]}"
        self.socket_path: Path | None = None

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=30)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "main").stdout

    def wait_screen(self, condition, what: str, timeout: float = 120.0) -> str:
        text = ""

        def check() -> bool:
            nonlocal text
            text = self.screen()
            return condition(text)

        try:
            wait_until(check, timeout=timeout, interval=0.1, message=what)
        except AssertionError as err:
            raise AssertionError(f"{err}; the screen was:\n{text}") from None
        return text

    def child_of_pane(self) -> int:
        """The pid of the command the pane's shell runs."""
        pane = int(self("display", "-p", "-t", "main", "#{pane_pid}").stdout)
        children = Path(f"/proc/{pane}/task/{pane}/children")
        wait_until(lambda: children.read_text().split(), timeout=30, message="the app process")
        return int(children.read_text().split()[0])

    def start(self, command: str, cwd: Path) -> None:
        env = {k: os.environ[k] for k in ("HARMONY_TUI_CACHE_DIR", "HARMONY_TUI_CONFIG_DIR",
                                          "HF_HOME", "HF_HUB_OFFLINE")}
        env["HARMONY_TUI_DATA_DIR"] = str(cwd / "data")
        env["TERM"] = "xterm-256color"
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # After the app: its exit status and the terminal's modes, for the restore checks.
        script = (f"cd {shlex.quote(str(cwd))} && env -u COLUMNS -u LINES {assignments} "
                  f"{command}; echo \"EXITED $?\"; stty -a; exec sleep 600")
        assert self("new-session", "-d", "-s", "main", "-x", "110", "-y", "32",
                    "sleep 600").returncode == 0
        self.socket_path = Path(self("display", "-p", "#{socket_path}").stdout.strip())
        self("set-option", "-t", "main", "window-size", "manual")
        self("resize-window", "-t", "main", "-x", "110", "-y", "32")
        assert self("respawn-pane", "-k", "-t", "main", f"sh -c {shlex.quote(script)}"
                    ).returncode == 0

    def close(self) -> None:
        self("kill-server")
        if self.socket_path is not None and self.socket_path.name == self.socket:
            self.socket_path.unlink(missing_ok=True)


needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None or not Path("/proc").is_dir(),
                                reason="needs tmux (.ci/run installs it) and Linux's /proc")


@needs_tmux
@pytest.mark.parametrize("how", ["SIGTERM", "terminal closed"])
def test_app_in_a_terminal_saves_the_partial_answer_on_a_signal(tiny_gpt_oss, tmp_path, how):
    """SIGTERM, or the terminal closing (SIGHUP) mid-answer: saved, marked stopped, then exit.

    After SIGTERM the terminal is restored; a closed terminal is gone, and the app still exits.
    """
    config = endless_config(tmp_path)
    tmux = Tmux()
    prompt = "tell me everything"
    try:
        tmux.start(f"{shlex.quote(sys.executable)} -m harmony_tui --model "
                   f"{shlex.quote(str(tiny_gpt_oss))} --prompt-config {shlex.quote(str(config))}"
                   " --chat signalled --max-tokens 100000", tmp_path)
        tmux.wait_screen(lambda s: "tiny-gpt-oss · idle" in s, "the model to load")
        app = tmux.child_of_pane()
        tmux("send-keys", "-t", "main", "-l", prompt)
        tmux("send-keys", "-t", "main", "Enter")
        # The random model writes no channel header: its first tokens are held as a header
        # until one runs on (a newline, or more than MAX_HEADER_TOKENS), and only then are
        # they the answer. Stopping before that leaves no answer to save (and none was shown).
        tmux.wait_screen(lambda s: any(int(n) > MAX_HEADER_TOKENS + 10
                                       for n in re.findall(r"gen (\d+)", s)),
                         "the answer to stream")
        if how == "terminal closed":
            tmux("kill-session", "-t", "main")  # the terminal goes away: SIGHUP, and no tty
        else:
            os.kill(app, getattr(signal, how))
        wait_until(lambda: not alive(app), timeout=30, message="the app to exit")
        if how != "terminal closed":
            # stty -a prints after the status: wait for its last flag (extproc), not only EXITED
            text = tmux.wait_screen(lambda s: "EXITED" in s and "extproc" in s,
                                    "the shell after the app")
            assert f"EXITED {128 + getattr(signal, how)}" in text
            # The terminal is restored: normal screen, no mouse reporting, canonical mode, echo.
            modes = tmux("display", "-p", "-t", "main",
                         "#{alternate_on} #{mouse_any_flag} #{cursor_flag}").stdout.split()
            assert modes == ["0", "0", "1"], modes
            assert " icanon" in text and " echo " in text, text
    finally:
        tmux.close()
    assert_saved_stopped(tmp_path / "chats" / "signalled.json", prompt)


def start_generate(tiny_gpt_oss: Path, tmp_path: Path, prompt: str) -> subprocess.Popen:
    config = endless_config(tmp_path)
    return subprocess.Popen(
        [sys.executable, "-m", "harmony_tui", "generate", "--chat", "signalled", "--model",
         str(tiny_gpt_oss), "--prompt-config", str(config), "--max-tokens", "100000",
         "--prompt", prompt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_generate_saves_the_partial_answer_on_a_signal(tiny_gpt_oss, tmp_path, name):
    prompt = "tell me everything"
    proc = start_generate(tiny_gpt_oss, tmp_path, prompt)
    try:
        shown = proc.stdout.read(64)  # the answer is streaming
        assert shown and proc.poll() is None
        proc.send_signal(getattr(signal, name))
        shown += proc.stdout.read()
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 128 + getattr(signal, name), stderr
    assert f"stopped by {name}" in stderr and "Traceback" not in stderr
    path = tmp_path / "chats" / "signalled.json"
    assert_saved_stopped(path, prompt)
    saved = last_turn(path)[-1].content
    assert saved.startswith(shown.decode(errors="ignore")[:40])  # what was printed is saved


@needs_tmux
def test_generate_in_a_terminal_that_closes_saves_the_partial_answer(tiny_gpt_oss, tmp_path):
    prompt = "tell me everything"
    config = endless_config(tmp_path)
    path = tmp_path / "chats" / "signalled.json"
    tmux = Tmux()
    try:
        tmux.start(f"{shlex.quote(sys.executable)} -m harmony_tui generate --chat signalled "
                   f"--model {shlex.quote(str(tiny_gpt_oss))} --prompt-config "
                   f"{shlex.quote(str(config))} --max-tokens 100000 --prompt "
                   f"{shlex.quote(prompt)}", tmp_path)
        generate = tmux.child_of_pane()
        wait_until(lambda: path.exists() and prompt in path.read_text(), timeout=60,
                   message="the prompt in the chat file")
        tmux.wait_screen(lambda s: len(s.strip()) > 200, "the answer on the screen")
        tmux("kill-session", "-t", "main")
        wait_until(lambda: not alive(generate), timeout=30, message="generate to exit")
    finally:
        tmux.close()
    assert_saved_stopped(path, prompt)


def test_generate_stopped_while_its_tool_runs_marks_the_call_stopped(tmp_path):
    started = tmp_path / "tool-started"
    command = json.dumps([sys.executable, "-c", BLOCKING_TOOL.format(started=str(started))])
    config = tmp_path / "weather.yaml"
    config.write_text(f"""
chats_dir: {json.dumps(str(tmp_path / "chats"))}
tools:
  functions:
    - name: get_weather
      description: Get the current weather for a location.
      parameters:
        type: object
        properties: {{location: {{type: string}}}}
        required: [location]
      command: {command}
      auto_approve: true
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_tui", "generate", "--chat", "weather", "--temperature",
         "0", "--prompt-config", str(config), "-p", WEATHER.prompt],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        wait_until(lambda: started.exists() and started.read_text(), timeout=120,
                   message="the tool to run")
        tool = int(started.read_text())
        proc.send_signal(signal.SIGTERM)
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    turn = last_turn(tmp_path / "chats" / "weather.json")
    assert turn[-1].recipient == "functions.get_weather"
    assert turn[-1].finish_reason == "cancelled"
    wait_until(lambda: not alive(tool), timeout=10, message="the tool process to be stopped")
