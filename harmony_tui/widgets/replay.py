"""Turn saved chat records back into conversation entries (resuming a chat)."""

from __future__ import annotations

from collections.abc import Sequence

from harmony_tui.sessions.chat_log import ChatRecord
from harmony_tui.widgets.conversation import ConversationView, Entry
from harmony_tui.widgets.messages import CallInfo

END_NOTES = {"cancelled": "⏹ stopped", "length": "… stopped at the token limit",
             "error": "✖ error"}


def entries_for(records: Sequence[ChatRecord], default_model: str = "") -> list[Entry]:
    """One entry per user message and one per assistant turn (its thinking, calls and notes in
    order, then the answer)."""
    entries: list[Entry] = []
    turn: Entry | None = None
    calls: dict[str, CallInfo] = {}
    for record in records:
        if record.role == "user":
            entries.append(Entry("user", record.content))
            turn = None
            continue
        if record.role in ("system", "developer"):
            entries.append(Entry("note", f"[{record.role}] {record.content}"))
            continue
        if turn is None:
            turn = Entry("assistant", model=record.model or default_model, parts=[])
            entries.append(turn)
        parts = turn.parts
        assert parts is not None
        if record.role == "tool":
            status = "failed" if record.is_error else "answered"
            if record.is_error and "denied" in record.content:
                status = "denied"
            turn.notes.append(f"← {record.name or 'tool'} {status}")
            call = calls.get(record.tool_call_id or "") or next(
                (v for k, v in reversed(parts) if k == "call" and isinstance(v, CallInfo)
                 and v.result is None), None)
            if isinstance(call, CallInfo):
                call.status, call.result = status, record.content
        elif record.recipient:
            turn.notes.append(f"→ called {record.recipient}")
            info = CallInfo(record.tool_call_id or record.id, record.recipient,
                            record.content, record.content_type)
            calls[info.call_id] = info
            parts.append(("call", info))
        elif record.channel == "final":
            turn.text += record.content
        else:
            turn.thinking += ("\n\n" if turn.thinking else "") + record.content
            if parts and parts[-1][0] == "thinking":
                parts[-1] = ("thinking", f"{parts[-1][1]}\n\n{record.content}")
            else:
                parts.append(("thinking", record.content))
        if record.finish_reason in END_NOTES:
            turn.notes.append(END_NOTES[record.finish_reason])
            parts.append(("end", END_NOTES[record.finish_reason]))
    return entries


async def replay_records(view: ConversationView, records: Sequence[ChatRecord],
                         default_model: str = "") -> None:
    await view.load_entries(entries_for(records, default_model))
