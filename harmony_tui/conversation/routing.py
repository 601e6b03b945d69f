"""Who answers a tool call: a tool here, the API client, nobody (the tool is off), or a refusal.

The same rules hold under every front end:
- a call that an enabled tool answers runs (after approval where the tool asks for it);
- a call to one of the API client's own function tools goes back to the client (server only);
- where a person is at the keyboard (the app, ``generate``), a call no enabled tool answers ends
  the turn: the call is shown, with how to turn the tool on (``ToolOff``); if other calls of
  the same step run, it is answered "not available" instead;
- on the API server, a call to a tool the client did not declare and the server does not run
  is answered "not available" and the model continues;
- either way at most ``MAX_REFUSED`` "not available" answers per turn, then the turn ends.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from harmony_tui.engine.events import ToolCall
from harmony_tui.engine.messages import Message
from harmony_tui.tools.refusal import refusal_message

Route = Literal["run", "client", "off", "refuse"]
BUILTIN_NAMESPACES = ("python", "browser")
MAX_REFUSED = 2  # calls answered "not available" per turn before the turn ends
KNOWN_TOOLS = {"python": "python", "browser": "browser", "functions.apply_patch": "apply_patch"}


def is_builtin(recipient: str | None) -> bool:
    """True for the recipients of GPT-OSS's built-in tools: ``python``, ``browser.*``."""
    return bool(recipient) and str(recipient).split(".", 1)[0] in BUILTIN_NAMESPACES


def known_tool(recipient: str) -> str | None:
    """The name of the tool of ours that answers ``recipient`` when it is on, or None."""
    if recipient in KNOWN_TOOLS:
        return KNOWN_TOOLS[recipient]
    namespace = recipient.split(".", 1)[0]
    return namespace if namespace in BUILTIN_NAMESPACES else None


def refusal(call: ToolCall) -> Message:
    """The tool message telling the model that ``call``'s tool does not exist here."""
    return refusal_message(call.recipient, call.channel)


class CallPolicy(Protocol):
    """Routes each tool call of a turn."""

    def route(self, call: ToolCall) -> Route: ...

    def off_hint(self, recipient: str) -> str: ...


class LocalCalls:
    """A person is at the keyboard (the app, ``generate``): a call nobody here answers ends
    the turn (shown, with how to turn the tool on) unless another call of the same step runs,
    in which case the model is told the tool is not available."""

    def __init__(self, tools: Any, hint: str = "") -> None:
        self.tools = tools
        self.hint = hint  # how to turn a tool on, with ``{tool}`` and ``{flag}``

    def route(self, call: ToolCall) -> Route:
        if self.tools is not None and self.tools.find(call.recipient) is not None:
            return "run"
        return "off"

    def off_hint(self, recipient: str) -> str:
        tool = known_tool(recipient)
        if tool is None:
            return (f"no enabled tool answers {recipient}; declare it under tools.functions "
                    "in the prompt config")
        flag = "--" + tool.replace("_", "-")
        return self.hint.format(tool=tool, flag=flag) if self.hint else \
            f"the {tool} tool is off; turn it on with {flag}"


class ApiCalls:
    """An API request: the server runs its own built-in tools, the client's functions go back
    to the client, anything else is refused (the client never sees it)."""

    def __init__(self, tools: Any, client_tools: frozenset[str]) -> None:
        self.tools = tools
        self.client_tools = client_tools

    def runs(self, recipient: str | None) -> bool:
        return self.tools is not None and is_builtin(recipient) and \
            self.tools.find(recipient) is not None

    def hidden(self, recipient: str | None) -> bool:
        """A call the client must not see: the server runs it, or the client never declared
        the tool (so the model is told it is not available)."""
        return bool(recipient) and (self.runs(recipient) or recipient not in self.client_tools)

    def route(self, call: ToolCall) -> Route:
        if self.runs(call.recipient):
            return "run"
        return "client" if call.recipient in self.client_tools else "refuse"

    def off_hint(self, recipient: str) -> str:
        return f"{recipient} is not available"
