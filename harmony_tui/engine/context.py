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
    dropped = 0
    while len(turns) > 1:
        dropped += len(turns.pop(0))
        prompt = fmt.render([*head, *(m for t in turns for m in t)], setup, params, today)
        if len(prompt) <= budget:
            return prompt, dropped, full_length - len(prompt)
    raise ContextLengthExceeded(
        len(prompt), limit,
        "even with every earlier turn dropped; shorten the message or the instructions, or "
        "raise max_context_tokens",
    )
