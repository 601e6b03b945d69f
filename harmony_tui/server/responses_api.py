"""``POST /v1/responses``: the Responses API as gpt-oss's reference server exposes it.

Stateless (``previous_response_id`` is refused: send the whole input). Input items: messages
(text parts), ``function_call``, ``function_call_output`` and ``reasoning``. Output items:
``reasoning`` (analysis), ``message`` (final text) and ``function_call``; streamed as the typed
events ``response.created`` ... ``response.completed``. Built-in tools enabled for the server run
as for chat completions (``tool_loop.py``): one ``reasoning`` item per step, their calls unseen.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from harmony_tui.engine.engine import TurnRequest
from harmony_tui.engine.events import Event, MessageDone, Stats, TextDelta, TurnEnd, TurnStart
from harmony_tui.engine.messages import Message
from harmony_tui.engine.reply import missing_answer
from harmony_tui.server.chat import ERRORS, STREAM_DOC, STREAM_FAILED, end_error
from harmony_tui.server.context import (
    SSE_HEADERS,
    ServerContext,
    note,
    note_stats,
    now,
    sse_event,
)
from harmony_tui.server.context import StrictJSONResponse as JSONResponse
from harmony_tui.server.errors import APIError, log
from harmony_tui.server.mapping import (
    call_message,
    function_tools,
    generation_params,
    remember_call,
    stop_strings,
    tool_name,
)
from harmony_tui.server.schemas import ResponseObject, ResponsesRequest
from harmony_tui.server.tool_loop import declare


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, f"{where}: expected a string or a list of text parts", param=where)
    out = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text", "reasoning_text") or \
                not isinstance(part.get("text"), str):
            raise APIError(400, f"{where}[{index}].type: {kind!r} content is not supported; "
                           "only text parts", param=f"{where}[{index}].type")
        out.append(part["text"])
    return "".join(out)


def input_messages(body: ResponsesRequest) -> list[Message]:
    """The request's input (and instructions) as engine messages."""
    out: list[Message] = []
    if body.instructions:
        out.append(Message("developer", body.instructions))
    if isinstance(body.input, str):
        out.append(Message("user", body.input))
        return out
    calls: dict[str, tuple[str, str]] = {}
    declared = {tool.name for tool in body.tools or ()}
    for index, item in enumerate(body.input):
        where = f"input[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            text = _text(item.get("content"), f"{where}.content")
            if role in ("user", "system", "developer"):
                out.append(Message(role, text))
            elif role == "assistant":
                out.append(Message("assistant", text, channel="final"))
            else:
                raise APIError(400, f"{where}.role: expected user, system, developer or "
                               f"assistant (got {role!r})", param=f"{where}.role")
        elif kind == "reasoning":
            text = _text(item.get("content"), f"{where}.content")
            if text:
                out.append(Message("assistant", text, channel="analysis"))
        elif kind == "function_call":
            name, call_id = item.get("name"), item.get("call_id")
            if not isinstance(name, str) or not isinstance(call_id, str):
                raise APIError(400, f"{where}: a function_call needs name and call_id",
                               param=where)
            # rendered as the model wrote it (remembered) or would write it, as on the chat API
            call = call_message(call_id, name, str(item.get("arguments", "")), declared)
            assert call.recipient is not None and call.channel is not None
            calls[call_id] = (call.recipient, call.channel)
            out.append(call)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in calls:
                raise APIError(400, f"{where}.call_id: no earlier function_call has call_id "
                               f"{call_id!r}", param=f"{where}.call_id")
            recipient, channel = calls[call_id]
            output = item.get("output", "")
            out.append(Message("tool", output if isinstance(output, str) else
                               _text(output, f"{where}.output"), channel=channel,
                               name=recipient))
        else:
            raise APIError(400, f"{where}.type: {kind!r} items are not supported",
                           param=f"{where}.type")
    if not any(m.role == "user" for m in out):
        raise APIError(400, "input: at least one user message is required", param="input")
    return out


