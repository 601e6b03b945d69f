"""Message widgets: the person's prompts and the model's turns, shown in the order they
happened (thinking, each tool call with its result, more thinking, the answer)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from harmony_tui.text_safety import terminal_safe
from harmony_tui.widgets.answer import StreamingAnswer
from harmony_tui.widgets.sizing import OneLayoutPass
from harmony_tui.widgets.tool_view import arguments_view

HELP = """\
An answer from the model, in the order it happened: its thinking (folded), each tool call
(folded: open it to see the code and the result) and the answer. Click or press Enter on a
fold to open it. **F8** copies the last answer, **F9** its last code block.
"""


def truncated(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters for display (the stored text is never cut), with
    nothing a terminal would act on: the model may echo escape sequences a web page wrote."""
    if limit is None or len(text) <= limit:
        return terminal_safe(text)
    return terminal_safe(text[:limit]) + f"\n\n… ({len(text) - limit} more characters hidden)"


@dataclass
class CallInfo:
    """A tool call as the conversation shows it."""

    call_id: str
    recipient: str
    arguments: str
    content_type: str | None = None
    status: str = "called"  # called | running | answered | denied | failed | not run ...
    result: str | None = None


class UserMessage(Static):
    """A prompt the person sent."""

    DEFAULT_CLASSES = "message user-message"

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        self.text = text
        self.border_title = "You"


class ThinkingFold(Collapsible):
    """One stretch of thinking inside a turn (filled when it ends: cheap while streaming)."""

    def __init__(self, text: str = "", limit: int | None = None) -> None:
        self.text = text
        self.limit = limit
        super().__init__(Static(truncated(text, limit), markup=False, classes="thinking-text"),
                         title=self.title_text(), collapsed=True, classes="thinking-fold")

    def title_text(self) -> Content:
        return Content(f"Thinking ({len(self.text.split())} words)")

    def add(self, text: str) -> None:
        self.text += text
        self.title = self.title_text()

    def fill(self) -> None:
        self.query_one(".thinking-text", Static).update(truncated(self.text, self.limit))


class CallFold(Collapsible):
    """A tool call: one line (tool and status), open to see its code or arguments and result."""

    def __init__(self, info: CallInfo) -> None:
        self.info = info
        super().__init__(Static(arguments_view(info.recipient, info.arguments,
                                               info.content_type), classes="call-args"),
                         Static(self._result_text(), classes="call-result"),
                         title=self.title_text(), collapsed=True, classes="call-fold")

    def title_text(self) -> Content:
        return Content(terminal_safe(f"{self.info.recipient} · {self.info.status}"))

    def _result_text(self) -> Text:
        result = self.info.result
        return Text("" if result is None else "← " + terminal_safe(result.rstrip()),
                    style="italic")

    def update_status(self, status: str, result: str | None = None) -> None:
        self.info.status = status
        if result is not None:
            self.info.result = result
            self.query_one(".call-result", Static).update(self._result_text())
        self.title = self.title_text()


def turn_note(text: str) -> Static:
    return Static(text, markup=False, classes="turn-note")


