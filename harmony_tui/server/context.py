"""What every endpoint shares: the engine, the defaults, the admission queue and helpers."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from harmony_tui import __version__
from harmony_tui.engine.events import Event, Stats
from harmony_tui.engine.messages import PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.server.errors import APIError
from harmony_tui.server.turns import Admission, AsyncTurn, raise_for_start

DISCONNECT_POLL = 0.25  # seconds between disconnect checks of a non-streamed request
FINGERPRINT = f"harmony-tui-{__version__}"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


NEG_INF_LOGPROB = -9999.0  # what OpenAI sends for a log-probability of minus infinity


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced, so that it is strict JSON: -inf (a
    log-probability of an impossible token) becomes ``NEG_INF_LOGPROB``, +inf the largest
    float, NaN ``None``."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return None
        return NEG_INF_LOGPROB if value < 0 else 1.7976931348623157e308
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(data: Any) -> str:
    """Strict JSON text of ``data`` (never ``NaN`` or ``Infinity``)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a non-finite float somewhere (logprobs): the slow path, rarely taken
        return json.dumps(finite(data), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)


class StrictJSONResponse(JSONResponse):
    """A JSON response that replaces non-finite floats instead of failing (see ``finite``)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def sse(data: Any) -> str:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {dumps(data)}\n\n"


def sse_event(name: str, data: Any) -> str:
    """A named server-sent event (the Responses API's typed events)."""
    return f"event: {name}\ndata: {dumps(data)}\n\n"


DONE = "data: [DONE]\n\n"


@dataclass
class ServerContext:
    """Shared state of one app instance."""

    engine: Any
    setup: PromptSetup | Callable[[], PromptSetup] = field(default_factory=PromptSetup)
    params: GenerationParams = field(default_factory=GenerationParams)
    models_dir: Path | None = None
    max_queue: int = 64
    tools: Any = None  # ToolSet whose built-in tools the server runs itself (tool_loop.py)
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.max_queue)

    def current_setup(self) -> PromptSetup:
        """The base prompt setup for a request made now."""
        return self.setup() if callable(self.setup) else self.setup

    # -- models ----------------------------------------------------------------------------------

    def loaded(self) -> Any:
        """The loaded model; 503 while none is loaded."""
        loaded = self.engine.model
        if loaded is None:
            raise APIError(503, "no model is loaded yet; retry when /health reports a model",
                           code="model_not_loaded")
        return loaded

    def model_for(self, name: str) -> Any:
        """The loaded model if ``name`` names it; 404 otherwise."""
        loaded = self.loaded()
        if name in self.model_names(loaded):
            return loaded
        raise APIError(404, f"model {name!r} is not loaded; this server serves {loaded.name!r} "
                       "(GET /v1/models lists it)", param="model", code="model_not_found")

    @staticmethod
    def model_names(loaded: Any) -> Sequence[str]:
        return (loaded.name, str(loaded.path), loaded.path.name)

    # -- turns ------------------------------------------------------------------------------------

    async def start(self, turn_request: Any, request: Request, *, run_tools: bool = False,
                    reasoning_separator: str = "") -> tuple[Any, list[Event]]:
        """Admit and submit a turn; wait until it started (errors before that become 4xx/5xx).

        A chat turn (not a raw completion) is a ``ToolLoopTurn``: only calls to the request's
        function tools reach the client; with ``run_tools`` (and a tool set) the server runs
        its built-in tools' calls, and any other call is refused to the model (see
        ``tool_loop.py``). Its early events then come from ``batches()``.
        """
        check_model_limits(turn_request.params, self.loaded().format.vocab_size)
        self.admission.acquire()
        turn: Any = None
        try:
            loop = asyncio.get_running_loop()
            turn = AsyncTurn(self.engine, turn_request, loop)
            early = await turn.started()
            raise_for_start(early)
            if turn_request.prompt_tokens is None:
                from harmony_tui.server.tool_loop import ToolLoopTurn

                turn = ToolLoopTurn(turn, early, turn_request, self.tools if run_tools else None,
                                    self.engine.submit_batched,
                                    reasoning_separator=reasoning_separator)
                early = []
        except BaseException:
            if turn is not None:
                turn.cancel()
            self.admission.release()
            raise
        return turn, early

    async def collect(self, turn: Any, request: Request, output: Any) -> bool:
        """Feed the rest of a non-streamed turn to ``output``; False if the client left."""
        try:
            async for events in turn.batches(poll=DISCONNECT_POLL):
                if not events:
                    if await request.is_disconnected():
                        return False
                    continue
                for event in events:
                    output.feed(event)
            return True
        finally:
            turn.cancel()
            self.admission.release()


def check_model_limits(params: GenerationParams, vocab_size: int) -> None:
    """400 for sampling values the loaded model cannot take (the schema checks the rest)."""
    if params.min_tokens_to_keep > vocab_size:
        raise APIError(400, f"min_tokens_to_keep={params.min_tokens_to_keep}: must be at most "
                       f"the model's vocabulary size ({vocab_size})", param="min_tokens_to_keep")


def note(request: Request, **fields: Any) -> None:
    """Add fields to this request's ``RequestRecord`` (see records.py)."""
    info = getattr(request.state, "record", None)
    if isinstance(info, dict):
        info.update(fields)


def note_stats(request: Request, stats: Stats | None, finish_reason: str | None) -> None:
    if stats is not None:
        note(request, prompt_tokens=stats.prompt_tokens, cached_tokens=stats.cached_tokens,
             generated_tokens=stats.generation_tokens, tokens_per_s=round(stats.generation_tps, 2))
    note(request, finish_reason=finish_reason)


def now() -> int:
    return int(time.time())
