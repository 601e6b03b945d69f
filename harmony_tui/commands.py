"""Out-of-band commands typed in the prompt: ``\\help``, ``\\list``, ``\\set k=v``, ...

Both ``\\`` and ``/`` start a command; ``q`` alone quits. Parsing is UI-independent: the app maps
each ``Command`` to an action and shows ``CommandError`` messages as they are.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from harmony_tui.engine.params import GenerationParams

COMMANDS: dict[str, str] = {
    "help": "show keys and commands (\\help set: every setting)",
    "list": "show the current generation settings (also \\show)",
    "set": "change a setting: \\set temperature=0.7",
    "clear": "start a new chat",
    "quit": "leave harmony-tui (also q or Ctrl+D)",
}
ALIASES = {"show": "list", "exit": "quit", "q": "quit", "h": "help", "?": "help"}


class CommandError(ValueError):
    """A command that cannot run, with a message meant for the user."""


@dataclass(frozen=True)
class Command:
    """A parsed command: ``name`` from COMMANDS and, for ``set``, the change."""

    name: str
    setting: str | None = None
    value: Any = None


def is_command(text: str) -> bool:
    stripped = text.strip()
    if stripped in ("q", "\\?", "/?"):
        return True
    return len(stripped) > 1 and stripped[0] in "\\/" and stripped[1].isalpha()


def valid_commands() -> str:
    return ", ".join(f"\\{name}" for name in COMMANDS)


def parse_command(text: str) -> Command:
    """Parse a command line; raises CommandError naming the problem and the valid choices."""
    stripped = text.strip()
    if stripped == "q":
        return Command("quit")
    body = stripped[1:]
    word, _, rest = body.partition(" ")
    name = ALIASES.get(word.lower(), word.lower())
    if name not in COMMANDS:
        raise CommandError(f"unknown command '{stripped.split()[0]}'; valid: {valid_commands()}")
    if name == "help" and rest.strip().lstrip("\\/") == "set":
        return Command("help", "set")
    if name != "set":
        if rest.strip():
            raise CommandError(f"\\{name} takes no arguments")
        return Command(name)
    setting, value = parse_assignment(rest)
    return Command("set", setting, value)


def settings_help() -> str:
    """What ``\\help set`` shows: how to set, and every setting's name."""
    return ("\\set name=value changes a setting for the next request (\\list shows the "
            "values). Settings: " + ", ".join(settable()))


def settable() -> list[str]:
    return [name for name, info in GenerationParams.model_fields.items()
            if name not in ("logit_bias",)]


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` (or ``name value``) validated against GenerationParams."""
    text = text.strip()
    if not text:
        raise CommandError("usage: \\set name=value, e.g. \\set temperature=0.7 "
                           "(\\help set lists the settings)")
    if "=" in text:
        name, _, raw = text.partition("=")
    else:
        name, _, raw = text.partition(" ")
    name, raw = name.strip().replace("-", "_"), raw.strip()
    if name not in settable():
        close = difflib.get_close_matches(name, settable(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (\\help set lists them)"
        raise CommandError(f"unknown setting {name!r}{hint}")
    if not raw:
        raise CommandError(f"\\set {name}: missing value, e.g. \\set {name}=...")
    value: Any = None if raw.lower() in ("none", "null", "default") else raw
    return name, validate_setting(name, value)


def validate_setting(name: str, value: Any, base: GenerationParams | None = None) -> Any:
    """The validated value of one setting; raises CommandError with the rule it breaks."""
    data = (base or GenerationParams()).model_dump()
    data[name] = value
    try:
        return getattr(GenerationParams.model_validate(data), name)
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        raise CommandError(f"{name}={value!r}: {msg[0].lower() + msg[1:]}") from err
