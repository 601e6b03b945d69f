"""The chat log: a versioned, documented JSON document holding a tree of messages.

Every message is a record with an ``id`` and a ``parent_id``. Editing a message or regenerating
an answer adds a sibling branch; nothing is overwritten. ``active_leaf`` is the tip of the branch
the conversation continues from; the conversation the model sees is the path from the root to it.

Assistant output is kept as Harmony produced it: one record per message, so thinking
(``channel: analysis``) stays separate from the answer (``channel: final``), a tool call is an
assistant record with a ``recipient`` and a tool result a ``tool`` record whose ``tool_call_id``
names the call. The reference is ``docs/chat-log.md`` and ``docs/chat-log.schema.json``.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harmony_tui.engine.messages import Message

FORMAT = "harmony-tui-chat"
SCHEMA_VERSION = 1
TITLE_LENGTH = 60


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z``."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


class ChatRecord(BaseModel):
    """One message of the chat."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(default_factory=new_id, description="Unique within the chat.")
    parent_id: str | None = Field(None, description="The message this one follows; null for "
                                  "the first message of the chat.")
    role: Literal["user", "assistant", "tool", "system", "developer"]
    content: str = Field("", description="The text: the user's words, the answer, the thinking, "
                         "the tool-call arguments or the tool's result.")
    created_at: str = Field(default_factory=utc_now, description="UTC, ISO 8601.")
    channel: str | None = Field(None, description="analysis, commentary or final "
                                "(assistant messages and tool results).")
    recipient: str | None = Field(None, description="Tool-call target: python, browser.open, "
                                  "functions.NAME.")
    content_type: str | None = Field(None, description="Harmony content type of a call "
                                     "(e.g. <|constrain|>json).")
    name: str | None = Field(None, description="For tool results: the tool that answered.")
    tool_call_id: str | None = Field(None, description="Tool calls: the call's id; tool "
                                     "results: the id of the call they answer.")
    is_error: bool | None = Field(None, description="Tool results: the tool failed.")
    model: str | None = Field(None, description="First assistant message of a turn: the model.")
    params: dict[str, Any] | None = Field(
        None, description="First assistant message of a turn whose generation settings differ "
        "from the previous turn's: every setting in force.")
    stats: dict[str, Any] | None = Field(None, description="Last message of a turn: its figures.")
    finish_reason: str | None = Field(None, description="Last message of a turn: return, call, "
                                      "length, stop, cancelled or error.")
    greeting: bool | None = Field(None, description="The config's assistant greeting.")

    def to_message(self) -> Message:
        return Message(self.role, self.content, channel=self.channel, recipient=self.recipient,
                       content_type=self.content_type, name=self.name)

    @classmethod
    def from_message(cls, message: Message, parent_id: str | None, **extra: Any) -> ChatRecord:
        return cls(parent_id=parent_id, role=message.role, content=message.content,
                   channel=message.channel, recipient=message.recipient,
                   content_type=message.content_type, name=message.name, **extra)


class ChatLog(BaseModel):
    """A whole chat file."""

    model_config = ConfigDict(extra="allow")

    format: Literal["harmony-tui-chat"] = FORMAT
    schema_version: int = SCHEMA_VERSION
    chat_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    title: str = ""
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    model: str | None = Field(None, description="The model of the latest turn.")
    profile: str | None = None
    prompt_config: str | None = Field(None, description="Path of the prompt config in use.")
    prompt: dict[str, Any] = Field(default_factory=dict, description="The prompt config's "
                                   "fields in force (system/developer text, placeholders).")
    params: dict[str, Any] = Field(default_factory=dict, description="Generation settings in "
                                   "force at the latest turn.")
    active_leaf: str | None = None
    messages: list[ChatRecord] = Field(default_factory=list)

    # -- tree ----------------------------------------------------------------------------------

    def by_id(self) -> dict[str, ChatRecord]:
        return {record.id: record for record in self.messages}

    def path(self, leaf: str | None = None) -> list[ChatRecord]:
        """Records from the root to ``leaf`` (default: the active leaf)."""
        index = self.by_id()
        leaf = self.active_leaf if leaf is None else leaf
        out: list[ChatRecord] = []
        seen: set[str] = set()
        while leaf is not None and leaf in index and leaf not in seen:
            seen.add(leaf)
            record = index[leaf]
            out.append(record)
            leaf = record.parent_id
        out.reverse()
        return out

    def children(self, parent_id: str | None) -> list[ChatRecord]:
        return [r for r in self.messages if r.parent_id == parent_id]

    def append(self, record: ChatRecord) -> ChatRecord:
        """Add ``record`` after the active leaf (its parent) and make it the leaf."""
        record.parent_id = self.active_leaf
        self.messages.append(record)
        self.active_leaf = record.id
        self.updated_at = record.created_at
        if not self.title and record.role == "user" and record.content.strip():
            self.title = make_title(record.content)
        return record

    def branch_count(self) -> int:
        """How many leaves (alternative endings) the tree has."""
        parents = {r.parent_id for r in self.messages}
        return sum(1 for r in self.messages if r.id not in parents)

    def text(self) -> str:
        """Every message's text, for search."""
        return "\n".join(r.content for r in self.messages)


def make_title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[:TITLE_LENGTH - 1].rstrip() + "…"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a chat file (``docs/chat-log.schema.json``)."""
    schema = ChatLog.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/harmony-tui/harmony-tui/docs/chat-log.schema.json"
    schema["title"] = "harmony-tui chat log"
    return schema
