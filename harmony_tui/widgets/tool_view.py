"""How a tool call's arguments look: JSON pretty-printed, code highlighted, all plain text."""

from __future__ import annotations

import json

from rich.syntax import Syntax

from harmony_tui.text_safety import terminal_safe


def arguments_view(recipient: str, arguments: str, content_type: str | None) -> Syntax:
    """The call's arguments, highlighted; the model's words are never markup."""
    try:
        pretty = json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
        return Syntax(terminal_safe(pretty), "json", word_wrap=True, theme="ansi_dark")
    except (json.JSONDecodeError, TypeError):
        lexer = "python" if recipient == "python" or content_type == "code" else "text"
        return Syntax(terminal_safe(arguments), lexer, word_wrap=True, theme="ansi_dark")
