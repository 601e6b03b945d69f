"""``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed (SSE) or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.events import Event, TurnEnd
from harmony_tui.server.context import (
    DONE,
    FINGERPRINT,
    SSE_HEADERS,
    ServerContext,
    note,
    note_stats,
    now,
    sse,
)
from harmony_tui.server.context import StrictJSONResponse as JSONResponse  # no NaN/Infinity
from harmony_tui.server.errors import APIError, log
from harmony_tui.server.mapping import (
    chat_messages,
    chat_setup,
    generation_params,
    reject_n,
    stop_strings,
)
from harmony_tui.server.output import ChatOutput, TextOutput, new_id, usage
from harmony_tui.server.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ErrorResponse,
)
from harmony_tui.server.tool_loop import declare
from harmony_tui.server.turns import AsyncTurn

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "invalid body or field, or context_length_exceeded"),
        (401, "missing or wrong API key"), (404, "unknown model"),
        (429, "the request queue is full"), (500, "generation failed"),
        (503, "no model loaded"))
}
STREAM_FAILED = APIError(500, "internal server error; the server log has the details",
                         type="server_error")
REASONING_SEPARATOR = "\n\n"  # between the reasoning of sub-turns split by server tool calls
STREAM_DOC = {"text/event-stream": {"schema": {"type": "string", "description":
                                               "server-sent events, ending with data: [DONE]"}}}


def end_error(end: TurnEnd | None) -> APIError | None:
    """The API error for a turn that failed or was cancelled by the server."""
    if end is None or end.reason not in ("error", "cancelled"):
        return None
    if end.reason == "cancelled":
        return APIError(503, "the request was cancelled (the server or the model is stopping)",
                        code="cancelled")
    return APIError(500, f"generation failed: {end.error}", type="server_error")


async def finish_turn(ctx: ServerContext, turn: AsyncTurn, early: list[Event], output: Any,
                      request: Request) -> bool:
    """Feed a non-streamed turn into ``output``; False if the client went away. Raises the
    API error of a failed turn."""
    for event in early:
        output.feed(event)
    if not await ctx.collect(turn, request, output):
        return False
    note_stats(request, output.stats, output.finish_reason)
    error = end_error(output.end)
    if error is not None:
        raise error
    return True


def build_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/chat/completions", response_model=ChatCompletion, tags=["generation"],
                 responses={200: {"content": STREAM_DOC}, **ERRORS},
                 summary="Chat completion (Harmony: reasoning and tool calls separated)")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        note(request, model=body.model, stream=body.stream)
        reject_n(body.n)
        if body.response_format is not None and body.response_format.type != "text":
            raise APIError(400, f"response_format type {body.response_format.type!r} is not "
                           "supported: this server does not constrain output to JSON; ask for "
                           "JSON in the prompt instead", param="response_format")
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs: requires logprobs=true", param="top_logprobs")
        loaded = ctx.model_for(body.model)
        params = generation_params(
            ctx.params, body, max_tokens=body.max_completion_tokens or body.max_tokens,
            vocab_size=loaded.format.vocab_size,
            reasoning_effort=body.reasoning_effort or (body.reasoning and body.reasoning.effort))
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        setup = declare(ctx.tools, chat_setup(ctx.current_setup(), body), body.tool_choice)
        turn_request = TurnRequest(chat_messages(body), setup, params,
                                   stop=stop_strings(body.stop), logprobs=logprobs)
        output = ChatOutput(logprobs=logprobs)
        turn, early = await ctx.start(turn_request, request,
                                      run_tools=body.tool_choice != "none",
                                      reasoning_separator=REASONING_SEPARATOR)
        meta = {"id": new_id("chatcmpl"), "created": now(), "model": loaded.name,
                "system_fingerprint": FINGERPRINT}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _chat_stream(ctx, turn, early, output, meta, include_usage, request),
                media_type="text/event-stream", headers=SSE_HEADERS)
        if not await finish_turn(ctx, turn, early, output, request):
            return JSONResponse({}, status_code=499)
        choice: dict[str, Any] = {"index": 0, "message": output.message(),
                                  "finish_reason": output.finish_reason, "logprobs": None}
        if logprobs is not None:
            choice["logprobs"] = {"content": output.logprob_items}
        return JSONResponse({**meta, "object": "chat.completion", "choices": [choice],
                             "usage": usage(output.stats)})

    @router.post("/v1/completions", response_model=Completion, tags=["generation"],
                 responses={200: {"content": STREAM_DOC}, **ERRORS},
                 summary="Raw completion: continue the prompt text (special tokens allowed)")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        note(request, model=body.model, stream=body.stream)
        reject_n(body.n)
        if body.best_of not in (None, 1):
            raise APIError(400, f"best_of={body.best_of} is not supported", param="best_of")
        if body.echo:
            raise APIError(400, "echo is not supported", param="echo")
        if body.suffix:
            raise APIError(400, "suffix is not supported", param="suffix")
        loaded = ctx.model_for(body.model)
        fmt = loaded.format
        tokens = prompt_tokens(body.prompt, fmt)
        params = generation_params(ctx.params, body, max_tokens=body.max_tokens,
                                   vocab_size=fmt.vocab_size)
        turn_request = TurnRequest([], params=params, stop=stop_strings(body.stop),
                                   logprobs=body.logprobs, prompt_tokens=tokens)
        output = TextOutput(logprobs=body.logprobs)
        turn, early = await ctx.start(turn_request, request)
        meta = {"id": new_id("cmpl"), "created": now(), "model": loaded.name,
                "system_fingerprint": FINGERPRINT}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _text_stream(ctx, turn, early, output, meta, include_usage, request),
                media_type="text/event-stream", headers=SSE_HEADERS)
        if not await finish_turn(ctx, turn, early, output, request):
            return JSONResponse({}, status_code=499)
        return JSONResponse({**meta, "object": "text_completion", "choices": [{
            "index": 0, "text": "".join(output.text), "finish_reason": output.finish_reason,
            "logprobs": output.logprobs_body()}], "usage": usage(output.stats)})

    return router


def prompt_tokens(prompt: Any, fmt: Any) -> list[int] | str:
    """A completion prompt (text, one-element list, or token ids) as token ids, or as text
    for the engine to tokenize: never here, on the event loop, where a long prompt would stop
    every request (see ``engine/prepare.py``)."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
        if len(prompt) != 1:
            raise APIError(400, "prompt: only one prompt per request is supported",
                           param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise APIError(400, "prompt: only one prompt per request is supported",
                           param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise APIError(400, "prompt: the prompt is empty", param="prompt")
        return prompt
    tokens = list(prompt)
    bad = next((t for t in tokens if not 0 <= t < fmt.vocab_size), None)
    if bad is not None:
        raise APIError(400, f"prompt: token id {bad} is outside the vocabulary "
                       f"(0 to {fmt.vocab_size - 1})", param="prompt")
    if not tokens:
        raise APIError(400, "prompt: the prompt is empty", param="prompt")
    return tokens


async def _events(early: list[Event], turn: AsyncTurn | Any) -> AsyncIterator[list[Event]]:
    if early:
        yield early
    async for events in turn.batches():
        yield events


def _chat_choice(part: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": part["delta"], "logprobs": part.get("logprobs"),
            "finish_reason": finish}


def _text_choice(piece: tuple[str, Any], finish: str | None) -> dict[str, Any]:
    text, logprobs = piece
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}


async def _chat_stream(ctx: ServerContext, turn: AsyncTurn | Any, early: list[Event],
                       output: ChatOutput, meta: dict[str, Any], include_usage: bool,
                       request: Request) -> AsyncIterator[str]:
    async for text in _sse_stream(ctx, turn, early, output, request,
                                  {**meta, "object": "chat.completion.chunk"}, include_usage,
                                  _chat_choice, first={"delta": {"role": "assistant",
                                                                 "content": ""}},
                                  last={"delta": {}}, what="chat"):
        yield text


async def _text_stream(ctx: ServerContext, turn: AsyncTurn, early: list[Event],
                       output: TextOutput, meta: dict[str, Any], include_usage: bool,
                       request: Request) -> AsyncIterator[str]:
    async for text in _sse_stream(ctx, turn, early, output, request,
                                  {**meta, "object": "text_completion"}, include_usage,
                                  _text_choice, first=None, last=("", None),
                                  what="completion"):
        yield text


async def _sse_stream(ctx: ServerContext, turn: Any, early: list[Event], output: Any,
                      request: Request, base: dict[str, Any], include_usage: bool,
                      choice_of: Any, first: Any, last: Any, what: str) -> AsyncIterator[str]:
    """SSE chunks of a turn: each piece ``output.feed`` makes, then the finish chunk, usage
    (when asked) and ``[DONE]``; an error arrives as a last error event."""
    extra = {"usage": None} if include_usage else {}

    def chunk(piece: Any, finish: str | None = None) -> str:
        return sse({**base, "choices": [choice_of(piece, finish)], **extra})

    try:
        if first is not None:
            yield chunk(first)
        async for events in _events(early, turn):
            pieces = [chunk(piece) for event in events for piece in output.feed(event)]
            if pieces:
                yield "".join(pieces)
        note_stats(request, output.stats, output.finish_reason)
        error = end_error(output.end)
        if error is not None:
            note(request, error=error.message)
            yield sse(error.body())
            return
        yield chunk(last, output.finish_reason)
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(output.stats)})
        yield DONE
    except Exception:
        log.exception(f"the {what} stream failed")
        yield sse(STREAM_FAILED.body())
    finally:
        turn.cancel()
        ctx.admission.release()
