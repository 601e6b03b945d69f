"""The terminal app driven with Textual's Pilot on real models (demo and tiny random ones)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harmony_tui.app import HarmonyApp
from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.params import GenerationParams
from harmony_tui.screens.help import HelpScreen
from harmony_tui.sessions.store import read_chat
from harmony_tui.widgets.messages import AssistantMessage, SystemNote

WIDE = (120, 40)
HELLO = SCRIPTS[0]
CODE = SCRIPTS[2]


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def endless(seed: int) -> GenerationParams:
    """Sampling that keeps a random model talking: no stop or structural Harmony token."""
    from harmony_tui.engine.formats.harmony import FIRST_SPECIAL, VOCAB_SIZE

    banned = {t: -100.0 for t in range(FIRST_SPECIAL, VOCAB_SIZE)}
    return GenerationParams(max_tokens=4000, seed=seed, logit_bias=banned)


def make_app(model: str = "demo", **kwargs) -> HarmonyApp:
    kwargs.setdefault("remember_theme", False)
    kwargs.setdefault("params", GenerationParams(temperature=0))
    return HarmonyApp(model, **kwargs)


def sidebar_text(app) -> str:
    from rich.console import Console

    console = Console(width=40, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(app.settings.settings_list.render())
    return console.export_text()


async def ready(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.model_ready, what="the model to load")


async def start_streaming(pilot) -> None:
    """Load, send a prompt and wait until tokens are being generated."""
    app = pilot.app
    await ready(pilot)
    app.prompt.set_text("go")
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.turn is not None and app.turn.generating,
                   what="text to stream")


async def send(pilot, text: str) -> None:
    app = pilot.app
    answers = len(app.session.final_answers())
    turns = app.turns_started
    app.prompt.set_text(text)
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.turns_started > turns, what="the turn to start")
    await wait_for(pilot, lambda: app.turn is None, what="the turn to end")
    assert len(app.session.final_answers()) >= answers


async def test_chat_turn_streams_thinking_answer_and_stats():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await send(pilot, HELLO.prompt)
        assert app.thinking.text == HELLO.analysis
        widget = app.conversation.last_assistant()
        assert widget.answer == HELLO.final
        assert widget.thinking == HELLO.analysis
        rendered = app.status.render().plain
        assert "tok/s" in rendered and "TTFT" in rendered and "demo" in rendered
        assert app.status.tps and app.status.tps > 0
        assert app.session.final_answers() == [HELLO.final]


async def test_markdown_answer_has_a_code_block():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await send(pilot, CODE.prompt)
        widget = app.conversation.last_assistant()
        assert widget.code_blocks() == ['def main() -> None:\n    print("Hello, world!")\n\n\n'
                                        'if __name__ == "__main__":\n    main()']
        from textual.widgets._markdown import MarkdownFence

        assert widget.query(MarkdownFence)


async def test_sidebar_change_by_keys_reaches_the_next_request():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        assert app.focused is app.settings.settings_list
        await pilot.press("down", "down", "right", "right")  # top_k 0 -> 2
        assert app.params.top_k == 2
        row = next(line for line in sidebar_text(app).splitlines() if "top k" in line)
        assert row.split()[-2:] == ["2", "●"]
        await pilot.press("f6")
        await send(pilot, HELLO.prompt)
        assert app.last_request.params.top_k == 2
        assert app.last_turn_start.params.top_k == 2


async def test_invalid_sidebar_values_are_refused_with_a_message():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press("f5", "left")  # temperature 0 - 0.05: stops at the bound (issue 14)
        message = str(app.query_one("#settings-message").render())
        assert "stays at 0" in message and "lowest" in message
        assert app.params.temperature == 0
        await pilot.press("enter")
        app.query_one("#settings-input").value = "-1"
        await pilot.press("enter")
        assert "greater than or equal to 0" in str(app.query_one("#settings-message").render())
        app.query_one("#settings-input").value = "hot"
        await pilot.press("enter")
        assert "expected a number" in str(app.query_one("#settings-message").render())
        app.query_one("#settings-input").value = "0.5"
        await pilot.press("enter")
        assert app.params.temperature == 0.5


async def test_escape_stops_within_a_token_and_keeps_the_partial_answer(tiny_gpt_oss):
    app = make_app(str(tiny_gpt_oss), params=endless(1))
    async with app.run_test(size=WIDE) as pilot:
        await start_streaming(pilot)
        # generating starts with the first token; the answer may show a step later
        widget = app.turn.widget
        await wait_for(pilot, lambda: widget.answer, what="answer text on screen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.turn is None, what="the stop")
        widget = app.conversation.last_assistant()
        assert "stopped" in "\n".join(widget.notes)
        assert app.status.generated < 4000
        assert app.session.messages[-1].role == "assistant"  # the partial answer is kept


async def test_typing_and_palette_work_while_streaming(tiny_gpt_oss):
    app = make_app(str(tiny_gpt_oss), params=endless(2))
    async with app.run_test(size=WIDE) as pilot:
        await start_streaming(pilot)
        # Keys go straight to the driver: Pilot.press waits up to 2 s per key for the process
        # to look idle, which it never does while a model streams on the other thread.
        from textual import events

        for char in "next question":
            app._driver.send_message(events.Key(char if char != " " else "space", char))
        await wait_for(pilot, lambda: app.prompt.text == "next question", timeout=10,
                       what="the typed text")
        await pilot.press("ctrl+p")
        from textual.command import CommandPalette

        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CommandPalette),
                       what="palette closed")
        assert app.turn is not None  # still streaming
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.turn is None, what="the stop")


async def test_commands_and_their_errors(tiny_llama):
    app = make_app(str(tiny_llama))
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)

        async def command(text: str) -> str:
            app.prompt.set_text(text)
            await pilot.press("enter")
            notes = list(app.conversation.query(SystemNote))
            return str(notes[-1].render()) if notes else ""

        assert "unknown command '\\foo'; valid: \\help, \\list, \\set, \\clear, \\quit" in \
            await command("\\foo")
        assert "unknown setting 'temprature' (did you mean temperature?)" in \
            await command("\\set temprature=0.5")
        assert "temperature='abc'" in await command("/set temperature=abc")
        assert "top_k='-3'" in await command("\\set top_k=-3")
        assert app.params.top_k == 0
        assert "top_k = 7" in await command("\\set top_k=7")
        assert app.params.top_k == 7
        listing = await command("\\list")
        assert "top_k = 7" in listing and "temperature = 0.0" in listing
        await command("\\help")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await command("\\clear")
        assert app.session.messages == []
        app.prompt.set_text("q")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.is_running, what="quit")


async def test_model_switch_from_the_palette(tiny_llama, tmp_path):
    import shutil

    shutil.copytree(tiny_llama, tmp_path / "my-llama")
    app = make_app(models_dir=tmp_path, params=GenerationParams(temperature=0, max_tokens=16))
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        assert app.model_name == "demo"
        await pilot.press("ctrl+l")
        await pilot.press(*"my-llama")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.model_name == "my-llama", what="the switch")
        await send(pilot, "hi")
        assert app.last_turn_start is not None
        assert app.status.model_name == "my-llama"


async def test_a_model_that_fails_to_load_leaves_the_app_usable(tmp_path):
    app = make_app(str(tmp_path / "missing"))
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: list(app.conversation.query(SystemNote)),
                       what="the error note")
        note = app.conversation.query(SystemNote).last()
        assert "does not exist" in str(note.render())
        assert app.status.state == "error"
        app.load_model("demo")
        await ready(pilot)
        await send(pilot, HELLO.prompt)
        assert app.session.final_answers() == [HELLO.final]


async def test_regenerate_edit_new_chat_and_copy():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await send(pilot, HELLO.prompt)
        await pilot.press("f8")
        assert app.clipboard == HELLO.final
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.turn is None and app.turns_started == 2,
                       what="regeneration")
        assert [m.role for m in app.session.messages].count("user") == 1
        assert len(app.conversation.query(AssistantMessage)) == 1
        await pilot.press("ctrl+o")
        assert app.prompt.text == HELLO.prompt
        assert app.session.messages == []
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turn is None and app.turns_started == 3,
                       what="the edited turn")
        await send(pilot, CODE.prompt)
        await pilot.press("f9")
        assert app.clipboard.startswith("def main() -> None:")
        await pilot.press("ctrl+n")
        assert app.session.messages == [] and not app.conversation.query(AssistantMessage)


async def test_help_screen_lists_bindings_with_ids_and_commands():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.markdown
        for binding_id in ("stop", "regenerate", "toggle_thinking", "settings.increase",
                           "pick_model", "quit"):
            assert f"`{binding_id}`" in text
        assert "\\set" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_keymap_remaps_a_binding():
    app = make_app(keymap={"toggle_thinking": "f12"})
    async with app.run_test(size=WIDE) as pilot:
        assert app.thinking.display
        await pilot.press("f12")
        assert not app.thinking.display
        await pilot.press("f2")  # the old key no longer toggles it
        assert not app.thinking.display


async def test_theme_choice_persists(monkeypatch, tmp_path):
    monkeypatch.setenv("HARMONY_TUI_DATA_DIR", str(tmp_path))
    app = make_app(remember_theme=True)
    async with app.run_test(size=WIDE) as pilot:
        assert app.theme == "harmony-dark"
        app.theme = "harmony-light"
        await pilot.pause()
    second = make_app(remember_theme=True)
    async with second.run_test(size=WIDE):
        assert second.theme == "harmony-light"


async def test_narrow_terminal_hides_side_panes_until_asked():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert not app.query_one("#side").display
        await pilot.press("f2")
        assert app.thinking.display and app.query_one("#side").display


async def test_plain_text_mode_and_display_truncation_keep_stored_text():
    app = make_app(markdown=False, truncate_response=20)
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await send(pilot, HELLO.prompt)
        widget = app.conversation.last_assistant()
        shown = str(widget.query_one(".answer").render())
        assert len(shown) < len(HELLO.final)
        assert "more characters hidden" in shown
        assert not widget.query("Markdown")
        assert app.session.final_answers() == [HELLO.final]  # stored in full


async def test_long_chats_prune_old_widgets_and_can_scroll_back():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        view = app.conversation
        await view.clear()
        view.max_mounted = 6
        for i in range(15):
            await view.add_note(f"note {i}")
        assert len(view.query(SystemNote)) == 6
        assert view.first_mounted == 9
        assert "9 earlier messages" in str(view.query_one("#earlier").label)
        await view.show_earlier(5)
        assert len(view.query(SystemNote)) == 11
        assert str(view.query(SystemNote).first().render()) == "note 4"
        view.scroll_home(animate=False)
        await pilot.pause()
        await pilot.click("#earlier")
        await wait_for(pilot, lambda: view.first_mounted == 0, what="the earlier page")
        assert str(view.query(SystemNote).first().render()) == "note 0"
        assert not view.query_one("#earlier").display


@pytest.fixture(autouse=True)
def _isolated_models_dir(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)


async def test_new_chat_while_streaming_saves_the_partial_answer_as_stopped(tiny_gpt_oss,
                                                                           tmp_path):
    """Ctrl+N mid-answer keeps what was written, marked stopped, exactly as quitting does."""
    app = make_app(str(tiny_gpt_oss), params=endless(3), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await start_streaming(pilot)
        widget = app.turn.widget
        await wait_for(pilot, lambda: len(widget.answer) >= 20, what="answer text on screen")
        shown, old = widget.answer, app.session.path
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.turn is None and app.session.path != old
                       and not app.conversation.query(AssistantMessage), what="the new chat")
        assert app.session.messages == []
        records = read_chat(old).path()
        assert [r.role for r in records][:2] == ["user", "assistant"]
        assert records[0].content == "go"
        finals = [r for r in records if r.channel == "final" and not r.recipient]
        assert finals and finals[-1].content.startswith(shown), (shown, finals)
        assert records[-1].finish_reason == "cancelled" and records[-1].stats is not None
        app.prompt.set_text("\\set max_tokens=5")
        await pilot.press("enter")
        await send(pilot, "again")
        assert app.session.messages[0].role == "user"
        assert app.session.messages[0].content == "again"
        assert len(app.conversation.query(AssistantMessage)) == 1
        assert app.last_turn_start.params.max_tokens == 5
    assert read_chat(old).path() == records  # the new chat went to its own file


async def test_prompt_newline_and_history(tiny_llama):
    app = make_app(str(tiny_llama), params=GenerationParams(temperature=0, max_tokens=4))
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await pilot.press(*"one", "ctrl+j", *"two")
        assert app.prompt.text == "one\ntwo"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turn is None and app.turns_started, what="the turn")
        assert app.session.messages[0].content == "one\ntwo"
        await send(pilot, "three")
        assert app.prompt.text == ""
        await pilot.press("up")
        assert app.prompt.text == "three"
        await pilot.press("up")
        assert app.prompt.text == "one\ntwo"
        await pilot.press("down")  # the cursor is on the last line: forward in history
        assert app.prompt.text == "three"
        await pilot.press("down")  # past the newest: back to the (empty) draft
        assert app.prompt.text == ""
