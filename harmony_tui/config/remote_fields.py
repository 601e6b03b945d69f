"""The remote-engine fields shared by ``config.yaml`` and profiles (``--backend openai``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

Backend = Annotated[Literal["mlx", "openai"] | None, Field(
    description="mlx: run the model here; openai: use an OpenAI-compatible server (base_url)")]
BaseUrl = Annotated[str | None, Field(
    description="the remote server's API root, e.g. http://gpu-box:8000/v1 (backend openai)")]
ApiKey = Annotated[str | None, Field(
    description="the remote server's API key (backend openai)")]
RemoteTimeout = Annotated[float | None, Field(
    gt=0, description="seconds without data before a remote turn gives up (default 300)")]
