"""A remote engine: any OpenAI-compatible server (vLLM, SGLang, Ollama, LM Studio,
``mlx_lm.server``, another harmony-tui) in place of a local model. See docs/remote.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmony_tui.remote.engine import RemoteEngine, RemoteModel

BACKENDS = ("mlx", "openai")

__all__ = ["BACKENDS", "RemoteEngine", "RemoteModel", "new_engine", "start_engine"]


def new_engine(backend: str = "mlx", *, base_url: str | None = None, api_key: str | None = None,
               timeout: float | None = None, models_dir: Path | None = None) -> Any:
    """A local ``Engine`` (``mlx``) or a ``RemoteEngine`` (``openai``), not loaded yet."""
    if backend == "openai":
        if not base_url:
            from harmony_tui.errors import ConfigError

            raise ConfigError("--backend openai needs --base-url URL (or base_url in the "
                              "config), e.g. http://127.0.0.1:8000/v1")
        return RemoteEngine(base_url, api_key, timeout=timeout)
    from harmony_tui.engine.engine import Engine

    return Engine(models_dir=models_dir)


def start_engine(remote: Any, model: str | None, *, models_dir: Path | None = None,
                 progress: Any = None) -> Any:
    """An engine with ``model`` loaded (blocks): local, or on the server ``remote`` names
    (``config.settings.Remote``: backend, base_url, api_key, timeout)."""
    if remote is not None and remote.backend == "openai":
        return RemoteEngine.start(model, base_url=remote.base_url, api_key=remote.api_key,
                                  timeout=remote.timeout, progress=progress)
    from harmony_tui.engine.engine import Engine

    return Engine.start(model or "demo", models_dir=models_dir, progress=progress)
