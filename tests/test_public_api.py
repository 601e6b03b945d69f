"""The documented Python API (README / docs/api.md) works as written."""

from __future__ import annotations

import subprocess
import sys

import harmony_tui


def test_lazy_exports_resolve():
    for name in harmony_tui.__all__:
        assert getattr(harmony_tui, name) is not None


def test_import_is_light():
    """Importing the package must not pull in mlx, mlx_lm or textual."""
    code = ("import sys, harmony_tui, harmony_tui.cli; "
            "print(sorted(m for m in ('mlx', 'mlx_lm', 'textual', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_readme_example(tiny_gpt_oss):
    from harmony_tui import Engine, GenerationParams, Message

    with Engine.start(str(tiny_gpt_oss)) as engine:
        events = list(engine.stream([Message("user", "Hello!")],
                                    params=GenerationParams(max_tokens=4)))
        reply = engine.chat([Message("user", "Hello!")],
                            params=GenerationParams(temperature=0, max_tokens=4))
    assert type(events[-1]).__name__ == "TurnEnd"
    assert reply.stats.generation_tokens == 4
