"""harmony-tui: local LLMs with MLX, with native Harmony support for GPT-OSS.

The public Python API (see docs/api.md) is re-exported here and loaded lazily, so that
``import harmony_tui`` (and ``harmony-tui --help``) stays instant.
"""

from __future__ import annotations

from typing import Any

from harmony_tui import demo as _demo  # noqa: F401 (registers ``--model demo`` with the engine)

__version__ = "0.1.0"

_LAZY = {
    "Engine": "harmony_tui.engine.engine",
    "TurnRequest": "harmony_tui.engine.engine",
    "Message": "harmony_tui.engine.messages",
    "PromptSetup": "harmony_tui.engine.messages",
    "FunctionTool": "harmony_tui.engine.messages",
    "GenerationParams": "harmony_tui.engine.params",
    "Reply": "harmony_tui.engine.reply",
    "TurnStream": "harmony_tui.engine.engine",
    "ModelLoadError": "harmony_tui.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harmony_tui' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
