"""The contract between the engine and a prompt format."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Protocol

from harmony_tui.engine.events import EndReason, Event, ToolCall
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams


class Decoder(Protocol):
    """Turns generated token ids into events for one turn."""

    finished: EndReason | None
    """Set once the model's own output ended the turn (``return`` or ``call``)."""
    messages: list[Message]
    tool_calls: list[ToolCall]

    def feed(self, token: int) -> list[Event]:
        """Consume one generated token."""
        ...

    def finish(self) -> list[Event]:
        """Generation stopped (length, cancel, stop): flush what is pending."""
        ...


class ChatFormat(Protocol):
    """Renders prompts and makes decoders for one loaded model."""

    name: str
    vocab_size: int
    stop_tokens: frozenset[int]
    keep_tokens: Sequence[int]
    """Tokens XTC must never exclude (special and structural tokens)."""

    def render(
        self,
        messages: Sequence[Message],
        setup: PromptSetup,
        params: GenerationParams,
        today: _dt.date | None = None,
    ) -> list[int]:
        """Prompt tokens for the next assistant turn after ``messages``."""
        ...

    def new_decoder(self, setup: PromptSetup, prompt: Sequence[int] = ()) -> Decoder:
        """A fresh decoder for one turn whose prompt was ``prompt``."""
        ...

    def encode(self, text: str) -> list[int]:
        """Plain text to tokens (special tokens allowed)."""
        ...

    def decode(self, tokens: Sequence[int]) -> str:
        """Tokens to text (invalid bytes replaced)."""
        ...

    def checkpoint_positions(self, tokens: Sequence[int]) -> list[int]:
        """Positions in ``tokens`` where a later prompt may diverge (message starts); the
        prompt cache checkpoints there while prefilling."""
        ...


def split_turns(messages: Sequence[Message]) -> tuple[list[Message], list[list[Message]]]:
    """Split a history into its leading system/developer messages and turns.

    A turn starts at a user message and runs until the next one. Messages before the first user
    message that are not system/developer belong to a leading pseudo-turn.
    """
    head: list[Message] = []
    turns: list[list[Message]] = []
    for msg in messages:
        if msg.role in ("system", "developer") and not turns:
            head.append(msg)
        elif msg.role == "user" or not turns:
            turns.append([msg])
        else:
            turns[-1].append(msg)
    return head, turns


def folded_instructions(setup: PromptSetup, messages: Sequence[Message]) -> str | None:
    """Developer instructions plus any system/developer messages found in the history."""
    parts = [setup.developer_instructions] if setup.developer_instructions else []
    parts += [m.content for m in messages if m.role in ("system", "developer") and m.content]
    return "\n\n".join(parts) if parts else None
