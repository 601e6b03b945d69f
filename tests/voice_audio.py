"""Real audio for the voice tests: espeak-ng speech, synthetic tones, and a fake ALSA
microphone/loudspeaker configured in a temporary XDG_CONFIG_HOME (never the real home)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harmony_tui.voice.audio import SAMPLE_RATE, read_wav, resample

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of ``name``; skip when absent on a developer machine, fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_portaudio() -> None:
    """Skip (fail in CI) when sounddevice cannot load the PortAudio library."""
    try:
        import sounddevice  # noqa: F401
    except OSError as err:
        message = f"PortAudio is missing ({err}); apt install libportaudio2"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def espeak(text: str, path: Path, words_per_minute: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 16 kHz mono int16 samples (also written to ``path``)."""
    exe = require_tool("espeak-ng")
    subprocess.run([exe, "-s", str(words_per_minute), "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    samples, rate = read_wav(path)
    return resample(samples, rate, SAMPLE_RATE)


def tone(seconds: float, amplitude: float = 0.3, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.int16)


def fake_alsa(root: Path, infile: Path, outfile: Path | None = None) -> dict[str, str]:
    """An environment whose ALSA has a ``fakemic`` capture device reading ``infile`` (raw
    S16_LE 16 kHz mono; a file or a FIFO) and a ``fakespk`` playback device writing raw samples
    to ``outfile``. Only XDG_CONFIG_HOME changes: it points at ``root``."""
    outfile = outfile or root / "speaker.raw"
    (root / "alsa").mkdir(parents=True, exist_ok=True)
    (root / "alsa" / "asoundrc").write_text(
        "pcm.fakemic {\n"
        "    type file\n"
        '    slave.pcm "null"\n'
        '    file "/dev/null"\n'
        f'    infile "{infile}"\n'
        '    format "raw"\n'
        "}\n"
        "pcm.fakespk {\n"
        "    type file\n"
        '    slave.pcm "null"\n'
        f'    file "{outfile}"\n'
        '    format "raw"\n'
        "}\n", encoding="utf-8")
    return {**os.environ, "XDG_CONFIG_HOME": str(root)}


class FifoMicrophone:
    """Feeds a FIFO that a fake ALSA capture device reads, paced in real time (a plain file is
    read as fast as the program asks; a real microphone is not). Reopens the FIFO whenever a
    reader closes it (PortAudio opens devices to probe them)."""

    def __init__(self, path: Path, blocks: list[np.ndarray], block_seconds: float) -> None:
        import threading

        self.path = path
        self.blocks = blocks
        self.block_seconds = block_seconds
        self.written = 0
        os.mkfifo(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FifoMicrophone:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:  # unblock an open() still waiting for a reader
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        self._thread.join(5)

    def _run(self) -> None:
        import itertools
        import time

        while not self._stop.is_set():
            try:
                with open(self.path, "wb", buffering=0) as fifo:
                    started = time.monotonic()
                    for n, block in enumerate(itertools.cycle(self.blocks)):
                        if self._stop.is_set():
                            return
                        fifo.write(block.astype("<i2").tobytes())
                        self.written += 1
                        delay = started + (n + 1) * self.block_seconds - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
            except (BrokenPipeError, OSError):
                continue
