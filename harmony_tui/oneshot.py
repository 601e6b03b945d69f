"""``harmony-tui generate``: one prompt, the answer streamed to stdout, tools run as asked.

Tools turned on with ``--python`` / ``--browser`` / ``--apply-patch`` run without asking (the
person asked for them on the command line). Tools on only in the config that would ask first in
the app are refused, and the model is told so. With ``--chat NAME`` every message is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any, TextIO

from harmony_tui.config.placeholders import Clock, expander
from harmony_tui.config.settings import Settings
from harmony_tui.engine.events import (
    Event,
    MessageDone,
    ParseIssue,
    Stats,
    TextDelta,
    ToolCall,
    TurnEnd,
)
from harmony_tui.engine.reply import collect_reply
from harmony_tui.errors import HarmonyTuiError
from harmony_tui.exit_signals import RaiseOnExitSignals, Terminated
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.text_safety import json_terminal_safe, terminal_safe
from harmony_tui.tools.base import ApprovalRequest, ToolInvocation
from harmony_tui.tools.toolset import Decision, ToolOutcome, ToolSet, tool_calls_json

NO_ANSWER = 3  # exit status: the model wrote no answer (only reasoning, or the limit came first)


class Printer:
    """Streams the answer to stdout and, when asked, thinking and tool steps to stderr."""

    def __init__(self, json_mode: bool, show_thinking: bool, out: TextIO, err: TextIO) -> None:
        self.json_mode = json_mode
        self.show_thinking = show_thinking
        self.out, self.err = out, err
        # The answer is the model's text, which may echo what a web page or tool said: on a
        # terminal nothing it writes may act as a control sequence. Piped, it stays verbatim.
        isatty = getattr(out, "isatty", None)
        self.clean_answer = bool(isatty and isatty())
        self.thinking_open = False
        self.wrote_final = False

    def _close_thinking(self) -> None:
        if self.thinking_open:
            self.err.write("\n")
            self.err.flush()
            self.thinking_open = False

    def event(self, event: Event) -> None:
        if isinstance(event, TextDelta) and event.recipient is None:
            if event.channel == "final" and not self.json_mode:
                self._close_thinking()
                self.out.write(terminal_safe(event.text) if self.clean_answer else event.text)
                self.out.flush()
                self.wrote_final = True
            elif event.channel != "final" and self.show_thinking:
                if not self.thinking_open:
                    self.err.write(f"[{event.channel}] ")
                    self.thinking_open = True
                self.err.write(terminal_safe(event.text))
                self.err.flush()
        elif isinstance(event, ToolCall) and not self.json_mode:
            self._close_thinking()
            self.err.write(f"[tool call] {terminal_safe(event.recipient)}: "
                           f"{terminal_safe(event.arguments)}\n")
            self.err.flush()
        elif isinstance(event, ParseIssue) and self.show_thinking:
            self._close_thinking()
            self.err.write(f"[format] {terminal_safe(event.detail)}\n")

    def tool_result(self, outcome: ToolOutcome) -> None:
        if self.json_mode:
            return
        status = "error" if outcome.result.is_error else "result"
        text = terminal_safe(outcome.result.text)  # no escape sequence reaches the terminal
        shown = text if len(text) <= 2000 else text[:2000] + f"… ({len(text)} characters)"
        self.err.write(f"[tool {status}] {outcome.invocation.recipient}: {shown}\n")
        self.err.flush()

    def end(self) -> None:
        self._close_thinking()


def run_generate(settings: Settings, prompt: str, *, json_mode: bool, show_thinking: bool,
                 flagged: set[str], progress: Any = None, prog: str = "harmony-tui",
                 lock: Any = None) -> int:
    """Generate one reply (with its tool calls); returns the exit status: 0 answered, 1 the
    generation failed, 3 (``NO_ANSWER``) the model wrote no answer, said on standard error.

    ``lock`` is the ``--chat`` file's lock, taken before the chat was read. A chat that cannot
    be saved raises ``ChatSaveError`` (exit 2; the file on disk stays as it was)."""
    from harmony_tui.engine.engine import Engine
    from harmony_tui.logs import configure_file_log, logger

    configure_file_log(settings.logs_dir)
    clock = Clock.from_env(settings.prompt.fixed_time)
    expand = expander(settings.prompt.placeholders, clock)
    tools_config = settings.prompt.tools.with_flags(
        python="python" in flagged, browser="browser" in flagged,
        apply_patch="apply_patch" in flagged)
    toolset = ToolSet(tools_config)
    toolset.start()
    for error in toolset.errors:
        print(f"{prog}: warning: {error}", file=sys.stderr)
    session = open_session(settings, lock)
    printer = Printer(json_mode, show_thinking, sys.stdout, sys.stderr)

    async def approver(call: ToolInvocation, request: ApprovalRequest) -> Decision:
        namespace = call.recipient.split(".", 1)[0] if not call.recipient.startswith(
            "functions.apply_patch") else "apply_patch"
        if namespace in flagged:
            return "once"
        print(f"{prog}: warning: refused {call.recipient} (it asks for approval in the app; "
              f"enable it with --{namespace.replace('_', '-')} to run it here)", file=sys.stderr)
        return "deny"

    engine = Engine.start(settings.model, models_dir=settings.models_dir, progress=progress)
    if progress is not None:
        progress.done()
    outcomes: list[ToolOutcome] = []
    all_events: list[Event] = []
    runner = asyncio.Runner()
    # SIGTERM and SIGHUP (the terminal closed) save the partial turn, as Ctrl+C does.
    signals = RaiseOnExitSignals()
    try:
        session.add_user(expand(prompt))
        calls = 0
        while True:
            setup = toolset.declare(settings.prompt.setup(expand))
            recorder = session.begin_turn(settings.model,
                                          settings.params.model_dump(mode="json"))
            events: list[Event] = []
            stream = engine.stream(session.messages, setup, settings.params,
                                   today=clock.today())
            try:
                for event in stream:
                    events.append(event)
                    printer.event(event)
                    if isinstance(event, MessageDone):
                        recorder.add(event.message)
                    elif isinstance(event, TurnEnd):
                        stats = next((e for e in events if isinstance(e, Stats)), None)
                        recorder.finish(list(event.messages),
                                        stats.to_dict() if stats else None, event.reason)
                        logger.info("generate: turn ended: %s %s", event.reason,
                                    stats.to_dict() if stats else "")
                        break
            except BaseException:  # Ctrl+C, SIGTERM, SIGHUP, output gone...: save, then stop
                with signals.held():
                    save_partial(stream, recorder, events)
                raise
            all_events.extend(events)
            end = events[-1] if events and isinstance(events[-1], TurnEnd) else None
            if end is None or end.reason != "call" or not end.tool_calls or not toolset.enabled:
                break
            for call in end.tool_calls:
                calls += 1
                invocation = ToolInvocation(call.recipient, call.arguments, call.call_id,
                                            session.log.chat_id)
                outcome = toolset.limit_outcome(invocation, call.channel) \
                    if calls > toolset.max_calls else runner.run(
                        toolset.handle(invocation, approver, call.channel))
                outcomes.append(outcome)
                logger.info("generate: tool %s %s (%s)", call.recipient, "failed" if
                            outcome.result.is_error else "answered", outcome.decision)
                printer.tool_result(outcome)
                session.add_tool_result(outcome.message, call.call_id, outcome.result.is_error)
            if calls > toolset.max_calls + 1:
                break
        printer.end()
        reply = collect_reply(events)
        if json_mode:
            data = reply.to_json()
            done = {o.invocation.call_id for o in outcomes}
            data["tool_calls"] = tool_calls_json(outcomes) + [
                {"recipient": c.recipient, "arguments": c.parsed if c.parsed is not None
                 else c.arguments, "result": None}
                for c in reply.tool_calls if c.call_id not in done]
            data["analysis"] = "\n\n".join(
                e.message.content for e in all_events if isinstance(e, MessageDone)
                and e.message.channel == "analysis" and not e.message.recipient)
            data["final"] = toolset.render_citations(reply.final, session.log.chat_id) \
                if toolset.browser is not None else reply.final
            sys.stdout.write(json_terminal_safe(json.dumps(data, ensure_ascii=False)) + "\n")
        elif printer.wrote_final and not reply.final.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        if reply.reason == "error":
            print(f"{prog}: error: generation failed: {reply.error}", file=sys.stderr)
            return 1
        if reply.no_answer:
            hint = "" if show_thinking or json_mode else "; --show-thinking shows its reasoning"
            print(f"{prog}: no answer: {reply.no_answer}{hint}", file=sys.stderr)
            return NO_ANSWER
        return 0
    except (KeyboardInterrupt, Terminated):
        # stopped while a tool ran: mark the saved call (a chat that cannot be saved: the stop
        # is what is reported)
        with contextlib.suppress(OSError, HarmonyTuiError):
            session.mark_stopped()
        raise
    finally:
        signals.restore()
        runner.run(toolset.aclose())
        runner.close()
        engine.close()


def save_partial(stream: Any, recorder: Any, seen: list[Event] | None = None,
                 timeout: float = 5.0) -> None:
    """Ctrl+C, SIGTERM, SIGHUP: stop the turn and save what it produced (marked cancelled).

    If the engine does not hand the turn back within ``timeout`` seconds, the text already
    received (``seen`` and whatever is queued) is saved instead.
    """
    import time

    from harmony_tui.engine.messages import Message

    stream.cancel()
    events = list(seen or [])
    if any(isinstance(event, TurnEnd) for event in events):
        return  # the turn had ended: its messages are saved
    stats = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = stream.get(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            break
        events.append(event)
        if isinstance(event, MessageDone):
            recorder.add(event.message)
        elif isinstance(event, Stats):
            stats = event.to_dict()
        elif isinstance(event, TurnEnd):
            recorder.finish(list(event.messages), stats, "cancelled")
            return
    # No answer from the engine: save the text of the message it was writing, as received.
    pending: list[tuple[str, str]] = []
    for event in events:
        if isinstance(event, MessageDone):
            pending = []
        elif isinstance(event, TextDelta) and event.recipient is None:
            if pending and pending[-1][0] == event.channel:
                pending[-1] = (event.channel, pending[-1][1] + event.text)
            else:
                pending.append((event.channel, event.text))
    recorder.finish([*recorder.added_messages, *(Message("assistant", text, channel=channel)
                                                 for channel, text in pending)],
                    stats, "cancelled")


def open_session(settings: Settings, lock: Any = None) -> ChatSession:
    """The chat of ``--chat`` (resumed or new, saved under ``lock``), or an unsaved one."""
    from harmony_tui.sessions.chat_log import ChatLog

    if settings.chat_path is None:
        return ChatSession()
    log = settings.chat_log or ChatLog(
        profile=settings.profile,
        prompt_config=str(settings.prompt_config_path) if settings.prompt_config_path else None,
        prompt=settings.prompt.model_dump(mode="json", exclude_defaults=True))
    return ChatSession(log, settings.chat_path, lock)
