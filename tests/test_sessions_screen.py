"""The saved-chats screen (Ctrl+S) driven with Pilot over real chat files on disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harmony_tui.app import HarmonyApp
from harmony_tui.config.settings import Choices, resolve
from harmony_tui.config.user_config import UserConfig
from harmony_tui.demo.corpus import SCRIPTS
from harmony_tui.engine.messages import Message
from harmony_tui.engine.params import GenerationParams
from harmony_tui.screens.sessions import ConfirmScreen, RenameScreen, SessionsScreen
from harmony_tui.sessions.chat import ChatSession
from harmony_tui.sessions.chat_log import ChatLog, ChatRecord
from harmony_tui.sessions.lock import lock_path
from harmony_tui.sessions.store import read_chat

WIDE = (120, 40)
CORRUPT = b'{"format": "harmony-tui-chat", "schema_version": 1, "messages": [{"id": "a", "ro'


async def wait_for(pilot, condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def write_chat(path: Path, exchanges: list[tuple[str, str, str]], stamp: str) -> None:
    """A real chat file: (user text, thinking, answer) per exchange, saved by ChatSession."""
    session = ChatSession(ChatLog(created_at=stamp), path)
    for user, thinking, answer in exchanges:
        session.log.append(ChatRecord(role="user", content=user, created_at=stamp))
        recorder = session.begin_turn("demo", {"temperature": 0.0})
        recorder.add(Message("assistant", thinking, channel="analysis"))
        recorder.finish([Message("assistant", thinking, channel="analysis"),
                         Message("assistant", answer, channel="final")], {"tps": 1.0}, "return")
    session.log.updated_at = stamp  # a fixed order in the list: newest first
    session.save()


@pytest.fixture
def chats(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # ./models is looked up from here
    folder = tmp_path / "chats"
    write_chat(folder / "garden.json", [("Plan the garden beds", "Think about sun.",
                                          "Put tomatoes in the south bed.")],
               "2026-01-03T10:00:00.000Z")
    write_chat(folder / "rust.json", [("Explain lifetimes", "Borrowing rules.",
                                        "The borrow checker tracks how long references live."),
                                       ("And traits?", "Interfaces.", "Traits are interfaces.")],
               "2026-01-02T10:00:00.000Z")
    write_chat(folder / "old.json", [("Old question", "", "Old answer")],
               "2026-01-01T10:00:00.000Z")
    (folder / "broken.json").write_bytes(CORRUPT)
    return folder


def make_app(chats_dir: Path, model: str = "demo", chat: str | None = None) -> HarmonyApp:
    settings = resolve(Choices(model=model, chat=chat), UserConfig(chats_dir=str(chats_dir)))
    return HarmonyApp(settings.model, params=GenerationParams(temperature=0),
                      settings=settings, remember_theme=False)


def names(screen: SessionsScreen) -> list[str]:
    return [row.path.name for row in screen.shown]


async def open_sessions(pilot) -> SessionsScreen:
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen),
                   what="the sessions screen")
    return pilot.app.screen


async def search(pilot, screen: SessionsScreen, text: str) -> None:
    screen.query_one("#sessions-search").value = text
    await pilot.pause()


def select(screen: SessionsScreen, name: str) -> None:
    screen.table.focus()
    screen.table.move_cursor(row=names(screen).index(name))


def conversation_texts(app: HarmonyApp) -> list[str]:
    return [entry.text for entry in app.conversation.entries if entry.kind != "note"]


async def test_list_search_open_and_corrupt_chat(chats: Path):
    broken = (chats / "broken.json").read_bytes()
    app = make_app(chats, model=str(chats / "no-model"))  # no model needed to browse
    async with app.run_test(size=WIDE) as pilot:
        screen = await open_sessions(pilot)
        assert sorted(names(screen)) == ["broken.json", "garden.json", "old.json", "rust.json"]
        assert [n for n in names(screen) if n != "broken.json"] == ["garden.json", "rust.json",
                                                                    "old.json"]
        row = next(r for r in screen.shown if r.path.name == "broken.json")
        assert row.error and "invalid JSON" in row.error
        assert screen.table.get_row(str(row.path))[0].startswith("⚠")
        titles = {r.path.name: r.title for r in screen.shown}
        assert titles["garden.json"] == "Plan the garden beds"
        assert [r.messages for r in screen.shown if r.path.name == "rust.json"] == [6]

        await search(pilot, screen, "GARDEN")  # title, any case
        assert names(screen) == ["garden.json"]
        await search(pilot, screen, "borrow checker")  # text of an answer
        assert names(screen) == ["rust.json"]
        await search(pilot, screen, "no such words")
        assert names(screen) == []
        assert "No chats match" in str(screen.query_one("#sessions-help").render())
        await search(pilot, screen, "")
        assert len(names(screen)) == 4

        select(screen, "broken.json")
        await pilot.press("enter")  # a corrupt chat is not opened, and not touched
        assert app.screen is screen
        assert any("invalid JSON" in n.message for n in app._notifications)
        assert (chats / "broken.json").read_bytes() == broken

        await search(pilot, screen, "lifetimes")
        await pilot.press("enter")  # Enter in the search box opens the first match
        await wait_for(pilot, lambda: not isinstance(app.screen, SessionsScreen),
                       what="the screen to close")
        await wait_for(pilot, lambda: app.session.path == chats / "rust.json", what="the chat")
        await wait_for(pilot, lambda: "Traits are interfaces." in conversation_texts(app),
                       what="the messages")
        assert conversation_texts(app) == [
            "Explain lifetimes", "The borrow checker tracks how long references live.",
            "And traits?", "Traits are interfaces."]
        assert app.conversation.entries[1].thinking == "Borrowing rules."
        assert app.session.last_params() == {"temperature": 0.0}


async def test_rename_delete_with_confirmation_and_export(chats: Path):
    app = make_app(chats, model=str(chats / "no-model"), chat="old")
    async with app.run_test(size=WIDE) as pilot:
        screen = await open_sessions(pilot)

        select(screen, "rust.json")
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RenameScreen), what="rename box")
        rename_input = app.screen.query_one("#rename-input")
        assert rename_input.value == "rust"
        rename_input.value = "garden"  # taken: refused, nothing changes
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="back to the list")
        assert any("already exists" in n.message for n in app._notifications)
        assert (chats / "rust.json").exists()

        select(screen, "rust.json")
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RenameScreen), what="rename box")
        app.screen.query_one("#rename-input").value = "rust-notes"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "rust-notes.json" in names(screen), what="the new name")
        assert not (chats / "rust.json").exists()
        renamed = read_chat(chats / "rust-notes.json")
        assert renamed.title == "rust-notes" and len(renamed.messages) == 6

        await search(pilot, screen, "garden")
        await pilot.press("down")  # from the search box into the list
        assert app.focused is screen.table
        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        assert "garden.json" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("n")  # no: kept
        await wait_for(pilot, lambda: app.screen is screen, what="back to the list")
        assert (chats / "garden.json").exists()
        select(screen, "garden.json")
        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: "garden.json" not in names(screen), what="the deletion")
        assert not (chats / "garden.json").exists()

        await search(pilot, screen, "")
        select(screen, "old.json")  # the open chat cannot be deleted
        await pilot.press("delete")
        await pilot.pause()
        assert app.screen is screen and (chats / "old.json").exists()
        assert any("This is the open chat" in n.message for n in app._notifications)

        await search(pilot, screen, "")
        screen.query_one("#sessions-search").focus()
        await pilot.press(*"notes")  # typed into the search box, which keeps the focus
        assert names(screen) == ["rust-notes.json"]
        await pilot.press("ctrl+e")  # exports the selected chat even from the search box
        markdown = chats / "rust-notes.md"
        await wait_for(pilot, markdown.exists, what="the Markdown export")
        text = markdown.read_text()
        assert text.startswith("# rust-notes\n")
        assert "## User\n\nExplain lifetimes" in text
        assert "## Assistant\n\nTraits are interfaces." in text
        assert "<details><summary>Thinking</summary>\n\nBorrowing rules." in text
        await pilot.press("ctrl+e")  # a second export never replaces the first
        await wait_for(pilot, (chats / "rust-notes-2.md").exists, what="the second export")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SessionsScreen),
                       what="the screen to close")
        assert app.session.path == chats / "old.json"


async def test_resume_shows_earlier_messages_and_continues_the_same_file(chats: Path):
    app = make_app(chats, chat="garden")
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: any("Resumed garden.json" in e.text
                                          for e in app.conversation.entries),
                       what="the replay")
        assert conversation_texts(app)[:2] == ["Plan the garden beds",
                                               "Put tomatoes in the south bed."]
        await wait_for(pilot, lambda: app.model_ready, timeout=60, what="the model")

        # Renaming the open chat keeps saving into the renamed file.
        screen = await open_sessions(pilot)
        select(screen, "garden.json")
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RenameScreen), what="rename box")
        app.screen.query_one("#rename-input").value = "garden-2026"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "garden-2026.json" in names(screen), what="the new name")
        # The chat's lock moved with it: no other process can take either name meanwhile.
        assert lock_path(chats / "garden-2026.json").read_text().strip() == str(os.getpid())
        assert not lock_path(chats / "garden.json").exists()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SessionsScreen),
                       what="the screen to close")

        app.prompt.set_text(SCRIPTS[0].prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turns_started == 1 and app.turn is None,
                       timeout=60, what="the turn")
    log = read_chat(chats / "garden-2026.json")
    assert not (chats / "garden.json").exists()
    assert log.title == "garden-2026"
    contents = [r.content for r in log.path()]
    assert contents[:4] == ["Plan the garden beds", "Think about sun.",
                            "Put tomatoes in the south bed.", SCRIPTS[0].prompt]
    answer = log.path()[4:]  # the demo model's reply (it was trained on one-turn chats only)
    assert answer and all(r.role == "assistant" for r in answer)
    assert answer[0].model == "demo" and answer[-1].finish_reason


async def test_a_new_chat_shows_the_greeting_and_leaves_no_empty_file(tmp_path: Path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARMONY_TUI_FIXED_TIME", "2026-04-05T06:07:08+00:00")
    config = tmp_path / "p.yaml"
    config.write_text("assistant_greeting: Hello {user}, today is <|DATE|>.\n"
                      "placeholders: {user: Ann}\nchats_dir: chats\n")
    settings = resolve(Choices(model=str(tmp_path / "no-model"), prompt_config=config),
                       UserConfig())
    app = HarmonyApp(settings.model, settings=settings, remember_theme=False)
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: app.session.records(), what="the greeting")
        assert conversation_texts(app) == ["Hello Ann, today is 2026-04-05."]
        assert app.session.records()[0].greeting
    assert not (tmp_path / "chats").exists() or not list((tmp_path / "chats").iterdir())


async def test_opening_another_chat_while_an_answer_streams_saves_it_as_stopped(
        chats: Path, tiny_gpt_oss: Path):
    """As quitting and New chat do: the partial answer is kept, marked stopped (issue 10)."""
    from test_app import endless, start_streaming

    settings = resolve(Choices(model=str(tiny_gpt_oss)), UserConfig(chats_dir=str(chats)))
    app = HarmonyApp(settings.model, params=endless(7), settings=settings, remember_theme=False)
    async with app.run_test(size=WIDE) as pilot:
        await start_streaming(pilot)
        widget = app.turn.widget
        await wait_for(pilot, lambda: len(widget.answer) >= 20, what="answer text on screen")
        shown, old = widget.answer, app.session.path
        screen = await open_sessions(pilot)
        select(screen, "garden.json")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.path == chats / "garden.json"
                       and app.turn is None and "Put tomatoes in the south bed."
                       in conversation_texts(app), what="the other chat")
        assert not lock_path(old).exists()  # the old chat was given back
    records = read_chat(old).path()
    assert records[0].content == "go"
    finals = [r for r in records if r.channel == "final" and not r.recipient]
    assert finals and finals[-1].content.startswith(shown), (shown, finals)
    assert records[-1].finish_reason == "cancelled"


async def test_opening_a_chat_clears_the_previous_chats_figures_and_titles_the_conversation(
        chats: Path):
    app = make_app(chats)
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: app.model_ready, what="the model", timeout=60)
        app.prompt.set_text("Hello!")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.turn is None and app.session.final_answers(),
                       what="the answer", timeout=60)
        assert app.status.prompt_tokens and app.status.tps is not None
        screen = await open_sessions(pilot)
        select(screen, "garden.json")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.path == chats / "garden.json",
                       what="the other chat")
        status = app.status
        assert (status.prompt_tokens, status.generated, status.tps, status.ttft) == \
            (0, 0, None, None)
        assert app.conversation.border_title == "demo · Plan the garden beds"
