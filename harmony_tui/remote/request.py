"""A ``TurnRequest`` as an OpenAI chat-completions request body.

The prompt setup's instructions become a leading ``system`` message, example dialogues come
next as ordinary turns, then the history: consecutive assistant messages of one step are folded
into one OpenAI assistant message (analysis -> ``reasoning_content``, final or commentary text
-> ``content``, calls -> ``tool_calls``), tool results become ``tool`` messages answering the
call they follow (arguments that are not JSON, such as code for ``python``, are sent as a
JSON string). Call ids are made up per request (``call_1``, ``call_2``...): our messages do
not keep the remote's ids, and the remote only needs each result to name its call.

Generation settings with an OpenAI field are always sent; the extension fields that vLLM,
SGLang, ``mlx_lm.server`` and harmony-tui read (``top_k``, ``min_p``, ...) only when they differ
from the defaults, so a strict server is not handed fields it may refuse. What cannot be sent
at all is listed by ``unsent_settings`` for the front ends to show.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.engine.tool_names import tool_name

STANDARD = ("temperature", "top_p")
EXTENSIONS = ("top_k", "min_p", "min_tokens_to_keep", "repetition_penalty",
              "repetition_context_size", "xtc_probability", "xtc_threshold")
# Settings no chat-completions request can carry (the remote's own values apply).
NOT_SENT = {
    "max_context_tokens": "the remote server fits the prompt to its own context window",
    "xtc_special_tokens": "token ids are the remote model's business",
    "draft_model": "speculative decoding is up to the server that runs the model",
    "prompt_lookup": "speculative decoding is up to the server that runs the model",
}
SETUP_NOT_SENT = {
    "model_identity": "the remote server writes its own system message",
    "knowledge_cutoff": "the remote server writes its own system message",
    "conversation_start_date": "the remote server writes its own system message",
    "builtin_tools": "built-in tools (python, browser) cannot be declared through the OpenAI "
                     "API; a model that calls them anyway is answered by the local tool",
}


def unsent_settings(params: GenerationParams, setup: PromptSetup | None = None) -> dict[str, str]:
    """Settings in force that the remote cannot take: name -> why (only non-default values)."""
    defaults = GenerationParams()
    out = {name: why for name, why in NOT_SENT.items()
           if getattr(params, name) != getattr(defaults, name)}
    if setup is not None:
        out.update({name: why for name, why in SETUP_NOT_SENT.items() if getattr(setup, name)})
    return out


def sampling_fields(params: GenerationParams) -> dict[str, Any]:
    """The request fields for ``params``."""
    defaults = GenerationParams()
    body: dict[str, Any] = {name: getattr(params, name) for name in STANDARD}
    body["max_tokens"] = params.max_tokens
    body["reasoning_effort"] = params.reasoning_effort
    if params.seed is not None:
        body["seed"] = params.seed
    for name in ("presence_penalty", "frequency_penalty", *EXTENSIONS):
        value = getattr(params, name)
        if value != getattr(defaults, name):
            body[name] = value
    if params.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in params.logit_bias.items()}
    return body


def openai_tools(setup: PromptSetup) -> list[dict[str, Any]]:
    """The setup's function tools as OpenAI ``tools``."""
    return [{"type": "function", "function": {
        "name": tool.name, "description": tool.description,
        "parameters": tool.parameters or {"type": "object", "properties": {}}}}
        for tool in setup.function_tools]


def openai_messages(messages: Sequence[Message], setup: PromptSetup) -> list[dict[str, Any]]:
    """The setup's instructions and examples, then ``messages``, as OpenAI chat messages."""
    out: list[dict[str, Any]] = []
    if setup.developer_instructions:
        out.append({"role": "system", "content": setup.developer_instructions})
    ids = _CallIds()
    for dialogue in setup.example_dialogues:
        out += _history(dialogue, ids)
    out += _history(messages, ids)
    return out


class _CallIds:
    """Made-up call ids: each tool result answers the oldest call not answered yet."""

    def __init__(self) -> None:
        self.count = 0
        self.open: list[str] = []

    def new(self) -> str:
        self.count += 1
        call_id = f"call_{self.count}"
        self.open.append(call_id)
        return call_id

    def answer(self) -> str | None:
        return self.open.pop(0) if self.open else None


def _history(messages: Sequence[Message], ids: _CallIds) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None  # the assistant message being folded
    for msg in messages:
        if msg.role != "assistant":
            current = None
            if msg.role == "tool":
                item: dict[str, Any] = {"role": "tool", "content": msg.content}
                call_id = ids.answer()
                if call_id is not None:
                    item["tool_call_id"] = call_id
                if msg.name:
                    item["name"] = tool_name(msg.name)
                out.append(item)
            else:
                out.append({"role": msg.role, "content": msg.content})
            continue
        if current is None or (msg.channel == "analysis" and not msg.recipient and (
                current.get("content") or current.get("tool_calls"))):
            current = {"role": "assistant", "content": ""}
            out.append(current)
        if msg.recipient:
            current.setdefault("tool_calls", []).append({
                "id": ids.new(), "type": "function",
                "function": {"name": tool_name(msg.recipient),
                             "arguments": json_arguments(msg.content)}})
        elif msg.channel == "analysis":
            current["reasoning_content"] = _joined(current.get("reasoning_content"),
                                                   msg.content)
        else:
            current["content"] = _joined(current.get("content"), msg.content)
    for item in out:
        if item["role"] == "assistant" and item.get("tool_calls") and not item["content"]:
            item["content"] = None
    return out


def json_arguments(text: str) -> str:
    """Call arguments as JSON text: servers decode them (``mlx_lm.server`` fails on anything
    else), so code written to ``python`` (only raw-Harmony servers hand such calls back) is
    sent as a JSON string."""
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text, ensure_ascii=False)
    return text


def _joined(before: str | None, text: str) -> str:
    return f"{before}\n\n{text}" if before else text


def request_body(model: str, request: Any, stream: bool = True) -> dict[str, Any]:
    """The chat-completions body of one ``TurnRequest``."""
    body: dict[str, Any] = {"model": model,
                            "messages": openai_messages(request.messages, request.setup),
                            **sampling_fields(request.params)}
    tools = openai_tools(request.setup)
    if tools:
        body["tools"] = tools
    if request.stop:
        body["stop"] = list(request.stop)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
