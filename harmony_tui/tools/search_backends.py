"""Web search backends for the browser tool: SearXNG and the Brave Search API.

A backend turns a query into ``SearchHit``s. Failures raise ``SearchError`` with a one-line
message the browser hands to the model. Backends share the browser's ``httpx.AsyncClient``
(its timeouts, redirect limit and user agent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from harmony_tui.tools.html_text import clean_text, inline_text

if TYPE_CHECKING:
    import httpx

BackendKind = Literal["none", "searxng", "brave"]
BRAVE_DEFAULT_URL = "https://api.search.brave.com/res/v1/web/search"
BRAVE_MAX_COUNT = 20  # the API refuses larger counts


class SearchError(Exception):
    """A search that failed; the message names the backend and what went wrong."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: page title, its URL and a short plain-text snippet."""

    title: str
    url: str
    snippet: str


class SearchBackend(Protocol):
    """Anything that can search the web."""

    name: str
    url: str

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        """Up to ``topn`` hits for ``query``; SearchError when the backend fails."""
        ...


class SearxngBackend:
    """A SearXNG instance (``GET {url}/search?q=...&format=json``); its settings.yml must list
    ``json`` under ``search.formats``."""

    name = "SearXNG"

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self._client = client

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        endpoint = f"{self.url}/search"
        data = await _get_json(self._client, self.name, endpoint,
                               params={"q": query, "format": "json"},
                               headers={"Accept": "application/json"},
                               hint_403="is `json` listed in search.formats of its settings.yml?")
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SearchError(f"{self.name} at {endpoint} returned JSON without a `results` list")
        return _hits(results, "content", topn)


class BraveBackend:
    """The Brave Search API (``X-Subscription-Token`` header); ``url`` can point elsewhere for
    a compatible proxy."""

    name = "Brave Search"

    def __init__(self, url: str, api_key: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self._api_key = api_key
        self._client = client

    async def search(self, query: str, topn: int) -> list[SearchHit]:
        data = await _get_json(self._client, self.name, self.url,
                               params={"q": query, "count": str(min(topn, BRAVE_MAX_COUNT))},
                               headers={"Accept": "application/json",
                                        "X-Subscription-Token": self._api_key},
                               hint_401="check search_api_key")
        web = data.get("web") if isinstance(data, dict) else None
        results = web.get("results", []) if isinstance(web, dict) else []
        if not isinstance(results, list):
            raise SearchError(f"{self.name} at {self.url} returned JSON without web.results")
        return _hits(results, "description", topn)


def make_search_backend(kind: BackendKind, url: str | None, api_key: str | None,
                        client: httpx.AsyncClient) -> SearchBackend | None:
    """The backend for ``kind`` (None for "none"); SearchError when its url or key is missing."""
    if kind == "none":
        return None
    if kind == "searxng":
        if not url:
            raise SearchError("the searxng search backend needs search_url (the instance URL)")
        return SearxngBackend(url, client)
    if kind == "brave":
        if not api_key:
            raise SearchError("the brave search backend needs an API key: set search_api_key"
                              " or name an environment variable in search_api_key_env")
        return BraveBackend(url or BRAVE_DEFAULT_URL, api_key, client)
    raise SearchError(f"unknown search backend {kind!r}; expected none, searxng or brave")


async def _get_json(client: httpx.AsyncClient, name: str, url: str, *, params: dict[str, str],
                    headers: dict[str, str], hint_401: str = "", hint_403: str = "") -> Any:
    import httpx

    try:
        response = await client.get(url, params=params, headers=headers)
    except httpx.TimeoutException as err:
        raise SearchError(f"{name} at {url} did not answer in time") from err
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        raise SearchError(f"{name} at {url} could not be reached: {err or type(err).__name__}") \
            from err
    if response.status_code >= 400:
        hint = {401: hint_401, 403: hint_403}.get(response.status_code, "")
        raise SearchError(f"{name} at {url} answered HTTP {response.status_code} "
                          f"{response.reason_phrase}" + (f": {hint}" if hint else ""))
    try:
        return response.json()
    except ValueError as err:
        content_type = response.headers.get("content-type", "no content type")
        raise SearchError(f"{name} at {url} did not return JSON ({content_type})") from err


def _hits(results: list[Any], snippet_key: str, topn: int) -> list[SearchHit]:
    """Hits from result objects with ``title``, ``url`` and ``snippet_key``; entries without
    an http(s) URL are skipped."""
    hits: list[SearchHit] = []
    for result in results:
        if not isinstance(result, dict):
            continue
        url = result.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            continue
        title = inline_text(str(result.get("title") or "")) or url
        snippet = inline_text(str(result.get(snippet_key) or ""))
        hits.append(SearchHit(clean_text(title), url, clean_text(snippet)))
        if len(hits) >= topn:
            break
    return hits
