"""The browser tool's pages and arguments: the page stack of a chat, the model's arguments read
strictly, and the small URL, content-type and citation helpers ``browser.py`` uses."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from harmony_tui.tools.base import ToolError, ToolInvocation
from harmony_tui.tools.html_text import (
    LINK_MARK,
)

if TYPE_CHECKING:
    pass

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("application/json", "application/xml", "application/javascript")
LINE_RANGE = re.compile(r"L(?P<start>\d+)(?:\s*-\s*L?(?P<end>\d+))?")
META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)

# Fields each method accepts (``top_n`` is an alias the reference browser also accepts).
METHOD_FIELDS: dict[str, tuple[str, ...]] = {
    "search": ("query", "topn", "top_n", "source"),
    "open": ("id", "cursor", "loc", "num_lines", "view_source", "source"),
    "find": ("pattern", "cursor"),
}
EXAMPLES = {
    "search": '{"query": "mlx gpt-oss"}',
    "open": '{"id": 3} or {"id": "https://example.org"}',
    "find": '{"pattern": "release date"}',
}


PageKind = Literal["web", "source", "search", "find"]


@dataclass(slots=True)
class Page:
    """Text the model can view: wrapped ``lines``, ``links[id] -> URL``; ``link_lines`` gives
    the line a link's target should open at (find results)."""

    url: str
    title: str
    lines: list[str]
    links: list[str] = field(default_factory=list)
    kind: PageKind = "web"
    link_lines: dict[int, int] = field(default_factory=dict)


class PageStack:
    """The pages one chat has seen; a page's index is its cursor."""

    def __init__(self) -> None:
        self.pages: list[Page] = []

    def push(self, page: Page) -> int:
        self.pages.append(page)
        return len(self.pages) - 1

    def get(self, cursor: int, method: str) -> Page:
        """The page at ``cursor`` (-1: the latest); ToolError naming the valid cursors."""
        if not self.pages:
            raise ToolError(f"browser.{method}: no page is open yet in this chat; call "
                            "browser.search or browser.open with a URL first")
        if cursor == -1:
            return self.pages[-1]
        if not 0 <= cursor < len(self.pages):
            raise ToolError(f"browser.{method}: there is no page with cursor {cursor}; valid "
                            f"cursors are 0-{len(self.pages) - 1} (or -1 for the latest)")
        return self.pages[cursor]

    def cached(self, url: str) -> Page | None:
        """The latest fetched page for ``url``, if any."""
        for page in reversed(self.pages):
            if page.kind == "web" and page.url == url:
                return page
        return None


def parse(call: ToolInvocation) -> tuple[str, dict[str, Any]]:
    """The method and its argument object; ToolError naming what is wrong."""
    method = call.method
    if method not in METHOD_FIELDS:
        raise ToolError(f"{call.recipient}: unknown method {method!r}; the browser has "
                        "browser.search, browser.open and browser.find")
    args = call.json_arguments()
    if not isinstance(args, dict):
        raise ToolError(f"browser.{method}: arguments must be a JSON object like "
                        f"{EXAMPLES[method]}, got {type(args).__name__}")
    unknown = sorted(set(args) - set(METHOD_FIELDS[method]))
    if unknown:
        raise ToolError(f"browser.{method}: unknown argument(s) {', '.join(unknown)}; expected "
                        f"{', '.join(name for name in METHOD_FIELDS[method] if name != 'top_n')}")
    return method, args


def string(args: dict[str, Any], name: str, method: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None else repr(value)
        raise ToolError(f"browser.{method}: `{name}` must be a non-empty string, got {got}")
    return value.strip()


def integer(args: dict[str, Any], name: str, default: int, method: str) -> int:
    value = args.get(name, default)
    number = as_int(value)
    if number is None:
        raise ToolError(f"browser.{method}: `{name}` must be an integer, got {value!r}")
    return number


def boolean(args: dict[str, Any], name: str, method: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise ToolError(f"browser.{method}: `{name}` must be true or false, got {value!r}")
    return value


def as_int(value: Any) -> int | None:
    """An int from an int, a whole float (JSON ``3.0``) or a numeric string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def link_id(target: Any) -> int | None:
    """The link number ``open``'s ``id`` names, or None when it is a URL string."""
    number = as_int(target)
    if number is not None:
        return number
    if isinstance(target, str):
        return None
    raise ToolError(f"browser.open: `id` must be a link number from the page or a URL "
                    f"string, got {target!r}")


def link_url(page: Page, link: int, cursor: int) -> str:
    if link >= len(page.links):
        valid = f"its links are 0-{len(page.links) - 1}" if page.links else "it has no links"
        raise ToolError(f"browser.open: page [{cursor}] has no link {link}; {valid}")
    return page.links[link]


# --- helpers ------------------------------------------------------------------------------------

def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def content_kind(media_type: str, head: bytes) -> Literal["html", "text"] | None:
    if media_type in HTML_TYPES:
        return "html"
    if media_type.startswith("text/") or media_type in TEXT_TYPES or media_type.endswith("+json"):
        return "text"
    if not media_type and b"\0" not in head:  # no content type: sniff
        return "html" if head.lstrip()[:1] == b"<" else "text"
    return None


def codec(charset: str | None, head: bytes, kind: str) -> str:
    """The declared (header or ``<meta charset>``) encoding if Python knows it, else UTF-8."""
    if not charset and kind == "html" and (match := META_CHARSET.search(head)):
        charset = match.group(1).decode("ascii", "replace")
    try:
        return codecs.lookup(charset).name if charset else "utf-8"
    except LookupError:
        return "utf-8"


def citation_target(page: Page, content: str) -> tuple[str, str]:
    """Title and URL a citation of ``page`` points to. A search results page has no URL of
    its own: its citation points to the first result on the cited lines."""
    if page.kind != "search":
        return page.title, page.url
    match = LINE_RANGE.fullmatch(content.strip())
    if not match:
        return "", ""
    start = int(match.group("start"))
    end = int(match.group("end") or start)
    for line in page.lines[start:end + 1]:
        if (link := LINK_MARK.search(line)) and int(link.group("id")) < len(page.links):
            return link.group("text"), page.links[int(link.group("id"))]
    return "", ""


def escape_md(text: str) -> str:
    return re.sub(r"([\[\]\\])", r"\\\1", text)


def escape_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
