"""The browser tool against a real HTTP server on 127.0.0.1 (pages, redirects, a search API)."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from harmony_tui.tools.base import Tool, ToolInvocation, ToolResult
from harmony_tui.tools.browser import USER_AGENT, BrowserSettings, BrowserTool
from harmony_tui.tools.html_text import html_to_text, strip_links, wrap_line
from harmony_tui.tools.search_backends import SearchHit, SearxngBackend

INDEX = """<!doctype html><html><head><title>Index &amp; Home</title>
<style>body { color: red }</style><script>var hidden = "script text";</script></head>
<body><nav><a href="/nav-only">Navigation noise</a></nav>
<h1>Welcome</h1>
<p>Read the <a href="long.html">long page</a> or the <a href="/plain.txt">plain notes</a>.</p>
<ul><li>First item</li>
<li>Second item with <a href="https://elsewhere.test/a#x">a far link</a></li></ul>
<p>Jump to <a href="#top">the top</a>, write <a href="mailto:a@b.c">mail</a>.</p>
</body></html>"""

LONG = ("<html><head><title>Long page</title></head><body>"
        + "".join(f"<p>Paragraph number {n}{' with the needle' if n in (30, 70) else ''}</p>"
                  for n in range(100))
        + '<p><a href="/index.html">back home</a></p></body></html>')

PLAIN = "Plain notes\nsecond line of notes\n"


class Handler(BaseHTTPRequestHandler):
    """Routes of the test site. ``server.stall`` holds /stall until the test module ends."""

    server: SiteServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def send(self, status: int, body: bytes, content_type: str,
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.server.hits.append(url.path)
        self.server.user_agents.append(self.headers.get("User-Agent", ""))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        html = "text/html; charset=utf-8"
        if url.path in ("/", "/index.html"):
            self.send(200, INDEX.encode(), html)
        elif url.path == "/long.html":
            self.send(200, LONG.encode(), html)
        elif url.path == "/plain.txt":
            self.send(200, PLAIN.encode(), "text/plain; charset=utf-8")
        elif url.path == "/huge.html":
            self.send(200, b"<p>" + b"x" * 200_000 + b"</p>", html)
        elif url.path == "/redirect":
            self.send(302, b"", html, {"Location": "/long.html"})
        elif url.path == "/loop":
            self.send(302, b"", html, {"Location": "/loop"})
        elif url.path == "/binary":
            self.send(200, b"\x00\x01\x02", "application/octet-stream")
        elif url.path == "/missing":
            self.send(404, b"gone", "text/plain")
        elif url.path == "/stall":
            self.server.stall.wait()
        elif url.path == "/search":
            if query.get("format") != ["json"]:
                self.send(403, b"json format disabled", "text/plain")
                return
            results = [
                {"title": "The index", "url": f"{base}/index.html",
                 "content": f"Search result for {query['q'][0]}"},
                {"title": "Long 【page】", "url": f"{base}/long.html", "content": "Many lines"},
                {"title": "Not http", "url": "ftp://example.test/x", "content": "skipped"},
            ]
            self.send(200, json.dumps({"results": results}).encode(), "application/json")
        elif url.path == "/brave/search":
            if self.headers.get("X-Subscription-Token") != "brave-secret":
                self.send(401, b"{}", "application/json")
                return
            count = int(query["count"][0])
            results = [{"title": f"Brave <b>hit</b> {n}", "url": f"{base}/plain.txt?n={n}",
                        "description": "with <strong>markup</strong>"} for n in range(count)]
            self.send(200, json.dumps({"web": {"results": results}}).encode(),
                      "application/json")
        else:
            self.send(404, b"not found", "text/plain")


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.stall = threading.Event()
        self.hits: list[str] = []
        self.user_agents: list[str] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a stalled request's client is gone when it is released


@pytest.fixture(scope="module")
def server() -> Iterator[SiteServer]:
    httpd = SiteServer()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.stall.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def base(server: SiteServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
async def browser(base: str) -> AsyncIterator[BrowserTool]:
    tool = BrowserTool(BrowserSettings(search_backend="searxng", search_url=base,
                                       timeout_s=5, max_page_bytes=50_000, lines_per_view=20,
                                       allow_hosts=["127.0.0.1"]))
    yield tool
    await tool.aclose()


def call(method: str, arguments: object | str = "", chat_id: str | None = "chat") -> ToolInvocation:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolInvocation(f"browser.{method}", text, call_id="c1", chat_id=chat_id)


async def ok(tool: BrowserTool, method: str, arguments: object, chat_id: str = "chat") -> str:
    result = await tool.run(call(method, arguments, chat_id))
    assert not result.is_error, result.text
    return result.text


async def error(tool: BrowserTool, method: str, arguments: object | str) -> str:
    result = await tool.run(call(method, arguments))
    assert result.is_error, result.text
    assert "\n" not in result.text
    return result.text


def shown_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("L")]


# --- html_text --------------------------------------------------------------------------------

def test_html_to_text_keeps_content_and_numbers_links() -> None:
    page = html_to_text(INDEX, "http://site.test/dir/index.html")
    assert page.title == "Index & Home"
    assert page.links == ["http://site.test/dir/long.html", "http://site.test/plain.txt",
                          "https://elsewhere.test/a"]
    assert page.lines == [
        "# Welcome",
        "",
        "Read the 【0†long page】 or the 【1†plain notes】.",
        "",
        "* First item",
        "* Second item with 【2†a far link†elsewhere.test】",
        "",
        "Jump to the top, write mail.",
    ]
    text = "\n".join(page.lines)
    assert "script" not in text and "color" not in text and "Navigation" not in text


def test_html_to_text_tables_pre_nested_lists_and_special_brackets() -> None:
    html = ("<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>"
            "<pre>def f():\n    return 【1】</pre><ul><li>outer<ul><li>inner</li></ul></li></ul>"
            "<div hidden>secret</div><p><a href='/x'><div>card</div> <img alt='logo'></a></p>")
    page = html_to_text(html, "http://site.test/")
    assert page.lines == ["A | B", "1 | 2", "", "def f():", "    return 〖1〗", "",
                          "* outer", "  * inner", "", "【0†card logo】"]
    assert page.title == ""


def test_wrapping_never_splits_a_link_mark() -> None:
    line = "word " * 12 + "【7†a link text with many words in it】 tail"
    pieces = wrap_line(line, width=40)
    assert all(len(piece) <= 40 or "【" in piece for piece in pieces)
    assert any(piece.endswith("【7†a link text with many words in it】") for piece in pieces)
    assert strip_links(" ".join(pieces)) == strip_links(line).strip()


# --- settings ---------------------------------------------------------------------------------

def test_settings_validate_and_resolve_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="search_url is required"):
        BrowserSettings(search_backend="searxng")
    with pytest.raises(ValidationError, match="extra"):
        BrowserSettings.model_validate({"search_backend": "none", "colour": "red"})
    with pytest.raises(ValidationError, match="http:// or https://"):
        BrowserSettings(search_url="file:///etc")
    monkeypatch.setenv("HARMONY_TEST_BRAVE_KEY", "from-env")
    settings = BrowserSettings(search_backend="brave", search_api_key_env="HARMONY_TEST_BRAVE_KEY")
    assert settings.api_key() == "from-env"
    assert BrowserSettings(search_api_key="direct",
                           search_api_key_env="HARMONY_TEST_BRAVE_KEY").api_key() == "direct"
    assert all(f.description for f in BrowserSettings.model_fields.values())


# --- the tool ---------------------------------------------------------------------------------

async def test_search_open_follow_link_and_find(browser: BrowserTool, base: str,
                                                server: SiteServer) -> None:
    assert isinstance(browser, Tool)
    text = await ok(browser, "search", {"query": "welcome", "topn": 5})
    assert text.startswith("[0] Search results for `welcome`\n")
    assert "L0: # 【0†The index†127.0.0.1】" in text
    assert "Search result for welcome" in text and "〖page〗" in text and "ftp:" not in text

    text = await ok(browser, "open", {"id": 0})
    assert text.startswith(f"[1] Index & Home ({base}/index.html)\n**viewing lines [0 - 7] of 7**")
    assert "L2: Read the 【0†long page】 or the 【1†plain notes】." in text
    assert server.user_agents[-1] == USER_AGENT and "harmony-tui" in USER_AGENT

    text = await ok(browser, "open", {"id": 0})  # link 0 of the current page: long.html
    assert text.startswith(f"[2] Long page ({base}/long.html)\n")
    assert len(shown_lines(text)) == 20  # lines_per_view

    text = await ok(browser, "find", {"pattern": "NEEDLE"})
    assert text.startswith(f"[3] Find results for `NEEDLE` in `Long page` ({base}/long.html)")
    assert "L0: # 【0†match at L60】" in text and "L1: Paragraph number 30 with the needle" in text
    assert "# 【1†match at L140】" in text

    fetches = len(server.hits)
    text = await ok(browser, "open", {"id": 1})  # match 1 opens the cached page near L140
    assert len(server.hits) == fetches
    assert text.startswith(f"[4] Long page ({base}/long.html)\n**viewing lines [136 - 155]")
    assert "L140: Paragraph number 70 with the needle" in text

    text = await ok(browser, "find", {"pattern": "back home", "cursor": 1})
    assert "No `find` results" in text  # cursor 1 is the index page
    assert [page.kind for page in browser.pages("chat")] == [
        "search", "web", "web", "find", "web", "find"]


async def test_windows_with_loc_and_num_lines(browser: BrowserTool, base: str) -> None:
    text = await ok(browser, "open", {"id": f"{base}/long.html", "loc": 10, "num_lines": 5})
    assert "**viewing lines [10 - 14] of 200**" in text
    assert [line.split(":")[0] for line in shown_lines(text)] == ["L10", "L11", "L12", "L13", "L14"]

    text = await ok(browser, "open", {"loc": 195})  # scroll the current page: no fetch
    assert text.startswith("[1] Long page") and "**viewing lines [195 - 200] of 200**" in text
    assert "L200: 【0†back home】" in text

    text = await ok(browser, "open", {"cursor": 0, "loc": 2.0, "num_lines": "3"})
    assert "**viewing lines [2 - 4] of 200**" in text

    message = await error(browser, "open", {"loc": 201})
    assert message == "browser.open: loc 201 is past the end of the page; its last line is L200"
    assert len(browser.pages("chat")) == 3  # a failed view is not pushed

    text = await ok(browser, "open", {"view_source": True, "num_lines": 1})
    assert text.startswith(f"[3] view-source:{base}/long.html ({base}/long.html)")
    assert "L0: <html><head><title>Long page</title>" in text


async def test_plain_text_redirects_truncation_and_refusals(browser: BrowserTool,
                                                            base: str) -> None:
    text = await ok(browser, "open", {"id": f"{base}/plain.txt"})
    assert text.startswith(f"[0] plain.txt ({base}/plain.txt)")
    assert "L0: Plain notes\nL1: second line of notes" in text

    text = await ok(browser, "open", {"id": f"{base}/redirect"})
    assert text.startswith(f"[1] Long page ({base}/long.html)")

    text = await ok(browser, "open", {"id": f"{base}/huge.html", "num_lines": 1000})
    assert "**viewing lines [0 - 199] of 625**" in text  # 50 kB cut into 80-char lines
    assert "L0: " + "x" * 80 + "\nL1: " in text
    text = await ok(browser, "find", {"pattern": "truncated"})
    assert "L1: [page truncated: only the first 50000 bytes were read]" in text

    assert await error(browser, "open", {"id": f"{base}/binary"}) == (
        f"browser.open: {base}/binary is application/octet-stream, which the browser cannot "
        "show (it reads HTML and text pages)")
    assert "redirected more than 5 times" in await error(browser, "open", {"id": f"{base}/loop"})
    assert await error(browser, "open", {"id": f"{base}/missing"}) == (
        f"browser.open: {base}/missing answered HTTP 404 Not Found")
    for url in ("file:///etc/passwd", "ftp://example.test/", "javascript:alert(1)", "example.org",
                "http://[::1"):
        message = await error(browser, "open", {"id": url})
        assert message.startswith("browser.open: can only open http:// and https:// URLs")
        assert repr(url) in message


async def test_timeout_on_a_server_that_never_answers(base: str) -> None:
    tool = BrowserTool(BrowserSettings(timeout_s=0.3, allow_hosts=["127.0.0.1"]))
    try:
        result = await tool.run(call("open", {"id": f"{base}/stall"}))
    finally:
        await tool.aclose()
    assert result.is_error
    assert result.text == f"browser.open: {base}/stall did not answer within 0.3 s"


async def test_argument_and_state_errors(browser: BrowserTool, base: str) -> None:
    assert (await error(browser, "open", {})).startswith(
        "browser.open: no page is open yet in this chat")
    assert (await error(browser, "find", {"pattern": "x"})).startswith(
        "browser.find: no page is open yet")
    assert (await error(browser, "search", '{"query": ')).startswith(
        "browser.search: arguments are not valid JSON")
    assert await error(browser, "search", '["q"]') == (
        'browser.search: arguments must be a JSON object like {"query": "mlx gpt-oss"}, got list')
    assert await error(browser, "search", {"query": ""}) == (
        "browser.search: `query` must be a non-empty string, got ''")
    assert await error(browser, "search", {}) == (
        "browser.search: `query` must be a non-empty string, got nothing")
    assert await error(browser, "search", {"query": "q", "topn": "ten"}) == (
        "browser.search: `topn` must be an integer, got 'ten'")
    assert await error(browser, "find", {"pattern": "x", "regex": True}) == (
        "browser.find: unknown argument(s) regex; expected pattern, cursor")
    assert await error(browser, "scroll", {}) == (
        "browser.scroll: unknown method 'scroll'; the browser has browser.search, "
        "browser.open and browser.find")

    await ok(browser, "open", {"id": f"{base}/index.html"})
    assert await error(browser, "open", {"cursor": 7}) == (
        "browser.open: there is no page with cursor 7; valid cursors are 0-0 (or -1 for the "
        "latest)")
    assert await error(browser, "open", {"id": 9}) == (
        "browser.open: page [0] has no link 9; its links are 0-2")
    assert await error(browser, "open", {"id": 1.5}) == (
        "browser.open: `id` must be a link number from the page or a URL string, got 1.5")
    assert await error(browser, "open", {"view_source": "yes"}) == (
        "browser.open: `view_source` must be true or false, got 'yes'")
    await ok(browser, "search", {"query": "q"})
    assert (await error(browser, "find", {"pattern": "x"})).startswith(
        "browser.find: cannot search within a search results page")


async def test_without_a_backend_search_fails_but_urls_open(base: str) -> None:
    tool = BrowserTool(BrowserSettings(allow_hosts=["127.0.0.1"]))
    try:
        result = await tool.run(call("search", {"query": "anything"}))
        assert result.is_error
        assert result.text.startswith("browser.search: web search is not configured")
        assert (await ok(tool, "open", {"id": f"{base}/plain.txt"})).startswith("[0] plain.txt")
    finally:
        await tool.aclose()


async def test_brave_backend_sends_the_key_and_caps_results(
        base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMONY_TEST_BRAVE_KEY", "brave-secret")
    tool = BrowserTool(BrowserSettings(search_backend="brave", search_url=f"{base}/brave/search",
                                       search_api_key_env="HARMONY_TEST_BRAVE_KEY",
                                       lines_per_view=100))
    wrong = BrowserTool(BrowserSettings(search_backend="brave", search_url=f"{base}/brave/search",
                                        search_api_key="wrong"))
    keyless = BrowserTool(BrowserSettings(search_backend="brave"))
    try:
        text = await ok(tool, "search", {"query": "q", "topn": 50})
        assert "L0: # 【0†Brave hit 0†127.0.0.1】" in text and "L1: with markup" in text
        assert "【19†Brave hit 19" in text and "【20†" not in text
        assert text.count("†Brave hit") == 20
        result = await wrong.run(call("search", {"query": "q"}))
        assert result.is_error and result.text == (
            f"browser.search: Brave Search at {base}/brave/search answered HTTP 401 "
            "Unauthorized: check search_api_key")
        result = await keyless.run(call("search", {"query": "q"}))
        assert result.is_error and "needs an API key" in result.text
    finally:
        for each in (tool, wrong, keyless):
            await each.aclose()


async def test_searxng_backend_directly_and_json_disabled(browser: BrowserTool, base: str) -> None:
    backend = SearxngBackend(base + "/", browser._http())
    hits = await backend.search("abc", topn=1)
    assert hits == [SearchHit("The index", f"{base}/index.html", "Search result for abc")]
    other = BrowserTool(BrowserSettings(search_backend="searxng", search_url=f"{base}/nope"))
    try:
        result = await other.run(call("search", {"query": "q"}))
    finally:
        await other.aclose()
    assert result.is_error
    assert result.text == (f"browser.search: SearXNG at {base}/nope/search answered HTTP 404 "
                           "Not Found")


async def test_pages_are_kept_per_chat(browser: BrowserTool, base: str) -> None:
    await ok(browser, "open", {"id": f"{base}/index.html"}, chat_id="a")
    text = await ok(browser, "open", {"id": f"{base}/plain.txt"}, chat_id="b")
    assert text.startswith("[0] plain.txt")
    assert [p.title for p in browser.pages("a")] == ["Index & Home"]
    browser.forget_chat("a")
    assert browser.pages("a") == []


async def test_approval(browser: BrowserTool, base: str) -> None:
    request = browser.approval(call("search", {"query": "cats"}))
    assert request is not None and request.kind == "network" and "cats" in request.body
    request = browser.approval(call("open", {"id": f"{base}/index.html"}))
    assert request is not None and request.kind == "network"
    assert request.body == f"{base}/index.html"
    await ok(browser, "open", {"id": f"{base}/index.html"})
    request = browser.approval(call("open", {"id": 0}))  # follows link 0: a fetch
    assert request is not None and request.body == f"{base}/long.html"
    assert browser.approval(call("open", {"loc": 3})) is None  # scrolling needs no network
    assert browser.approval(call("find", {"pattern": "x"})) is None
    assert browser.approval(call("open", '{"id": ')) is None  # bad call: run() reports it
    assert browser.approval(call("open", {"id": "file:///etc/passwd"})) is None  # refused
    assert BrowserTool().approval(call("search", {"query": "q"})) is None  # no backend
    auto = BrowserTool(BrowserSettings(auto_approve=True))
    assert auto.approval(call("open", {"id": f"{base}/index.html"})) is None


async def test_render_citations(browser: BrowserTool, base: str) -> None:
    await ok(browser, "search", {"query": "q"})
    await ok(browser, "open", {"id": f"{base}/index.html"})
    answer = "Welcome【1†L0-L2】 and see results 【0†L3】; unknown【9†L1】, odd 【0†L1-L1】."
    rendered = browser.render_citations(answer, "chat")
    assert rendered == (f"Welcome [Index & Home]({base}/index.html) and see results "
                        f"[Long 〖page〗]({base}/long.html); unknown【9†L1】, odd 【0†L1-L1】.")
    assert browser.render_citations(answer, "other-chat") == answer


async def test_tool_results_are_results_not_exceptions(browser: BrowserTool) -> None:
    result = await browser.run(call("open", {"id": "http://127.0.0.1:1/"}))
    assert isinstance(result, ToolResult) and result.is_error
    assert result.text.startswith("browser.open: could not fetch http://127.0.0.1:1/")
