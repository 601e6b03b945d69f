"""The user config (``config.yaml`` in the config dir) and the app's remembered state.

``config.yaml`` is written by the person; harmony-tui only reads it. What the app remembers by
itself (the last theme chosen) goes to ``state.json`` in the data dir, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harmony_tui import paths
from harmony_tui.config.files import read_mapping, unknown_key_warnings
from harmony_tui.config.remote_fields import ApiKey, Backend, BaseUrl, RemoteTimeout
from harmony_tui.errors import ConfigError, short_repr
from harmony_tui.voice.settings import VoiceSettings, section_warnings

CONFIG_NAME = "config.yaml"
STATE_NAME = "state.json"


class ServerSettings(BaseModel):
    """Defaults of the OpenAI-compatible server (``--serve`` and the embedded one)."""

    model_config = ConfigDict(extra="ignore")  # unknown keys are warned about on load

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to bind")
    api_key: str | None = Field(None, description="require 'Authorization: Bearer KEY'")
    cors_origins: list[str] = Field(default_factory=list, description="allowed CORS origins")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1, description="largest request body "
                                "accepted, in bytes; larger ones get HTTP 413")
    tools: list[str] = Field(default_factory=list, description="built-in tools the server runs "
                             "itself for API requests (python, browser); others are returned "
                             "to the client as tool calls")
    insecure: bool = Field(False, description="serve even when that is risky: on a non-loopback "
                           "address without api_key, or server tools with CORS '*'")

    @field_validator("tools")
    @classmethod
    def _builtin_only(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in ("python", "browser"):
                raise ValueError(f"{name!r} is not a built-in tool the server can run "
                                 "(python, browser)")
        return value


class UserConfig(BaseModel):
    """Settings of the person, for every chat."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="default model (folder, repo id or 'demo')")
    profile: str | None = Field(None, description="profile used when --profile is not given")
    profiles_file: str | None = Field(None, description="profiles file (default: profiles.yaml "
                                      "beside this file)")
    prompt_config: str | None = Field(None, description="prompt config used when neither "
                                      "--prompt-config nor a profile names one")
    models_dir: str | None = Field(None, description="folder searched for model names")
    chats_dir: str | None = Field(None, description="folder of saved chats (default: the data "
                                  "dir's chats/)")
    logs_dir: str | None = Field(None, description="folder for the log file")
    server: ServerSettings = Field(default_factory=lambda: ServerSettings(),
                                   description="the API server: host, port, api_key, "
                                   "cors_origins")
    theme: str | None = Field(None, description="theme used until one is picked in the app")
    keymap: dict[str, str] = Field(default_factory=dict,
                                   description="binding id -> keys, e.g. {stop: ctrl+c}")
    markdown: bool = Field(True, description="render answers as Markdown")
    truncate_thinking: int | None = Field(None, ge=1,
                                          description="show at most this many characters of "
                                          "thinking per message (display only)")
    truncate_response: int | None = Field(None, ge=1,
                                          description="show at most this many characters of an "
                                          "answer (display only)")
    backend: Backend = None
    base_url: BaseUrl = None
    api_key: ApiKey = None
    remote_timeout: RemoteTimeout = None
    voice: VoiceSettings = Field(default_factory=lambda: VoiceSettings(),
                                 description="push-to-talk voice (see the voice reference)")

    def anchored(self, base: Path) -> UserConfig:
        """A copy whose relative paths are taken from ``base`` (the config's folder)."""
        from harmony_tui.config.profiles import resolve_model_spec, resolve_path

        changes: dict[str, Any] = {}
        for name in ("profiles_file", "prompt_config", "models_dir", "chats_dir", "logs_dir"):
            value = getattr(self, name)
            if value:
                changes[name] = str(resolve_path(Path(value), base))
        if self.model:
            changes["model"] = resolve_model_spec(self.model, base)
        return self.model_copy(update=changes)


def config_path() -> Path:
    return paths.config_dir() / CONFIG_NAME


def load_user_config(path: Path | None = None) -> tuple[UserConfig, list[str]]:
    """The user config (defaults when the file does not exist) and warnings."""
    path = path or config_path()
    if not path.exists():
        return UserConfig(), []
    data = read_mapping(path)
    warnings = unknown_key_warnings(data, UserConfig.model_fields, str(path))
    if isinstance(data.get("server"), dict):
        warnings += unknown_key_warnings(data["server"], ServerSettings.model_fields,
                                         f"{path}: server")
    data, voice_warnings = section_warnings(data, str(path))
    warnings += voice_warnings
    try:
        config = UserConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        value = first.get("input")
        raise ConfigError(f"{path}: {key}={short_repr(value)}: {first['msg'].lower()}") from err
    return config.anchored(path.parent), warnings


def state_path() -> Path:
    return paths.data_dir() / STATE_NAME


def load_state() -> dict[str, Any]:
    """What the app remembered; a missing or unreadable file means nothing."""
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(**changes: Any) -> None:
    """Merge ``changes`` into the state file (atomically)."""
    data = load_state()
    data.update(changes)
    paths.atomic_write_text(state_path(), json.dumps(data, indent=2, sort_keys=True) + "\n")
