"""A chat as Markdown: the active branch, thinking in collapsible details."""

from __future__ import annotations

from harmony_tui.sessions.chat_log import ChatLog


def to_markdown(log: ChatLog, include_thinking: bool = True) -> str:
    lines = [f"# {log.title or 'Chat'}", ""]
    meta = [f"created {log.created_at}"]
    if log.model:
        meta.append(f"model `{log.model}`")
    lines += ["_" + ", ".join(meta) + "_", ""]
    for record in log.path():
        if record.role == "user":
            lines += ["## User", "", record.content, ""]
        elif record.role == "assistant" and record.recipient:
            lines += [f"**Tool call** `{record.recipient}`", "", "```", record.content, "```", ""]
        elif record.role == "assistant" and record.channel != "final":
            if include_thinking and record.content.strip():
                lines += ["<details><summary>Thinking</summary>", "", record.content, "",
                          "</details>", ""]
        elif record.role == "assistant":
            lines += ["## Assistant", "", record.content, ""]
        elif record.role == "tool":
            lines += [f"**Tool result** `{record.name or 'tool'}`", "", "```", record.content,
                      "```", ""]
        else:
            lines += [f"## {record.role.title()}", "", record.content, ""]
    return "\n".join(lines).rstrip() + "\n"
