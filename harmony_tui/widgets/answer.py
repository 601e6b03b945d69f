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
from textual.geometry import Size
from textual.widgets import Markdown, Static

from harmony_tui.widgets.sizing import OneLayoutPass

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


class AnswerBlocks(OneLayoutPass, Markdown):
    """The completed blocks. The last block's bottom margin is not part of the answer's height:
    what a ``MarkdownBlock:last-child { margin-bottom: 0 }`` rule did, but such an order rule
    makes Textual restyle every block of the answer each time one is appended."""

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        height = super().get_content_height(container, viewport, width)
        children = self.displayed_children
        return height - children[-1].styles.margin.bottom if children else height


class AnswerTail(OneLayoutPass, Static):
    """The paragraph being written, as plain text."""


class StreamingAnswer(OneLayoutPass, Vertical):
    """Completed blocks in a ``Markdown`` widget, the block being written as plain text."""

    DEFAULT_CLASSES = "answer"

    def __init__(self, text: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self._initial = text
        self._tail = ""  # text not yet handed to the Markdown widget

    def compose(self) -> ComposeResult:
        yield AnswerBlocks(self._initial, classes="answer-blocks")
        tail = AnswerTail("", markup=False, classes="answer-tail")
        tail.display = False
        yield tail

    @property
    def markdown(self) -> Markdown:
        return self.query_one(".answer-blocks", Markdown)

    async def append(self, text: str) -> None:
        """Add streamed text (already made terminal safe): completed blocks are appended to the
        Markdown (parsed once each) and the tail shown, in one screen update."""
        self._tail += text
        done = completed_blocks(self._tail)
        tail = self.query_one(".answer-tail", Static)
        with self.app.batch_update():
            if done:
                blocks, self._tail = self._tail[:done], self._tail[done:]
                await self.markdown.append(blocks)
            tail.update(self._tail.rstrip("\n"))
            tail.display = bool(self._tail.strip())

    async def finish(self) -> None:
        """The answer is complete: everything becomes Markdown."""
        tail = self.query_one(".answer-tail", Static)
        with self.app.batch_update():
            if self._tail:
                await self.markdown.append(self._tail)
                self._tail = ""
            tail.display = False

    async def replace(self, text: str) -> None:
        """Show ``text`` (terminal safe) instead of what was streamed."""
        self._tail = ""
        self.query_one(".answer-tail", Static).display = False
        await self.markdown.update(text)
