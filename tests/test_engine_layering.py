"""The engine's imports point down only: nothing outside engine/ except stdlib-level helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import harmony_tui.engine

ENGINE = Path(harmony_tui.engine.__file__).parent
ALLOWED = ("harmony_tui.engine", "harmony_tui.errors", "harmony_tui.paths",
           "harmony_tui.text_safety")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "harmony_tui":
            found.extend((node.lineno, f"harmony_tui.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_engine_modules_import_nothing_above_the_engine():
    wrong = [f"{path.relative_to(ENGINE)}:{line} imports {module}"
             for path in sorted(ENGINE.rglob("*.py")) for line, module in _imports(path)
             if module.startswith("harmony_tui") and not module.startswith(ALLOWED)]
    assert wrong == []


def test_batching_does_not_import_the_engine_module():
    modules = {module for _, module in _imports(ENGINE / "batch.py")}
    assert "harmony_tui.engine.engine" not in modules


def test_the_demo_model_name_is_registered_from_the_demo_package():
    from harmony_tui.engine.model_source import is_named_model

    assert is_named_model("demo")  # importing harmony_tui plugs the demo in
