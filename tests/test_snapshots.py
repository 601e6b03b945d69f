"""Snapshots of the app at a fixed size (pytest-textual-snapshot).

Figures that vary from run to run (time to first token, tokens per second, memory) are fixed
before the snapshot is taken, and cursors do not blink. Update with ``--snapshot-update`` after
an intended change, and look at the SVGs before committing them.
"""

from __future__ import annotations

import time

import pytest

from harmony_tui.app import HarmonyApp
from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.params import GenerationParams

SIZE = (110, 34)


def make_app() -> HarmonyApp:
    return HarmonyApp("demo", params=GenerationParams(temperature=0), remember_theme=False,
                      theme="harmony-dark")


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        await pilot.pause(0.05)
    assert condition()


async def settle(pilot) -> None:
    """Wait for the model, then make the screen deterministic."""
    app = pilot.app
    await wait_for(pilot, lambda: app.model_ready and app.turn is None)
    app.clear_notifications()
    app.prompt.cursor_blink = False
    status = app.status
    if status.ttft is not None:
        status.ttft, status.tps, status.peak_gb = 0.05, 60.0, 0.11
    await pilot.pause()


def test_main_screen_idle(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


def test_mid_conversation(snap_compare):
    async def chat(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.model_ready)
        for script in (SCRIPTS[0], SCRIPTS[3]):
            app.prompt.set_text(script.prompt)
            await pilot.press("enter")
            await wait_for(pilot, lambda s=script: s.final in app.session.final_answers())
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=chat)


def test_help_screen(snap_compare):
    async def open_help(pilot) -> None:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_help)


def test_command_palette(snap_compare):
    async def open_palette(pilot) -> None:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"chat")
        await pilot.pause(0.3)
        pilot.app.screen.query_one("Input").cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_palette)


# -- the main screen at three sizes in both themes: mid-stream, and after a tool turn ---------

SIZES = [(80, 24), (120, 40), (200, 60)]
THEMES = ["harmony-dark", "harmony-light"]


def themed_app(theme: str, **kwargs) -> HarmonyApp:
    return HarmonyApp("demo", params=GenerationParams(temperature=0), remember_theme=False,
                      theme=theme, **kwargs)


async def freeze(pilot) -> None:
    """Fixed figures and durations (they vary from run to run), no blinking cursor."""
    app = pilot.app
    app.clear_notifications()
    app.prompt.cursor_blink = False
    status = app.status
    status.ttft, status.tps, status.peak_gb = 0.05, 60.0, 0.11
    for entry in app.tools.entries.values():
        entry.duration = 0.12
        entry.title = entry.title_text()
    await pilot.pause()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen_mid_stream(snap_compare, size, theme):
    """An answer half written (a fixed half of the demo's answer, the rest still to come)."""
    script = SCRIPTS[3]

    async def mid_stream(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.model_ready and app.conversation.entries)
        await app.conversation.add_user(script.prompt)
        widget = await app.conversation.add_assistant(app.model_name)
        app.thinking.start_turn("turn 1")
        app.thinking.write(script.analysis)
        await widget.append_thinking(script.analysis)
        await widget.append_answer(script.final[: len(script.final) // 2])
        app.status.state = "generating"
        app.status.prompt_tokens, app.status.generated = 120, 40
        await freeze(pilot)

    assert snap_compare(themed_app(theme), terminal_size=size, run_before=mid_stream)


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen_after_a_tool_turn(snap_compare, size, theme, tmp_path):
    """thinking, the python call (folded), thinking, the answer: in that order."""
    from harmony_tui.tools.config import ToolsConfig

    script = next(s for s in SCRIPTS if s.tool and s.tool.recipient == "python")

    async def tool_turn(pilot) -> None:
        from harmony_tui.screens.approval import ApprovalScreen

        app = pilot.app
        await wait_for(pilot, lambda: app.model_ready)
        app.prompt.set_text(script.prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.turn is None and bool(app.session.final_answers()))
        widget = app.conversation.last_assistant()
        for fold in widget._calls.values():
            fold.update_status("answered · 0.12s")
        await freeze(pilot)

    app = themed_app(theme, tools=ToolsConfig(python=True), chats_dir=tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=tool_turn)
