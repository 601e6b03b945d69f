"""The forgiving streaming decoder of GPT-OSS's Harmony output.

Headers are read with openai-harmony's ``StreamableParser`` (``strict=False``) and content is
streamed through it; what it does not handle is repaired here: special tokens inside content,
headers inside a message, text outside any message, headers that never end, recipients that are
markup, messages begun as another role. Every repair is reported as a ``ParseIssue`` event; no
special token or header word ever reaches a channel, and an unfinished header is never text.
Only the model's own end of a final message or tool call ends the turn: a repair never does,
except that a repaired tool call still ends it (the tool must run first) and so does a message
begun as the user or a tool.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from harmony_tui.engine.events import (
    EndReason,
    Event,
    MessageDone,
    ParseIssue,
    TextDelta,
    ToolCall,
)
from harmony_tui.engine.messages import CHANNELS, Message

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


_ROLE_WORD = re.compile(r"\s*(assistant|user|system|developer)(?=[\s<]|$)")
_TO = re.compile(r"\s*to=([^\s<]+)")
_CHANNEL = re.compile(r"\s*<\|channel\|>\s*(analysis|commentary|final)?")
_CONSTRAIN = re.compile(r"\s*(<\|constrain\|>\s*[A-Za-z_]*)")
_TYPE_WORD = re.compile(r" (json|code|text)(?=[\s<]|$)")
_MARKUP = re.compile(r"<\|[a-z_]+\|>")
OTHER_ROLES = ("user", "system", "developer")


@dataclass(frozen=True, slots=True)
class Header:
    """A message header as read: ``role`` None means assistant; ``channel`` None means none
    was named; ``consumed`` is how much of the header text the header words took up."""

    role: str | None
    channel: str | None
    recipient: str | None
    content_type: str | None
    consumed: int = 0

    @property
    def other_role(self) -> bool:
        """The model began someone else's message (a user turn, a tool's answer)."""
        return self.role in OTHER_ROLES or self.recipient == "assistant"


def split_header(text: str, after_start: bool = False) -> Header:
    """Read the header words at the start of ``text`` (a header that never ended).

    Takes a role word (only ``assistant`` unless the header followed ``<|start|>``),
    ``to=RECIPIENT``, ``<|channel|>NAME`` and a content type; stops at the first word that is
    none of these: the rest is the message's text.
    """
    pos, role, channel, recipient, content_type = 0, None, None, None, None
    match = _ROLE_WORD.match(text)
    if match and (after_start or match.group(1) == "assistant"):
        role = None if match.group(1) == "assistant" else match.group(1)
        pos = match.end()
    while True:
        if recipient is None and (match := _TO.match(text, pos)):
            recipient = match.group(1)
        elif match := _CHANNEL.match(text, pos):
            channel = match.group(1) or channel
        elif content_type is None and (match := _CONSTRAIN.match(text, pos)):
            content_type = match.group(1).replace(" ", "")
        elif content_type is None and (channel or recipient) and (
                match := _TYPE_WORD.match(text, pos)):
            content_type = match.group(1)
        else:
            break
        pos = match.end()
    return Header(role, channel, recipient, content_type, pos)


class HarmonyDecoder:
    """Streams one assistant turn's tokens into events; never raises on malformed output.

    States: ``header`` (reading a message header; the prompt ends with ``<|start|>assistant``,
    so the turn begins here), ``content`` (inside a message; ``_stray`` holds a header that
    began inside it) and ``between`` (after a message ended with ``<|end|>``).
    """

    def __init__(self, encoding: Any, known: frozenset[str] = frozenset()) -> None:
        from openai_harmony import HarmonyError

        self._parse_error = HarmonyError
        self._enc = encoding
        self._known = known
        self.finished: EndReason | None = None
        self.messages: list[Message] = []
        self.tool_calls: list[ToolCall] = []
        self._state = "header"
        self._header: list[int] = []
        self._after_start = False  # the header followed <|start|>: it begins with a role
        self._loose = False  # the "header" is text written between messages
        self._stray: list[int] | None = None
        self._stray_after_start = False
        self._inner: Any = None
        self._channel = "final"
        self._recipient: str | None = None
        self._content_type: str | None = None
        self._text: list[str] = []
        self._lstrip = False

    # -- public --------------------------------------------------------------------------------

    def feed(self, token: int) -> list[Event]:
        out: list[Event] = []
        if self.finished:
            return out
        if token >= FIRST_SPECIAL and token not in STRUCTURAL:
            out.append(ParseIssue("unexpected special token ends the turn",
                                  self._enc.decode([token])))
            token = RETURN
        if self._state == "content":
            if token < FIRST_SPECIAL and self._stray is None:
                self._content_token(token, out)
            else:
                self._content_special(token, out)
        elif self._state == "header":
            self._header_token(token, out)
        else:
            self._between_token(token, out)
        return out

    def finish(self) -> list[Event]:
        """Close a message cut off by length, cancel or a stop string.

        An unfinished header is dropped, never shown: it names a message that has no text yet.
        """
        out: list[Event] = []
        if self.finished:
            return out
        if self._state == "header" and self._header:
            out.append(ParseIssue("output ended inside a message header; dropped it",
                                  self._enc.decode(self._header)))
        elif self._state == "content":
            if self._stray:
                out.append(ParseIssue("output ended inside a message header; dropped it",
                                      self._enc.decode(self._stray)))
            text = "".join(self._text)
            msg = self._message(text)
            if text or msg.recipient:
                self.messages.append(msg)
                out.append(MessageDone(msg))
        self._state = "between"
        self._header, self._stray = [], None
        return out

    # -- between messages ----------------------------------------------------------------------

    def _between_token(self, token: int, out: list[Event]) -> None:
        if token == START:
            self._begin_header([], after_start=True)
        elif token in (CHANNEL, CONSTRAIN, MESSAGE):
            out.append(ParseIssue("message started without <|start|>"))
            self._begin_header([], after_start=False)
            self._header_token(token, out)
        elif token in (END, RETURN, CALL):
            out.append(ParseIssue("end token outside a message", self._enc.decode([token])))
            if token != END:
                self.finished = "return"
        elif self._enc.decode([token]).strip():
            self._begin_header([token], after_start=False, loose=True)
            self._header_token_text(token, out)

    def _begin_header(self, tokens: list[int], after_start: bool, loose: bool = False) -> None:
        self._state = "header"
        self._header = tokens
        self._after_start, self._loose = after_start, loose

    # -- headers -------------------------------------------------------------------------------

    def _header_token(self, token: int, out: list[Event]) -> None:
        header = self._header
        if token == MESSAGE:
            parsed = self._read_header(header, self._after_start, out)
            self._header = []
            if self._ends_turn(parsed, out):
                return
            self._open(parsed, out)
        elif token == START:
            if header:
                out.append(self._dropped_header(header))
            self._begin_header([], after_start=True)
        elif token in (END, RETURN, CALL):
            self._header_ended(token, out)
        elif token in (CHANNEL, CONSTRAIN):
            header.append(token)
        else:
            header.append(token)
            self._header_token_text(token, out)

    def _header_token_text(self, token: int, out: list[Event]) -> None:
        """After a text token of a header: a header that runs on was text all along."""
        if not self._runs_on(self._header, token):
            return
        header, self._header = self._header, []
        parsed = split_header(self._enc.decode(header), self._after_start)
        if self._ends_turn(parsed, out):
            return
        out.append(ParseIssue(
            "text outside a message; shown on final" if self._loose and parsed.channel is None
            else "message header never ended; the rest is its text",
            self._enc.decode(header)))
        self._open(parsed, out, quiet=True)
        self._lstrip = True
        self._replay(header, parsed.consumed, out)

    def _header_ended(self, token: int, out: list[Event]) -> None:
        """An end token before ``<|message|>``: a header is dropped, plain text is shown."""
        header, self._header = self._header, []
        text = self._enc.decode(header)
        parsed = split_header(text, self._after_start)
        words = _MARKUP.sub("", text[parsed.consumed:]).strip()
        plain = not any(t in (CHANNEL, CONSTRAIN) for t in header) and parsed.recipient is None
        if plain and words and parsed.role is None:
            out.append(ParseIssue("text outside a message; shown on final", text))
            self._open(Header(None, "final", None, None), out)
            self._emit(words, out)
            self._close(token, out)
            return
        if header:
            out.append(ParseIssue("a message ended inside its header; dropped it", text))
        self._state = "between"
        if token != END:
            self.finished = "return"

    def _read_header(self, tokens: list[int], after_start: bool, out: list[Event]) -> Header:
        """A complete header (``<|message|>`` came), read by openai-harmony when it can and
        word by word (dropping what is not a header word) when it cannot."""
        from openai_harmony import HarmonyError, Role, StreamableParser

        if not after_start and tokens[:1] == [ASSISTANT]:  # <|start|> was left out
            tokens = tokens[1:]
        inner = StreamableParser(self._enc, None if after_start else Role.ASSISTANT,
                                 strict=False)._inner
        try:
            for tok in ([START] if after_start else []) + tokens + [MESSAGE]:
                inner.process(tok)
        except HarmonyError:
            return self._read_words(tokens, after_start, out)
        role = str(inner.current_role or "assistant").lower()
        header = Header(None if role == "assistant" else role, inner.current_channel,
                        inner.current_recipient, inner.current_content_type)
        if header.role is not None and not header.other_role:  # words parsed as a tool's name
            return self._read_words(tokens, after_start, out)
        if header.recipient and f"to={header.recipient}" not in self._enc.decode(tokens):
            return self._read_words(tokens, after_start, out)  # a stray word, not a recipient
        return header

    def _read_words(self, tokens: list[int], after_start: bool, out: list[Event]) -> Header:
        text = self._enc.decode(tokens)
        header = split_header(text, after_start)
        if text[header.consumed:].strip():
            out.append(ParseIssue("ignored words in a message header", text))
        return header

    def _ends_turn(self, header: Header, out: list[Event]) -> bool:
        """A header of someone else's message (the model writing the user's turn or a tool's
        answer) ends the turn."""
        if not header.other_role:
            return False
        who = header.role or "a tool"
        out.append(ParseIssue(f"the model began a message as {who}; the turn ends here"))
        self._state = "between"
        self.finished = "return"
        return True

    def _dropped_header(self, tokens: list[int]) -> ParseIssue:
        text = self._enc.decode(tokens)
        if self._loose:
            return ParseIssue("dropped text outside a message (a message header followed)", text)
        return ParseIssue("dropped an unfinished message header", text)

    def _runs_on(self, header: list[int], token: int) -> bool:
        return len(header) > MAX_HEADER_TOKENS or "\n" in self._enc.decode([token])

    # -- content -------------------------------------------------------------------------------

    def _open(self, header: Header, out: list[Event], quiet: bool = False) -> None:
        """Start a message with ``header``'s channel, recipient and content type (repaired).

        ``quiet``: a missing channel was already reported with the repair that led here.
        """
        channel, recipient, content_type = header.channel, header.recipient, header.content_type
        if recipient and ("<|" in recipient or " " in recipient.strip()):
            out.append(ParseIssue("ignored a malformed recipient", recipient))
            recipient = None
        if channel not in CHANNELS and not (quiet and channel is None):
            out.append(ParseIssue(
                f"message without a valid channel ({channel!r}); shown on "
                f"{'commentary' if recipient else 'final'}",
            ))
        if channel not in CHANNELS:
            channel = "commentary" if recipient else "final"
        if channel == "final" and recipient:
            out.append(ParseIssue("ignored a recipient on the final channel", recipient))
            recipient = None
        if content_type and "<|" in content_type and content_type != "<|constrain|>json":
            content_type = _MARKUP.sub("", content_type).strip() or None
        self._inner = self._content_parser(channel, recipient, content_type)
        self._state = "content"
        self._channel, self._recipient, self._content_type = channel, recipient, content_type
        self._text = []
        self._lstrip = False
        self._stray = None

    def _content_parser(self, channel: str, recipient: str | None,
                        content_type: str | None) -> Any:
        """An openai-harmony parser positioned at the start of a message's content."""
        from openai_harmony import HarmonyError, Role, StreamableParser

        words = f"<|channel|>{channel}" + (f" to={recipient}" if recipient else "") + (
            f" {content_type}" if content_type else "")
        for header in (words, f"<|channel|>{channel}"):
            inner = StreamableParser(self._enc, Role.ASSISTANT, strict=False)._inner
            try:
                for tok in self._enc.encode(header + "<|message|>", allowed_special="all"):
                    inner.process(tok)
                return inner
            except HarmonyError:
                continue
        raise AssertionError("unreachable: a bare channel header always parses")

    def _content_token(self, token: int, out: list[Event]) -> None:
        try:
            self._inner.process(token)
        except self._parse_error as err:
            out.append(ParseIssue(f"parser error: {err}", self._enc.decode([token])))
            return
        delta = self._inner.last_content_delta
        if delta:
            self._emit(delta, out)

    def _emit(self, text: str, out: list[Event]) -> None:
        if self._lstrip:
            text = text.lstrip()
            if not text:
                return
            self._lstrip = False
        self._text.append(text)
        out.append(TextDelta(self._channel, text, self._recipient))

    def _replay(self, tokens: list[int], consumed: int, out: list[Event]) -> None:
        """Emit the text of ``tokens`` after its first ``consumed`` characters (header words)."""
        cut = 0
        while cut < len(tokens) and len(self._enc.decode(tokens[:cut])) < consumed:
            cut += 1
        head = _MARKUP.sub("", self._enc.decode(tokens[:cut])[consumed:])
        if head:
            self._emit(head, out)
        for tok in tokens[cut:]:
            if tok < FIRST_SPECIAL:
                self._content_token(tok, out)

    def _content_special(self, token: int, out: list[Event]) -> None:
        """A special token (or any token of a stray header) inside a message."""
        stray = self._stray
        if stray is None:
            if token in (END, RETURN, CALL):
                self._close(token, out)
            elif token in (START, CHANNEL):
                self._stray = [] if token == START else [CHANNEL]
                self._stray_after_start = token == START
            else:
                out.append(ParseIssue("dropped a stray special token inside a message",
                                      self._enc.decode([token])))
            return
        if token == MESSAGE:
            self._stray = None
            self._switch(self._read_header(stray, self._stray_after_start, out), stray, None,
                         out)
        elif token in (END, RETURN, CALL):
            self._stray = None
            out.append(ParseIssue("dropped a message header that ended before its text",
                                  self._enc.decode(stray)))
            self._close(token, out)
        elif token == START:
            if stray:
                out.append(ParseIssue("dropped an unfinished message header",
                                      self._enc.decode(stray)))
            self._stray, self._stray_after_start = [], True
        else:
            stray.append(token)
            if token < FIRST_SPECIAL and self._runs_on(stray, token):
                self._stray = None
                parsed = split_header(self._enc.decode(stray), self._stray_after_start)
                self._switch(parsed, stray, parsed.consumed, out)

    def _switch(self, header: Header, tokens: list[int], consumed: int | None,
                out: list[Event]) -> None:
        """A header inside a message: the same message goes on (the header is dropped) or it
        ends and the new one starts. Either way the turn goes on. ``consumed`` is set when the
        header never ended: the rest of its text belongs to the message."""
        same = (header.channel is None and header.recipient is None) or (
            header.channel == self._channel and header.recipient == self._recipient)
        if header.other_role:
            self._close(END, out, repaired=True)
            if not self.finished:
                self._ends_turn(header, out)
            return
        if same:
            out.append(ParseIssue("dropped a message header repeated inside a message",
                                  self._enc.decode(tokens)))
        else:
            out.append(ParseIssue("message was not closed before a new one started"))
            self._close(END, out, repaired=True)
            if self.finished:
                return
            self._open(header, out)
        if consumed is not None:
            self._lstrip = not same
            self._replay(tokens, consumed, out)

    def _message(self, text: str) -> Message:
        return Message("assistant", text, channel=self._channel, recipient=self._recipient,
                       content_type=self._content_type)

    def _close(self, token: int, out: list[Event], repaired: bool = False) -> None:
        """Record the open message. The model's own end of a final message or tool call ends
        the turn; a message closed by a repair never does unless it is a tool call."""
        text = "".join(self._text)
        msg = self._message(text)
        self._state = "between"
        self._inner = None
        if repaired and not text and not msg.recipient:
            return
        self.messages.append(msg)
        out.append(MessageDone(msg))
        if msg.recipient:
            self._emit_call(msg, out)
            self.finished = "call"
        elif not repaired and (token == RETURN or msg.channel == "final"):
            self.finished = "return"

    def _emit_call(self, msg: Message, out: list[Event]) -> None:
        parsed, error = parse_arguments(msg.content, msg.content_type, msg.recipient or "")
        if self._known and not _recipient_known(msg.recipient or "", self._known):
            out.append(ParseIssue(f"call to an undeclared tool {msg.recipient!r}"))
        call = ToolCall(new_call_id(), msg.recipient or "", msg.channel or "commentary",
                        msg.content_type, msg.content, parsed, error)
        self.tool_calls.append(call)
        out.append(call)
