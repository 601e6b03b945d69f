"""The browser against hostile pages: SSRF to the user's machine, compression bombs, deep HTML.

A real HTTP server on 127.0.0.1 plays the attacker's site. No test connects to any address
outside loopback: private and link-local ranges are checked by the address rule alone.
"""

from __future__ import annotations

import gzip
import ipaddress
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from harmony_tui.tools.base import ToolInvocation
from harmony_tui.tools.bounded_decode import BoundedDecoder, DecodeError, UnsupportedEncoding
from harmony_tui.tools.browser import BrowserSettings, BrowserTool
from harmony_tui.tools.html_text import html_to_text
from harmony_tui.tools.net_guard import AllowList, BlockedAddressError, check_address, is_public

SECRET = "the-local-secret-7f3a"
BOMB_SIZE = 64 * 1024 * 1024  # decoded size of the bomb; its body is a few hundred bytes


@cache
def double_gzip_bomb() -> bytes:
    return gzip.compress(gzip.compress(b"\0" * BOMB_SIZE, 9), 9)


class Handler(BaseHTTPRequestHandler):
    server: Site

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.hits.append(path)
        port = self.server.server_address[1]
        html = {"Content-Type": "text/html; charset=utf-8"}
        if path == "/secret":
            self.send(200, f"<p>{SECRET}</p>".encode(), html)
        elif path == "/to-loopback":  # what a public page could answer
            self.send(302, b"", {**html, "Location": f"http://127.0.0.1:{port}/secret"})
        elif path == "/to-mapped":
            self.send(302, b"", {**html, "Location": f"http://[::ffff:127.0.0.1]:{port}/secret"})
        elif path == "/bomb":
            self.send(200, double_gzip_bomb(), {**html, "Content-Encoding": "gzip, gzip"})
        elif path == "/bomb-redirect":  # the body of a redirect is never read
            self.send(302, double_gzip_bomb(), {**html, "Content-Encoding": "gzip, gzip",
                                                "Location": "/plain"})
        elif path == "/plain":
            self.send(200, b"<p>plain page</p>", html)
        elif path == "/gzip":
            self.send(200, gzip.compress(b"<p>compressed page</p>"),
                      {**html, "Content-Encoding": "gzip"})
        elif path == "/deflate-raw":
            raw = zlib.compressobj(wbits=-15)
            body = raw.compress(b"<p>raw deflate page</p>") + raw.flush()
            self.send(200, body, {**html, "Content-Encoding": "deflate"})
        elif path == "/brotli":
            self.send(200, b"\x0b\x02\x80hi\x03", {**html, "Content-Encoding": "br"})
        else:
            self.send(404, b"", html)


class Site(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: list[str] = []


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    httpd = Site()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def port(site: Site) -> int:
    site.hits.clear()
    return site.server_address[1]


@pytest.fixture
async def guarded() -> AsyncIterator[BrowserTool]:
    """A browser with the default settings: loopback is not allowed."""
    tool = BrowserTool(BrowserSettings(timeout_s=5, max_page_bytes=50_000))
    yield tool
    await tool.aclose()


async def open_url(tool: BrowserTool, url: str) -> tuple[bool, str]:
    result = await tool.run(ToolInvocation("browser.open", f'{{"id": "{url}"}}', "c1", "chat"))
    return result.is_error, result.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "127.1", "0x7f000001",
                                  "[::ffff:127.0.0.1]", "[::1]", "0.0.0.0"])
async def test_loopback_in_any_spelling_is_refused_before_connecting(
        guarded: BrowserTool, site: Site, port: int, host: str) -> None:
    is_error, text = await open_url(guarded, f"http://{host}:{port}/secret")
    assert is_error
    assert SECRET not in text
    assert site.hits == []  # no request reached the local service
    if "[" not in host and host not in ("localhost", "0.0.0.0"):
        assert "local or private address" in text and "allow_hosts" in text
    assert "\n" not in text


async def test_a_redirect_to_loopback_is_refused(site: Site, port: int) -> None:
    # The start URL is allowed (as an approved public page would be); its redirect is not.
    tool = BrowserTool(BrowserSettings(timeout_s=5, allow_hosts=["localhost"]))
    try:
        for start in ("/to-loopback", "/to-mapped"):
            is_error, text = await open_url(tool, f"http://localhost:{port}{start}")
            assert is_error, text
            assert SECRET not in text
        assert "/secret" not in site.hits
        assert site.hits.count("/to-loopback") == 1
    finally:
        await tool.aclose()


