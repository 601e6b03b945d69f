"""One record per API request, sent when it starts and when it ends (for logs and the TUI).

``RequestLogMiddleware`` wraps the whole app: it makes the start record, lets handlers fill in
the model and token counts through ``request.state.record``, and makes the end record once the
last byte is sent (or the client went away). ``on_request`` runs on the server's event-loop
thread: it must be quick and must not block (post a message, append to a list, log a line).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("harmony_tui.server")
_ids = itertools.count(1)

State = Literal["running", "done", "error", "disconnected"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): a client's path or
    model name must not break a log line into two or drive the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the live-requests pane and the request log show about one request."""

    id: int
    time: float  # when it started (epoch seconds)
    method: str
    endpoint: str  # the path, e.g. /v1/chat/completions
    client: str
    state: State = "running"
    status: int | None = None  # HTTP status, once known
    model: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    tokens_per_s: float = 0.0  # generation speed of the request
    duration_s: float = 0.0
    finish_reason: str | None = None
    error: str | None = None

    def log_line(self) -> str:
        """One line for the headless server's log."""
        stamp = _dt.datetime.fromtimestamp(self.time).strftime("%Y-%m-%d %H:%M:%S")
        status = self.status if self.status is not None else "-"
        parts = [stamp, self.client, self.method, printable(self.endpoint), str(status),
                 self.state]
        if self.model:
            parts.append(f"model={printable(self.model)}")
        if self.prompt_tokens or self.generated_tokens:
            parts.append(f"prompt={self.prompt_tokens} cached={self.cached_tokens} "
                         f"generated={self.generated_tokens} tok/s={self.tokens_per_s:.1f}")
        if self.finish_reason:
            parts.append(f"finish={self.finish_reason}")
        parts.append(f"{self.duration_s:.2f}s")
        if self.error:
            parts.append(f"error={printable(self.error)}")
        return " ".join(parts)


OnRequest = Callable[[RequestRecord], None]


class RequestLogMiddleware:
    """Pure ASGI middleware that reports a ``RequestRecord`` at the start and end of requests."""

    def __init__(self, app: Any, on_request: OnRequest | None) -> None:
        self.app = app
        self.on_request = on_request

    def _emit(self, record: RequestRecord) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(record)
        except Exception:  # a broken listener must not break requests
            log.exception("on_request callback failed")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("-", 0)
        record = RequestRecord(next(_ids), time.time(), printable(scope.get("method", "")),
                               printable(scope.get("path", "")), f"{client[0]}:{client[1]}")
        info: dict[str, Any] = {}
        scope.setdefault("state", {})["record"] = info
        started = time.perf_counter()
        status: list[int] = []
        complete: list[bool] = []
        self._emit(record)

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete.append(True)

        error: str | None = None
        try:
            await self.app(scope, receive, tracking_send)
        except BaseException as err:
            error = f"{type(err).__name__}"
            raise
        finally:
            code = status[0] if status else (500 if error else None)
            if not complete and not error:
                state: State = "disconnected"
            elif error or (code is not None and code >= 400) or info.get("error"):
                state = "error"
            else:
                state = "done"
            fields = {k: printable(v) if isinstance(v, str) else v
                      for k, v in info.items() if k in _INFO_FIELDS}
            self._emit(dataclasses.replace(
                record, state=state, status=code, duration_s=time.perf_counter() - started,
                error=info.get("error") or error, **fields))


_INFO_FIELDS = {"model", "stream", "prompt_tokens", "cached_tokens", "generated_tokens",
                "tokens_per_s", "finish_reason"}
