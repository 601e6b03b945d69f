"""GPT-OSS's Harmony format: rendering with openai-harmony, and a forgiving streaming decoder.

Rendering follows the Harmony spec: system content (identity, reasoning effort, knowledge cutoff,
date, built-in tools), developer content (instructions, function tools), example dialogues, then
the history with earlier turns' analysis dropped (openai-harmony's own auto-drop only covers the
first final message, so we drop it ourselves and render with auto-drop off).

Decoding wraps openai-harmony's ``StreamableParser`` (``strict=False``) and repairs what it does
not: special tokens inside content, text outside any message, headers that never end,
recipients that are markup. Every repair is reported as a ``ParseIssue`` event; no special token
or header text ever reaches the final channel.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
from collections.abc import Sequence
from typing import Any

from harmony_tui.engine.events import (
    EndReason,
    Event,
    MessageDone,
    ParseIssue,
    TextDelta,
    ToolCall,
)
from harmony_tui.engine.formats.base import folded_instructions, split_turns
from harmony_tui.engine.messages import CHANNELS, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

# o200k_harmony special tokens.
START, END, MESSAGE, CHANNEL, CONSTRAIN = 200006, 200007, 200008, 200005, 200003
RETURN, CALL, ENDOFTEXT = 200002, 200012, 199999
FIRST_SPECIAL = 199998
VOCAB_SIZE = 201088
ASSISTANT = 173781  # "assistant"
STRUCTURAL = frozenset({START, END, MESSAGE, CHANNEL, CONSTRAIN, RETURN, CALL})
MAX_HEADER_TOKENS = 48

_call_ids = itertools.count(1)


def new_call_id() -> str:
    """A process-unique tool-call id."""
    import uuid

    return f"call_{uuid.uuid4().hex[:20]}{next(_call_ids)}"


class HarmonyFormat:
    """Harmony rendering and decoding for gpt_oss models."""

    name = "harmony"
    vocab_size = VOCAB_SIZE
    stop_tokens = frozenset({RETURN, CALL, ENDOFTEXT})
    keep_tokens: Sequence[int] = tuple(sorted(STRUCTURAL | {ENDOFTEXT}))

    def __init__(self) -> None:
        from harmony_tui.engine.vocab import harmony_encoding

        self.encoding = harmony_encoding()

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        messages: Sequence[Message],
        setup: PromptSetup,
        params: GenerationParams,
        today: _dt.date | None = None,
    ) -> list[int]:
        from openai_harmony import Conversation, RenderConversationConfig, Role

        conversation = Conversation.from_messages(
            self.harmony_messages(messages, setup, params, today)
        )
        return self.encoding.render_conversation_for_completion(
            conversation, Role.ASSISTANT, RenderConversationConfig(auto_drop_analysis=False)
        )

    def harmony_messages(
        self,
        messages: Sequence[Message],
        setup: PromptSetup,
        params: GenerationParams,
        today: _dt.date | None = None,
    ) -> list[Any]:
        """The openai-harmony messages for a prompt (system, developer, examples, history)."""
        from openai_harmony import Message as HMessage
        from openai_harmony import Role

        out = [HMessage.from_role_and_content(Role.SYSTEM, system_content(setup, params, today))]
        developer = developer_content(setup, messages)
        if developer is not None:
            out.append(HMessage.from_role_and_content(Role.DEVELOPER, developer))
        for dialogue in setup.example_dialogues:
            out.extend(to_harmony(m) for m in dialogue if m.content)
        out.extend(to_harmony(m) for m in history_for_prompt(messages))
        return out

    # -- decoding ----------------------------------------------------------------------------

    def new_decoder(self, setup: PromptSetup, prompt: Sequence[int] = ()) -> HarmonyDecoder:
        return HarmonyDecoder(self.encoding, known_recipients(setup))

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special="all")

    def decode(self, tokens: Sequence[int]) -> str:
        return self.encoding.decode(list(tokens))


def system_content(setup: PromptSetup, params: GenerationParams, today: _dt.date | None):
    """Harmony system content for ``setup``; the date is today's unless the setup fixes it."""
    from openai_harmony import ReasoningEffort, SystemContent

    effort = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM,
              "high": ReasoningEffort.HIGH}[params.reasoning_effort]
    content = SystemContent.new().with_reasoning_effort(effort)
    date = setup.conversation_start_date or (today or _dt.date.today()).isoformat()
    content = content.with_conversation_start_date(date)
    if setup.model_identity:
        content = content.with_model_identity(setup.model_identity)
    if setup.knowledge_cutoff:
        content = content.with_knowledge_cutoff(setup.knowledge_cutoff)
    descriptions = dict(setup.tool_descriptions)
    if "browser" in setup.builtin_tools:
        content = content.with_browser_tool()
    if "python" in setup.builtin_tools:
        if "python" in descriptions:
            from openai_harmony import ToolNamespaceConfig

            content = content.with_tools(ToolNamespaceConfig(
                name="python", description=descriptions["python"], tools=[]))
        else:
            content = content.with_python_tool()
    return content


