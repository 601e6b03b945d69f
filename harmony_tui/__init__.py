"""harmony-tui: local LLMs with MLX, with native Harmony support for GPT-OSS.

The public Python API lives in :mod:`harmony_tui.api`; the names below are loaded lazily so that
``import harmony_tui`` (and ``harmony-tui --help``) stays instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Engine": "harmony_tui.engine.engine",
    "TurnRequest": "harmony_tui.engine.engine",
    "Message": "harmony_tui.engine.messages",
    "PromptSetup": "harmony_tui.engine.messages",
    "FunctionTool": "harmony_tui.engine.messages",
    "GenerationParams": "harmony_tui.engine.params",
    "load_engine": "harmony_tui.api",
    "Reply": "harmony_tui.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harmony_tui' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
