"""End-pointing: when speech starts and ends (webrtcvad plus a level threshold), and the
``Recorder``, one listening session running in its own thread.

A frame counts as speech when webrtcvad says so *and* its level is above the silence
threshold (dBFS), so a quiet hum never keeps the microphone open. Speech starts after
``START_SECONDS`` of speech frames and ends after ``silence_seconds`` without any.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harmony_tui.voice.audio import SAMPLE_RATE, level_dbfs
from harmony_tui.voice.audio_io import AudioSource
from harmony_tui.voice.errors import VoiceError

FRAME_SECONDS = 0.03  # webrtcvad takes 10, 20 or 30 ms frames
START_SECONDS = 0.09  # this much speech (in a row) starts an utterance
PREROLL_SECONDS = 0.3  # kept before the detected start (the first consonant)
TAIL_SECONDS = 0.25  # kept after the last speech frame
PAUSE_SECONDS = 0.3  # silence after speech that may be the end: on_pause fires (speculation)

EndReason = Literal["silence", "max_seconds", "stopped", "cancelled", "end_of_input", "error"]


@dataclass(frozen=True)
class EndpointConfig:
    """How an utterance is found in the audio."""

    silence_seconds: float = 0.8
    max_seconds: float = 30.0
    threshold_db: float = -50.0
    aggressiveness: int = 2

    @classmethod
    def from_settings(cls, settings: Any) -> EndpointConfig:
        return cls(silence_seconds=settings.silence_seconds, max_seconds=settings.max_seconds,
                   threshold_db=settings.silence_threshold_db,
                   aggressiveness=settings.vad_aggressiveness)


def _webrtc_vad(aggressiveness: int) -> Any:
    try:
        import webrtcvad
    except ImportError:
        return None  # the level threshold alone decides (install the voice extra for webrtcvad)
    return webrtcvad.Vad(aggressiveness)


class Endpointer:
    """Feed samples; it tells whether an utterance has started and ended."""

    def __init__(self, config: EndpointConfig = EndpointConfig(),
                 sample_rate: int = SAMPLE_RATE) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.frame = int(sample_rate * FRAME_SECONDS)
        self._vad = _webrtc_vad(config.aggressiveness)
        self._carry = np.zeros(0, np.int16)
        self.samples = 0  # samples consumed (whole frames)
        self.start: int | None = None  # sample where speech started
        self.end: int | None = None  # sample after the last speech frame, once ended
        self.last_speech: int | None = None
        self._run = 0  # consecutive speech frames before the start
        self.level = -100.0  # of the last block fed

    @property
    def started(self) -> bool:
        return self.start is not None

    @property
    def ended(self) -> bool:
        return self.end is not None

    def is_speech(self, frame: np.ndarray) -> bool:
        if level_dbfs(frame) < self.config.threshold_db:
            return False
        if self._vad is None:
            return True
        return bool(self._vad.is_speech(frame.astype("<i2").tobytes(), self.sample_rate))

    def feed(self, block: np.ndarray) -> bool:
        """Take the next samples (int16); True once the utterance has ended."""
        if block.size:
            self.level = level_dbfs(block)
        data = np.concatenate([self._carry, block]) if self._carry.size else block
        whole = data.size - data.size % self.frame
        for offset in range(0, whole, self.frame):
            if self.end is not None:
                break
            frame = data[offset:offset + self.frame]
            position = self.samples
            self.samples += self.frame
            if self.is_speech(frame):
                self.last_speech = self.samples
                if self.start is None:
                    self._run += 1
                    if self._run * FRAME_SECONDS >= START_SECONDS - 1e-9:
                        self.start = position - (self._run - 1) * self.frame
            elif self.start is None:
                self._run = 0
            if (self.start is not None and self.last_speech is not None
                    and (self.samples - self.last_speech) / self.sample_rate
                    >= self.config.silence_seconds):
                self.end = self.last_speech
        self._carry = data[whole:].copy()
        return self.end is not None

    def utterance(self, audio: np.ndarray, end: int | None = None) -> np.ndarray:
        """The part of ``audio`` (everything fed) worth transcribing: the speech with a little
        margin, or all of it when no speech was found. ``end`` (a sample) overrides where the
        speech ends (default: where it ended, else the end of ``audio``)."""
        if self.start is None:
            return audio
        first = max(0, self.start - int(PREROLL_SECONDS * self.sample_rate))
        last = end if end is not None else self.end if self.end is not None else audio.size
        return audio[first:min(audio.size, last + int(TAIL_SECONDS * self.sample_rate))]


@dataclass
class Recording:
    """The result of one listening session; nothing recorded is dropped on errors."""

    audio: np.ndarray  # the utterance (int16, 16 kHz): speech plus margins, or all if none
    reason: EndReason
    speech_detected: bool
    seconds: float  # how long the session listened (audio time)
    sample_rate: int = SAMPLE_RATE
    error: str | None = None
    speech_end_time: float | None = None  # monotonic time the last speech frame was read
    speech_end_sample: int | None = None  # where the last speech frame ended

    @property
    def cancelled(self) -> bool:
        return self.reason == "cancelled"

    @property
    def usable(self) -> bool:
        """Worth transcribing: not cancelled and some speech was heard."""
        return not self.cancelled and self.speech_detected and self.audio.size > 0


LevelCallback = Callable[[float, float], None]  # (level dBFS, elapsed seconds)


class Recorder:
    """One push-to-talk listening session on its own thread; never blocks the caller.

    ``start()`` opens the source and listens; it ends by itself after the trailing silence,
    ``max_seconds`` or the end of the input, or when the caller calls ``stop()`` (send what was
    said) or ``cancel()``. ``on_level(level_db, elapsed)`` is called for every block, and
    ``on_done(recording)`` once, both from the recorder's thread. ``on_pause(audio,
    speech_end_sample)`` fires when speech has paused for ``PAUSE_SECONDS``, with the utterance
    as it would be if it ended there: a caller may start transcribing it while the rest of the
    trailing silence is awaited (``Recording.speech_end_sample`` tells whether it did end there).
    """

    def __init__(self, source: AudioSource, config: EndpointConfig = EndpointConfig(), *,
                 on_level: LevelCallback | None = None,
                 on_done: Callable[[Recording], None] | None = None,
                 on_pause: Callable[[np.ndarray, int], None] | None = None) -> None:
        self.source = source
        self.config = config
        self.on_level = on_level
        self.on_done = on_done
        self.on_pause = on_pause
        self._request: EndReason | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.recording: Recording | None = None

    def start(self) -> Recorder:
        if self._thread is not None:
            raise RuntimeError("a Recorder listens once; make a new one")
        self._thread = threading.Thread(target=self._run, name="voice-recorder", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def stop(self) -> None:
        """End now and keep what was said (the "send" press)."""
        self._request = self._request or "stopped"

    def cancel(self) -> None:
        """End now; the recording is marked cancelled (the caller sends nothing)."""
        self._request = "cancelled"

    def wait(self, timeout: float | None = None) -> Recording | None:
        """The recording once the session has ended (None if ``timeout`` passed first)."""
        self._done.wait(timeout)
        return self.recording

    def _run(self) -> None:
        endpointer = Endpointer(self.config, SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        reason: EndReason = "end_of_input"
        error: str | None = None
        speech_end_time: float | None = None
        paused_at: int | None = None
        block = endpointer.frame
        total = 0
        try:
            self.source.open()
            while True:
                if self._request is not None:
                    reason = self._request
                    break
                data = self.source.read(block)
                if data is None:
                    reason = "end_of_input"
                    break
                chunks.append(data)
                total += data.size
                before = endpointer.last_speech
                ended = endpointer.feed(data)
                if endpointer.last_speech != before:
                    speech_end_time = time.monotonic()
                if self.on_level is not None:
                    self.on_level(endpointer.level, total / SAMPLE_RATE)
                last = endpointer.last_speech
                if (self.on_pause is not None and endpointer.started and not ended
                        and last is not None and last != paused_at
                        and endpointer.samples - last >= PAUSE_SECONDS * SAMPLE_RATE):
                    paused_at = last
                    self.on_pause(endpointer.utterance(np.concatenate(chunks), last), last)
                if ended:
                    reason = "silence"
                    break
                if total / SAMPLE_RATE >= self.config.max_seconds:
                    reason = "max_seconds"
                    break
        except VoiceError as err:
            reason, error = "error", str(err)
        except Exception as err:  # a device or engine failure: report it, keep the audio
            reason, error = "error", f"recording failed: {type(err).__name__}: {err}"
        finally:
            try:
                self.source.close()
            except Exception:  # already failed: the recording matters more
                pass
        if self._request == "cancelled":
            reason = "cancelled"
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        self.recording = Recording(
            audio=endpointer.utterance(audio), reason=reason,
            speech_detected=endpointer.started, seconds=total / SAMPLE_RATE, error=error,
            speech_end_time=speech_end_time, speech_end_sample=endpointer.last_speech)
        self._done.set()
        if self.on_done is not None:
            self.on_done(self.recording)


def listen(source: AudioSource, config: EndpointConfig = EndpointConfig(),
           on_level: LevelCallback | None = None) -> Recording:
    """Listen on the calling thread until the utterance ends (for scripts and tests)."""
    recorder = Recorder(source, config, on_level=on_level).start()
    recording = recorder.wait()
    assert recording is not None
    return recording
