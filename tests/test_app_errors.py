"""Errors said once and briefly: one line in the conversation, plain text (never markup),
and what to do next."""

from __future__ import annotations

import subprocess
import sys

from test_app import WIDE, make_app, ready, wait_for

from harmony_tui.widgets.messages import SystemNote


def toasts(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def last_note(app) -> str:
    notes = list(app.conversation.query(SystemNote))
    return str(notes[-1].render()) if notes else ""


async def test_a_set_error_is_one_line_said_once_and_help_set_lists_the_settings():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        app.clear_notifications()
        for text, expected in (("\\set temprature=0.5",
                                "unknown setting 'temprature' (did you mean temperature?)"),
                               ("\\set top_p=3", "top_p='3'")):
            before = len(app.conversation.query(SystemNote))
            app.prompt.set_text(text)
            await pilot.press("enter")
            await pilot.pause()
            assert len(app.conversation.query(SystemNote)) == before + 1
            note = last_note(app)
            assert expected in note and "\n" not in note.strip() and "min_p" not in note
            assert toasts(app) == []  # not a second time in a toast
        app.prompt.set_text("\\help set")
        await pilot.press("enter")
        await pilot.pause()
        assert "temperature" in last_note(app) and "min_p" in last_note(app)


async def test_brackets_in_error_text_are_shown_not_taken_for_markup(tmp_path):
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        app.notify("failed in [load_safetensors] [b]x[/b]")
        await pilot.pause()
        # (headless runs mount no toast widget: the notification's own flag decides)
        [note] = app._notifications
        assert note.markup is False and note.message.endswith("[load_safetensors] [b]x[/b]")


async def test_after_a_failed_load_a_prompt_says_the_load_failed_and_how_to_pick(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    app = make_app(str(broken))
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: app.load_error is not None, what="the load to fail")
        assert "Ctrl+L" in last_note(app)
        app.clear_notifications()
        app.prompt.set_text("hello")
        await pilot.press("enter")
        await pilot.pause()
        said = toasts(app)
        assert len(said) == 1 and "Could not load" in said[0] and "Ctrl+L" in said[0]
        assert "not loaded yet" not in said[0]


async def test_the_first_load_shows_no_toast_over_the_prompt():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.pause()
        assert not any("Loaded" in t for t in toasts(app))


async def test_the_palette_lists_each_action_once():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        commands = list(app.get_system_commands(app.screen))
        titles = [c.title for c in commands]
        helps = [c.help for c in commands]
        assert len(titles) == len(set(titles)) and len(helps) == len(set(helps)), titles


async def test_stepping_top_p_stops_at_its_bound():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        settings = app.settings
        settings.settings_list.cursor = list(type(app.params).model_fields).index("top_p")
        assert app.params.top_p == 1.0
        await pilot.press("right")
        assert app.params.top_p == 1.0
        assert "highest" in settings.message_text and "error" not in \
            settings.query_one("#settings-message").classes
        await pilot.press("left")
        assert app.params.top_p == 0.95


def test_help_says_each_default_once():
    out = subprocess.run([sys.executable, "-m", "harmony_tui", "--help"], capture_output=True,
                         text=True, timeout=60, env={"COLUMNS": "200", "PATH": ""}).stdout
    assert "(default: the model's)" in out and "(default: the model's). (default" not in out
    assert "(none: random). (default" not in out
