"""Read JSON/YAML config files with errors that point at file:line:column."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harmony_tui.errors import ConfigError

MAX_CONFIG_BYTES = 1024 * 1024  # a settings file is a few KB; anything this big is a mistake
MAX_DEPTH = 64  # levels of nesting
MAX_NODES = 100_000  # values after YAML aliases are expanded ("billion laughs" stops here)


def read_mapping(path: Path) -> dict[str, Any]:
    """Parse a JSON or YAML file whose top level must be a mapping.

    Bounded: the file's size, its nesting depth and (YAML) the number of values its aliases
    expand to are checked before anything else touches the data.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: the file is {size} bytes; config files may be at most "
                              f"{MAX_CONFIG_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    data = _load_json(path, text) if path.suffix.lower() == ".json" else _load_yaml(path, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, "
                          f"found {type(data).__name__}")
    return data


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(f"{path}: values are nested more than {MAX_DEPTH} levels deep")


def _load_json(path: Path, text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from err
    except RecursionError:
        raise _too_deep(path) from None
    _check_json_depth(path, data)
    return data


def _check_json_depth(path: Path, data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        if isinstance(value, dict):
            stack.extend((inner, depth + 1) for inner in value.values())
        elif isinstance(value, list):
            stack.extend((inner, depth + 1) for inner in value)


def _load_yaml(path: Path, text: str) -> Any:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(path, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = err.problem or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    except RecursionError:
        raise _too_deep(path) from None
    finally:
        loader.dispose()


def _check_yaml_size(path: Path, root: Any) -> None:
    """Refuse documents nested too deeply, with recursive aliases, or whose aliases expand to
    more than ``MAX_NODES`` values (each shared node is counted once per place it appears)."""
    import yaml

    expanded: dict[int, int] = {}  # node id -> values it expands to
    on_path: set[int] = set()

    def count(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in on_path:
            raise ConfigError(f"{path}: a YAML alias refers to a value that contains it")
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        for child in children:
            total += count(child, depth + 1)
            if total > MAX_NODES:
                raise ConfigError(f"{path}: the YAML aliases expand to more than {MAX_NODES} "
                                  "values; write the values out instead")
        on_path.discard(key)
        expanded[key] = total
        return total

    count(root, 1)


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
