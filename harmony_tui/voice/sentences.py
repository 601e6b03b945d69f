"""A streaming sentence chunker for spoken answers.

Feed the deltas of the final answer as they stream; ``feed`` returns every piece that is
complete: a sentence as soon as its end is certain (the punctuation followed by a space and a
word that does not continue it), a heading or list item at its line end, and a fenced code block
or a table only as a whole, so speech can start with the first sentence while the rest is still
being generated. ``flush`` returns what is left at the end of the answer. Pieces are Markdown;
``speakable.to_speakable`` turns each into text to speak.
"""

from __future__ import annotations

import re

FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ENDERS = ".!?…"
CLOSERS = "\"')]}*_»”’"
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "approx", "fig",
    "no", "cf", "al", "inc", "ltd", "mt", "dept", "est", "vol", "p", "pp", "ca", "a.m", "p.m",
    "u.s", "u.k", "ph.d",
})
_LAST_WORD = re.compile(r"([\w.]+)\.$")
_LIST_NUMBER = re.compile(r"^\s*\d+\.$")
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.$")


def _is_abbreviation(text: str) -> bool:
    """Whether the ``.`` ending ``text`` belongs to an abbreviation, an initial or a list
    number rather than ending a sentence."""
    stripped = text.rstrip(CLOSERS)
    if _LIST_NUMBER.match(stripped) or _INITIAL.search(stripped):
        return True
    match = _LAST_WORD.search(stripped)
    return bool(match) and match.group(1).lower() in ABBREVIATIONS


class SentenceChunker:
    """Streamed Markdown in, complete speakable pieces out (see the module docstring)."""

    def __init__(self, max_chars: int = 300) -> None:
        self.max_chars = max_chars
        self._buf = ""
        self._text = ""  # the sentence being built (its start is consumed from the buffer)
        self._line_start = True
        self._fence: str | None = None
        self._table = False
        self._block: list[str] = []

    def feed(self, delta: str) -> list[str]:
        """Add streamed text; returns the pieces completed by it."""
        self._buf += delta
        out: list[str] = []
        self._drain(out, final=False)
        return out

    def flush(self) -> list[str]:
        """The end of the answer: everything still held, as pieces."""
        out: list[str] = []
        self._drain(out, final=True)
        if self._block:
            self._emit(out, "".join(self._block) + self._buf)
            self._buf = ""
        self._text += self._buf
        self._buf = ""
        self._cut_long(out)
        self._emit(out, self._text)
        self.__init__(self.max_chars)  # type: ignore[misc]  # ready for the next answer
        return out

    @staticmethod
    def _emit(out: list[str], piece: str) -> None:
        if piece.strip():
            out.append(piece.strip())

    def _drain(self, out: list[str], final: bool) -> None:
        while True:
            if self._fence is not None or self._table:
                if not self._block_step(out, final):
                    return
            elif self._line_start and not self._text:
                if not self._line_step(out, final):
                    return
            elif not self._text_step(out, final):
                return

    def _block_step(self, out: list[str], final: bool) -> bool:
        """Inside a fenced code block or a table: collect whole lines."""
        if (self._table and self._buf and not self._buf.lstrip(" ").startswith("|")
                and (self._buf.strip(" ") or final)):  # the line after the table has begun
            self._emit(out, "".join(self._block))
            self._block, self._table = [], False
            return True
        newline = self._buf.find("\n")
        if newline < 0:
            return False
        line, self._buf = self._buf[:newline + 1], self._buf[newline + 1:]
        self._block.append(line)
        if self._fence is not None and len(self._block) > 1:
            stripped = line.strip()
            if stripped.startswith(self._fence) and not stripped.strip(self._fence[0]):
                self._emit(out, "".join(self._block))
                self._block, self._fence = [], None
        return True

    def _line_step(self, out: list[str], final: bool) -> bool:
        """At the start of a line: blank line, fence, table, heading or text."""
        stripped = self._buf.lstrip(" ")
        if stripped.startswith("\n"):
            self._buf = stripped[1:]
            return True
        if not stripped:
            return False
        first = stripped[0]
        if first in "`~" and len(stripped) < 3 and not final and stripped == first * len(stripped):
            return False  # maybe the start of a fence: wait for more
        if FENCE_OPEN.match(self._buf):
            self._fence = FENCE_OPEN.match(self._buf).group(1)  # type: ignore[union-attr]
            return True  # _block_step takes the opening line
        if first == "|":
            self._table = True
            return True
        if first == "#":
            newline = self._buf.find("\n")
            if newline < 0:
                return False
            self._emit(out, self._buf[:newline])
            self._buf = self._buf[newline + 1:]
            return True
        self._line_start = False
        return True

    def _text_step(self, out: list[str], final: bool) -> bool:
        """Inside a line of text: find the end of the sentence (or of the line)."""
        buf = self._buf
        i = 0
        while i < len(buf):
            ch = buf[i]
            if ch == "\n":
                self._emit(out, self._text + buf[:i])
                self._text, self._buf, self._line_start = "", buf[i + 1:], True
                return True
            if ch in ENDERS:
                j = i + 1
                while j < len(buf) and buf[j] in CLOSERS:
                    j += 1
                k = j
                while k < len(buf) and buf[k] in " \t":
                    k += 1
                if k == len(buf) or (j == len(buf)):
                    # Undecided until more text arrives; keep the rest for the next feed.
                    self._text += buf[:i]
                    self._buf = buf[i:]
                    self._cut_long(out)
                    return False
                if k > j and (buf[k] == "\n" or not buf[k].islower()) and not _is_abbreviation(
                        self._text + buf[:j]):
                    self._emit(out, self._text + buf[:j])
                    self._text, self._buf = "", buf[k:]
                    return True
                i = j
                continue
            i += 1
        self._text += buf
        self._buf = ""
        self._cut_long(out)
        return False

    def _cut_long(self, out: list[str]) -> None:
        """A very long sentence is spoken in parts, cut after a comma, semicolon or colon."""
        while len(self._text) > self.max_chars:
            cut = max(self._text.rfind(sep, 60, self.max_chars) for sep in (", ", "; ", ": "))
            if cut < 0:
                return
            self._emit(out, self._text[:cut + 1])
            self._text = self._text[cut + 2:]


def split_sentences(text: str) -> list[str]:
    """All pieces of a complete text (what streaming it would give)."""
    chunker = SentenceChunker()
    return chunker.feed(text) + chunker.flush()
