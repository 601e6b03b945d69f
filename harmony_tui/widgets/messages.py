"""Message widgets: the person's prompts and the model's streamed answers."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets._markdown import MarkdownStream

from harmony_tui.text_safety import terminal_safe

HELP = """\
An answer from the model. Its thinking is folded above the answer; click or press Enter on
**Thinking** to open it. **F8** copies the last answer, **F9** its last code block.
"""


def truncated(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters for display (the stored text is never cut), with
    nothing a terminal would act on: the model may echo escape sequences a web page wrote."""
    if limit is None or len(text) <= limit:
        return terminal_safe(text)
    return terminal_safe(text[:limit]) + f"\n\n… ({len(text) - limit} more characters hidden)"


class UserMessage(Static):
    """A prompt the person sent."""

    DEFAULT_CLASSES = "message user-message"

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        self.text = text
        self.border_title = "You"


class AssistantMessage(Vertical):
    """One assistant turn: folded thinking, tool-call notes and the streamed final answer."""

    HELP = HELP
    DEFAULT_CLASSES = "message assistant-message"

    def __init__(self, model_name: str, markdown: bool = True,
                 truncate_thinking: int | None = None, truncate_response: int | None = None,
                 answer: str = "", thinking: str = "", notes: tuple[str, ...] = (),
                 **kwargs) -> None:
        """A streaming answer; with ``answer``/``thinking``/``notes`` a finished one (rebuilt)."""
        super().__init__(**kwargs)
        self.border_title = model_name
        self.markdown_enabled = markdown
        self.truncate_thinking = truncate_thinking
        self.truncate_response = truncate_response
        self.answer = answer
        self.thinking = thinking
        self.notes: list[str] = list(notes)
        self._stream: MarkdownStream | None = None
        self._shown = len(answer)
        self.finished = bool(answer or thinking or notes)

    def compose(self) -> ComposeResult:
        with Collapsible(title=self._thinking_title(), collapsed=True,
                         classes="thinking-fold") as fold:
            fold.display = bool(self.thinking)
            yield Static(truncated(self.thinking, self.truncate_thinking), markup=False,
                         classes="thinking-text")
        shown = truncated(self.answer, self.truncate_response)
        if self.markdown_enabled:
            yield Markdown(shown, classes="answer")
        else:
            yield Static(shown, markup=False, classes="answer")
        notes = Static("\n".join(self.notes), markup=False, classes="turn-notes")
        notes.display = bool(self.notes)
        yield notes

    def _thinking_title(self) -> str:
        return f"Thinking ({len(self.thinking.split())} words)"

    async def append_answer(self, text: str) -> None:
        """Stream more of the final answer (display limited by ``truncate_response``)."""
        self.answer += text
        limit = self.truncate_response
        if limit is not None and self._shown >= limit:
            return
        visible = text if limit is None else text[: limit - self._shown]
        self._shown += len(visible)
        if self.markdown_enabled:
            if self._stream is None:
                self._stream = Markdown.get_stream(self.query_one(".answer", Markdown))
            await self._stream.write(terminal_safe(visible))
        else:
            self.query_one(".answer", Static).update(truncated(self.answer, limit))

    async def set_answer(self, text: str) -> None:
        """Replace the whole answer (e.g. with citations turned into links)."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.answer = text
        self._shown = min(len(text), self.truncate_response or len(text))
        shown = truncated(text, self.truncate_response)
        if self.markdown_enabled:
            await self.query_one(".answer", Markdown).update(shown)
        else:
            self.query_one(".answer", Static).update(shown)

    def append_thinking(self, text: str) -> None:
        """Keep the turn's thinking; shown in the fold once the turn ends."""
        self.thinking += text
        fold = self.query_one(".thinking-fold", Collapsible)
        if not fold.display:
            fold.display = True
        fold.title = self._thinking_title()

    def add_note(self, note: str) -> None:
        self.notes.append(note)
        notes = self.query_one(".turn-notes", Static)
        notes.update("\n".join(self.notes))
        notes.display = True

    async def finish(self, note: str | None = None) -> None:
        """The turn is over: flush the stream, fill the thinking fold, add a status note."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if self.truncate_response is not None and len(self.answer) > self.truncate_response:
            hidden = len(self.answer) - self.truncate_response
            self.add_note(f"… {hidden} more characters hidden (truncate_response)")
        self.query_one(".thinking-text", Static).update(
            truncated(self.thinking, self.truncate_thinking))
        if note:
            self.add_note(note)
        self.finished = True

    def code_blocks(self) -> list[str]:
        """Fenced code blocks of the full answer, in order."""
        blocks, current, fence = [], [], None
        for line in self.answer.splitlines():
            stripped = line.strip()
            if fence is None and stripped.startswith("```"):
                fence, current = stripped[:3], []
            elif fence is not None and stripped.startswith(fence):
                blocks.append("\n".join(current))
                fence = None
            elif fence is not None:
                current.append(line)
        return blocks


class SystemNote(Static):
    """An app notice inside the conversation (errors, model switches)."""

    DEFAULT_CLASSES = "message system-note"

    def __init__(self, text: str, error: bool = False, **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        if error:
            self.add_class("error")