def developer_content(setup: PromptSetup, messages: Sequence[Message]):
    """Harmony developer content, or None when there are no instructions and no functions."""
    from openai_harmony import DeveloperContent, ToolDescription

    instructions = folded_instructions(setup, messages)
    if not instructions and not setup.function_tools:
        return None
    content = DeveloperContent.new()
    if instructions:
        content = content.with_instructions(instructions)
    if setup.function_tools:
        content = content.with_function_tools(
            [
                ToolDescription.new(t.name, t.description, parameters=t.parameters)
                for t in setup.function_tools
            ]
        )
    return content


def history_for_prompt(messages: Sequence[Message]) -> list[Message]:
    """The history as Harmony wants it re-sent.

    System/developer messages are folded into the developer message; earlier turns keep their
    final answers and tool exchanges but lose analysis; the current (last) turn keeps everything,
    because its chain of thought continues across tool calls. Empty messages are skipped.
    """
    _, turns = split_turns(messages)
    out: list[Message] = []
    for index, turn in enumerate(turns):
        last = index == len(turns) - 1
        for msg in turn:
            if not msg.content and not msg.is_tool_call:
                continue
            if not last and msg.channel == "analysis":
                continue
            out.append(msg)
    return out


def to_harmony(msg: Message):
    """One of our messages as an openai-harmony message."""
    from openai_harmony import Author, Role
    from openai_harmony import Message as HMessage

    if msg.role == "tool":
        author = Author.new(Role.TOOL, msg.name or "tool")
        out = HMessage.from_author_and_content(author, msg.content).with_recipient("assistant")
        return out.with_channel(msg.channel or "commentary")
    role = {"user": Role.USER, "assistant": Role.ASSISTANT}.get(msg.role)
    if role is None:
        raise ValueError(f"cannot render a {msg.role!r} message inside the history")
    out = HMessage.from_role_and_content(role, msg.content)
    if msg.role == "assistant":
        out = out.with_channel(msg.channel or "final")
        if msg.recipient:
            out = out.with_recipient(msg.recipient)
        if msg.content_type:
            out = out.with_content_type(msg.content_type)
    return out


def known_recipients(setup: PromptSetup) -> frozenset[str]:
    """Recipients the prompt declared: built-in namespaces and ``functions.NAME``."""
    names = {f"functions.{t.name}" for t in setup.function_tools}
    names.update(setup.builtin_tools)
    return frozenset(names)


def _recipient_known(recipient: str, known: frozenset[str]) -> bool:
    return recipient in known or recipient.split(".", 1)[0] in known


