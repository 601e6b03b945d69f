"""Models other than GPT-OSS: the tokenizer's chat template, with reasoning split out.

``<think>...</think>`` (or whatever thinking markers mlx-lm detects for the tokenizer) goes to the
``analysis`` channel, the rest to ``final``, and tool calls between the tokenizer's tool-call
markers become ``ToolCall`` events, so every consumer sees the same events as with Harmony.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from typing import Any

from harmony_tui.engine.events import EndReason, Event, MessageDone, ParseIssue, TextDelta, ToolCall
from harmony_tui.engine.formats.base import folded_instructions, split_turns
from harmony_tui.engine.formats.harmony import new_call_id
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams


class ChatTemplateFormat:
    """Rendering through ``apply_chat_template`` and decoding with think/tool markers."""

    name = "chat_template"

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.stop_tokens = frozenset(int(t) for t in tokenizer.eos_token_ids)
        newline = tokenizer.encode("\n", add_special_tokens=False)
        self.keep_tokens: Sequence[int] = tuple(sorted(self.stop_tokens | set(newline)))
        self._think = _marker(tokenizer, "think_start_tokens", "think_end_tokens")
        self._tool = _marker(tokenizer, "tool_call_start_tokens", "tool_call_end_tokens")

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        messages: Sequence[Message],
        setup: PromptSetup,
        params: GenerationParams,
        today: _dt.date | None = None,
    ) -> list[int]:
        chat = self.template_messages(messages, setup)
        tools = [
            {"type": "function", "function": {
                "name": t.name, "description": t.description,
                "parameters": t.parameters or {"type": "object", "properties": {}},
            }}
            for t in setup.function_tools
        ]
        if not getattr(self.tokenizer, "has_chat_template", False):
            text = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in chat)
            return self.encode(text + "assistant:")
        out = self.tokenizer.apply_chat_template(
            chat, tools=tools or None, add_generation_prompt=True, tokenize=True
        )
        if isinstance(out, dict) or hasattr(out, "input_ids"):
            out = out["input_ids"]
        return [int(t) for t in out]

    def template_messages(
        self, messages: Sequence[Message], setup: PromptSetup
    ) -> list[dict[str, Any]]:
        """Our messages as the ``{"role", "content"}`` dicts chat templates expect."""
        system_parts = [setup.model_identity] if setup.model_identity else []
        instructions = folded_instructions(setup, messages)
        if instructions:
            system_parts.append(instructions)
        chat: list[dict[str, Any]] = []
        if system_parts:
            chat.append({"role": "system", "content": "\n\n".join(system_parts)})
        history = [m for d in setup.example_dialogues for m in d]
        _, turns = split_turns(messages)
        history += [m for turn in turns for m in turn]
        for msg in history:
            if msg.role == "user":
                chat.append({"role": "user", "content": msg.content})
            elif msg.role == "tool":
                chat.append({"role": "tool", "name": (msg.name or "").removeprefix("functions."),
                             "content": msg.content})
            elif msg.role == "assistant":
                _append_assistant(chat, msg)
        return chat

    # -- decoding ----------------------------------------------------------------------------

    def new_decoder(self, setup: PromptSetup, prompt: Sequence[int] = ()) -> ChatTemplateDecoder:
        thinking = False
        if self._think:
            start, end = self._think
            thinking = _last_index(prompt, start) > _last_index(prompt, end)
        tools = [
            {"type": "function", "function": {"name": t.name, "parameters": t.parameters}}
            for t in setup.function_tools
        ]
        return ChatTemplateDecoder(self, thinking, tools)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def checkpoint_positions(self, tokens: Sequence[int]) -> list[int]:
        """None known: checkpoints are taken at the end of each prompt only."""
        return []

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens))


def _marker(tokenizer: Any, start_attr: str, end_attr: str) -> tuple[tuple[int, ...], ...] | None:
    start = getattr(tokenizer, start_attr, None)
    end = getattr(tokenizer, end_attr, None)
    if not start or not end:
        return None
    return tuple(int(t) for t in start), tuple(int(t) for t in end)


def _last_index(tokens: Sequence[int], marker: Sequence[int]) -> int:
    n = len(marker)
    for i in range(len(tokens) - n, -1, -1):
        if tuple(tokens[i:i + n]) == tuple(marker):
            return i
    return -1


def _append_assistant(chat: list[dict[str, Any]], msg: Message) -> None:
    """Merge a turn's assistant messages: analysis is dropped, tool calls become ``tool_calls``."""
    if msg.channel == "analysis" and not msg.recipient:
        return
    if not chat or chat[-1]["role"] != "assistant":
        chat.append({"role": "assistant", "content": ""})
    target = chat[-1]
    if msg.recipient:
        try:
            arguments: Any = json.loads(msg.content)
        except json.JSONDecodeError:
            arguments = msg.content
        target.setdefault("tool_calls", []).append({
            "id": new_call_id(), "type": "function",
            "function": {"name": msg.recipient.removeprefix("functions."),
                         "arguments": arguments},
        })
    else:
        target["content"] = (target["content"] + msg.content) if target["content"] else msg.content


