"""What the model reads when it called a tool that does not exist in this conversation.

The conversation loop sends it (``conversation.routing.refusal``) and the demo model is trained
on it (``demo.corpus``), so both use this one text.
"""

from __future__ import annotations

from harmony_tui.engine.messages import Message


def refusal_message(recipient: str, channel: str | None) -> Message:
    """The tool message saying that ``recipient`` is not available here."""
    text = (f"Error: the tool {recipient!r} is not available in this conversation. "
            "Do not call it again; answer the user directly without it.")
    return Message("tool", text, channel=channel, name=recipient)
