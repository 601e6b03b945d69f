"""Prompt configs: the system/developer setup, session settings and generation settings.

A prompt config file (JSON or YAML) is one flat mapping. Its fields are ``PromptConfig``'s
(prompt text, display, directories, tools) plus every ``GenerationParams`` field, so one pair of
pydantic schemas validates config files, command-line flags, the sidebar and the reference in
``docs/config.md``. Text fields may hold placeholders (see ``placeholders.py``); they are expanded
when each turn is rendered, so ``<|DATE|>`` is always today's date.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harmony_tui.config.files import read_mapping, unknown_key_warnings
from harmony_tui.config.placeholders import parse_fixed_time
from harmony_tui.engine.messages import BUILTIN_TOOLS, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ConfigError, short_repr
from harmony_tui.tools.config import ToolsConfig
from harmony_tui.voice.settings import LEGACY_FIELDS, VoiceSettings, section_warnings

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ExampleTurn(BaseModel):
    """One message of an example dialogue."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern="^(user|assistant)$", description="user or assistant")
    content: str = Field(description="the message text (placeholders allowed)")


class PromptConfig(BaseModel):
    """What a prompt config may set besides generation settings."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    system_model_identity: str | None = Field(
        None, description="First line of the Harmony system message (default: \"You are "
        "ChatGPT, a large language model trained by OpenAI.\").")
    conversation_start_date: str | None = Field(
        None, description="\"Current date:\" in the system message: YYYY-MM-DD or a placeholder "
        "such as <|DATE|>; without it, today's date is taken at every turn.")
    knowledge_cutoff: str | None = Field(
        None, description="\"Knowledge cutoff:\" in the system message (default 2024-06).")
    developer_instructions: str | None = Field(
        None, description="The developer message's instructions (the system prompt of other "
        "models).")
    assistant_greeting: str | None = Field(
        None, description="Shown as the assistant's first message of a new chat (and kept in "
        "the conversation the model sees).")
    example_dialogues: list[list[ExampleTurn]] = Field(
        default_factory=list, description="Few-shot exchanges placed before the conversation: "
        "a list of dialogues, each a list of {role, content}.")
    placeholders: dict[str, str] = Field(
        default_factory=dict, description="name -> text for {name} and <|NAME|> in config text "
        "and user input.")
    fixed_time: str | None = Field(
        None, description="Freeze the clock for placeholders and the current date (ISO 8601), "
        "for reproducible runs.")
    builtin_tools: list[str] = Field(
        default_factory=list, description="Shorthand that turns on built-in tools with their "
        "default settings: python, browser.")
    tools: ToolsConfig = Field(
        default_factory=ToolsConfig, description="Tools the model may call: python, browser, "
        "apply_patch, functions, mcp_servers, max_calls_per_turn (see the tools reference).")
    reseed_each_turn: bool = Field(
        True, description="With a seed: seed every turn the same way (true) or only the first "
        "turn of a session, letting later turns continue the random stream (false).")
    truncate_thinking: int | None = Field(
        None, ge=1, description="Show at most this many characters of thinking per message "
        "(display only; the chat log keeps everything).")
    truncate_response: int | None = Field(
        None, ge=1, description="Show at most this many characters of an answer (display "
        "only).")
    mlock: bool = Field(
        False, description="Keep the model's weights wired in memory (Metal); no effect on "
        "CPU-only machines.")
    logs_dir: Path | None = Field(
        None, description="Folder for harmony-tui's log file (relative to this config file).")
    chats_dir: Path | None = Field(
        None, description="Folder of saved chats (relative to this config file; default: the "
        "data dir's chats/).")
    voice: VoiceSettings = Field(
        default_factory=VoiceSettings, description="Push-to-talk voice: engines, devices, "
        "end-pointing (see the voice reference).")

    @field_validator("builtin_tools")
    @classmethod
    def _known_tools(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in BUILTIN_TOOLS:
                raise ValueError(f"{name!r} is not a built-in tool ({', '.join(BUILTIN_TOOLS)})")
        return value

    @model_validator(mode="after")
    def _builtin_shorthand(self) -> PromptConfig:
        for name in self.builtin_tools:
            if getattr(self.tools, name) is None:
                self.tools = ToolsConfig.model_validate(
                    {**self.tools.model_dump(exclude_unset=True), name: True})
        return self

    @field_validator("conversation_start_date")
    @classmethod
    def _date_or_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "<|" not in value and "{" not in value and not _DATE.match(
                value):
            raise ValueError("expected YYYY-MM-DD or a placeholder such as <|DATE|>")
        return value

    @field_validator("fixed_time")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_fixed_time(value)
        return value

    @field_validator("placeholders", mode="before")
    @classmethod
    def _text_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) if isinstance(v, int | float | bool) else v
                    for k, v in value.items()}
        return value

    def setup(self, expand: Callable[[str], str] | None = None) -> PromptSetup:
        """The engine's prompt setup, with placeholders expanded by ``expand`` (if given)."""
        fill = expand or (lambda text: text)

        def opt(text: str | None) -> str | None:
            return None if text is None else fill(text)

        start_date = opt(self.conversation_start_date)
        if start_date is not None and not _DATE.match(start_date):
            start_date = start_date.strip()[:10]
        return PromptSetup(
            model_identity=opt(self.system_model_identity),
            knowledge_cutoff=opt(self.knowledge_cutoff),
            conversation_start_date=start_date if start_date and _DATE.match(start_date)
            else None,
            developer_instructions=opt(self.developer_instructions),
            example_dialogues=tuple(
                tuple(Message(t.role, fill(t.content),
                              channel="final" if t.role == "assistant" else None)
                      for t in dialogue)
                for dialogue in self.example_dialogues
            ),
        )

    def resolve_paths(self, base: Path) -> PromptConfig:
        """A copy whose relative directories are anchored at ``base`` and ``~`` expanded."""
        changes = {}
        for name in ("logs_dir", "chats_dir"):
            value = getattr(self, name)
            if value is not None:
                value = Path(value).expanduser()
                changes[name] = value if value.is_absolute() else Path(
                    os.path.normpath(base / value))
        changes["tools"] = self.tools.resolve_paths(base)
        return self.model_copy(update=changes)


