"""A streamed answer that stays cheap to lay out however long it grows.

Markdown re-lays out a block on every change, and a growing last paragraph is the block that
changes: with a fast model that layout competes with generation for the CPU. So only completed
blocks (ended by a blank line outside a code fence, or by a closing fence) go to the Markdown
widget, each once; the paragraph being written shows as plain text in a one-paragraph ``Static``
below it, and joins the Markdown when it is complete (or when the answer ends).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static
from textual.widgets._markdown import MarkdownStream

FENCES = ("```", "~~~")


def completed_blocks(text: str) -> int:
    """How many leading characters of ``text`` (which starts outside a code fence) are whole
    Markdown blocks: up to the last blank line outside a fence or the last closing fence."""
    fence: str | None = None
    done = 0
    start = 0
    while True:
        end = text.find("\n", start)
        if end < 0:
            return done
        line = text[start:end].strip()
        start = end + 1
        if fence is None:
            if line.startswith(FENCES):
                fence = line[:3]
            elif not line:
                done = start
        elif line.startswith(fence) and not line.strip(fence[0]):
            fence = None
            done = start


class StreamingAnswer(Vertical):
    """Completed blocks in a ``Markdown`` widget, the block being written as plain text."""

    DEFAULT_CLASSES = "answer"

    def __init__(self, text: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self._initial = text
        self._tail = ""  # text not yet handed to the Markdown widget
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Markdown(self._initial, classes="answer-blocks")
        tail = Static("", markup=False, classes="answer-tail")
        tail.display = False
        yield tail

    @property
    def markdown(self) -> Markdown:
        return self.query_one(".answer-blocks", Markdown)

    async def append(self, text: str) -> None:
        """Add streamed text (already made terminal safe)."""
        self._tail += text
        done = completed_blocks(self._tail)
        if done:
            await self._write(self._tail[:done])
            self._tail = self._tail[done:]
        tail = self.query_one(".answer-tail", Static)
        tail.update(self._tail.rstrip("\n"))
        tail.display = bool(self._tail.strip())

    async def _write(self, blocks: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        await self._stream.write(blocks)

    async def finish(self) -> None:
        """The answer is complete: everything becomes Markdown."""
        if self._tail:
            await self._write(self._tail)
            self._tail = ""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.query_one(".answer-tail", Static).display = False

    async def replace(self, text: str) -> None:
        """Show ``text`` (terminal safe) instead of what was streamed."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self._tail = ""
        self.query_one(".answer-tail", Static).display = False
        await self.markdown.update(text)
