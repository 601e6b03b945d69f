"""Speaking an answer while it streams: a queue of sentences -> TTS -> sink, on two background
threads (one synthesises the next sentence while the other plays the current one).

``SpokenAnswer`` is what a UI feeds: the final channel's deltas go in, complete sentences come
out of the chunker, are made speakable and queued; speech starts with the first sentence.
``Speaker.stop()`` is barge-in: queued sentences are dropped and playback stops at once. A TTS or
device failure is reported once through ``on_error`` and the rest of that answer is skipped; the
text answer is not affected.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from harmony_tui.voice.audio_io import AudioSink
from harmony_tui.voice.errors import VoiceError
from harmony_tui.voice.sentences import SentenceChunker
from harmony_tui.voice.speakable import to_speakable
from harmony_tui.voice.tts import TextToSpeech

_STOP = object()


class Speaker:
    """Speaks queued sentences in order, in the background."""

    def __init__(self, tts: TextToSpeech, sink: AudioSink, *,
                 on_error: Callable[[str], None] | None = None,
                 on_speaking: Callable[[bool], None] | None = None) -> None:
        self.tts = tts
        self.sink = sink
        self.on_error = on_error
        self.on_speaking = on_speaking
        self.first_audio_time: float | None = None  # when the latest answer's audio started
        self.spoken: list[str] = []  # sentences played to the end (for logs and tests)
        self._epoch = 0
        self._failed_epoch = -1  # the answer whose speech failed: its other sentences are skipped
        self._pending = 0
        self._idle = threading.Condition()
        self._texts: queue.Queue[object] = queue.Queue()
        self._audio: queue.Queue[object] = queue.Queue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._synthesise_loop, name="voice-tts", daemon=True),
            threading.Thread(target=self._play_loop, name="voice-play", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- the caller's side ----------------------------------------------------------------

    def say(self, text: str) -> None:
        """Queue one sentence (plain text) to be spoken after the ones before it."""
        if self._closed or not text.strip():
            return
        with self._idle:
            if self._pending == 0:
                self.first_audio_time = None
                self._notify_speaking(True)
            self._pending += 1
        self._texts.put((self._epoch, text))

    def stop(self) -> None:
        """Barge-in: drop every queued sentence and stop the one playing, at once."""
        self._epoch += 1
        self.sink.stop()
        for q in (self._texts, self._audio):
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    q.put(_STOP)
                    break
                self._done_one()

    @property
    def speaking(self) -> bool:
        """Whether anything is queued, being synthesised or playing."""
        return self._pending > 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until everything queued has been spoken (or dropped); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop speaking and end the threads (on quit); the sink is closed too."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._texts.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        try:
            self.sink.close()
        except VoiceError:
            pass

    # -- the threads ----------------------------------------------------------------------

    def _notify_speaking(self, speaking: bool) -> None:
        if self.on_speaking is not None:
            try:
                self.on_speaking(speaking)
            except Exception:  # a UI callback must never kill the speech threads
                pass

    def _done_one(self) -> None:
        with self._idle:
            self._pending = max(0, self._pending - 1)
            if self._pending == 0:
                if self._failed_epoch == self._epoch:
                    self._epoch += 1  # the failed answer is over: the next one is spoken
                self._idle.notify_all()
                self._notify_speaking(False)

    def _fail(self, epoch: int, message: str, *, playback: bool = False) -> None:
        """Report a failure once and skip the rest of this answer. After a TTS failure the
        sentences already synthesised still play; after a playback failure nothing does."""
        if epoch == self._epoch and epoch != self._failed_epoch:
            self._failed_epoch = epoch
            if playback:
                self.stop()
            if self.on_error is not None:
                try:
                    self.on_error(message)
                except Exception:
                    pass

    def _synthesise_loop(self) -> None:
        while True:
            item = self._texts.get()
            if item is _STOP:
                self._audio.put(_STOP)
                return
            epoch, text = item  # type: ignore[misc]
            if epoch != self._epoch or epoch == self._failed_epoch:
                self._done_one()
                continue
            try:
                audio = self.tts.synthesize(text)
            except VoiceError as err:
                self._done_one()
                self._fail(epoch, f"speech stopped: {err}")
                continue
            except Exception as err:  # an engine bug must not kill the thread
                self._done_one()
                self._fail(epoch, f"speech stopped: {self.tts.name} failed: "
                           f"{type(err).__name__}: {err}")
                continue
            self._audio.put((epoch, text, audio, self.tts.sample_rate))

    def _play_loop(self) -> None:
        while True:
            item = self._audio.get()
            if item is _STOP:
                return
            epoch, text, audio, rate = item  # type: ignore[misc]
            try:
                if epoch == self._epoch and np.asarray(audio).size:
                    if self.first_audio_time is None:
                        self.first_audio_time = time.monotonic()
                    if self.sink.play(audio, rate) and epoch == self._epoch:
                        self.spoken.append(text)
            except VoiceError as err:
                self._fail(epoch, f"speech stopped: {err}", playback=True)
            except Exception as err:
                self._fail(epoch, f"speech stopped: audio output failed: "
                           f"{type(err).__name__}: {err}", playback=True)
            finally:
                self._done_one()


class SpokenAnswer:
    """One streamed answer, spoken sentence by sentence.

    Feed it only the final channel's text (never analysis or tool calls); call ``finish`` when
    the turn ends, or ``cancel`` to stop speaking it.
    """

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.chunker = SentenceChunker()
        self.sentences: list[str] = []  # the speakable sentences queued so far

    def _queue(self, pieces: list[str]) -> None:
        for piece in pieces:
            text = to_speakable(piece)
            if text:
                self.sentences.append(text)
                self.speaker.say(text)

    def feed(self, delta: str) -> None:
        self._queue(self.chunker.feed(delta))

    def finish(self) -> None:
        self._queue(self.chunker.flush())

    def cancel(self) -> None:
        self.chunker = SentenceChunker()
        self.speaker.stop()
