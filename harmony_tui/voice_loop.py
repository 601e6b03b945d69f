"""``harmony-tui voice``: a push-to-talk conversation in a plain terminal.

Enter starts listening; the trailing silence (or Enter again) ends it. What was heard is printed
and sent through the conversation loop like a typed message (same settings, tools and chat log as
the app); the answer streams to the terminal and is spoken sentence by sentence. Enter while it
speaks stops the speech; Ctrl+C stops the answer; Ctrl+D (end of input) quits.
``--input-wav`` uses a WAV file as the microphone and ``--output-wav`` writes what was spoken to a
file instead of the loudspeaker (trying voice without a sound card, and the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harmony_tui.config.placeholders import Clock, expander
from harmony_tui.conversation import Conversation, LocalCalls, TurnFinished
from harmony_tui.oneshot import Printer
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.text_safety import terminal_safe
from harmony_tui.voice_control import VoiceControl

LEVEL_INTERVAL = 0.2


class Lines:
    """Lines of standard input, read on a thread; None at the end of input."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.ended = False
        self._loop = loop
        threading.Thread(target=self._read, name="stdin-lines", daemon=True).start()

    def _read(self) -> None:
        for line in iter(sys.stdin.readline, ""):
            self._loop.call_soon_threadsafe(self.queue.put_nowait, line)
        self._loop.call_soon_threadsafe(self.queue.put_nowait, None)

    async def get(self) -> str | None:
        if self.ended:
            return None
        line = await self.queue.get()
        if line is None:
            self.ended = True
        return line


def run_voice(settings: Any, *, input_wav: Path | None, output_wav: Path | None,
              progress: Any = None, prog: str = "harmony-tui", lock: Any = None) -> int:
    """Load the model and the voice, then talk until the end of input. Exit status 0."""
    from harmony_tui.logs import configure_file_log
    from harmony_tui.remote import start_engine

    configure_file_log(settings.logs_dir)
    engine = start_engine(settings.remote, settings.model_for_engine(),
                          models_dir=settings.models_dir, progress=progress)
    if progress is not None:
        progress.done()
    try:
        return asyncio.run(VoiceLoop(engine, settings, input_wav, output_wav, prog,
                                     lock).run())
    finally:
        engine.close()


