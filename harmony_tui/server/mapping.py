"""OpenAI requests -> engine turns (messages, prompt setup, parameters).

History is rendered back into Harmony properly: an assistant message's reasoning becomes an
``analysis`` message, its ``tool_calls`` become calls on the ``commentary`` channel to
``functions.NAME`` (``<|constrain|>json``), and a ``tool`` message becomes a message authored by
``functions.NAME`` on the call's channel. Built-in tool names (``python``, ``browser.*``) keep
their own recipients on the ``analysis`` channel, unless the request declares a function of that
name.

A call's content type is not part of the OpenAI format, so the server remembers the recipient,
channel and content type of each call it returned (by call id, the newest few thousand): history
that sends the call back renders token for token as the model wrote it, as the app's chat does.
Calls it does not know get the usual ones (``<|constrain|>json`` for functions, ``code`` for
python, ``json`` for the browser).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import Any

from pydantic import ValidationError

from harmony_tui.engine.messages import FunctionTool, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.tool_names import default_content_type, recipient_for, tool_name
from harmony_tui.server.errors import APIError, field_path
from harmony_tui.server.schemas import ChatCompletionRequest, ContentPart, SamplingFields

MAX_REMEMBERED_CALLS = 4096
MAX_STOPS = 4
SAMPLING_FIELDS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty",
                   "top_k", "min_p", "min_tokens_to_keep", "repetition_penalty",
                   "repetition_context_size", "xtc_probability", "xtc_threshold")


_calls: OrderedDict[str, tuple[str, str, str | None]] = OrderedDict()
_calls_lock = threading.Lock()


def remember_call(call_id: str, recipient: str, channel: str, content_type: str | None) -> None:
    """Note how the model wrote the call the server returned as ``call_id``."""
    with _calls_lock:
        _calls[call_id] = (recipient, channel, content_type)
        _calls.move_to_end(call_id)
        while len(_calls) > MAX_REMEMBERED_CALLS:
            _calls.popitem(last=False)


def remembered_call(call_id: str | None) -> tuple[str, str, str | None] | None:
    """(recipient, channel, content type) of a call this server returned, if it remembers it."""
    if not call_id:
        return None
    with _calls_lock:
        return _calls.get(call_id)


def call_message(call_id: str | None, name: str, arguments: str,
                 declared: Collection[str] = ()) -> Message:
    """An assistant tool call as the model wrote it (remembered) or would write it."""
    known = remembered_call(call_id)
    if known is not None and tool_name(known[0]) == name:
        recipient, channel, content_type = known
    else:
        recipient, channel = recipient_for(name, declared)
        content_type = default_content_type(recipient, channel)
    return Message("assistant", arguments, channel=channel, recipient=recipient,
                   content_type=content_type)


def content_text(content: str | list[ContentPart] | None, where: str) -> str:
    """Text of a string or a list of text parts; 400 naming the part otherwise."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for index, part in enumerate(content):
        if part.type not in ("text", "input_text", "output_text") or part.text is None:
            raise APIError(400, f"{where}[{index}].type: {part.type!r} content is not "
                           "supported; only text parts ({'type': 'text', 'text': ...})",
                           param=f"{where}[{index}].type")
        texts.append(part.text)
    return "".join(texts)