PROMPT_KEYS = set(PromptConfig.model_fields)
GENERATION_KEYS = set(GenerationParams.model_fields)
ALL_KEYS = PROMPT_KEYS | GENERATION_KEYS | set(LEGACY_FIELDS)


def describe_validation_error(err: ValidationError, source: str, data: dict[str, Any]) -> str:
    """One line: source, key, the value given and what is allowed."""
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
    return f"{source}: {key}={short_repr(value)}: {msg}"


def parse_prompt_config(data: dict[str, Any], source: str, base: Path | None = None,
                        ) -> tuple[PromptConfig, dict[str, Any], list[str]]:
    """Validate a config mapping: (prompt config, generation overrides, warnings)."""
    warnings = unknown_key_warnings(data, ALL_KEYS, source)
    data, voice_warnings = section_warnings(data, source)  # old Moshi fields move into voice
    warnings += voice_warnings
    prompt_data = {k: v for k, v in data.items() if k in PROMPT_KEYS}
    try:
        config = PromptConfig.model_validate(prompt_data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source, data)) from err
    overrides = {k: v for k, v in data.items() if k in GENERATION_KEYS}
    try:
        GenerationParams().updated(**overrides)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source, data)) from err
    if base is not None:
        config = config.resolve_paths(base)
    return config, overrides, warnings


def load_prompt_config(path: Path) -> tuple[PromptConfig, dict[str, Any], list[str]]:
    """Parse ``path``: (prompt config, generation overrides, warnings). Raises ConfigError."""
    path = Path(path).expanduser()
    data = read_mapping(path)
    return parse_prompt_config(data, str(path), path.parent)
