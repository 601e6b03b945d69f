"""Where audio comes from and goes to: ``AudioSource`` / ``AudioSink`` and the file and memory
implementations (the sounddevice ones live in ``devices``), so the whole voice pipeline runs
with recorded speech and no sound card.

Sources deliver mono int16 samples at 16 kHz (``SAMPLE_RATE``); sinks accept mono int16 at any
rate.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from harmony_tui.voice.audio import SAMPLE_RATE, read_wav, resample, to_int16, write_wav


class AudioSource(ABC):
    """A microphone-like stream of mono int16 samples at ``sample_rate`` (16 kHz)."""

    name: str = "audio source"
    sample_rate: int = SAMPLE_RATE

    def open(self) -> None:  # noqa: B027 - optional hook
        """Start delivering audio (a device starts recording here)."""

    @abstractmethod
    def read(self, frames: int) -> np.ndarray | None:
        """Up to ``frames`` samples, blocking until they are there; ``None`` at the end of input.

        A shorter block is returned only just before the end. Raises ``AudioDeviceError`` when
        the device fails (unplugged); samples read before stay valid.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop and release the device. Safe to call twice."""

    def __enter__(self) -> AudioSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArraySource(AudioSource):
    """Samples held in memory, delivered at once or paced in real time (like a microphone)."""

    def __init__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *,
                 realtime: bool = False, name: str = "memory") -> None:
        self._samples = resample(to_int16(samples), sample_rate, SAMPLE_RATE)
        self.realtime = realtime
        self.name = name
        self._pos = 0
        self._started: float | None = None

    @property
    def duration(self) -> float:
        return self._samples.size / self.sample_rate

    def open(self) -> None:
        self._pos = 0
        self._started = time.monotonic()

    def read(self, frames: int) -> np.ndarray | None:
        if self._started is None:
            self.open()
        if self._pos >= self._samples.size:
            return None
        block = self._samples[self._pos:self._pos + frames]
        self._pos += block.size
        if self.realtime:  # the block is "recorded" once its last sample's time has come
            due = self._started + self._pos / self.sample_rate  # type: ignore[operator]
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return block


class WavFileSource(ArraySource):
    """A 16-bit PCM WAV file as the microphone (resampled to 16 kHz mono)."""

    def __init__(self, path: Path | str, *, realtime: bool = False) -> None:
        samples, rate = read_wav(path)
        super().__init__(samples, rate, realtime=realtime, name=str(path))


class AudioSink(ABC):
    """A loudspeaker-like target for mono int16 audio."""

    name: str = "audio sink"

    @abstractmethod
    def play(self, audio: np.ndarray, sample_rate: int) -> bool:
        """Play ``audio`` and return when it has been played (True) or was stopped (False).

        Raises ``AudioDeviceError`` when the device fails.
        """

    @abstractmethod
    def stop(self) -> None:
        """Interrupt the ``play`` in progress at once (barge-in); later plays work again."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""


class MemorySink(AudioSink):
    """Collects what is "played" (for tests and benchmarks), optionally at real-time speed.

    With ``realtime=True`` a ``play`` takes as long as the audio lasts, in 20 ms steps, and a
    ``stop`` keeps only what was played so far, as a loudspeaker would.
    """

    STEP_SECONDS = 0.02

    def __init__(self, sample_rate: int | None = None, *, realtime: bool = False) -> None:
        self.name = "memory"
        self.sample_rate = sample_rate
        self.realtime = realtime
        self.first_sample_time: float | None = None
        self.plays = 0
        self._chunks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._stop_count = 0

    def play(self, audio: np.ndarray, sample_rate: int) -> bool:
        stop_count = self._stop_count
        samples = to_int16(audio)
        with self._lock:
            if self.sample_rate is None:
                self.sample_rate = sample_rate
            target = self.sample_rate
            self.plays += 1
        samples = resample(samples, sample_rate, target)
        step = max(1, int(target * self.STEP_SECONDS)) if self.realtime else max(1, samples.size)
        started = time.monotonic()
        for start in range(0, samples.size, step):
            if self._stop_count != stop_count:
                return False
            with self._lock:
                if self.first_sample_time is None:
                    self.first_sample_time = time.monotonic()
                self._chunks.append(samples[start:start + step])
            if self.realtime:
                due = started + min(samples.size, start + step) / target
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return self._stop_count == stop_count

    def stop(self) -> None:
        self._stop_count += 1

    @property
    def audio(self) -> np.ndarray:
        """Everything played so far, as one int16 array at ``sample_rate``."""
        with self._lock:
            return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    @property
    def seconds(self) -> float:
        return self.audio.size / self.sample_rate if self.sample_rate else 0.0

    def write_wav(self, path: Path | str) -> Path:
        return write_wav(path, self.audio, self.sample_rate or SAMPLE_RATE)
