"""Keys and focus: the prompt's history and new lines, Tab reaching every control, modal
screens showing their own keys."""

from __future__ import annotations

from test_app import WIDE, make_app, ready, send

from harmony_tui.demo.corpus import SCRIPTS


async def test_ctrl_j_right_after_recalling_history_adds_the_line_at_the_end():
    from textual import events

    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        prompt = app.prompt
        prompt.prompt_history[:] = ["first line", "an earlier\nprompt of two lines"]
        for _ in range(3):
            prompt.set_text("")
            # as a terminal delivers quick typing: straight to the driver, no pause between
            for key, char in (("up", None), ("ctrl+j", None), ("m", "m")):
                app._driver.send_message(events.Key(key, char))
            await pilot.pause(0.2)
            assert prompt.text == "an earlier\nprompt of two lines\nm", repr(prompt.text)
            for key, char in (("up", None), ("up", None), ("up", None), ("down", None),
                              ("ctrl+j", None), ("x", "x")):
                app._driver.send_message(events.Key(key, char))
            await pilot.pause(0.2)
            assert prompt.text.endswith("\nx"), repr(prompt.text)


async def test_tab_reaches_the_earlier_messages_button():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        view = app.conversation
        view.max_mounted = 3
        await send(pilot, SCRIPTS[0].prompt)
        await send(pilot, SCRIPTS[0].prompt)
        earlier = view.query_one("#earlier")
        assert earlier.display
        for _ in range(12):
            await pilot.press("tab")
            if app.focused is earlier:
                break
        assert app.focused is earlier
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert view.first_mounted == 0
