"""Untrusted text made safe to show: no terminal control sequences, no hidden characters.

Tool results (web pages, command output, MCP servers) and the model's words are untrusted. Written
to a terminal as they are, an escape sequence can set the clipboard (OSC 52), retitle the window,
clear the screen or hide text; a right-to-left override can make a file name read as another.

``terminal_safe`` removes escape sequences (CSI, OSC, DCS, APC, PM, SOS and the short ``ESC x``
forms, 7-bit and 8-bit), C1 controls and every other control character except newline and tab,
and shows bidirectional controls as ``<U+202E>``. ``visible_controls`` shows every control,
bidirectional and invisible formatting character as ``<U+XXXX>`` (for file names and diffs, where
the person must see exactly what is there). Both are pure functions of ``str``.
"""

from __future__ import annotations

import re
import unicodedata

# Bidirectional controls (embeddings, overrides, isolates, marks): they change how neighbouring
# text reads, so they are shown, never applied.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Unicode categories shown by ``visible_controls``: controls, formatting characters (bidi,
# zero-width, soft hyphen, BOM), line and paragraph separators, lone surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

# ESC followed by a string introducer (P DCS, X SOS, ] OSC, ^ PM, _ APC) or its 8-bit form: the
# payload runs to BEL or ST (ESC \ or 0x9c); an unterminated one stops at the end of the line.
_STRING = r"(?:\x1b[PX\]^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
# CSI: ESC [ or 0x9b, parameter bytes, intermediate bytes, one final byte (if present).
_CSI = r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
# Any other escape: ESC, intermediate bytes, a final byte (ESC 7, ESC ( B, ESC c ...).
_ESCAPE = r"\x1b[ -/]*[0-~]?"
_SEQUENCE = re.compile(f"{_STRING}|{_CSI}|{_ESCAPE}")
# What is left to drop: C0 controls but tab and newline, DEL, C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _code(char: str) -> str:
    return f"<U+{ord(char):04X}>"


def terminal_safe(text: str) -> str:
    """``text`` with nothing a terminal would act on: escape sequences and control characters
    removed (newline and tab kept; a carriage return becomes a newline), bidirectional controls
    shown as ``<U+XXXX>``. Printable text, markup-looking brackets included, is unchanged."""
    if text.isprintable():
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SEQUENCE.sub("", text)
    text = _CONTROL.sub("", text)
    if not BIDI_CONTROLS.isdisjoint(text):
        text = "".join(_code(c) if c in BIDI_CONTROLS else c for c in text)
    return text


def visible_controls(text: str, keep: str = "") -> str:
    """``text`` with every control, formatting (bidirectional, zero-width ...) and line or
    paragraph separator character written as ``<U+XXXX>``, except those in ``keep``: what is
    shown is then exactly what is there."""
    if text.translate({ord(c): " " for c in keep}).isprintable():
        return text
    return "".join(_code(c) if c not in keep and _hidden(c) else c for c in text)


def _hidden(char: str) -> bool:
    return char in BIDI_CONTROLS or unicodedata.category(char) in _HIDDEN_CATEGORIES


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def json_terminal_safe(encoded: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL, C1 controls, line
    separators and bidirectional controls written as ``\\uXXXX`` escapes: the same JSON value,
    but nothing a terminal acts on. (``json.dumps`` already escapes C0 controls; the characters
    replaced here can only occur inside strings, where the escape means the same.)"""
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", encoded)