def parse_arguments(
    arguments: str, content_type: str | None, recipient: str
) -> tuple[Any, str | None]:
    """Decode JSON arguments when the call is JSON; returns (parsed, error)."""
    is_json = "json" in (content_type or "") or recipient.startswith(("functions.", "browser."))
    if not is_json:
        return None, None
    try:
        return json.loads(arguments), None
    except json.JSONDecodeError as err:
        return None, (
            f"arguments are not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        )


class HarmonyDecoder:
    """Streams one assistant turn's tokens into events; never raises on malformed output."""

    def __init__(self, encoding: Any, known: frozenset[str] = frozenset()) -> None:
        self._enc = encoding
        self._known = known
        self.finished: EndReason | None = None
        self.messages: list[Message] = []
        self.tool_calls: list[ToolCall] = []
        self._new_parser(in_header=True)

    # -- parser plumbing ---------------------------------------------------------------------

    def _new_parser(self, in_header: bool) -> None:
        from openai_harmony import Role, StreamableParser

        self._parser = StreamableParser(self._enc, Role.ASSISTANT if in_header else None,
                                        strict=False)
        self._inner = self._parser._inner  # avoid JSON round-trips on the per-token path
        self._state = "header" if in_header else "start"
        self._header: list[int] = []
        self._channel = "final"
        self._recipient: str | None = None
        self._content_type: str | None = None
        self._text: list[str] = []

    def _process(self, token: int, out: list[Event]) -> None:
        """Feed the parser and track our mirror of its state; repair header failures."""
        from openai_harmony import HarmonyError

        try:
            self._inner.process(token)
        except HarmonyError as err:
            if self._state == "header":
                self._header_as_content(out, f"unparsable message header ({err})")
                return
            out.append(ParseIssue(f"parser error: {err}", self._enc.decode([token])))
            return
        if self._state == "content":
            delta = self._inner.last_content_delta
            if delta:
                self._text.append(delta)
                out.append(TextDelta(self._channel, delta, self._recipient))
        elif self._state == "header":
            if token == MESSAGE:
                self._open_content(out)
            else:
                self._header.append(token)
        elif token == START:
            self._state = "header"
            self._header = []

    def _open_content(self, out: list[Event]) -> None:
        channel = self._inner.current_channel
        recipient = self._inner.current_recipient
        content_type = self._inner.current_content_type
        if recipient and ("<|" in recipient or " " in recipient.strip()):
            out.append(ParseIssue("ignored a malformed recipient", recipient))
            recipient = None
        if channel not in CHANNELS:
            out.append(ParseIssue(
                f"message without a valid channel ({channel!r}); shown on "
                f"{'commentary' if recipient else 'final'}",
            ))
            channel = "commentary" if recipient else "final"
        if channel == "final" and recipient:
            out.append(ParseIssue("ignored a recipient on the final channel", recipient))
            recipient = None
        if content_type and "<|" in content_type and content_type != "<|constrain|>json":
            content_type = content_type.replace("<|constrain|>", "").strip() or None
        self._state = "content"
        self._channel, self._recipient, self._content_type = channel, recipient, content_type
        self._text = []
        self._header = []

    def _close_content(self, token: int, out: list[Event]) -> None:
        """Feed an end token to the parser and record the finished message."""
        text = "".join(self._text)
        self._process(token, out)
        self._state = "start"
        msg = Message("assistant", text, channel=self._channel, recipient=self._recipient,
                      content_type=self._content_type)
        self.messages.append(msg)
        out.append(MessageDone(msg))
        if msg.recipient:
            self._emit_call(msg, out)
            self.finished = "call"
        elif token == RETURN or msg.channel == "final":
            self.finished = "return"

    def _emit_call(self, msg: Message, out: list[Event]) -> None:
        parsed, error = parse_arguments(msg.content, msg.content_type, msg.recipient or "")
        if self._known and not _recipient_known(msg.recipient or "", self._known):
            out.append(ParseIssue(f"call to an undeclared tool {msg.recipient!r}"))
        call = ToolCall(new_call_id(), msg.recipient or "", msg.channel or "commentary",
                        msg.content_type, msg.content, parsed, error)
        self.tool_calls.append(call)
        out.append(call)

    def _header_as_content(self, out: list[Event], reason: str) -> None:
        """The 'header' was really text: restart a message on the final channel with it."""
        pending = [t for t in self._header if t < FIRST_SPECIAL]
        self._new_parser(in_header=True)
        out.append(ParseIssue(f"{reason}; treating it as text", self._enc.decode(pending)))
        self._process(MESSAGE, out)
        for tok in pending:
            self._process(tok, out)

    # -- public --------------------------------------------------------------------------------

    def feed(self, token: int) -> list[Event]:
        out: list[Event] = []
        if self.finished:
            return out
        state = self._state
        if token in (END, RETURN, CALL) or (token >= FIRST_SPECIAL and token not in STRUCTURAL):
            if token >= FIRST_SPECIAL and token not in STRUCTURAL:
                out.append(ParseIssue("unexpected special token ends the turn",
                                      self._enc.decode([token])))
                token = RETURN
            if state == "header" and any(t < FIRST_SPECIAL for t in self._header):
                self._header_as_content(out, "message ended inside its header")
                state = self._state
            if state == "content":
                self._close_content(token, out)
            else:
                out.append(ParseIssue("end token outside a message", self._enc.decode([token])))
                if token in (RETURN, CALL):
                    self.finished = "return"
            return out
        if state == "content":
            if token in (START, CHANNEL):
                out.append(ParseIssue("message was not closed before a new one started"))
                self._close_content(END, out)
                if self.finished:
                    return out
                self._process(START, out)
                if token == CHANNEL:
                    self._process(ASSISTANT, out)
                    self._process(CHANNEL, out)
            elif token in (MESSAGE, CONSTRAIN):
                out.append(ParseIssue("dropped a stray special token inside a message",
                                      self._enc.decode([token])))
            else:
                self._process(token, out)
            return out
        if state == "start":
            if token == START:
                self._process(token, out)
            elif token in (CHANNEL, MESSAGE, CONSTRAIN):
                out.append(ParseIssue("message started without <|start|>"))
                self._process(START, out)
                self._process(ASSISTANT, out)
                self._process(token, out)
            else:
                text = self._enc.decode([token])
                if text.strip():
                    out.append(ParseIssue("text outside a message; shown on final", text))
                    self._process(START, out)
                    self._process(ASSISTANT, out)
                    self._process(MESSAGE, out)
                    self._process(token, out)
            return out
        # header
        self._process(token, out)
        if self._state == "header" and token < FIRST_SPECIAL:
            header_text = self._enc.decode(self._header)
            if len(self._header) > MAX_HEADER_TOKENS or "\n" in header_text:
                self._header_as_content(out, "message header never ended")
        return out

    def finish(self) -> list[Event]:
        """Close a message cut off by length, cancel or a stop string."""
        out: list[Event] = []
        if self.finished:
            return out
        if self._state == "header" and any(t < FIRST_SPECIAL for t in self._header):
            self._header_as_content(out, "output ended inside a message header")
        if self._state == "content":
            text = "".join(self._text)
            msg = Message("assistant", text, channel=self._channel, recipient=self._recipient,
                          content_type=self._content_type)
            if text or msg.recipient:
                self.messages.append(msg)
                out.append(MessageDone(msg))
        self._state = "start"
        return out