def chat_messages(request: ChatCompletionRequest) -> list[Message]:
    """The request's messages as engine messages."""
    out: list[Message] = []
    calls: dict[str, tuple[str, str]] = {}
    declared = {t.function.name for t in request.tools or ()}
    for index, msg in enumerate(request.messages):
        where = f"messages[{index}]"
        text = content_text(msg.content, f"{where}.content")
        if msg.role in ("system", "developer", "user"):
            out.append(Message(msg.role, text))
        elif msg.role == "assistant":
            reasoning = msg.reasoning or msg.reasoning_content
            if reasoning:
                out.append(Message("assistant", reasoning, channel="analysis"))
            if msg.tool_calls:
                if text:
                    out.append(Message("assistant", text, channel="commentary"))
                for call in msg.tool_calls:
                    message = call_message(call.id, call.function.name,
                                           call.function.arguments, declared)
                    calls[call.id] = (message.recipient or "", message.channel or "commentary")
                    out.append(message)
            elif text:
                out.append(Message("assistant", text, channel="final"))
        else:  # tool
            if msg.tool_call_id and msg.tool_call_id in calls:
                recipient, channel = calls[msg.tool_call_id]
            elif msg.name:
                recipient, channel = recipient_for(msg.name, declared)
            elif msg.tool_call_id:
                raise APIError(400, f"{where}.tool_call_id: no earlier assistant message has a "
                               f"tool call with id {msg.tool_call_id!r}",
                               param=f"{where}.tool_call_id")
            else:
                raise APIError(400, f"{where}.tool_call_id: a tool message needs the id of the "
                               "call it answers", param=f"{where}.tool_call_id")
            out.append(Message("tool", text, channel=channel, name=recipient))
    if not any(m.role == "user" for m in out):
        raise APIError(400, "messages: at least one user message is required", param="messages")
    return out


def chat_setup(base: PromptSetup, request: ChatCompletionRequest) -> PromptSetup:
    """The base setup with the request's function tools (none when tool_choice is 'none')."""
    choice = request.tool_choice
    if isinstance(choice, dict) or (choice not in (None, "auto", "none")):
        shown = choice if isinstance(choice, str) else "a named function"
        raise APIError(400, f"tool_choice: {shown!r} is not supported: the model decides "
                       "whether to call a tool; use 'auto' or 'none'", param="tool_choice")
    tools: tuple[FunctionTool, ...] = ()
    if request.tools and choice != "none":
        tools = tuple(FunctionTool(t.function.name, t.function.description or "",
                                   t.function.parameters) for t in request.tools)
    return dataclasses.replace(base, function_tools=tools)


def function_tools(tools: Sequence[Any] | None) -> tuple[FunctionTool, ...]:
    """Responses API tools (flat ``{"type": "function", "name", ...}``) as engine tools."""
    return tuple(FunctionTool(t.name, t.description or "", t.parameters) for t in tools or ())


def generation_params(base: GenerationParams, request: SamplingFields, *,
                      max_tokens: int | None, vocab_size: int,
                      reasoning_effort: str | None = None) -> GenerationParams:
    """The base parameters with the request's values; 400 naming a bad field."""
    changes: dict[str, Any] = {name: getattr(request, name) for name in SAMPLING_FIELDS}
    changes["max_tokens"] = max_tokens
    changes["reasoning_effort"] = reasoning_effort
    if request.logit_bias:
        bias: dict[int, float] = {}
        for key, value in request.logit_bias.items():
            try:
                token = int(key)
            except ValueError:
                raise APIError(400, f"logit_bias: key {key!r} is not a token id",
                               param="logit_bias") from None
            if not 0 <= token < vocab_size:
                raise APIError(400, f"logit_bias: token id {token} is outside the vocabulary "
                               f"(0 to {vocab_size - 1})", param="logit_bias")
            bias[token] = value
        changes["logit_bias"] = bias
    try:
        return base.updated(**changes)
    except ValidationError as err:
        first = err.errors()[0]
        name = field_path(first["loc"]) or "request"
        if name == "max_tokens" and max_tokens is not None:
            name = "max_tokens"
        msg = str(first["msg"]).removeprefix("Value error, ")
        value = first.get("input")
        raise APIError(400, f"{name}={value!r}: {msg[0].lower() + msg[1:]}",
                       param=name) from err


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple of at most four non-empty strings."""
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOPS:
        raise APIError(400, f"stop: at most {MAX_STOPS} stop strings are allowed "
                       f"(got {len(stops)})", param="stop")
    if any(not s for s in stops):
        raise APIError(400, "stop: stop strings must not be empty", param="stop")
    return tuple(stops)


def reject_n(n: int | None) -> None:
    if n not in (None, 1):
        raise APIError(400, f"n={n} is not supported: this server returns one choice per "
                       "request", param="n")
