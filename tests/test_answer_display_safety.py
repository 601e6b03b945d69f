"""The model's answer and thinking are shown as text: no escape sequence reaches the terminal.

The model may echo what a web page or a tool printed (an OSC 52 clipboard write, a screen
clear); the app keeps the text as written but never lets the terminal act on it.
"""

from __future__ import annotations

from textual.app import App, ComposeResult

from harmony_tui.widgets.messages import AssistantMessage

OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"
HOSTILE = f"Here is the answer{OSC52} \x1b[2J\x9b2Jdone"


class _One(App):
    def __init__(self, markdown: bool) -> None:
        super().__init__()
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        yield AssistantMessage("model", markdown=self.markdown)


def rendered(app: App) -> str:
    lines = []
    for widget in app.screen.query("*"):
        for y in range(widget.size.height):
            lines.append("".join(segment.text for segment in widget.render_line(y)))
    return "\n".join(lines)


async def test_streamed_answers_and_thinking_show_no_control_sequences() -> None:
    for markdown in (True, False):
        app = _One(markdown)
        async with app.run_test(size=(100, 20)) as pilot:
            message = app.query_one(AssistantMessage)
            await message.append_answer(HOSTILE[:20])
            await message.append_answer(HOSTILE[20:])
            await message.append_thinking(f"thinking{OSC52}")
            await message.finish()
            await pilot.pause()
            message.query_one(".thinking-fold").collapsed = False
            await pilot.pause()
            shown = rendered(app)
            assert "Here is the answer" in shown and "done" in shown
            assert "\x1b" not in shown and "\x9b" not in shown and "\x07" not in shown
            assert message.answer == HOSTILE  # the stored answer is untouched