@dataclasses.dataclass
class _Item:
    kind: str  # reasoning | message | function_call
    index: int
    id: str
    text: list[str] = dataclasses.field(default_factory=list)
    name: str = ""
    call_id: str = ""

    def body(self, done: bool) -> dict[str, Any]:
        text = "".join(self.text)
        status = "completed" if done else "in_progress"
        if self.kind == "reasoning":
            return {"type": "reasoning", "id": self.id, "summary": [],
                    "content": [{"type": "reasoning_text", "text": text}] if done else [],
                    "status": status}
        if self.kind == "function_call":
            return {"type": "function_call", "id": self.id, "call_id": self.call_id,
                    "name": self.name, "arguments": text if done else "", "status": status}
        return {"type": "message", "id": self.id, "role": "assistant", "status": status,
                "content": [_part(text)] if done else []}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponseBuilder:
    """Engine events -> Responses API output items and stream events."""

    def __init__(self, response_id: str, base: dict[str, Any]) -> None:
        self.id = response_id
        self.base = base
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.stats: Stats | None = None
        self.end: TurnEnd | None = None
        self.seq = 0

    def _event(self, kind: str, **data: Any) -> tuple[str, dict[str, Any]]:
        self.seq += 1
        return kind, {"type": kind, "sequence_number": self.seq - 1, **data}

    def _open_item(self, message: Message | TextDelta) -> list[tuple[str, dict[str, Any]]]:
        recipient = message.recipient
        if recipient:
            item = _Item("function_call", len(self.items), _id("fc"), name=tool_name(recipient),
                         call_id=f"call_{uuid.uuid4().hex[:24]}")
        elif message.channel == "analysis":
            item = _Item("reasoning", len(self.items), _id("rs"))
        else:
            item = _Item("message", len(self.items), _id("msg"))
        self.items.append(item)
        self.open = item
        out = [self._event("response.output_item.added", output_index=item.index,
                           item=item.body(False))]
        if item.kind == "message":
            out.append(self._event("response.content_part.added", item_id=item.id,
                                   output_index=item.index, content_index=0, part=_part("")))
        return out

    def feed(self, event: Event) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(event, TextDelta):
            out = [] if self.open is not None else self._open_item(event)
            item = self.open
            assert item is not None
            item.text.append(event.text)
            name = {"reasoning": "response.reasoning_text.delta",
                    "message": "response.output_text.delta",
                    "function_call": "response.function_call_arguments.delta"}[item.kind]
            extra = {"content_index": 0} if item.kind != "function_call" else {}
            if item.kind == "message":
                extra["logprobs"] = []
            out.append(self._event(name, item_id=item.id, output_index=item.index,
                                   delta=event.text, **extra))
            return out
        if isinstance(event, MessageDone):
            out = [] if self.open is not None else self._open_item(event.message)
            item, self.open = self.open, None
            assert item is not None
            text = "".join(item.text)
            if item.kind == "message":
                out.append(self._event("response.output_text.done", item_id=item.id,
                                       output_index=item.index, content_index=0, text=text,
                                       logprobs=[]))
                out.append(self._event("response.content_part.done", item_id=item.id,
                                       output_index=item.index, content_index=0,
                                       part=_part(text)))
            elif item.kind == "reasoning":
                out.append(self._event("response.reasoning_text.done", item_id=item.id,
                                       output_index=item.index, content_index=0, text=text))
            else:
                message = event.message
                if message.recipient and message.channel:  # so a later input renders the same
                    remember_call(item.call_id, message.recipient, message.channel,
                                  message.content_type)
                out.append(self._event("response.function_call_arguments.done",
                                       item_id=item.id, output_index=item.index, name=item.name,
                                       arguments=text))
            out.append(self._event("response.output_item.done", output_index=item.index,
                                   item=item.body(True)))
            return out
        if isinstance(event, Stats):
            self.stats = event
        elif isinstance(event, TurnEnd):
            self.end = event
        return []

    def response(self, status: str | None = None) -> dict[str, Any]:
        incomplete = self.end is not None and self.end.reason == "length"
        status = status or ("incomplete" if incomplete else "completed")
        stats = self.stats
        body = {**self.base, "id": self.id, "object": "response", "status": status,
                "output": [item.body(True) for item in self.items if item is not self.open],
                "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
                "error": None, "usage": None}
        missing = self.no_answer
        if missing and status != "in_progress":
            body["no_answer"] = missing
        if stats is not None and status != "in_progress":
            body["usage"] = {
                "input_tokens": stats.prompt_tokens,
                "input_tokens_details": {"cached_tokens": stats.cached_tokens},
                "output_tokens": stats.generation_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": stats.prompt_tokens + stats.generation_tokens}
        return body


    @property
    def no_answer(self) -> str | None:
        """Why the turn has no answer (no output text, no function call), or None."""
        if self.end is None:
            return None
        kinds = {item.kind for item in self.items if "".join(item.text).strip()}
        return missing_answer(self.end.reason, bool(kinds & {"message", "function_call"}),
                              "reasoning" in kinds)


def build_responses_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/responses", response_model=ResponseObject, tags=["generation"],
                 responses={200: {"content": STREAM_DOC}, **ERRORS},
                 summary="Responses API: reasoning, message and function_call output items")
    async def responses(body: ResponsesRequest, request: Request) -> Any:
        note(request, model=body.model, stream=body.stream)
        if body.previous_response_id:
            raise APIError(400, "previous_response_id is not supported: this server stores no "
                           "responses; send the whole conversation as input",
                           param="previous_response_id")
        if body.background:
            raise APIError(400, "background responses are not supported", param="background")
        fmt = body.text.format if body.text is not None else None
        if fmt is not None and fmt.type != "text":
            raise APIError(400, f"text.format.type={fmt.type!r}: not supported, output is not "
                           "constrained (only 'text')", param="text.format.type")
        if body.tool_choice not in (None, "auto", "none"):
            shown = body.tool_choice if isinstance(body.tool_choice, str) else "a named function"
            raise APIError(400, f"tool_choice={shown!r}: not supported, only 'auto' and 'none'",
                           param="tool_choice")
        loaded = ctx.model_for(body.model)
        effort = body.reasoning.effort if body.reasoning else None
        params = generation_params(ctx.params, body, max_tokens=body.max_output_tokens,
                                   vocab_size=loaded.format.vocab_size, reasoning_effort=effort)
        tools = function_tools(body.tools) if body.tool_choice != "none" else ()
        setup = declare(ctx.tools, dataclasses.replace(ctx.current_setup(), function_tools=tools),
                        body.tool_choice)
        turn_request = TurnRequest(input_messages(body), setup, params,
                                   stop=stop_strings(body.stop))
        turn, early = await ctx.start(turn_request, request, run_tools=body.tool_choice != "none")
        base = {"created_at": now(), "model": loaded.name, "instructions": body.instructions,
                "max_output_tokens": body.max_output_tokens, "temperature": params.temperature,
                "top_p": params.top_p, "tool_choice": body.tool_choice or "auto",
                "tools": [t.model_dump(exclude_none=True) for t in body.tools or ()],
                "parallel_tool_calls": bool(body.parallel_tool_calls),
                "reasoning": {"effort": params.reasoning_effort, "summary": None},
                "text": {"format": {"type": "text"}}, "metadata": body.metadata or {}}
        builder = ResponseBuilder(_id("resp"), base)
        if body.stream:
            return StreamingResponse(_stream(ctx, turn, early, builder, request),
                                     media_type="text/event-stream", headers=SSE_HEADERS)
        for event in early:
            builder.feed(event)
        if not await ctx.collect(turn, request, builder):
            return JSONResponse({}, status_code=499)
        note_stats(request, builder.stats, builder.end.reason if builder.end else None)
        error = end_error(builder.end)
        if error is not None:
            raise error
        return JSONResponse(builder.response())

    return router


