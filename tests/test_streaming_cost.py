"""What a streaming answer costs the UI thread, asserted by counting work (never by timing).

On a 2-core machine the generation thread and the UI share the CPU (and the GIL): every update
of the streamed answer is time taken from generation (issue 16, ``benchmarks/tui_streaming.py``).
So: one widget update per batch of tokens, each completed block styled once, one layout pass per
screen update, and no event-loop wake-up per token while the reader is busy drawing.
"""

from __future__ import annotations

import asyncio
import time

from textual.app import App
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownBlock

from harmony_tui.conversation.engine_turn import EngineTurn
from harmony_tui.engine.events import TextDelta, TokenProgress, TurnEnd
from harmony_tui.engine.formats.harmony import FIRST_SPECIAL, VOCAB_SIZE
from harmony_tui.engine.messages import Message
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.turns import TurnRequest
from harmony_tui.turn_view import coalesce
from harmony_tui.widgets.messages import AssistantMessage

PARAGRAPH = "A paragraph of the answer, long enough to wrap once or twice in a narrow view. "


class OneMessage(App):
    CSS_PATH = "../harmony_tui/app.tcss"

    def compose(self):
        yield AssistantMessage("model")


def test_a_batch_of_tokens_is_one_text_update_per_channel():
    progress = [TokenProgress(n, 0.1, 50.0) for n in range(1, 5)]
    events = [TextDelta("final", "a"), progress[0], TextDelta("final", "b"), progress[1],
              TextDelta("final", "c"), progress[2], TextDelta("analysis", "x"), progress[3]]
    assert coalesce(events) == [TextDelta("final", "abc"), progress[2],
                                TextDelta("analysis", "x"), progress[3]]


async def test_appending_blocks_never_restyles_the_earlier_ones():
    """A ``:last-child`` rule on the blocks made Textual restyle every block of the answer at
    each append (125 restyles here; 119 for the 15 blocks of 600 benchmark tokens, growing with
    the square of the answer's length)."""
    app = OneMessage()
    async with app.run_test(size=(80, 30)) as pilot:
        message = app.query_one(AssistantMessage)
        restyled: list[object] = []
        update_styles = app.update_styles

        def counting(node, animate: bool = True) -> None:
            if isinstance(node, MarkdownBlock):
                restyled.append(node)
            update_styles(node, animate)

        app.update_styles = counting  # the real method, counted
        text = ""
        for _ in range(40):
            for word in PARAGRAPH.split(" "):
                await message.append_answer(word + " ")
                text += word + " "
            await message.append_answer("\n\n")
            text += "\n\n"
        await message.finish()
        await pilot.pause()
        blocks = message.query_one(Markdown)
        assert blocks.source == text and len(blocks.children) == 40
        assert len(restyled) <= 40  # at most once each (was 125)
        # the last block's bottom margin is still not part of the answer
        last = blocks.children[-1]
        assert last.styles.margin.bottom == 1
        assert blocks.region.bottom == last.region.bottom


async def test_a_growing_answer_is_laid_out_once_per_update():
    """When an update makes the answer taller, Textual asked for a second layout pass of the
    whole screen (and a repaint of each resized widget) right after the first."""
    app = OneMessage()
    async with app.run_test(size=(60, 30)) as pilot:
        message = app.query_one(AssistantMessage)
        await message.append_answer("start")
        await pilot.pause()
        screen = app.screen
        passes: list[float] = []
        refresh_layout = screen._refresh_layout

        def counting(*args, **kwargs) -> None:
            passes.append(time.monotonic())
            refresh_layout(*args, **kwargs)

        screen._refresh_layout = counting  # the real layout pass, counted
        tail = message.query_one(".answer-tail")
        for lines in range(2, 8):
            height = tail.size.height
            await message.append_answer(f"\nline {lines}")  # one line longer
            for _ in range(4):
                await pilot.pause()
            assert tail.size.height == height + 1 == lines
        assert len(passes) == 6  # was 12


async def test_a_busy_reader_is_not_woken_for_every_token(gpt_oss_engine):
    """While the app draws or paces its updates it does not read; the generation thread must
    not wake its event loop per token then (each wake-up costs both threads a GIL hand-off)."""
    loop = asyncio.get_running_loop()
    wakeups = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counting(*args, **kwargs):
        nonlocal wakeups
        wakeups += 1
        return call_soon_threadsafe(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # the real call, counted
    try:
        no_special = {t: -100.0 for t in range(FIRST_SPECIAL, VOCAB_SIZE)}
        params = GenerationParams(max_tokens=48, seed=1, logit_bias=no_special)
        turn = EngineTurn(gpt_oss_engine.submit, TurnRequest([Message("user", "go")],
                                                             params=params), loop)
        deadline = time.monotonic() + 60
        while not turn.stream.ended and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # busy elsewhere: not reading
        assert turn.stream.ended
        assert wakeups == 0  # was 10 (one per token the loop saw)
        events = [event async for batch in turn.batches() for event in batch]
        assert isinstance(events[-1], TurnEnd) and events[-1].reason == "length"
        # a waiting reader is still woken: the next turn is read as it streams
        turn = EngineTurn(gpt_oss_engine.submit, TurnRequest([Message("user", "go")],
                                                             params=params), loop)
        batches = [batch async for batch in turn.batches()]
        assert isinstance(batches[-1][-1], TurnEnd) and len(batches) > 1 and wakeups >= 1
    finally:
        del loop.call_soon_threadsafe
