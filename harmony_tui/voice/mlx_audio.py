"""Loading an mlx-audio model (Apple Silicon; the ``voice-mlx`` extra), for STT and TTS alike."""

from __future__ import annotations

import importlib
from typing import Any, Literal

from harmony_tui.voice.errors import ModelMissingError, first_line, missing_engine


def load_mlx_audio(part: Literal["stt", "tts"], spec: str, engine: str, what: str) -> Any:
    """mlx-audio's ``load_model(spec)`` for ``part``; one-line errors naming ``engine`` when
    mlx-audio is missing and ``what`` (the model, as the person knows it) when it cannot load."""
    try:
        utils = importlib.import_module(f"mlx_audio.{part}.utils")
    except ImportError as err:
        raise missing_engine("mlx-audio", engine, "voice-mlx") from err
    try:
        return utils.load_model(spec)
    except Exception as err:
        raise ModelMissingError(f"{what} cannot be loaded (mlx-audio): {first_line(err)}") from err
