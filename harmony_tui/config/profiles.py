"""Profiles: named pairs of a model and a prompt config (plus overrides) in one file.

```yaml
coder:
  model: ~/models/gpt-oss-20b          # ~ expanded; ./ and ../ are relative to this file
  prompt_config: configs/coder.yaml    # relative to this file
  description: terse answers, low temperature
  overrides: {temperature: 0.3, reasoning_effort: high}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harmony_tui import paths
from harmony_tui.config.files import read_mapping, unknown_key_warnings
from harmony_tui.config.prompt_config import describe_validation_error, parse_prompt_config
from harmony_tui.config.remote_fields import ApiKey, Backend, BaseUrl, RemoteTimeout
from harmony_tui.errors import ConfigError

PROFILES_NAME = "profiles.yaml"
PATH_OVERRIDES = ("logs_dir", "chats_dir", "tools")  # anchored at the profiles file


class Profile(BaseModel):
    """One profile."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Model folder, name under models_dir, Hugging "
                              "Face repo id or 'demo'.")
    prompt_config: Path | None = Field(None, description="Prompt config file (relative to the "
                                       "profiles file).")
    description: str = Field("", description="Shown in listings.")
    backend: Backend = None
    base_url: BaseUrl = None
    api_key: ApiKey = None
    remote_timeout: RemoteTimeout = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="Prompt-config and "
                                      "generation fields that win over the prompt config.")


def default_profiles_path() -> Path:
    return paths.config_dir() / PROFILES_NAME


def resolve_model_spec(spec: str, base: Path) -> str:
    """``~`` expanded; ``./x`` and ``../x`` made absolute against ``base``; others unchanged."""
    if spec.startswith("~"):
        return str(Path(spec).expanduser())
    if spec.startswith(("./", "../")) or spec in (".", ".."):
        return str((base / spec).resolve())
    return spec


def resolve_path(value: Path, base: Path) -> Path:
    value = Path(value).expanduser()
    return value if value.is_absolute() else base / value


def load_profiles(path: Path) -> tuple[dict[str, Profile], list[str]]:
    """Every profile of ``path`` with its paths resolved, and warnings."""
    path = Path(path).expanduser()
    data = read_mapping(path)
    profiles: dict[str, Profile] = {}
    warnings: list[str] = []
    for name, body in data.items():
        source = f"{path}: profile {name!r}"
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: expected a mapping with model, prompt_config, "
                              f"overrides; found {type(body).__name__}")
        warnings += unknown_key_warnings(body, Profile.model_fields, source)
        try:
            profile = Profile.model_validate(body)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, source, body)) from err
        base = path.parent
        # Overrides are checked here, where the file is known, and their paths anchored at it.
        anchored, _generation, found = parse_prompt_config(profile.overrides,
                                                           f"{source} overrides", base)
        warnings += found
        overrides = {key: getattr(anchored, key) if key in PATH_OVERRIDES else value
                     for key, value in profile.overrides.items()}
        profiles[str(name)] = profile.model_copy(update={
            "model": resolve_model_spec(profile.model, base) if profile.model else None,
            "prompt_config": resolve_path(profile.prompt_config, base)
            if profile.prompt_config else None,
            "overrides": overrides,
        })
    return profiles, warnings


def pick_profile(name: str, path: Path) -> tuple[Profile, list[str]]:
    """The profile ``name`` of ``path``; a one-line error lists the ones that exist."""
    if not Path(path).expanduser().is_file():
        raise ConfigError(f"--profile {name}: profiles file {path} not found")
    profiles, warnings = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"--profile {name}: no such profile in {path} (profiles: {known})")
    return profiles[name], warnings
