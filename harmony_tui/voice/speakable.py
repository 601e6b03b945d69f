"""Markdown -> text worth speaking.

Code blocks are announced ("Here is a python code block."), never read symbol by symbol;
tables are summarised (rows and column names); links become their text; bare URLs become their
host name; emphasis, inline code marks, headings' ``#``, bullets and quote marks disappear.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`{]*)[^\n]*\n?(.*?)(?:^ {0,3}\1[ \t]*$|\Z)",
                    re.S | re.M)
_TABLE_LINE = re.compile(r"^\s*\|.*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_RULE = re.compile(r"^\s*([-*_])\s*(?:\1\s*){2,}$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+)>")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\]]*[^\s<>()\].,;:!?'\"]|\bwww\.[^\s<>()\]]*"
                  r"[^\s<>()\].,;:!?'\"]")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS_STAR = re.compile(r"\*(?=\S)([^*\n]+?)(?<=\S)\*")
_EMPHASIS_UNDER = re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)")
_STRIKE = re.compile(r"~~(.+?)~~")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")
_SPACES = re.compile(r"[ \t]+")

LANGUAGE_NAMES = {
    "py": "Python", "python": "Python", "python3": "Python", "js": "JavaScript",
    "javascript": "JavaScript", "ts": "TypeScript", "typescript": "TypeScript",
    "sh": "shell", "bash": "shell", "zsh": "shell", "shell": "shell", "console": "shell",
    "cpp": "C++", "c++": "C++", "cs": "C#", "csharp": "C#", "rb": "Ruby", "rs": "Rust",
    "rust": "Rust", "go": "Go", "yml": "YAML", "yaml": "YAML", "json": "JSON", "sql": "SQL",
    "html": "HTML", "css": "CSS", "md": "Markdown", "markdown": "Markdown", "text": "text",
    "txt": "text", "diff": "diff", "java": "Java", "kotlin": "Kotlin", "swift": "Swift",
}


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeio" or word in ("HTML", "SQL") else "a"


def announce_code(language: str) -> str:
    """The sentence spoken instead of a code block."""
    if not language:
        return "Here is a code block."
    name = LANGUAGE_NAMES.get(language.lower(), language)
    return f"Here is {_article(name)} {name} code block."


def short_url(url: str) -> str:
    """A URL as it would be said: its host, without ``www.``."""
    host = urlsplit(url if "://" in url else "http://" + url).hostname or url
    return host.removeprefix("www.")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def describe_table(lines: list[str]) -> str:
    """A spoken summary of a Markdown table."""
    rows = [line for line in lines if not _TABLE_SEPARATOR.match(line)]
    has_header = len(lines) > 1 and bool(_TABLE_SEPARATOR.match(lines[1]))
    header = _cells(rows[0]) if has_header and rows else []
    body = rows[1:] if has_header else rows
    count = len(body)
    what = f"A table with {count} row{'s' if count != 1 else ''}"
    names = [inline(name) for name in header if name]
    if names:
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        what += f" and columns {listed}"
    return what + "."


def inline(text: str) -> str:
    """Inline Markdown of one line -> plain words."""
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _REF_LINK.sub(lambda m: m.group(1), text)
    text = _AUTOLINK.sub(lambda m: short_url(m.group(1)), text)
    text = _URL.sub(lambda m: short_url(m.group(0)), text)
    text = _INLINE_CODE.sub(lambda m: m.group(2).strip(), text)
    text = _HTML_TAG.sub("", text)
    for pattern in (_STRONG, _STRIKE):
        text = pattern.sub(lambda m: m.group(m.lastindex or 1), text)
    text = _EMPHASIS_STAR.sub(lambda m: m.group(1), text)
    text = _EMPHASIS_UNDER.sub(lambda m: m.group(1), text)
    text = text.replace("**", "").replace("`", "")
    return _SPACES.sub(" ", text).strip()


def _end_sentence(text: str) -> str:
    return text if not text or text[-1] in ".!?…:;," else text + "."


def to_speakable(markdown: str) -> str:
    """Text to speak for a piece of Markdown (a sentence, a block, or a whole answer)."""
    codes: list[str] = []

    def code(match: re.Match[str]) -> str:
        codes.append(announce_code(match.group(2)))
        return f"\n\x00{len(codes) - 1}\x00\n"

    text = _FENCE.sub(code, markdown)
    spoken: list[str] = []
    table: list[str] = []
    for raw in [*text.split("\n"), ""]:
        if _TABLE_LINE.match(raw):
            table.append(raw)
            continue
        if table:
            spoken.append(describe_table(table))
            table = []
        line = raw.strip()
        if not line or _RULE.match(line):
            continue
        if line.startswith("\x00") and line.endswith("\x00"):
            spoken.append(codes[int(line.strip("\x00"))])
            continue
        heading = _HEADING.match(line)
        if heading:
            spoken.append(_end_sentence(inline(heading.group(1))))
            continue
        line = _QUOTE.sub("", line)
        bullet = _BULLET.match(line)
        words = inline(line[bullet.end():] if bullet else line)
        if words:
            spoken.append(_end_sentence(words) if bullet else words)
    return _SPACES.sub(" ", " ".join(spoken)).strip()
