"""HTML to the browser's text: wrapped lines with numbered links ``【3†link text】``.

Uses only the standard library ``html.parser``. Scripts, styles, navigation and other
non-content elements are dropped; headings become ``# ...``, list items ``* ...``, table rows
``a | b``; link targets are resolved against the page URL and numbered in order of first
appearance (the same target keeps one number). A link to another site shows its domain:
``【4†text†example.org】``.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

WRAP_WIDTH = 80
HARD_WIDTH_FACTOR = 4  # a word longer than this many line widths is cut into line-wide pieces
MAX_LIST_INDENT = 8  # deeper list items are indented no further (keeps the text linear in size)

# Elements whose content is never page text.
DROPPED = frozenset({
    "script", "style", "noscript", "template", "svg", "math", "nav", "iframe", "object",
    "canvas", "select", "button",
})
# Elements that start and end a line.
BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "li", "main", "ol", "p", "pre", "section", "summary", "table",
    "tbody", "tfoot", "thead", "tr", "ul",
})
# Blocks set apart from their neighbours by a blank line.
SPACED = frozenset({
    "blockquote", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p", "pre", "table",
    "ul",
})
HEADINGS = {f"h{level}": "#" * level + " " for level in range(1, 7)}

LINK_MARK = re.compile(r"【(?P<id>\d+)†(?P<text>[^†】]*)(?:†(?P<domain>[^†】]*))?】")
_WHITESPACE = re.compile(r"\s+")
_MARK_SPACE = "\ue000"  # stands for a space inside a link mark while wrapping
_SPECIAL = str.maketrans({"【": "〖", "】": "〗", "\u200b": None, _MARK_SPACE: " "})


@dataclass(frozen=True, slots=True)
class PageText:
    """A page as the model reads it: ``lines`` (already wrapped) and ``links[id] -> URL``."""

    title: str
    lines: list[str]
    links: list[str]


def clean_text(text: str) -> str:
    """``text`` with the characters that delimit link marks and citations replaced."""
    return text.translate(_SPECIAL)


def strip_links(line: str) -> str:
    """``line`` with each ``【3†text(†domain)】`` replaced by its text."""
    return LINK_MARK.sub(lambda match: match.group("text"), line)


def domain_of(url: str) -> str:
    """The host name of ``url`` ('' when it has none)."""
    return urlsplit(url).hostname or ""


def wrap_line(line: str, width: int = WRAP_WIDTH) -> list[str]:
    """``line`` wrapped at ``width`` without breaking inside a link mark."""
    if len(line) <= width:
        return [line]
    protected = LINK_MARK.sub(lambda match: match.group(0).replace(" ", _MARK_SPACE), line)
    pieces = textwrap.wrap(protected, width=width, break_long_words=False,
                           break_on_hyphens=False)
    lines: list[str] = []
    for piece in pieces:
        if len(piece) > HARD_WIDTH_FACTOR * width and "【" not in piece:  # minified code, data
            lines += [piece[start:start + width] for start in range(0, len(piece), width)]
        else:
            lines.append(piece.replace(_MARK_SPACE, " "))
    return lines or [""]


def wrap_text(text: str, width: int = WRAP_WIDTH) -> list[str]:
    """Plain text as wrapped lines (its own line breaks kept)."""
    text = clean_text(text.replace("\r\n", "\n").replace("\r", "\n")).rstrip()
    return [piece for line in text.split("\n") for piece in wrap_line(line.rstrip(), width)]


def html_to_text(html: str, base_url: str, width: int = WRAP_WIDTH) -> PageText:
    """Convert an HTML document fetched from ``base_url``."""
    builder = _TextBuilder(base_url)
    builder.feed(html)
    builder.close()
    lines = [piece for line in builder.finish() for piece in wrap_line(line, width)]
    return PageText(title=builder.title(), lines=lines, links=builder.links)


def inline_text(fragment: str) -> str:
    """The text of a small HTML fragment (a search snippet with ``<strong>`` tags) on one line."""
    builder = _TextBuilder("")
    builder.feed(fragment)
    builder.close()
    return " ".join(line for line in builder.finish() if line)


@dataclass(slots=True)
class _OpenLink:
    url: str
    parts: list[str] = field(default_factory=list)


class _TextBuilder(HTMLParser):
    """Collects lines of text and numbered links while parsing."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.base_domain = domain_of(base_url)
        self.links: list[str] = []
        self._link_ids: dict[str, int] = {}
        self._lines: list[str] = []
        self._parts: list[str] = []
        self._parts_have_text = False  # whether ``_parts`` holds more than white space
        self._prefix = ""
        self._dropping: list[str] = []  # stack of open dropped elements
        self._dropping_open: dict[str, int] = {}  # how many of each tag the stack holds
        self._title_parts: list[str] | None = None
        self._title = ""
        self._first_heading = ""
        self._pre_depth = 0
        self._list_depth = 0
        self._link: _OpenLink | None = None

    # --- parser callbacks -------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "title" and not self._title and not self._dropping:
            self._title_parts = []
            return
        if self._dropping or tag in DROPPED or _hidden(attributes):
            if tag not in VOID:
                self._dropping.append(tag)
                self._dropping_open[tag] = self._dropping_open.get(tag, 0) + 1
            return
        if tag == "a":
            self._start_link(attributes.get("href"))
        elif tag == "img":
            self._image(attributes.get("alt"))
        elif tag == "br":
            self._break(spaced=False)
        elif tag in ("td", "th"):
            self._cell()
        elif tag in BLOCKS:
            self._block_start(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title_parts is not None:
            self._title = _collapse("".join(self._title_parts))
            self._title_parts = None
            return
        if self._dropping:
            if self._dropping_open.get(tag):  # a dict look-up: deep nesting stays linear
                while True:
                    closed = self._dropping.pop()
                    self._dropping_open[closed] -= 1
                    if closed == tag:
                        break
            return
        if tag == "a":
            self._end_link()
        elif tag in BLOCKS:
            self._block_end(tag)

    def handle_data(self, data: str) -> None:
        data = clean_text(data)
        if self._title_parts is not None:
            self._title_parts.append(data)
        elif self._dropping:
            return
        elif self._link is not None:
            self._link.parts.append(data)
        elif self._pre_depth:
            first, *rest = data.split("\n")
            self._add(first)
            for line in rest:
                self._flush()
                self._add(line)
        else:
            self._add(data)

    # --- structure --------------------------------------------------------------------------

    def _block_start(self, tag: str) -> None:
        if self._link is not None:  # a block inside a link stays part of the link text
            self._link.parts.append(" ")
            return
        self._break(spaced=tag in SPACED and not (tag in ("ul", "ol") and self._list_depth))
        if tag in ("ul", "ol"):
            self._list_depth += 1
        elif tag == "pre":
            self._pre_depth += 1
        elif tag == "li":
            self._prefix = "  " * min(max(self._list_depth - 1, 0), MAX_LIST_INDENT) + "* "
        elif tag in HEADINGS:
            self._prefix = HEADINGS[tag]

    def _block_end(self, tag: str) -> None:
        if self._link is not None:
            self._link.parts.append(" ")
            return
        self._flush()
        if tag in ("ul", "ol"):
            self._list_depth = max(self._list_depth - 1, 0)
        elif tag == "pre":
            self._pre_depth = max(self._pre_depth - 1, 0)
        self._break(spaced=tag in SPACED and not (tag in ("ul", "ol") and self._list_depth))

    def _cell(self) -> None:
        if self._link is None and self._parts_have_text:  # a flag: wide rows stay linear
            self._add(" | ")

    def _image(self, alt: str | None) -> None:
        alt = _collapse(clean_text(alt or ""))
        if not alt:
            return
        if self._link is not None:
            self._link.parts.append(f" {alt} ")
        else:
            self._add(f" [image: {alt}] ")

    def _start_link(self, href: str | None) -> None:
        if self._link is not None:
            self._end_link()
        target = self._resolve(href)
        if target:
            self._link = _OpenLink(target)

    def _end_link(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        text = _collapse("".join(link.parts)).replace("†", "‡")
        if not text:
            return
        link_id = self._link_ids.get(link.url)
        if link_id is None:
            link_id = self._link_ids[link.url] = len(self.links)
            self.links.append(link.url)
        domain = domain_of(link.url)
        suffix = f"†{domain}" if domain and domain != self.base_domain else ""
        self._add(f"【{link_id}†{text}{suffix}】")

    def _resolve(self, href: str | None) -> str:
        """The absolute http(s) URL a link points to, '' for fragments, mailto: and the like."""
        href = (href or "").strip()
        if not href or href.startswith("#"):
            return ""
        try:
            target = urldefrag(urljoin(self.base_url, href)).url
        except ValueError:
            return ""
        return target if urlsplit(target).scheme in ("http", "https") else ""

    # --- lines ------------------------------------------------------------------------------

    def _add(self, part: str) -> None:
        self._parts.append(part)
        if not self._parts_have_text and not part.isspace() and part:
            self._parts_have_text = True

    def _break(self, spaced: bool) -> None:
        self._flush()
        if spaced:
            self._lines.append("")

    def _flush(self) -> None:
        raw = "".join(self._parts)
        self._parts = []
        self._parts_have_text = False
        text = raw.rstrip() if self._pre_depth else _collapse(raw)
        if not text:
            return
        if self._prefix == "# " and not self._first_heading:
            self._first_heading = text
        self._lines.append(self._prefix + text)
        self._prefix = ""

    def finish(self) -> list[str]:
        """The lines, with runs of blank lines collapsed and none at either end."""
        self._end_link()
        self._flush()
        lines: list[str] = []
        for line in self._lines:
            if line or (lines and lines[-1]):
                lines.append(line)
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def title(self) -> str:
        return self._title or self._first_heading


VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
})


def _hidden(attributes: dict[str, str | None]) -> bool:
    return "hidden" in attributes or attributes.get("aria-hidden") == "true"


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()