async def _stream(ctx: ServerContext, turn: Any, early: list[Event], builder: ResponseBuilder,
                  request: Request) -> AsyncIterator[str]:
    try:
        for name in ("response.created", "response.in_progress"):
            event, data = builder._event(name, response=builder.response("in_progress"))
            yield sse_event(event, data)
        batches: list[list[Event]] = [early] if early else []
        async for events in _chain(batches, turn):
            pieces = [sse_event(n, d) for e in events if not isinstance(e, TurnStart)
                      for n, d in builder.feed(e)]
            if pieces:
                yield "".join(pieces)
        note_stats(request, builder.stats, builder.end.reason if builder.end else None)
        error = end_error(builder.end)
        if error is not None:
            note(request, error=error.message)
            name, data = builder._event("response.failed", response={
                **builder.response("failed"), "error": {"code": error.code or "server_error",
                                                        "message": error.message}})
            yield sse_event(name, data)
            return
        final = builder.response()
        name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        event, data = builder._event(name, response=final)
        yield sse_event(event, data)
    except Exception:
        log.exception("the response stream failed")
        yield sse_event("error", STREAM_FAILED.body())
    finally:
        turn.cancel()
        ctx.admission.release()


async def _chain(first: list[list[Event]], turn: Any) -> AsyncIterator[list[Event]]:
    for events in first:
        yield events
    async for events in turn.batches():
        yield events
