"""``harmony-tui generate``: one prompt, the answer streamed to stdout, tools run as asked.

Tools turned on with ``--python`` / ``--browser`` / ``--apply-patch`` run without asking (the
person asked for them on the command line). Tools on only in the config that would ask first in
the app are refused, and the model is told so. With ``--chat NAME`` every message is saved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any, TextIO

from harmony_tui.config.placeholders import Clock, expander
from harmony_tui.config.settings import Settings
from harmony_tui.conversation import (
    Conversation,
    LocalCalls,
    ToolFinished,
    ToolLimitReached,
    ToolOff,
    TurnFinished,
)
from harmony_tui.conversation.stats import speculation_summary
from harmony_tui.engine.events import Event, MessageDone, ParseIssue, TextDelta, ToolCall
from harmony_tui.exit_signals import Terminated
from harmony_tui.sessions.cache import load_chat_cache, save_chat_cache
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.text_safety import json_terminal_safe, terminal_safe
from harmony_tui.tools.base import ApprovalRequest, ToolInvocation
from harmony_tui.tools.toolset import Decision, ToolSet, tool_calls_json

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
        self.last_final = ""  # the last piece of the answer written (does it end a line?)

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
                self.last_final = event.text
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

        elif isinstance(event, ToolFinished):
            self.tool_result(event)
        elif isinstance(event, ToolOff) and not self.json_mode:
            self._close_thinking()
            self.err.write(f"[tool off] {terminal_safe(event.call.recipient)}: not run "
                           f"({event.hint})\n")
        elif isinstance(event, ToolLimitReached) and not self.json_mode:
            self._close_thinking()
            self.err.write(f"[tool limit] stopped after {event.limit} tool calls "
                           "(max_calls_per_turn)\n")

    def tool_result(self, event: ToolFinished) -> None:
        if self.json_mode:
            return
        status = "result" if event.status == "done" else event.status
        text = terminal_safe(event.text)  # no escape sequence reaches the terminal
        shown = text if len(text) <= 2000 else text[:2000] + f"… ({len(text)} characters)"
        self.err.write(f"[tool {status}] {event.call.recipient}: {shown}\n")
        self.err.flush()

    def end(self) -> None:
        self._close_thinking()


def run_generate(settings: Settings, prompt: str, *, json_mode: bool, show_thinking: bool,
                 flagged: set[str], progress: Any = None, prog: str = "harmony-tui",
                 lock: Any = None) -> int:
    """Generate one reply (with its tool calls); returns the exit status: 0 answered, 1 the
    generation failed, 3 (``NO_ANSWER``) the model wrote no answer, said on standard error.

    ``lock`` is the ``--chat`` file's lock, taken before the chat was read. A chat that cannot
    be saved raises ``ChatSaveError`` (exit 2; the file on disk stays as it was). Ctrl+C,
    SIGTERM and SIGHUP stop the turn, save it (marked stopped) and raise ``KeyboardInterrupt``
    or ``Terminated``.
    """
    from harmony_tui.logs import configure_file_log
    from harmony_tui.remote import start_engine

    configure_file_log(settings.logs_dir)
    Clock.from_env(settings.prompt.fixed_time)  # a bad clock is said before the model loads
    engine = start_engine(settings.remote, settings.model_for_engine(),
                          models_dir=settings.models_dir, progress=progress)
    try:
        if settings.params.draft_model is not None and not settings.remote.is_remote:
            engine.load_draft(settings.params.draft_model).result()  # bad draft: said now
        if progress is not None:
            progress.done()
        return asyncio.run(_generate(engine, settings, prompt, json_mode=json_mode,
                                     show_thinking=show_thinking, flagged=flagged, prog=prog,
                                     lock=lock))
    finally:
        engine.close()


async def _generate(engine: Any, settings: Settings, prompt: str, *, json_mode: bool,
                    show_thinking: bool, flagged: set[str], prog: str, lock: Any) -> int:
    from harmony_tui.engine.engine import TurnRequest
    from harmony_tui.logs import logger

    clock = Clock.from_env(settings.prompt.fixed_time)
    expand = expander(settings.prompt.placeholders, clock)
    tools_config = settings.prompt.tools.with_flags(
        python="python" in flagged, browser="browser" in flagged,
        apply_patch="apply_patch" in flagged)
    toolset = ToolSet(tools_config)
    await toolset.astart()
    for error in toolset.errors:
        print(f"{prog}: warning: {error}", file=sys.stderr)
    session = open_session(settings, lock)
    await load_chat_cache(engine, session.path)
    printer = Printer(json_mode, show_thinking, sys.stdout, sys.stderr)
    setup = toolset.declare(settings.prompt.setup(expand))
    unsent = getattr(engine, "unsent_settings", None)
    for name, why in (unsent(settings.params, setup) if unsent else {}).items():
        print(f"{prog}: warning: {name} is not sent to the remote server: {why}",
              file=sys.stderr)
    model_name = engine.model.name if engine.model is not None else settings.model

    async def approver(call: ToolInvocation, request: ApprovalRequest) -> Decision:
        namespace = call.recipient.split(".", 1)[0] if not call.recipient.startswith(
            "functions.apply_patch") else "apply_patch"
        if namespace in flagged:
            return "once"
        print(f"{prog}: warning: refused {call.recipient} (it asks for approval in the app; "
              f"enable it with --{namespace.replace('_', '-')} to run it here)", file=sys.stderr)
        return "deny"

    conversation = Conversation(engine.submit, session, toolset, approver=approver,
                                policy=LocalCalls(toolset, "the {tool} tool is off; run it "
                                                  "with {flag}"))
    stopper = _Stopper(conversation)
    finished: TurnFinished | None = None
    analysis: list[str] = []
    try:
        session.add_user(expand(prompt))
        request = TurnRequest(session.messages, setup, settings.params, today=clock.today())
        turn = conversation.run_turn(request, model=model_name,
                                     record_params=settings.params.model_dump(mode="json"))
        async with stopper.installed():
            try:
                async for events in turn:
                    for event in events:
                        if isinstance(event, TurnFinished):
                            finished = event
                        elif isinstance(event, MessageDone) and event.message.channel == \
                                "analysis" and not event.message.recipient:
                            analysis.append(event.message.content)
                        printer.event(event)
            except Exception:  # the output is gone (terminal closed ...): save, then stop
                await conversation.finish_unread(turn, stopper.timeout)
                raise
    except asyncio.CancelledError:
        stopper.raise_if_stopped()
        raise
    finally:
        await toolset.aclose()
    stopper.raise_if_stopped()
    assert finished is not None
    printer.end()
    await save_chat_cache(engine, session.path)
    stats = finished.stats
    logger.info("generate: turn ended: %s %s", finished.reason, stats.to_dict() if stats else "")
    end = finished.end
    if json_mode:
        reply = {
            "final": finished.answer,
            "analysis": "\n\n".join(analysis),
            "tool_calls": tool_calls_json(list(finished.outcomes)) + [
                {"recipient": c.recipient, "arguments": c.parsed if c.parsed is not None
                 else c.arguments, "result": None} for c in end.tool_calls],
            "stats": stats.to_dict() if stats else None,
            "finish_reason": end.reason,
            "no_answer": finished.no_answer,
            "error": end.error,
        }
        sys.stdout.write(json_terminal_safe(json.dumps(reply, ensure_ascii=False)) + "\n")
    elif printer.wrote_final and not printer.last_final.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    summary = speculation_summary(stats) if stats is not None and not json_mode else None
    if summary:
        print(f"{prog}: {summary}", file=sys.stderr)
    if end.reason == "error":
        print(f"{prog}: error: generation failed: {end.error}", file=sys.stderr)
        return 1
    if finished.no_answer:
        hint = "" if show_thinking or json_mode else "; --show-thinking shows its reasoning"
        print(f"{prog}: no answer: {finished.no_answer}{hint}", file=sys.stderr)
        return NO_ANSWER
    return 0


class _Stopper:
    """Ctrl+C, SIGTERM and SIGHUP stop the turn; it is saved (waiting up to ``timeout`` s for
    the engine, then keeping what arrived), and the signal is raised once the turn is over."""

    def __init__(self, conversation: Conversation, timeout: float = 5.0) -> None:
        self.conversation = conversation
        self.timeout = timeout
        self.signal: int | None = None
        self._reader: asyncio.Task | None = None
        self._saver: asyncio.Future | None = None

    @contextlib.asynccontextmanager
    async def installed(self) -> Any:
        loop = asyncio.get_running_loop()
        self._reader = asyncio.current_task()
        numbers = [n for n in (signal.SIGINT, getattr(signal, "SIGTERM", None),
                               getattr(signal, "SIGHUP", None)) if n is not None]
        for number in numbers:
            loop.add_signal_handler(number, self._on_signal, number)
        try:
            yield
        finally:
            for number in numbers:
                loop.remove_signal_handler(number)
            if self._saver is not None and not self._saver.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await self._saver

    def _on_signal(self, number: int) -> None:
        if self.signal is not None:
            return
        self.signal = number
        self._saver = asyncio.ensure_future(self._stop_and_save())

    async def _stop_and_save(self) -> None:
        reader = self._reader
        await self.conversation.stop_and_save(self.timeout)
        if reader is not None and not reader.done():
            reader.cancel()  # saved without the engine's answer: stop waiting for it

    def raise_if_stopped(self) -> None:
        if self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is not None:
            raise Terminated(self.signal)


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
