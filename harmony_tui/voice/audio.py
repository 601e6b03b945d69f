"""Sample-level helpers: formats, level in dBFS, resampling, WAV read/write (numpy only)."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from harmony_tui.voice.errors import VoiceError

SAMPLE_RATE = 16000
"""The rate of everything recorded: what webrtcvad and Whisper take."""

SILENCE_DBFS = -100.0
"""The level reported for digital silence (log of zero)."""


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Mono int16 samples from int16 or float ([-1, 1]) samples, 1-D or (frames, channels)."""
    samples = np.asarray(audio)
    if samples.ndim == 2:
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    return np.clip(samples, -32768, 32767).astype(np.int16)


def to_float32(audio: np.ndarray) -> np.ndarray:
    """Mono float32 samples in [-1, 1] (what Whisper takes)."""
    samples = np.asarray(audio)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32)
    return to_int16(samples).astype(np.float32) / 32768.0


def level_dbfs(block: np.ndarray) -> float:
    """RMS level of ``block`` in dB relative to full scale (0 = full scale, -100 = silence)."""
    samples = np.asarray(block)
    if samples.size == 0:
        return SILENCE_DBFS
    if samples.dtype == np.int16:
        samples = samples.astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(np.square(samples, dtype=np.float64))))
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """``audio`` (mono int16) at ``target_rate``, by linear interpolation (fine for speech)."""
    samples = to_int16(audio)
    if source_rate == target_rate or samples.size == 0:
        return samples
    count = max(1, round(samples.size * target_rate / source_rate))
    positions = np.arange(count, dtype=np.float64) * (source_rate / target_rate)
    out = np.interp(positions, np.arange(samples.size, dtype=np.float64),
                    samples.astype(np.float64))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """(mono int16 samples, sample rate) of a 16-bit PCM WAV file. Raises VoiceError."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except FileNotFoundError as err:
        raise VoiceError(f"{path}: no such audio file") from err
    except (wave.Error, EOFError, OSError) as err:
        raise VoiceError(f"{path}: not a readable WAV file ({err})") from err
    if width != 2:
        raise VoiceError(f"{path}: expected 16-bit PCM WAV, found {8 * width}-bit samples")
    samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples[: samples.size - samples.size % channels].reshape(-1, channels)
        samples = samples.mean(axis=1).astype(np.int16)
    return samples, rate


def write_wav(path: Path | str, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono int16 ``audio`` as a 16-bit PCM WAV file; returns the path."""
    path = Path(path)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(to_int16(audio).astype("<i2").tobytes())
    return path
