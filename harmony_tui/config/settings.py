"""Everything a run uses, resolved from its layers with a documented precedence.

Precedence (highest first): command line > resumed chat > profile > prompt config >
user config > defaults. ``origins`` records, for the model and every generation setting, which
layer its value came from (shown by ``\\list`` and tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harmony_tui.config.profiles import Profile, default_profiles_path, pick_profile
from harmony_tui.config.prompt_config import (
    GENERATION_KEYS,
    PROMPT_KEYS,
    PromptConfig,
    describe_validation_error,
    load_prompt_config,
)
from harmony_tui.config.user_config import UserConfig
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ConfigError
from harmony_tui.sessions.chat_log import ChatLog
from harmony_tui.sessions.store import chat_path, default_chats_dir, read_chat

LAYERS = ("default", "user config", "prompt config", "profile", "chat", "command line")


@dataclass
class Choices:
    """What the command line asked for (None: not given)."""

    model: str | None = None
    models_dir: Path | None = None
    profile: str | None = None
    profiles_file: Path | None = None
    prompt_config: Path | None = None
    chat: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    remote_timeout: float | None = None


@dataclass
class Remote:
    """Where the model runs: ``mlx`` (here) or ``openai`` (a server at ``base_url``)."""

    backend: str = "mlx"
    base_url: str | None = None
    api_key: str | None = None
    timeout: float | None = None

    @property
    def is_remote(self) -> bool:
        return self.backend == "openai"


@dataclass
class Settings:
    """The resolved settings of a run."""

    model: str
    models_dir: Path
    prompt: PromptConfig
    params: GenerationParams
    origins: dict[str, str]
    user: UserConfig
    profile: str | None = None
    prompt_config_path: Path | None = None
    chats_dir: Path = field(default_factory=default_chats_dir)
    logs_dir: Path | None = None
    chat_path: Path | None = None
    chat_log: ChatLog | None = None
    warnings: list[str] = field(default_factory=list)
    voice: Any = None  # VoiceSettings: user config < prompt config < command line
    remote: Remote = field(default_factory=Remote)

    def model_for_engine(self) -> str | None:
        """The model to ask the engine for; None lets a remote engine take the one its server
        serves (the model was not chosen anywhere, so the local default does not apply)."""
        if self.remote.is_remote and self.origins.get("model") == "default":
            return None
        return self.model


def resolve(choices: Choices, user: UserConfig | None = None, *,
            read_existing_chat: bool = True) -> Settings:
    """Combine the layers. Raises ConfigError / ChatFileError with one line."""
    user = user or UserConfig()
    warnings: list[str] = []
    origins: dict[str, str] = {}

    profile: Profile | None = None
    profile_name = choices.profile or user.profile
    profile_source = f"profile {profile_name!r}"
    if profile_name:
        path = choices.profiles_file or (Path(user.profiles_file) if user.profiles_file
                                         else default_profiles_path())
        profile, found = pick_profile(profile_name, path)
        profile_source = f"{Path(path).expanduser()}: profile {profile_name!r}"
        warnings += found

    prompt_path = choices.prompt_config or (profile.prompt_config if profile else None) or (
        Path(user.prompt_config) if user.prompt_config else None)
    prompt = PromptConfig()
    generation: dict[str, tuple[Any, str]] = {}
    if prompt_path is not None:
        prompt, overrides, found = load_prompt_config(prompt_path)
        warnings += found
        generation.update({k: (v, "prompt config") for k, v in overrides.items()})

    if profile is not None and profile.overrides:
        prompt_part = {k: v for k, v in profile.overrides.items() if k in PROMPT_KEYS}
        source = f"{profile_source} overrides"
        try:
            prompt = PromptConfig.model_validate({**prompt.model_dump(), **prompt_part})
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, source, prompt_part)) from err
        generation.update({k: (v, "profile") for k, v in profile.overrides.items()
                           if k in GENERATION_KEYS})

    chats_dir = prompt.chats_dir or (Path(user.chats_dir) if user.chats_dir
                                     else default_chats_dir())
    logs_dir = prompt.logs_dir or (Path(user.logs_dir) if user.logs_dir else None)

    chat_file = chat_log = None
    if choices.chat:
        chat_file = chat_path(choices.chat, chats_dir)
        if read_existing_chat and chat_file.exists():
            chat_log = read_chat(chat_file)
    if chat_log is not None:
        saved = _saved_params(chat_log)
        generation.update({k: (v, "chat") for k, v in saved.items() if k in GENERATION_KEYS})
    generation.update({k: (v, "command line") for k, v in choices.params.items()
                       if v is not None})

    params = GenerationParams()
    for name, (value, origin) in generation.items():
        try:
            params = params.updated(**{name: value})
        except ValidationError as err:
            if origin == "command line":
                msg = err.errors()[0]["msg"].removeprefix("Value error, ").lower()
                raise ConfigError(f"--{name.replace('_', '-')}={value}: {msg}") from err
            where = {"chat": str(chat_file), "profile": f"{profile_source} overrides",
                     "prompt config": str(prompt_path)}.get(origin, origin)
            raise ConfigError(describe_validation_error(err, where, {name: value})) from err
        origins[name] = origin
    for name in GENERATION_KEYS:
        origins.setdefault(name, "default")

    model_layers = [(choices.model, "command line"),
                    (chat_log.model if chat_log else None, "chat"),
                    (profile.model if profile else None, "profile"),
                    (user.model, "user config"), ("demo", "default")]
    model, origins["model"] = next((m, o) for m, o in model_layers if m)
    models_dir = choices.models_dir or (Path(user.models_dir) if user.models_dir
                                        else Path("models"))
    remote = resolve_remote(choices, profile, user, profile_source)
    return Settings(remote=remote, model=model, models_dir=models_dir, prompt=prompt, params=params,
                    origins=origins, user=user, profile=profile_name,
                    prompt_config_path=prompt_path, chats_dir=chats_dir, logs_dir=logs_dir,
                    chat_path=chat_file, chat_log=chat_log, warnings=warnings)


def resolve_remote(choices: Choices, profile: Profile | None, user: UserConfig,
                   profile_source: str = "profile") -> Remote:
    """The engine's backend and server: command line > profile > user config > local MLX."""
    def pick(name: str, flag_value: Any) -> Any:
        for value in (flag_value, getattr(profile, name, None) if profile else None,
                      getattr(user, name, None)):
            if value is not None:
                return value
        return None

    backend = pick("backend", choices.backend) or "mlx"
    remote = Remote(backend, pick("base_url", choices.base_url), pick("api_key", choices.api_key),
                    pick("remote_timeout", choices.remote_timeout))
    if remote.is_remote and not remote.base_url:
        raise ConfigError("backend openai needs a server: --base-url URL (or base_url in the "
                          "config or the profile), e.g. http://127.0.0.1:8000/v1")
    if remote.base_url and not remote.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url={remote.base_url!r}: expected an http:// or https:// URL, "
                          "e.g. http://127.0.0.1:8000/v1")
    if remote.timeout is not None and remote.timeout <= 0:
        raise ConfigError(f"remote_timeout={remote.timeout}: must be more than 0 seconds")
    return remote


def _saved_params(log: ChatLog) -> dict[str, Any]:
    """The generation settings last in force in a chat."""
    saved = dict(log.params)
    for record in reversed(log.path()):
        if record.params is not None:
            saved = dict(record.params)
            break
    return {k: v for k, v in saved.items() if k in GENERATION_KEYS and v is not None}
