"""A tool turn reads in the order it happened: thinking, the call (folded: code and result),
more thinking, the answer; thinking messages are set apart; the answer streams cheaply."""

from __future__ import annotations

from test_app import WIDE, make_app, ready, wait_for
from test_tool_loop import PYTHON, ask_for_python

from harmony_tui.tools.config import ToolsConfig
from harmony_tui.widgets.answer import StreamingAnswer, completed_blocks
from harmony_tui.widgets.conversation import ConversationView
from harmony_tui.widgets.messages import AssistantMessage, CallFold, ThinkingFold
from harmony_tui.widgets.panes import MESSAGE_RULE


def kinds(widget: AssistantMessage) -> list[str]:
    names = {ThinkingFold: "thinking", CallFold: "call", StreamingAnswer: "answer"}
    return [names[type(child)] for child in widget.children if type(child) in names]


async def test_a_python_turn_shows_thinking_call_thinking_answer_in_order(tmp_path):
    app = make_app(tools=ToolsConfig(python=True), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ask_for_python(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.turn is None and app.session.final_answers(),
                       what="the answer after the tool ran")
        widget = app.conversation.last_assistant()
        assert kinds(widget) == ["thinking", "call", "thinking", "answer"]
        call = widget.query_one(CallFold)
        assert call.collapsed and str(call.title).startswith("python · answered")
        assert "print(17 * 23)" in call.info.arguments and call.info.result.strip() == "391"
        # the two thinking messages are set apart in the pane, not glued together
        first, second = (fold.text for fold in widget.query(ThinkingFold))
        assert app.thinking.text == first + MESSAGE_RULE + second
        assert widget.thinking == f"{first}\n\n{second}"
        # rebuilt (pruned, then shown again) in the same order
        view: ConversationView = app.conversation
        view._sync(len(view.entries) - 1)
        entry = view.entries[-1]
        rebuilt = view._rebuild(entry)
        await view.mount(rebuilt)
        assert kinds(rebuilt) == ["thinking", "call", "thinking", "answer"]


async def test_a_resumed_tool_turn_keeps_its_order(tmp_path):
    app = make_app(tools=ToolsConfig(python=True), chats_dir=tmp_path)
    async with app.run_test(size=WIDE) as pilot:
        await ask_for_python(pilot)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.turn is None and app.session.final_answers(),
                       what="the answer after the tool ran")
        path = app.session.path
    from harmony_tui.sessions.store import read_chat
    from harmony_tui.widgets.replay import entries_for

    entry = entries_for(read_chat(path).path())[-1]
    assert [kind for kind, _ in entry.parts] == ["thinking", "call", "thinking"]
    assert entry.parts[1][1].status == "answered" and entry.text == PYTHON.final


async def test_the_thinking_pane_counts_questions_not_answers(tmp_path):
    app = make_app(chats_dir=tmp_path)  # no tools: the python prompt gets no final answer
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        for turn in (1, 2):
            app.prompt.set_text(PYTHON.prompt)
            await pilot.press("enter")
            await wait_for(pilot, lambda t=turn: app.turns_started >= t and app.turn is None,
                           what="the turn")
            assert app.thinking.border_subtitle == f"turn {turn}"


def test_only_completed_blocks_go_to_markdown():
    assert completed_blocks("one paragraph, still going") == 0
    assert completed_blocks("done.\n\nnext") == len("done.\n\n")
    code = "```python\nx = 1\n\ny = 2\n"
    assert completed_blocks(code) == 0  # a blank line inside a fence ends nothing
    assert completed_blocks(code + "```\nafter") == len(code + "```\n")
    assert completed_blocks("a\n\n~~~\n\n~~~\n\nb") == len("a\n\n~~~\n\n~~~\n\n")


async def test_the_streamed_answer_ends_as_the_whole_markdown():
    from textual.app import App
    from textual.widgets import Markdown, Static

    class One(App):
        def compose(self):
            yield AssistantMessage("model")

    text = "First paragraph.\n\n```python\nx = 1\n\ny = 2\n```\nLast **words**"
    app = One()
    async with app.run_test(size=(80, 30)) as pilot:
        message = app.query_one(AssistantMessage)
        for start in range(0, len(text), 7):
            await message.append_answer(text[start:start + 7])
        answer = message.query_one(StreamingAnswer)
        await pilot.pause()
        tail = answer.query_one(".answer-tail", Static)
        assert tail.display and str(tail.render()) == "Last **words**"  # not yet Markdown
        await message.finish()
        await pilot.pause()
        assert answer.query_one(Markdown).source == text and not tail.display