class ChatTemplateDecoder:
    """Splits a chat-template model's output into analysis, final and tool calls."""

    def __init__(self, fmt: ChatTemplateFormat, thinking: bool, tools: list[dict]) -> None:
        self._fmt = fmt
        self._detok = fmt.tokenizer.detokenizer
        self._tools = tools
        self._mode = "analysis" if thinking else "final"
        self._pending: list[int] = []
        self._texts: dict[str, list[str]] = {"analysis": [], "final": []}
        self._tool_text: list[str] = []
        markers: dict[tuple[int, ...], str] = {}
        if fmt._think:
            markers[fmt._think[0]] = "think_start"
            markers[fmt._think[1]] = "think_end"
        if fmt._tool:
            markers[fmt._tool[0]] = "tool_start"
            markers[fmt._tool[1]] = "tool_end"
        self._markers = markers
        self.finished: EndReason | None = None
        self.messages: list[Message] = []
        self.tool_calls: list[ToolCall] = []

    def feed(self, token: int) -> list[Event]:
        out: list[Event] = []
        if self.finished:
            return out
        if token in self._fmt.stop_tokens:
            self._flush_pending(out)
            self._end_mode(out)
            self.finished = "call" if self.tool_calls else "return"
            return out
        self._pending.append(token)
        self._match_markers(out)
        return out

    def finish(self) -> list[Event]:
        out: list[Event] = []
        if not self.finished:
            self._flush_pending(out)
            self._end_mode(out)
        return out

    # -- internals -----------------------------------------------------------------------------

    def _match_markers(self, out: list[Event]) -> None:
        while self._pending:
            seq = tuple(self._pending)
            kind = self._markers.get(seq)
            if kind is not None:
                self._pending = []
                self._on_marker(kind, out)
                return
            if any(m[: len(seq)] == seq for m in self._markers):
                return  # could still become a marker
            self._add_text_token(self._pending.pop(0), out)

    def _flush_pending(self, out: list[Event]) -> None:
        for tok in self._pending:
            self._add_text_token(tok, out)
        self._pending = []

    def _add_text_token(self, token: int, out: list[Event]) -> None:
        self._detok.add_token(token)
        segment = self._detok.last_segment
        if segment:
            self._emit(segment, out)

    def _emit(self, text: str, out: list[Event]) -> None:
        if self._mode == "tool":
            self._tool_text.append(text)
            out.append(TextDelta("commentary", text, "functions"))
        else:
            self._texts[self._mode].append(text)
            out.append(TextDelta(self._mode, text))

    def _on_marker(self, kind: str, out: list[Event]) -> None:
        wanted = {"think_start": "analysis", "tool_start": "tool"}.get(kind)
        if kind in ("think_end", "tool_end") and self._mode == "final":
            out.append(ParseIssue(f"unexpected {kind.replace('_', ' ')} marker"))
            return
        self._end_mode(out)
        self._mode = wanted or "final"

    def _end_mode(self, out: list[Event]) -> None:
        """Flush the detokenizer and close the message of the current mode."""
        self._detok.finalize()
        rest = self._detok.last_segment
        if rest:
            self._emit(rest, out)
        self._detok.reset()
        if self._mode == "tool":
            self._close_tool(out)
        else:
            text = "".join(self._texts[self._mode]).strip()
            self._texts[self._mode] = []
            if text:
                msg = Message("assistant", text, channel=self._mode)
                self.messages.append(msg)
                out.append(MessageDone(msg))

    def _close_tool(self, out: list[Event]) -> None:
        raw = "".join(self._tool_text).strip()
        self._tool_text = []
        parser = getattr(self._fmt.tokenizer, "tool_parser", None)
        name, arguments, error = "unknown", raw, None
        try:
            if parser is None:
                raise ValueError("the tokenizer has no tool parser")
            parsed = parser(raw, self._tools)
            call = parsed[0] if isinstance(parsed, list) else parsed
            name = call["name"]
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
        except Exception as err:  # a model's malformed call must not end the turn badly
            error = f"could not parse the tool call: {err}"
        try:
            parsed_args = json.loads(arguments) if error is None else None
        except json.JSONDecodeError as err:
            parsed_args, error = None, f"arguments are not valid JSON: {err.msg}"
        recipient = f"functions.{name}"
        msg = Message("assistant", arguments, channel="commentary", recipient=recipient,
                      content_type="json")
        self.messages.append(msg)
        out.append(MessageDone(msg))
        call = ToolCall(new_call_id(), recipient, "commentary", "json", arguments, parsed_args,
                        error)
        self.tool_calls.append(call)
        out.append(call)
