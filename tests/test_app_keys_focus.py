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


async def test_modal_screens_show_their_own_keys_and_the_approval_keys_are_labelled(tmp_path):
    from test_tool_loop import ask_for_python
    from textual.widgets import Button, Footer

    from harmony_tui.tools.config import ToolsConfig

    app = make_app(tools=ToolsConfig(python=True), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.query_one(Footer)  # the help screen's own footer
        keys = {b.description for _, b, *_ in app.screen.active_bindings.values() if b.show}
        assert keys == {"Close"}
        await pilot.press("escape")
        await ask_for_python(pilot)
        labels = [str(b.label) for b in app.screen.query(Button)]
        assert labels == ["Allow once [y]", "Allow for this chat [a]", "Deny [n]"]
        shown = {b.description for _, b, *_ in app.screen.active_bindings.values() if b.show}
        assert {"Allow once", "Allow for this chat", "Deny"} <= shown
        assert app.screen.query_one(Footer)
        await pilot.press("n")


async def test_empty_panes_say_so_in_one_dim_line():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("f3")
        await pilot.pause()
        hint = app.tools.query_one(".empty-hint")
        assert hint.display and "No tool calls" in str(hint.render())
        assert app.thinking.has_class("empty") and app.thinking.size.height <= 5
