"""Fit a conversation into the context window by dropping its oldest turns.

A prompt fits when its tokens plus room for the answer (``min(max_tokens, limit // 4)``) stay
within the limit. System, developer and example messages are never dropped, nor is the last turn.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from harmony_tui.engine.formats.base import ChatFormat, split_turns
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ContextLengthExceeded


def answer_reserve(params: GenerationParams, limit: int) -> int:
    """Tokens kept free for the answer when deciding whether a prompt fits."""
    return max(1, min(params.max_tokens, limit // 4))


def fit_prompt(
    fmt: ChatFormat,
    messages: Sequence[Message],
    setup: PromptSetup,
    params: GenerationParams,
    limit: int,
    today: _dt.date | None = None,
) -> tuple[list[int], int, int]:
    """Render the prompt, dropping oldest turns until it fits.

    Returns (prompt tokens, messages dropped, tokens dropped); raises ContextLengthExceeded.
    """
    budget = limit - answer_reserve(params, limit)
    prompt = fmt.render(messages, setup, params, today)
    if len(prompt) <= budget:
        return prompt, 0, 0
    head, turns = split_turns(messages)
    full_length = len(prompt)

    def without(n: int) -> list[int]:  # the prompt with the oldest n turns dropped
        return fmt.render([*head, *(m for t in turns[n:] for m in t)], setup, params, today)

    def too_long(length: int) -> ContextLengthExceeded:
        return ContextLengthExceeded(
            length, limit,
            "even with every earlier turn dropped; shorten the message or the instructions, or "
            "raise max_context_tokens",
        )

    # Dropping turns only ever shortens the prompt: gallop (drop 1, 3, 7, ...) until it fits,
    # then binary-search the fewest turns to drop. A chat that just overflowed renders once
    # more; a long one near the limit renders O(log turns) times, not once per dropped turn.
    last = len(turns) - 1  # the most turns that may be dropped (never the last one)
    if last < 1:
        raise too_long(full_length)
    low, step = 0, 1  # dropping `low` turns does not fit
    while True:
        high = min(low + step, last)
        best = without(high)
        if len(best) <= budget:
            break
        if high == last:
            raise too_long(len(best))
        low, step = high, step * 2
    while high - low > 1:
        mid = (low + high) // 2
        candidate = without(mid)
        if len(candidate) <= budget:
            high, best = mid, candidate
        else:
            low = mid
    dropped = sum(len(t) for t in turns[:high])
    return best, dropped, full_length - len(best)
