"""Conversation data the engine consumes: messages, tools and the prompt setup.

These are format-neutral: the Harmony renderer and the chat-template renderer both read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]
Channel = Literal["analysis", "commentary", "final"]
CHANNELS: tuple[str, ...] = ("analysis", "commentary", "final")
BUILTIN_TOOLS: tuple[str, ...] = ("python", "browser")


@dataclass(slots=True)
class Message:
    """One message of a conversation.

    - ``assistant`` messages carry a ``channel`` (analysis / commentary / final); a tool call is an
      assistant message with a ``recipient`` (``functions.get_weather``, ``python``,
      ``browser.search``) whose content is the arguments.
    - ``tool`` messages are results: ``name`` is the tool that answers (the call's recipient) and
      ``channel`` the channel of the call.
    - ``system`` / ``developer`` messages in a history are folded into the developer
      instructions (the prompt setup owns the real system message).
    """

    role: Role
    content: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    name: str | None = None

    @property
    def is_tool_call(self) -> bool:
        return self.role == "assistant" and bool(self.recipient)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        for key in ("channel", "recipient", "content_type", "name"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A function the model may call (``functions.NAME`` in Harmony)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PromptSetup:
    """Everything that goes into the system and developer messages.

    ``conversation_start_date`` None means "today", computed when each prompt is rendered.
    ``model_identity`` None keeps the format's default (Harmony: "You are ChatGPT, ...").
    """

    model_identity: str | None = None
    knowledge_cutoff: str | None = None
    conversation_start_date: str | None = None
    developer_instructions: str | None = None
    builtin_tools: tuple[str, ...] = ()
    function_tools: tuple[FunctionTool, ...] = ()
    example_dialogues: tuple[tuple[Message, ...], ...] = field(default_factory=tuple)
    # What the model is told about a built-in tool (None: openai-harmony's default text).
    tool_descriptions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = [t for t in self.builtin_tools if t not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(
                f"unknown built-in tool {unknown[0]!r}; expected one of {', '.join(BUILTIN_TOOLS)}"
            )