class AssistantMessage(OneLayoutPass, Vertical):
    """One assistant turn: its parts in order (thinking folds, call folds, notes), then the
    streamed answer, then closing notes.

    ``thinking`` is all of the turn's thinking; ``notes`` every note as text, calls included
    ("→ called python", "← python answered"); ``parts`` what a rebuilt widget needs:
    ("thinking", text), ("call", CallInfo) and ("note", text) in order, then ("end", text)."""

    HELP = HELP
    DEFAULT_CLASSES = "message assistant-message"

    def __init__(self, model_name: str, markdown: bool = True,
                 truncate_thinking: int | None = None, truncate_response: int | None = None,
                 answer: str = "", thinking: str = "", notes: tuple[str, ...] = (),
                 parts: tuple[tuple[str, object], ...] | None = None, **kwargs) -> None:
        """A streaming answer; with ``answer``/``parts`` (or ``thinking``/``notes``) a finished
        one (rebuilt)."""
        super().__init__(**kwargs)
        self.border_title = model_name
        self.markdown_enabled = markdown
        self.truncate_thinking = truncate_thinking
        self.truncate_response = truncate_response
        self.answer = answer
        self.thinking = thinking
        self.notes: list[str] = list(notes)
        if parts is None:  # an entry without parts: its thinking, then its notes
            parts = ((("thinking", thinking),) if thinking else ()) + tuple(
                ("note", note) for note in notes)
        self.parts: list[tuple[str, object]] = list(parts)
        self._shown = len(answer)
        self._calls: dict[str, CallFold] = {}
        self._fold: ThinkingFold | None = None  # the thinking being written
        self.finished = bool(answer or thinking or notes or parts)

    def compose(self) -> ComposeResult:
        ends = []
        for kind, value in self.parts:
            if kind == "end":
                ends.append(turn_note(str(value)))
            else:
                yield self._part_widget(kind, value)
        shown = truncated(self.answer, self.truncate_response)
        if self.markdown_enabled:
            yield StreamingAnswer(shown)
        else:
            yield Static(shown, markup=False, classes="answer")
        yield from ends

    def _part_widget(self, kind: str, value: object) -> Widget:
        if kind == "thinking":
            return ThinkingFold(str(value), self.truncate_thinking)
        if kind == "call":
            assert isinstance(value, CallInfo)
            fold = CallFold(value)
            self._calls[value.call_id] = fold
            return fold
        return turn_note(str(value))

    async def _add_part(self, kind: str, value: object) -> Widget:
        if self._fold is not None:
            self._fold.fill()
            self._fold = None
        self.parts.append((kind, value))
        widget = self._part_widget(kind, value)
        await self.mount(widget, before=self.query_one(".answer"))
        return widget

    # -- streaming --------------------------------------------------------------------------

    async def append_answer(self, text: str) -> None:
        """Stream more of the final answer (display limited by ``truncate_response``)."""
        self.answer += text
        limit = self.truncate_response
        if limit is not None and self._shown >= limit:
            return
        visible = text if limit is None else text[: limit - self._shown]
        self._shown += len(visible)
        if self.markdown_enabled:
            await self.query_one(StreamingAnswer).append(terminal_safe(visible))
        else:
            self.query_one(".answer", Static).update(truncated(self.answer, limit))

    async def set_answer(self, text: str) -> None:
        """Replace the whole answer (e.g. with citations turned into links)."""
        self.answer = text
        self._shown = min(len(text), self.truncate_response or len(text))
        shown = truncated(text, self.truncate_response)
        if self.markdown_enabled:
            await self.query_one(StreamingAnswer).replace(shown)
        else:
            self.query_one(".answer", Static).update(shown)

    async def append_thinking(self, text: str, new_message: bool = False) -> None:
        """More thinking: into the current fold, or a new one after a call or a note
        (``new_message``: a new thinking message of the same stretch, set apart)."""
        sep = "\n\n" if new_message or (self._fold is None and self.thinking) else ""
        self.thinking += sep + text
        if self._fold is None:
            self._fold = await self._add_part("thinking", "")
            assert isinstance(self._fold, ThinkingFold)
        elif new_message:
            text = "\n\n" + text
        self._fold.add(text)
        self.parts[-1] = ("thinking", self._fold.text)

    async def add_call(self, info: CallInfo) -> None:
        """A tool call, shown where it happened."""
        self.notes.append(f"→ called {info.recipient}")
        await self._add_part("call", info)

    def call_status(self, call_id: str, status: str, result: str | None = None) -> None:
        fold = self._calls.get(call_id)
        if fold is not None:
            fold.update_status(status, result)

    async def add_note(self, note: str, *, log_only: bool = False) -> None:
        """A note in the turn's order (``log_only``: kept in ``notes``, shown by a call's
        fold already)."""
        self.notes.append(note)
        if not log_only:
            await self._add_part("note", note)

    async def add_end_note(self, note: str) -> None:
        """A note after the answer (how the turn ended)."""
        self.notes.append(note)
        self.parts.append(("end", note))
        await self.mount(turn_note(note))

    async def finish(self, note: str | None = None) -> None:
        """The turn is over: flush the stream, fill the thinking, add a closing note."""
        if self.markdown_enabled:
            await self.query_one(StreamingAnswer).finish()
        if self._fold is not None:
            self._fold.fill()
            self._fold = None
        if self.truncate_response is not None and len(self.answer) > self.truncate_response:
            hidden = len(self.answer) - self.truncate_response
            await self.add_end_note(f"… {hidden} more characters hidden (truncate_response)")
        if note:
            await self.add_end_note(note)
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
