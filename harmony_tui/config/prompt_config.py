"""Prompt configs: the system/developer setup and generation settings, from JSON or YAML.

The generation fields are exactly ``GenerationParams``'s, so one schema validates a config file,
the command-line flags and (later) the sidebar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harmony_tui.config.files import read_mapping, unknown_key_warnings
from harmony_tui.engine.messages import BUILTIN_TOOLS, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ConfigError


class ExampleTurn(BaseModel):
    """One message of an example dialogue."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern="^(user|assistant)$")
    content: str


class PromptConfig(BaseModel):
    """What a prompt config file may set. Generation fields left out keep their defaults."""

    model_config = ConfigDict(extra="ignore")

    system_model_identity: str | None = None
    conversation_start_date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    knowledge_cutoff: str | None = None
    developer_instructions: str | None = None
    example_dialogues: list[list[ExampleTurn]] = Field(default_factory=list)
    builtin_tools: list[str] = Field(default_factory=list)

    @field_validator("builtin_tools")
    @classmethod
    def _known_tools(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in BUILTIN_TOOLS:
                raise ValueError(f"{name!r} is not a built-in tool ({', '.join(BUILTIN_TOOLS)})")
        return value

    def setup(self) -> PromptSetup:
        """The engine's prompt setup for this config."""
        return PromptSetup(
            model_identity=self.system_model_identity,
            knowledge_cutoff=self.knowledge_cutoff,
            conversation_start_date=self.conversation_start_date,
            developer_instructions=self.developer_instructions,
            builtin_tools=tuple(self.builtin_tools),
            example_dialogues=tuple(
                tuple(Message(t.role, t.content, channel="final" if t.role == "assistant"
                              else None) for t in dialogue)
                for dialogue in self.example_dialogues
            ),
        )


PROMPT_KEYS = set(PromptConfig.model_fields)
GENERATION_KEYS = set(GenerationParams.model_fields)


def _error_line(err: ValidationError, source: str, data: dict[str, Any]) -> str:
    first = err.errors()[0]
    loc = first["loc"]
    key = ".".join(str(p) for p in loc)
    value = data.get(loc[0]) if loc and len(loc) == 1 else first.get("input")
    msg = first["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if first["type"] == "string_pattern_mismatch":
        msg = f"expected text matching {first['ctx']['pattern']}"
    elif first["type"] == "literal_error":
        msg = f"expected {first['ctx']['expected']}"
    return f"{source}: {key}={value!r}: {msg}"


def load_prompt_config(path: Path) -> tuple[PromptConfig, dict[str, Any], list[str]]:
    """Parse ``path``: (prompt config, generation overrides, warnings). Raises ConfigError."""
    data = read_mapping(path)
    warnings = unknown_key_warnings(data, PROMPT_KEYS | GENERATION_KEYS, str(path))
    prompt_data = {k: v for k, v in data.items() if k in PROMPT_KEYS}
    try:
        config = PromptConfig.model_validate(prompt_data)
    except ValidationError as err:
        raise ConfigError(_error_line(err, str(path), data)) from err
    overrides = {k: v for k, v in data.items() if k in GENERATION_KEYS}
    try:
        GenerationParams().updated(**overrides)
    except ValidationError as err:
        raise ConfigError(_error_line(err, str(path), data)) from err
    return config, overrides, warnings
