"""WebSearch adapters: DuckDuckGo's HTML page (no key needed) and a SearXNG instance's JSON API.

Both are the operator's choice of engine (settings), so their own URLs are not put through
the page fetcher's SSRF guard (a SearXNG instance usually sits on a private address); the
result URLs they return are, when the pages are fetched.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from pasture.domain.errors import Upstream
from pasture.domain.web import WebResult
from pasture.ports import WebSearch

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0 Safari/537.36"
)
MAX_QUERY_CHARS = 400


def _query(q: str) -> str:
    return " ".join(q.split())[:MAX_QUERY_CHARS]


def _get(
    client: httpx.Client | None, url: str, params: dict[str, str], timeout: float, what: str
) -> httpx.Response:
    headers = {"User-Agent": USER_AGENT, "Accept-Language": "en-US,en;q=0.9"}
    try:
        if client is not None:
            r = client.get(url, params=params, headers=headers, timeout=timeout)
        else:
            with httpx.Client(follow_redirects=True, timeout=timeout) as c:
                r = c.get(url, params=params, headers=headers)
    except httpx.TimeoutException:
        raise Upstream(f"{what} did not answer in {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise Upstream(f"{what} failed: {type(exc).__name__}") from None
    if r.status_code != 200:
        raise Upstream(f"{what} answered HTTP {r.status_code}")
    return r


# ---------------------------------------------------------------------- DuckDuckGo


class DuckDuckGoWebSearch(WebSearch):
    """GET `<url>?q=...` on DuckDuckGo's HTML endpoint (https://html.duckduckgo.com/html/) and
    read the result links (`.result__title > a`), as the original chatbot did."""

    def __init__(self, url: str, *, timeout: float, client: httpx.Client | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self._client = client

    def search(self, query: str, limit: int) -> list[WebResult]:
        r = _get(self._client, self.url, {"q": _query(query)}, self.timeout, "DuckDuckGo")
        results = parse_duckduckgo(r.text, limit)
        if not results and ("anomaly-modal" in r.text or "challenge-form" in r.text):
            raise Upstream("DuckDuckGo asked for a challenge (too many queries); try later")
        return results


def unwrap_duckduckgo(href: str) -> str | None:
    """The real URL behind a result link: DuckDuckGo wraps results in
    `//duckduckgo.com/l/?uddg=<url>&rut=...`; its ads go to `duckduckgo.com/y.js?...`.
    None for anything that is not an http(s) page outside DuckDuckGo."""
    href = href.strip()
    if not href:
        return None
    url = urljoin("https://duckduckgo.com/", href)  # "//host/..." and "/l/?..." forms
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if host == "duckduckgo.com" or host.endswith(".duckduckgo.com"):
        if parts.path.rstrip("/") != "/l":
            return None  # ads (y.js), internal links
        target = parse_qs(parts.query).get("uddg")
        if not target:
            return None
        return unwrap_duckduckgo(target[0]) if target[0] != href else None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return url


def parse_duckduckgo(html: str, limit: int) -> list[WebResult]:
    """Results of DuckDuckGo's HTML page, best first: ads, DuckDuckGo's own links and
    duplicates are skipped; titles and snippets have their whitespace collapsed."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    links: list[tuple[Any, Any]] = []  # (link, snippet element or None)
    blocks = soup.select("div.result")
    if blocks:
        for block in blocks:
            if "result--ad" in (block.get("class") or []):
                continue
            snippet = block.select_one(".result__snippet")
            links += [(a, snippet) for a in block.select(".result__title > a")]
    else:  # another layout: the result links alone
        links = [(a, None) for a in soup.select(".result__title > a")]
    out: list[WebResult] = []
    seen: set[str] = set()
    for a, snippet in links:
        href = a.get("href")
        url = unwrap_duckduckgo(href) if isinstance(href, str) else None
        if url is None or url in seen:
            continue
        seen.add(url)
        out.append(
            WebResult(
                url=url,
                title=" ".join(a.get_text(" ").split()),
                snippet=" ".join(snippet.get_text(" ").split()) if snippet is not None else "",
            )
        )
        if len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------------- SearXNG


class SearxngWebSearch(WebSearch):
    """GET `<searxng_url>/search?q=...&format=json` (the instance must allow the json format
    in its settings.yml `search.formats`)."""

    def __init__(
        self, base_url: str, *, timeout: float, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = client

    def search(self, query: str, limit: int) -> list[WebResult]:
        r = _get(
            self._client,
            f"{self.base_url}/search",
            {"q": _query(query), "format": "json"},
            self.timeout,
            "SearXNG",
        )
        try:
            data = r.json()
        except ValueError:
            raise Upstream("SearXNG did not answer JSON (is the json format enabled?)") from None
        return parse_searxng(data, limit)


def parse_searxng(data: Any, limit: int) -> list[WebResult]:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise Upstream("SearXNG answered without a results list")
    out: list[WebResult] = []
    seen: set[str] = set()
    for item in data["results"]:
        if limit <= len(out):
            break
        if not isinstance(item, dict):
            continue
        url = item.get("url")
        if not isinstance(url, str):
            continue
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname or url in seen:
            continue
        seen.add(url)
        title, content = item.get("title"), item.get("content")
        out.append(
            WebResult(
                url=url,
                title=" ".join(title.split()) if isinstance(title, str) else "",
                snippet=" ".join(content.split()) if isinstance(content, str) else "",
            )
        )
    return out
