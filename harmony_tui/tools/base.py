"""The interface every tool implements, and the result it hands back to the model.

A tool is called with a ``ToolInvocation`` (the model's recipient and raw argument text) and
returns a ``ToolResult``. Tools never raise for a bad call: malformed arguments, failures and
timeouts become ``ToolResult(..., is_error=True)`` whose text the model reads. ``ToolError`` is
a convenience for implementations: raise it inside ``run`` and ``run_safely`` turns it into an
error result.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

ApprovalKind = Literal["code", "files", "network", "none"]


class ToolError(Exception):
    """A failed tool call whose message is returned to the model."""


@dataclass(frozen=True, slots=True)
class ToolInvocation:
    """One call: ``recipient`` as the model wrote it (``python``, ``browser.open``,
    ``functions.apply_patch``) and ``arguments`` the raw message content."""

    recipient: str
    arguments: str
    call_id: str = ""
    chat_id: str | None = None  # per-chat state (stateful python) is keyed by this

    @property
    def method(self) -> str:
        """The part after the namespace: ``open`` for ``browser.open``, else ''."""
        return self.recipient.split(".", 1)[1] if "." in self.recipient else ""

    def json_arguments(self) -> Any:
        """The arguments decoded as JSON; ToolError naming the problem when they are not."""
        text = self.arguments.strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ToolError(
                f"{self.recipient}: arguments are not valid JSON ({err.msg} at line {err.lineno}"
                f" column {err.colno})"
            ) from err


def omitted_note(count: int, unit: str = "characters") -> str:
    """The line that stands for output left out in the middle."""
    return f"\n[... {count} {unit} omitted ...]\n"


def cap_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first and last halves around a
    note saying how many characters were left out."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    return text[:head] + omitted_note(len(text) - limit) + (text[-tail:] if tail else "")


class HeadTail:
    """The first and last bytes of a stream, ``limit`` in all, counting what falls between.

    Memory stays under about twice ``limit`` however much is added, so a command that prints
    gigabytes costs no more than one that prints the cap.
    """

    def __init__(self, limit: int, head_share: float = 0.5) -> None:
        self.head_limit = int(limit * head_share)
        self.tail_limit = limit - self.head_limit
        self.total = 0
        self._head = bytearray()
        self._tail = bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self.tail_limit:
            self._tail += data
            if len(self._tail) > 2 * self.tail_limit:  # compact now and then
                del self._tail[:-self.tail_limit]

    @property
    def omitted(self) -> int:
        """How many bytes are left out of ``text``."""
        return max(0, self.total - len(self._head) - self.tail_limit)

    def text(self) -> str:
        """The kept bytes as UTF-8 (bad bytes replaced), with a note where bytes were left out."""
        head = bytes(self._head).decode("utf-8", errors="replace")
        if not self.omitted:
            return head + bytes(self._tail).decode("utf-8", errors="replace")
        tail = bytes(self._tail[-self.tail_limit:]) if self.tail_limit else b""
        return (head + omitted_note(self.omitted, "bytes")
                + tail.decode("utf-8", errors="replace"))


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What goes back to the model (``text``), plus display details for the tool pane."""

    text: str
    is_error: bool = False
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What the person sees before a call runs: the code, the URL or the diff."""

    kind: ApprovalKind
    title: str
    body: str
    language: str = ""  # syntax for ``body`` ("python", "diff", "json", "")


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Where tools may act: the workspace root for files, a scratch dir for state."""

    workspace: Path = field(default_factory=Path.cwd)


@runtime_checkable
class Tool(Protocol):
    """A callable tool. ``namespace`` is the recipient prefix it answers (``python``,
    ``browser``, ``functions.apply_patch``)."""

    namespace: str

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        """What to ask the person before running ``call``; None if it needs no approval."""
        ...

    async def run(self, call: ToolInvocation) -> ToolResult:
        """Run the call. Must not raise for bad input (see ``run_safely``)."""
        ...

    async def aclose(self) -> None:
        """Release processes, connections and files."""
        ...


async def run_safely(tool: Tool, call: ToolInvocation) -> ToolResult:
    """Run ``tool`` and turn any exception into an error result with the duration filled in."""
    started = time.perf_counter()
    try:
        result = await tool.run(call)
    except ToolError as err:
        result = ToolResult(str(err), is_error=True)
    except Exception as err:  # a tool bug must not end the turn
        result = ToolResult(f"{call.recipient} failed: {type(err).__name__}: {err}", is_error=True)
    if not result.duration_s:
        result = ToolResult(result.text, result.is_error, time.perf_counter() - started,
                            result.details)
    return result
