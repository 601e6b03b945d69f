"""The ``browser`` tool of GPT-OSS: ``browser.search``, ``browser.open`` and ``browser.find``.

Every page the model sees (a search result list, a fetched page, a list of find matches, or a
new view of an earlier page) is pushed on the chat's page stack and gets the next cursor
number. A response starts with ``[cursor] title (url)`` and shows numbered lines ``L12: ...``;
links appear as ``【3†text】`` and ``open(id=3)`` follows them. The model cites pages as
``【cursor†L3-L5】``; ``render_citations`` turns those into Markdown links for the person.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harmony_tui import __version__
from harmony_tui.tools.base import ApprovalRequest, ToolError, ToolInvocation, ToolResult
from harmony_tui.tools.bounded_decode import BoundedDecoder, DecodeError, UnsupportedEncoding
from harmony_tui.tools.browser_pages import (
    Page,
    PageStack,
    boolean,
    citation_target,
    codec,
    content_kind,
    escape_md,
    escape_url,
    integer,
    is_http_url,
    link_id,
    link_url,
    parse,
    string,
)
from harmony_tui.tools.html_text import (
    clean_text,
    domain_of,
    html_to_text,
    strip_links,
    wrap_line,
    wrap_text,
)
from harmony_tui.tools.net_guard import AllowList, BlockedAddressError, guarded_transport
from harmony_tui.tools.search_backends import (
    BackendKind,
    SearchBackend,
    SearchError,
    make_search_backend,
)

if TYPE_CHECKING:
    import httpx


USER_AGENT = f"harmony-tui/{__version__} (browser tool of a local LLM app)"
MAX_SEARCH_RESULTS = 20
MAX_VIEW_FACTOR = 10  # num_lines may ask for at most this many times lines_per_view
FIND_SHOWN_LINES = 4  # lines shown per find match; opening a match starts this far above it
MAX_FIND_RESULTS = 50
CITATION = re.compile(r"【(?P<cursor>\d+)†(?P<content>[^†】]+)(?:†[^†】]*)?】")

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


class BrowserSettings(BaseModel):
    """Settings of the browser tool (web search and page fetching)."""

    model_config = ConfigDict(extra="forbid")

    search_backend: BackendKind = Field(
        "none", description="web search service: none, searxng (a SearXNG instance with the "
        "json format enabled) or brave (Brave Search API)")
    search_url: str | None = Field(
        None, description="SearXNG: the instance URL (required); brave: the API endpoint "
        "(default https://api.search.brave.com/res/v1/web/search)")
    search_api_key: str | None = Field(
        None, description="API key of the search service (Brave: X-Subscription-Token)")
    search_api_key_env: str | None = Field(
        None, description="environment variable holding the API key, used when "
        "search_api_key is not set, e.g. BRAVE_API_KEY")
    timeout_s: float = Field(
        15.0, gt=0, le=300, description="seconds a search or page fetch may take in total")
    max_page_bytes: int = Field(
        2_000_000, ge=1024, description="read at most this many bytes of a page; longer "
        "pages are truncated (and say so)")
    max_redirects: int = Field(5, ge=0, le=30, description="redirects followed per fetch")
    lines_per_view: int = Field(
        50, ge=5, le=1000, description="lines shown when the model does not ask for num_lines "
        "(it may ask for up to ten times as many)")
    auto_approve: bool = Field(
        False, description="search and open pages without asking the person first")
    allow_hosts: list[str] = Field(
        default_factory=list, description="host names or IP addresses/ranges (e.g. "
        "localhost, 192.168.1.0/24) the browser may open although they are loopback, private "
        "or link-local; all other non-public addresses are refused, on every redirect too")

    @field_validator("allow_hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        AllowList.parse(value)  # ValueError names the malformed entry
        return value

    @field_validator("search_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not is_http_url(value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _searxng_needs_url(self) -> BrowserSettings:
        if self.search_backend == "searxng" and not self.search_url:
            raise ValueError("search_url is required when search_backend is 'searxng'")
        return self

    def api_key(self) -> str | None:
        """``search_api_key``, else the value of the variable named by ``search_api_key_env``."""
        if self.search_api_key:
            return self.search_api_key
        if self.search_api_key_env:
            return os.environ.get(self.search_api_key_env) or None
        return None



class BrowserTool:
    """GPT-OSS's browser: search with a configured backend, open pages, find text in them."""

    namespace = "browser"

    def __init__(self, settings: BrowserSettings | None = None) -> None:
        self.settings = settings or BrowserSettings()
        self._chats: dict[str, PageStack] = {}
        self._client: httpx.AsyncClient | None = None  # the configured search service
        self._page_client: httpx.AsyncClient | None = None  # pages: public addresses only

    # --- Tool protocol ------------------------------------------------------------------------

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        """Searches and fetches are network access; find and re-viewing a page are not."""
        if self.settings.auto_approve:
            return None
        try:
            method, args = parse(call)
            if method == "search":
                query = string(args, "query", method)
                if self.settings.search_backend == "none":
                    return None  # run() explains that search is not configured
                where = self.settings.search_url or self.settings.search_backend
                return ApprovalRequest("network", "Web search", f"{query}\n\nvia {where}")
            if method == "open":
                url = self._url_to_fetch(call, args)
                if is_http_url(url):  # other URLs are refused by run() without a fetch
                    return ApprovalRequest("network", "Open web page", url)
        except ToolError:
            return None  # run() reports the problem without touching the network
        return None

    async def run(self, call: ToolInvocation) -> ToolResult:
        try:
            method, args = parse(call)
            stack = self._stack(call.chat_id)
            if method == "search":
                page = await self._search(args)
                return self._show(stack, page, 0, -1)
            if method == "open":
                return await self._open(stack, args)
            return self._find(stack, args)
        except ToolError as err:
            return ToolResult(str(err), is_error=True)

    async def aclose(self) -> None:
        for name in ("_client", "_page_client"):
            client = getattr(self, name)
            if client is not None:
                setattr(self, name, None)
                await client.aclose()

    # --- public helpers -----------------------------------------------------------------------

    def pages(self, chat_id: str | None) -> list[Page]:
        """The pages of a chat, by cursor."""
        return list(self._chats.get(chat_id or "", PageStack()).pages)

    def forget_chat(self, chat_id: str | None) -> None:
        """Drop a chat's pages (when the chat is closed or cleared)."""
        self._chats.pop(chat_id or "", None)

    def render_citations(self, text: str, chat_id: str | None) -> str:
        """``【cursor†L3-L5】`` in ``text`` become Markdown links ``[title](url)`` to the cited
        page; citations of unknown cursors stay as they are."""
        stack = self._chats.get(chat_id or "")

        def replace(match: re.Match[str]) -> str:
            cursor = int(match.group("cursor"))
            if stack is None or cursor >= len(stack.pages):
                return match.group(0)
            title, url = citation_target(stack.pages[cursor], match.group("content"))
            if not url:
                return match.group(0)
            start = match.start()
            space = " " if start and not text[start - 1].isspace() and text[start - 1] not in "([" \
                else ""
            return f"{space}[{escape_md(title or url)}]({escape_url(url)})"

        return CITATION.sub(replace, text)

    # --- methods ------------------------------------------------------------------------------

    async def _search(self, args: dict[str, Any]) -> Page:
        query = string(args, "query", "search")
        topn = integer(args, "topn", integer(args, "top_n", 10, "search"), "search")
        topn = max(1, min(topn, MAX_SEARCH_RESULTS))
        backend = self._backend()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                hits = await backend.search(query, topn)
        except SearchError as err:
            raise ToolError(f"browser.search: {err}") from err
        except TimeoutError as err:
            raise ToolError(f"browser.search: {backend.name} did not answer within "
                            f"{self.settings.timeout_s:g} s") from err
        lines: list[str] = []
        for number, hit in enumerate(hits):
            domain = domain_of(hit.url)
            lines += wrap_line(f"# 【{number}†{hit.title}†{domain}】")
            if hit.snippet:
                lines += wrap_line(hit.snippet)
            lines.append("")
        lines = lines[:-1] or [f"No results for `{clean_text(query)}`."]
        return Page(url="", title=f"Search results for `{clean_text(query)}`", lines=lines,
                    links=[hit.url for hit in hits], kind="search")

    async def _open(self, stack: PageStack, args: dict[str, Any]) -> ToolResult:
        target = args.get("id", -1)
        cursor = integer(args, "cursor", -1, "open")
        loc = integer(args, "loc", -1, "open")
        num_lines = integer(args, "num_lines", -1, "open")
        view_source = boolean(args, "view_source", "open")
        link = link_id(target)
        if link is None:  # a URL
            page = await self._fetch(str(target).strip(), view_source)
            return self._show(stack, page, max(loc, 0), num_lines)
        current = stack.get(cursor, "open")
        if link >= 0:
            url = link_url(current, link, cursor if cursor >= 0 else len(stack.pages) - 1)
            page = None if view_source else stack.cached(url)
            if page is None:
                page = await self._fetch(url, view_source)
            if loc < 0 and link in current.link_lines:
                loc = max(current.link_lines[link] - FIND_SHOWN_LINES, 0)
        elif view_source:
            if current.kind not in ("web", "source"):
                raise ToolError(f"browser.open: view_source needs a web page, but cursor "
                                f"{cursor} is a {current.kind} page; pass a link id or URL")
            page = await self._fetch(current.url, view_source=True)
        else:
            page = current  # a new view (scroll) of a page already open
        return self._show(stack, page, max(loc, 0), num_lines)

    def _find(self, stack: PageStack, args: dict[str, Any]) -> ToolResult:
        pattern = string(args, "pattern", "find")
        cursor = integer(args, "cursor", -1, "find")
        page = stack.get(cursor, "find")
        if page.kind in ("search", "find"):
            raise ToolError(f"browser.find: cannot search within a {page.kind} results page; "
                            "open one of its links first")
        needle = pattern.lower()
        plain = [strip_links(line) for line in page.lines]
        lines: list[str] = []
        link_lines: dict[int, int] = {}
        index = 0
        while index < len(plain) and len(link_lines) < MAX_FIND_RESULTS:
            if needle not in plain[index].lower():
                index += 1
                continue
            number = len(link_lines)
            link_lines[number] = index
            lines.append(f"# 【{number}†match at L{index}】")
            lines += plain[index:index + FIND_SHOWN_LINES]
            lines.append("")
            index += FIND_SHOWN_LINES
        lines = lines[:-1] or [f"No `find` results for pattern: `{clean_text(pattern)}`"]
        found = Page(url=page.url, title=f"Find results for `{clean_text(pattern)}` in "
                     f"`{page.title}`", lines=lines, links=[page.url] * len(link_lines),
                     kind="find", link_lines=link_lines)
        return self._show(stack, found, 0, -1)

    def _show(self, stack: PageStack, page: Page, loc: int, num_lines: int) -> ToolResult:
        """Push ``page`` and render lines ``loc``.. of it (``num_lines`` <= 0: the default)."""
        total = len(page.lines)
        if loc >= total:
            raise ToolError(f"browser.open: loc {loc} is past the end of the page; its last "
                            f"line is L{total - 1}")
        default = self.settings.lines_per_view
        count = min(num_lines, MAX_VIEW_FACTOR * default) if num_lines > 0 else default
        end = min(loc + count, total)
        cursor = stack.push(page)
        header = f"[{cursor}] {page.title}" + (f" ({unquote(page.url)})" if page.url else "")
        body = "\n".join(f"L{number}: {page.lines[number]}" for number in range(loc, end))
        text = f"{header}\n**viewing lines [{loc} - {end - 1}] of {total - 1}**\n\n{body}"
        return ToolResult(text, details={"cursor": cursor, "url": page.url, "title": page.title,
                                         "kind": page.kind})

    # --- network ------------------------------------------------------------------------------

    def _url_to_fetch(self, call: ToolInvocation, args: dict[str, Any]) -> str:
        """The URL an open call would fetch ('' when it shows a page already in memory)."""
        target = args.get("id", -1)
        link = link_id(target)
        if link is None:
            return str(target).strip()
        stack = self._chats.get(call.chat_id or "")
        if stack is None:
            return ""
        cursor = integer(args, "cursor", -1, "open")
        current = stack.get(cursor, "open")
        view_source = boolean(args, "view_source", "open")
        if link < 0:
            return current.url if view_source else ""
        url = link_url(current, link, cursor)
        return url if view_source or stack.cached(url) is None else ""

    def _http(self) -> httpx.AsyncClient:
        """The client for the search service the user configured (it may be on localhost)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_s),
                follow_redirects=True,
                max_redirects=self.settings.max_redirects,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    def _pages(self) -> httpx.AsyncClient:
        """The client for pages the model asks for: connects only to checked addresses, does
        not follow redirects by itself (``_send`` does, without reading their bodies), and
        never decodes a body for us (``BoundedDecoder`` does, within the page budget)."""
        if self._page_client is None:
            import httpx

            allow = AllowList.parse(self.settings.allow_hosts)
            self._page_client = httpx.AsyncClient(
                transport=guarded_transport(allow, retries=0),
                timeout=httpx.Timeout(self.settings.timeout_s),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            )
        return self._page_client

    def _backend(self) -> SearchBackend:
        settings = self.settings
        if settings.search_backend == "none":
            raise ToolError("browser.search: web search is not configured (browser "
                            "search_backend is 'none'); open a URL with browser.open instead")
        try:
            backend = make_search_backend(settings.search_backend, settings.search_url,
                                          settings.api_key(), self._http())
        except SearchError as err:
            raise ToolError(f"browser.search: {err}") from err
        assert backend is not None
        return backend

    async def _fetch(self, url: str, view_source: bool) -> Page:
        """Fetch ``url`` as a page; ToolError for refused URLs, HTTP errors and timeouts."""
        import httpx

        if not is_http_url(url):
            raise ToolError(f"browser.open: can only open http:// and https:// URLs, not "
                            f"{url!r}; pass a full URL or a link id (number)")
        settings = self.settings
        try:
            async with asyncio.timeout(settings.timeout_s):
                return await self._download(url, view_source)
        except TimeoutError as err:
            raise ToolError(f"browser.open: {url} did not answer within "
                            f"{settings.timeout_s:g} s") from err
        except BlockedAddressError as err:
            raise ToolError(f"browser.open: refused: {err}") from err
        except (UnsupportedEncoding, DecodeError) as err:
            raise ToolError(f"browser.open: {url}: {err}") from err
        except httpx.TooManyRedirects as err:
            raise ToolError(f"browser.open: {url} redirected more than "
                            f"{settings.max_redirects} times") from err
        except httpx.UnsupportedProtocol as err:
            raise ToolError(f"browser.open: {url} redirected to a URL that is not http(s)") \
                from err
        except httpx.TimeoutException as err:
            raise ToolError(f"browser.open: {url} did not answer within "
                            f"{settings.timeout_s:g} s") from err
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as err:
            raise ToolError(f"browser.open: could not fetch {url}: "
                            f"{err or type(err).__name__}") from err

    async def _send(self, url: str) -> httpx.Response:
        """GET ``url`` as an open stream, following redirects without reading their bodies."""
        import httpx

        client = self._pages()
        request = client.build_request("GET", url)
        for _ in range(self.settings.max_redirects + 1):
            response = await client.send(request, stream=True)
            if response.next_request is None:
                return response
            request = response.next_request
            await response.aclose()
        raise httpx.TooManyRedirects("too many redirects", request=request)

    async def _download(self, url: str, view_source: bool) -> Page:
        cap = self.settings.max_page_bytes
        response = await self._send(url)
        try:
            final_url = str(response.url)
            if response.status_code >= 400:
                raise ToolError(f"browser.open: {final_url} answered HTTP "
                                f"{response.status_code} {response.reason_phrase}")
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            decoder = BoundedDecoder(response.headers.get("content-encoding"), cap)
            async for chunk in response.aiter_raw():
                decoder.feed(chunk)
                if decoder.truncated:
                    break
            body, truncated = decoder.body, decoder.truncated
            charset = response.charset_encoding
        finally:
            await response.aclose()
        kind = content_kind(media_type, bytes(body[:512]))
        if kind is None:
            described = media_type or "binary data without a content type"
            raise ToolError(f"browser.open: {final_url} is {described}, which the browser "
                            "cannot show (it reads HTML and text pages)")
        text = bytes(body).decode(codec(charset, bytes(body[:2048]), kind), errors="replace")
        if view_source:
            page = Page(final_url, f"view-source:{final_url}", wrap_text(text), kind="source")
        elif kind == "html":
            # linear in the page size, but off the event loop so the timeout still applies
            converted = await asyncio.to_thread(html_to_text, text, final_url)
            page = Page(final_url, converted.title or final_url, converted.lines,
                        converted.links)
        else:
            name = unquote(urlsplit(final_url).path.rsplit("/", 1)[-1]) or final_url
            page = Page(final_url, clean_text(name), wrap_text(text))
        if not page.lines:
            page.lines = ["(this page has no text)"]
        if truncated:
            page.lines.append(f"[page truncated: only the first {cap} bytes were read]")
        return page

    def _stack(self, chat_id: str | None) -> PageStack:
        return self._chats.setdefault(chat_id or "", PageStack())


# --- arguments ----------------------------------------------------------------------------------

