"""The layer contract: imports point down only (docs/architecture.md).

Every ``import`` of every module is read with ``ast``, the ones inside functions too (a lazy
import is still a dependency); only ``if TYPE_CHECKING:`` blocks are left out. A module may
import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import harmony_tui

PACKAGE = Path(harmony_tui.__file__).parent

# Lowest first. A module's layer is the first entry that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("harmony_tui", "harmony_tui.errors", "harmony_tui.paths", "harmony_tui.logs",
              "harmony_tui.text_safety")),
    ("engine", ("harmony_tui.engine", "harmony_tui.remote")),
    ("services", ("harmony_tui.tools", "harmony_tui.sessions", "harmony_tui.config",
                  "harmony_tui.demo", "harmony_tui.voice")),
    ("conversation", ("harmony_tui.conversation",)),
    ("front-end parts", ("harmony_tui.server", "harmony_tui.widgets", "harmony_tui.screens",
                         "harmony_tui.turn_view", "harmony_tui.commands",
                         "harmony_tui.progress", "harmony_tui.exit_signals",
                         "harmony_tui.themes", "harmony_tui.voice_control")),
    ("entry points", ("harmony_tui.app", "harmony_tui.app_chats", "harmony_tui.app_server",
                      "harmony_tui.app_model", "harmony_tui.app_keys", "harmony_tui.app_voice",
                      "harmony_tui.oneshot", "harmony_tui.voice_loop", "harmony_tui.cli",
                      "harmony_tui.web", "harmony_tui.__main__")),
]
# The package's own __init__ (the public API facade) registers the demo model with the engine.
ALLOWED = {("harmony_tui", "harmony_tui.demo")}
# Front-end parts that must not import one another (the server never imports the UI).
APART = [("harmony_tui.server", ("harmony_tui.widgets", "harmony_tui.screens",
                                 "harmony_tui.turn_view", "harmony_tui.themes"))]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or \
        (PACKAGE / relative / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every harmony_tui import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            for alias in node.names:  # ``from harmony_tui import demo`` imports a module
                if is_module(f"{name}.{alias.name}"):
                    found.append((node.lineno, f"{name}.{alias.name}"))
                    break
            else:
                found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] == "harmony_tui"]


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        for line, target in imports(path):
            if (module, target) in ALLOWED:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if layer_of(target) > own:
                problems.append(f"{where}: {module} ({LAYERS[own][0]}) imports {target} "
                                f"({LAYERS[layer_of(target)][0]})")
            for low, highs in APART:
                if module.startswith(low) and any(target == h or target.startswith(h + ".")
                                                  for h in highs):
                    problems.append(f"{where}: {module} imports {target}")
    return problems


def test_imports_point_down_the_layers():
    assert violations() == []


def test_the_check_sees_lazy_imports_and_skips_type_checking_blocks(tmp_path, monkeypatch):
    """The contract test itself can fail: a lazy upward import is caught."""
    fake = tmp_path / "harmony_tui"
    (fake / "engine").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "engine" / "__init__.py").write_text("")
    (fake / "engine" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from harmony_tui.app import HarmonyApp\n"
        "def f():\n    from harmony_tui.cli import main\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert violations() == [
        "harmony_tui/engine/bad.py:5: harmony_tui.engine.bad (engine) imports "
        "harmony_tui.cli (entry points)"]
