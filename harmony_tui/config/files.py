"""Read JSON/YAML config files with errors that point at file:line:column."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harmony_tui.errors import ConfigError


def read_mapping(path: Path) -> dict[str, Any]:
    """Parse a JSON or YAML file whose top level must be a mapping."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from err
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = err.problem or str(err)
            raise ConfigError(f"{where}: invalid YAML: {problem}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, "
                          f"found {type(data).__name__}")
    return data


def unknown_key_warnings(data: dict[str, Any], known: Iterable[str], source: str) -> list[str]:
    """One warning per unknown key, with a suggestion for likely typos."""
    known = list(known)
    warnings = []
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"{source}: unknown setting {key!r} ignored{hint}")
    return warnings
