"""The OpenAI-compatible HTTP API (FastAPI): headless with ``--serve`` or embedded in the TUI.

It never touches MLX: requests become engine turns (``Engine.submit_batched``). Public names are
imported lazily so ``import harmony_tui.server`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmbeddedServer", "RequestRecord", "ServerError", "add_serve_arguments",
           "create_app", "run_serve"]

_WHERE = {"EmbeddedServer": "runner", "ServerError": "runner", "RequestRecord": "records",
          "create_app": "app", "add_serve_arguments": "cli_args", "run_serve": "cli_args"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"harmony_tui.server.{_WHERE[name]}"), name)
    raise AttributeError(name)
