"""Fit a conversation into the context window by dropping its oldest turns, with hysteresis.

A prompt fits when its tokens plus room for the answer (``min(max_tokens, limit // 4)``) stay
within the limit. System, developer and example messages are never dropped, nor is the last turn.

Dropping the fewest turns that fit would change the prompt's start on every turn of a long chat
at the limit, so every turn would re-process the whole context. Instead a trim drops whole turns
in steps of ``TRIM_STEP`` of the budget: the prompt then shrinks to about 70 % of the budget, and
the following turns keep the same first turn (and so extend a cached prefix) until the chat has
grown by another step. The choice is a pure function of the conversation: which turns go depends
only on the token counts of the oldest turns, which never change as the chat grows, so no state
is kept between turns and every front end (app, API, server) gets the same stable prefix.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence

from harmony_tui.engine.formats.base import ChatFormat, split_turns
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.errors import ContextLengthExceeded

TRIM_STEP = 0.3  # a trim drops at least this share of the budget (down to ~70 %)


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

    last = len(turns) - 1  # the most turns that may be dropped (never the last one)
    if last < 1:
        raise too_long(full_length)
    # Drop the oldest turns worth k steps, k the fewest steps that make the prompt fit: the
    # number of turns dropped stays the same while the chat grows by less than one step.
    step = max(1, int(budget * TRIM_STEP))
    steps = -(-(full_length - budget) // step)
    found = fewest_dropped(without, full_length - steps * step, last)
    if found is None:  # the last turn alone is too big for a whole step: drop just enough
        found = fewest_dropped(without, budget, last)
    if found is None:
        raise too_long(len(without(last)))
    high, best = found
    dropped = sum(len(t) for t in turns[:high])
    return best, dropped, full_length - len(best)


def fewest_dropped(without: Callable[[int], list[int]], budget: int,
                   last: int) -> tuple[int, list[int]] | None:
    """The fewest oldest turns (1 to ``last``) to drop so that the prompt is at most ``budget``
    tokens, and that prompt; None if dropping ``last`` turns is not enough.

    Dropping turns only ever shortens the prompt: gallop (drop 1, 3, 7, ...) until it fits,
    then binary-search. A chat that just overflowed renders once more; a long one near the
    limit renders O(log turns) times, not once per dropped turn.
    """
    low, step = 0, 1  # dropping `low` turns does not fit
    while True:
        high = min(low + step, last)
        best = without(high)
        if len(best) <= budget:
            break
        if high == last:
            return None
        low, step = high, step * 2
    while high - low > 1:
        mid = (low + high) // 2
        candidate = without(mid)
        if len(candidate) <= budget:
            high, best = mid, candidate
        else:
            low = mid
    return high, best


class TrimNotices:
    """Remembers which trims were reported, so each is announced once (``ContextTrimmed.new``).

    A trim is identified by the kept system/developer messages, the number of messages dropped
    and the first kept message: the same conversation trimmed at the same place again.
    """

    def __init__(self, size: int = 256) -> None:
        self._seen: dict[int, None] = {}
        self._size = size

    def first(self, messages: Sequence[Message], dropped: int) -> tuple[int, bool]:
        """(index of the first dropped message, whether this trim is reported for the first
        time)."""
        head, _ = split_turns(messages)
        start = len(head)
        kept = messages[start + dropped] if start + dropped < len(messages) else None
        key = hash((tuple(map(_fields, head)), dropped, kept and _fields(kept)))
        new = key not in self._seen
        self._seen.pop(key, None)
        self._seen[key] = None
        while len(self._seen) > self._size:
            del self._seen[next(iter(self._seen))]
        return start, new


def _fields(message: Message) -> tuple[str | None, ...]:
    return (message.role, message.content, message.channel, message.recipient,
            message.content_type, message.name)
