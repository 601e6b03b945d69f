"""Snapshots of the app at a fixed size (pytest-textual-snapshot).

Figures that vary from run to run (time to first token, tokens per second, memory) are fixed
before the snapshot is taken, and cursors do not blink. Update with ``--snapshot-update`` after
an intended change, and look at the SVGs before committing them.
"""

from __future__ import annotations

import time

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
