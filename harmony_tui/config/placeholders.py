"""Placeholders in config text and user input, expanded fresh at every turn.

User placeholders come from a config's ``placeholders`` mapping and are written ``{name}`` or
``<|NAME|>`` (the angle form is case-insensitive). Built-ins, evaluated from the clock each time
text is expanded (never frozen at start-up):

``<|DATE|>`` 2026-11-25 · ``<|DATETIME|>`` 2026-11-25T19:20:03+01:00 · ``<|TIME|>`` 19:20:03 ·
``<|TIMEZ|>`` 19:20:03 CET (local time with zone) · ``<|TIMEA|>`` 07:20:03 PM ·
``<|TIMEU|>`` 18:20:03 UTC.

A ``Clock`` fixes "now" for reproducible runs (``HARMONY_TUI_FIXED_TIME`` or the
``fixed_time`` config field).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

FIXED_TIME_ENV = "HARMONY_TUI_FIXED_TIME"
_ANGLE = re.compile(r"<\|([A-Za-z_][A-Za-z0-9_]*)\|>")
_CURLY = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_NAMES = ("DATE", "DATETIME", "TIME", "TIMEZ", "TIMEA", "TIMEU")
EXPECTED_TIME = "expected an ISO 8601 date-time such as 2026-01-31T09:30:00+01:00"


def parse_fixed_time(text: str, source: str = FIXED_TIME_ENV) -> _dt.datetime:
    """An ISO 8601 date-time; without an offset it is taken as local time.

    The ValueError says only what is expected: the caller names ``source`` and the value
    (pydantic validators and ``Clock.from_env`` both do), so the message never repeats them.
    """
    try:
        value = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(EXPECTED_TIME) from err
    return value if value.tzinfo else value.astimezone()


@dataclass(frozen=True)
class Clock:
    """Where "now" comes from: the system clock, or a fixed instant."""

    fixed: _dt.datetime | None = None

    @classmethod
    def from_env(cls, fixed_time: str | None = None) -> Clock:
        """Fixed by ``fixed_time`` (config) or the environment variable, else the system.

        A value that is not a date-time raises ConfigError (one line, exit status 2).
        """
        source = "fixed_time" if fixed_time else FIXED_TIME_ENV
        text = fixed_time or os.environ.get(FIXED_TIME_ENV)
        try:
            return cls(parse_fixed_time(text, source) if text else None)
        except ValueError as err:
            from harmony_tui.errors import ConfigError

            raise ConfigError(f"{source}={text!r}: {err}") from err

    def now(self) -> _dt.datetime:
        """The current local time, aware of its zone."""
        return self.fixed if self.fixed is not None else _dt.datetime.now().astimezone()

    def today(self) -> _dt.date:
        return self.now().date()


def builtin_values(now: _dt.datetime) -> dict[str, str]:
    """The built-in placeholders for the instant ``now`` (an aware local time)."""
    utc = now.astimezone(_dt.UTC)
    zone = now.tzname() or now.strftime("%z")
    return {
        "DATE": now.strftime("%Y-%m-%d"),
        "DATETIME": now.isoformat(timespec="seconds"),
        "TIME": now.strftime("%H:%M:%S"),
        "TIMEZ": f"{now.strftime('%H:%M:%S')} {zone}",
        "TIMEA": now.strftime("%I:%M:%S %p"),
        "TIMEU": utc.strftime("%H:%M:%S UTC"),
    }


def expand(text: str, placeholders: Mapping[str, str] | None = None,
           clock: Clock | None = None) -> str:
    """``text`` with built-in and user placeholders replaced; unknown ones are left as written."""
    placeholders = placeholders or {}
    if "<|" in text:
        values = builtin_values((clock or Clock()).now())
        values.update({key.upper(): str(value) for key, value in placeholders.items()})
        text = _ANGLE.sub(lambda m: values.get(m.group(1).upper(), m.group(0)), text)
    if placeholders and "{" in text:
        text = _CURLY.sub(lambda m: str(placeholders.get(m.group(1), m.group(0))), text)
    return text


def expander(placeholders: Mapping[str, str] | None,
             clock: Clock | None = None) -> Callable[[str], str]:
    """A one-argument ``expand`` bound to these placeholders and clock."""
    return lambda text: expand(text, placeholders, clock)