async def test_the_allow_list_opens_a_local_service(site: Site, port: int) -> None:
    for allowed in (["127.0.0.1"], ["127.0.0.0/8"], ["localhost", "127.0.0.1"]):
        tool = BrowserTool(BrowserSettings(timeout_s=5, allow_hosts=allowed))
        try:
            is_error, text = await open_url(tool, f"http://127.0.0.1:{port}/secret")
            assert not is_error, text
            assert SECRET in text
        finally:
            await tool.aclose()
    with pytest.raises(ValidationError, match="allow_hosts"):
        BrowserSettings(allow_hosts=["10.0.0.0/33"])


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "::",
])
def test_the_address_rule_refuses_every_non_public_range(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(BlockedAddressError):
        check_address("example.org", address, AllowList())


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:84e5", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    check_address("example.org", address, AllowList())


def test_allow_list_entries() -> None:
    allow = AllowList.parse(["Intranet.Local.", "192.168.1.0/24", "[::1]"])
    check_address("intranet.local", "10.9.9.9", allow)  # the name is allowed, wherever it points
    check_address("nas", "192.168.1.20", allow)
    check_address("x", "::1", allow)
    with pytest.raises(BlockedAddressError):
        check_address("nas", "192.168.2.20", allow)
    with pytest.raises(ValueError, match=r"'1\.2\.3\.4/99'"):
        AllowList.parse(["1.2.3.4/99"])


async def test_a_compression_bomb_stops_at_the_page_budget(site: Site, port: int) -> None:
    tool = BrowserTool(BrowserSettings(timeout_s=10, max_page_bytes=50_000,
                                       allow_hosts=["127.0.0.1"]))
    double_gzip_bomb()  # built before measuring: the server's copy is not the browser's memory
    try:
        for path in ("/bomb", "/bomb-redirect"):
            tracemalloc.start()
            try:
                is_error, text = await open_url(tool, f"http://127.0.0.1:{port}{path}")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 16 * 1024 * 1024, f"{path}: {peak / 1e6:.0f} MB held while decoding"
            if path == "/bomb":
                assert not is_error, text
                page = tool.pages("chat")[-1]
                assert page.lines[-1] == "[page truncated: only the first 50000 bytes were read]"
            else:
                assert not is_error and "plain page" in text
    finally:
        await tool.aclose()


async def test_compressed_pages_still_open_and_unknown_encodings_are_refused(
        site: Site, port: int) -> None:
    tool = BrowserTool(BrowserSettings(timeout_s=5, allow_hosts=["127.0.0.1"]))
    try:
        assert "compressed page" in (await open_url(tool, f"http://127.0.0.1:{port}/gzip"))[1]
        assert "raw deflate page" in \
            (await open_url(tool, f"http://127.0.0.1:{port}/deflate-raw"))[1]
        is_error, text = await open_url(tool, f"http://127.0.0.1:{port}/brotli")
        assert is_error and "content encoding 'br'" in text
    finally:
        await tool.aclose()


def test_bounded_decoder_units() -> None:
    data = b"hello world " * 1000
    two_members = gzip.compress(data[:6000]) + gzip.compress(data[6000:])
    decoder = BoundedDecoder("gzip", 1_000_000)
    for start in range(0, len(two_members), 7):  # tiny chunks
        decoder.feed(two_members[start:start + 7])
    assert bytes(decoder.body) == data and not decoder.truncated
    small = BoundedDecoder("identity", 10)
    small.feed(b"0123456789abc")
    assert bytes(small.body) == b"0123456789" and small.truncated
    with pytest.raises(UnsupportedEncoding):
        BoundedDecoder("gzip, zstd", 10)
    with pytest.raises(DecodeError):
        BoundedDecoder("gzip", 10).feed(b"not gzip at all")


def test_deeply_nested_lists_convert_in_linear_size() -> None:
    depth = 3000
    html = "<ul><li>item" * depth + "</li></ul>" * depth
    tracemalloc.start()  # the indentation used to grow with depth: quadratic memory and time
    try:
        page = html_to_text(html, "https://example.org/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page.lines) >= depth  # every item is kept
    assert peak < 20 * len(html), f"{peak} bytes held to convert {len(html)}"


def test_deeply_nested_dropped_elements_and_wide_tables_keep_their_text() -> None:
    nested = "<svg>" * 20000 + "hidden" + "</svg>" * 20000 + "<p>after</p>"
    assert html_to_text(nested, "https://example.org/").lines == ["after"]
    row = "<table><tr>" + "<td>c</td>" * 20000 + "</tr></table>"
    line = html_to_text(row, "https://example.org/").lines
    assert "".join(line).replace(" ", "").count("c") == 20000
