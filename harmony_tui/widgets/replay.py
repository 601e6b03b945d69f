"""Turn saved chat records back into conversation entries (resuming a chat)."""

from __future__ import annotations

from collections.abc import Sequence

from harmony_tui.sessions.chat_log import ChatRecord
from harmony_tui.widgets.conversation import ConversationView, Entry

END_NOTES = {"cancelled": "⏹ stopped", "length": "… stopped at the token limit",
             "error": "✖ error"}


def entries_for(records: Sequence[ChatRecord], default_model: str = "") -> list[Entry]:
    """One entry per user message and one per assistant turn (thinking, calls, answer)."""
    entries: list[Entry] = []
    turn: Entry | None = None
    for record in records:
        if record.role == "user":
            entries.append(Entry("user", record.content))
            turn = None
            continue
        if record.role in ("system", "developer"):
            entries.append(Entry("note", f"[{record.role}] {record.content}"))
            continue
        if turn is None:
            turn = Entry("assistant", model=record.model or default_model)
            entries.append(turn)
        if record.role == "tool":
            status = "failed" if record.is_error else "answered"
            turn.notes.append(f"← {record.name or 'tool'} {status}")
        elif record.recipient:
            turn.notes.append(f"→ called {record.recipient}")
        elif record.channel == "final":
            turn.text += record.content
        else:
            turn.thinking += ("\n\n" if turn.thinking else "") + record.content
        if record.finish_reason in END_NOTES:
            turn.notes.append(END_NOTES[record.finish_reason])
    return entries


async def replay_records(view: ConversationView, records: Sequence[ChatRecord],
                         default_model: str = "") -> None:
    await view.load_entries(entries_for(records, default_model))