class VoiceLoop:
    """One spoken session in a plain terminal."""

    def __init__(self, engine: Any, settings: Any, input_wav: Path | None,
                 output_wav: Path | None, prog: str, lock: Any) -> None:
        self.engine = engine
        self.settings = settings
        self.prog = prog
        self.output_wav = output_wav
        self.sink: Any = None
        source = None
        if input_wav is not None:
            from harmony_tui.voice.audio_io import WavFileSource

            source = lambda: WavFileSource(input_wav)  # noqa: E731
        if output_wav is not None:
            from harmony_tui.voice.audio_io import MemorySink

            self.sink = MemorySink()
        self.voice = VoiceControl(settings.voice, source_factory=source, sink=self.sink,
                                  on_error=self.say_error)
        self.session = self._session(lock)
        self.lines: Lines | None = None
        self._level_at = 0.0

    def _session(self, lock: Any) -> ChatSession:
        from harmony_tui.oneshot import open_session
        from harmony_tui.sessions.store import free_path, timestamp_name

        if self.settings.chat_path is not None:
            return open_session(self.settings, lock)
        session = ChatSession(path=free_path(self.settings.chats_dir /
                                             f"{timestamp_name()}.json"))
        with contextlib.suppress(Exception):  # a read-only folder is said when a save fails
            session.claim()
        return session

    def say_error(self, text: str) -> None:
        print(f"{self.prog}: warning: {text}", file=sys.stderr, flush=True)

    def status(self, text: str) -> None:
        sys.stderr.write(f"\r\033[K{text}" if sys.stderr.isatty() else f"{text}\n")
        sys.stderr.flush()

    # -- the session ----------------------------------------------------------------------------

    async def run(self) -> int:
        from harmony_tui.tools.toolset import ToolSet

        loop = asyncio.get_running_loop()
        self.status("loading the speech model…")
        await asyncio.to_thread(self.voice.load)
        self.lines = Lines(loop)
        toolset = ToolSet(self.settings.prompt.tools)
        await toolset.astart()
        for error in toolset.errors:
            self.say_error(error)
        self.conversation = Conversation(self.engine.submit, self.session, toolset,
                                         approver=self.approve, policy=LocalCalls(toolset))
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            while True:
                self.status("Enter: speak · Ctrl+D: quit")
                line = await self.lines.get()
                if line is None:
                    break
                text = await self.listen(loop)
                if text:
                    await self.answer(text)
                if self.lines.ended:
                    break
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await toolset.aclose()
            self.voice.close()
            if self.output_wav is not None and self.sink is not None:
                self.sink.write_wav(self.output_wav)
            self.session.release()
        print(file=sys.stderr)
        return 0

    def _interrupt(self) -> None:
        """Ctrl+C: stop listening, or the answer and its speech."""
        if not self.voice.cancel() and not self.conversation.stop():
            self.voice.stop_speaking()

    async def listen(self, loop: asyncio.AbstractEventLoop) -> str:
        """Listen until the trailing silence or Enter; the transcript ("" if none)."""
        done: asyncio.Future = loop.create_future()

        def finished(recording: Any) -> None:  # the recorder's thread
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(recording))

        self.voice.listen(finished, self._level)
        while not done.done():
            line = asyncio.ensure_future(self.lines.get())
            await asyncio.wait({done, line}, return_when=asyncio.FIRST_COMPLETED)
            if line.done() and line.result() is not None:
                self.voice.send()  # Enter: send what was said
            elif not line.done():
                line.cancel()
            elif line.result() is None:  # the end of input: let listening end by itself
                await done
        recording = done.result()
        if recording.error:
            self.say_error(f"listening stopped: {recording.error}")
        if recording.cancelled:
            self.status("cancelled")
            return ""
        if not recording.usable:
            self.status("no speech heard: nothing was sent\n")
            return ""
        self.status("transcribing…")
        text = await asyncio.to_thread(self.voice.transcribe, recording)
        if not text:
            self.status("nothing intelligible was heard: nothing was sent\n")
            return ""
        self.status("")
        print(f"you: {terminal_safe(text)}", flush=True)
        return text

    def _level(self, level_db: float, elapsed: float) -> None:  # the recorder's thread
        now = time.monotonic()
        if now - self._level_at >= LEVEL_INTERVAL:
            self._level_at = now
            bars = "█" * max(0, min(20, int((level_db + 70) / 3.5)))
            self.status(f"listening {elapsed:4.1f}s {level_db:6.1f} dB {bars}")

    async def answer(self, text: str) -> None:
        """Send ``text`` and stream the answer to the terminal while it is spoken."""
        from harmony_tui.engine.engine import TurnRequest

        settings = self.settings
        clock = Clock.from_env(settings.prompt.fixed_time)
        expand = expander(settings.prompt.placeholders, clock)
        self.session.add_user(expand(text))
        setup = self.conversation.tools.declare(settings.prompt.setup(expand))
        params = self.conversation.params_for_turn(settings.params,
                                                   settings.prompt.reseed_each_turn)
        request = TurnRequest(self.session.messages, setup, params,
                              today=clock.today() if clock.fixed else None)
        printer = Printer(False, False, sys.stdout, sys.stderr)
        spoken = self.voice.spoken_turn()
        finished: TurnFinished | None = None
        async for events in self.conversation.run_turn(
                request, model=getattr(self.engine.model, "name", None) or settings.model,
                record_params=settings.params.model_dump(mode="json")):
            if spoken is not None:
                spoken.feed(events)
            for event in events:
                printer.event(event)
                if isinstance(event, TurnFinished):
                    finished = event
        printer.end()
        if printer.wrote_final:
            print(flush=True)
        if finished is not None and finished.no_answer:
            self.say_error(f"no answer: {finished.no_answer}")
        await self.wait_spoken()

    async def wait_spoken(self) -> None:
        """Wait until the answer is spoken; Enter stops the speech (the end of input lets it
        finish)."""
        while self.voice.speaking:
            if self.lines.ended:
                await asyncio.sleep(0.05)
                continue
            line = asyncio.ensure_future(self.lines.get())
            done, _ = await asyncio.wait({line}, timeout=0.1)
            if not done:
                line.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await line
            elif line.result() is not None:
                self.voice.stop_speaking()
                return

    async def approve(self, call: Any, request: Any) -> str:
        """Ask on the terminal before a tool runs: y once, a for this chat, n deny."""
        print(f"\n{terminal_safe(request.title)}\n{terminal_safe(str(request.body))[:2000]}\n"
              "Allow? [y] once · [a] for this chat · [n] no: ", end="", file=sys.stderr,
              flush=True)
        line = await self.lines.get()
        answer = (line or "").strip().lower()
        return {"y": "once", "a": "chat"}.get(answer[:1], "deny")
