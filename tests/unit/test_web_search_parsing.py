"""WebSearch adapters: DuckDuckGo's HTML results page and SearXNG's JSON, parsed from samples
written for these tests in the engines' shapes, and the adapters' requests and failures over
an httpx.MockTransport (no test talks to a real search engine)."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from pasture.adapters.remote.web_search import (
    DuckDuckGoWebSearch,
    SearxngWebSearch,
    parse_duckduckgo,
    parse_searxng,
    unwrap_duckduckgo,
)
from pasture.domain.errors import Upstream
from pasture.domain.web import WebResult


def ddg_link(url: str) -> str:
    return f"//duckduckgo.com/l/?uddg={quote(url, safe='')}&amp;rut=0f1e2d3c4b5a"


# The shape of https://html.duckduckgo.com/html/?q=llama+age : an ad first, then organic
# results whose links go through DuckDuckGo's redirect, one direct link, a duplicate.
DDG_HTML = f"""<!DOCTYPE html>
<html><head><title>llama age at DuckDuckGo</title></head>
<body class="body--html">
<div id="links" class="results">
  <div class="result results_links results_links_deep result--ad ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title">
        <a rel="nofollow" class="result__a"
           href="https://duckduckgo.com/y.js?ad_domain=llamastore.example&amp;ad_provider=bingv7aa&amp;u3=x">Buy a Llama Today</a>
        <a class="badge--ad">Ad</a>
      </h2>
      <a class="result__snippet" href="https://duckduckgo.com/y.js?ad_domain=llamastore.example">Cheap llamas.</a>
    </div>
  </div>
  <div class="result results_links results_links_deep web-result ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title">
        <a rel="nofollow" class="result__a" href="{ddg_link("https://en.wikipedia.org/wiki/Llama")}">Llama -
          <b>Wikipedia</b></a>
      </h2>
      <div class="result__extras"><div class="result__extras__url">
        <a class="result__url" href="{ddg_link("https://en.wikipedia.org/wiki/Llama")}">en.wikipedia.org/wiki/Llama</a>
      </div></div>
      <a class="result__snippet" href="{ddg_link("https://en.wikipedia.org/wiki/Llama")}">The <b>llama</b> is a
        domesticated South American camelid.</a>
      <div class="clear"></div>
    </div>
  </div>
  <div class="result results_links results_links_deep web-result ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title">
        <a rel="nofollow" class="result__a" href="{ddg_link("https://www.example.org/llamas?age=1&sort=desc")}">How Long Do Llamas Live?</a>
      </h2>
      <a class="result__snippet" href="#">Llamas live 15 to 25 years.</a>
    </div>
  </div>
  <div class="result results_links results_links_deep web-result ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title">
        <a rel="nofollow" class="result__a" href="https://farm.example.net/llama-care">Llama care</a>
      </h2>
      <div class="result__snippet">Feeding and shearing.</div>
    </div>
  </div>
  <div class="result results_links results_links_deep web-result ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title">
        <a rel="nofollow" class="result__a" href="{ddg_link("https://en.wikipedia.org/wiki/Llama")}">Llama (again)</a>
      </h2>
    </div>
  </div>
  <div class="result results_links results_links_deep web-result ">
    <div class="links_main links_deep result__body">
      <h2 class="result__title">
        <a rel="nofollow" class="result__a" href="/settings">Settings</a>
      </h2>
    </div>
  </div>
  <div class="nav-link">
    <form action="/html/" method="post"><input type="submit" class="btn btn--alt" value="Next" /></form>
  </div>
</div>
</body></html>
"""


def test_duckduckgo_results_page() -> None:
    assert parse_duckduckgo(DDG_HTML, 10) == [
        WebResult(
            "https://en.wikipedia.org/wiki/Llama",
            "Llama - Wikipedia",
            "The llama is a domesticated South American camelid.",
        ),
        WebResult(
            "https://www.example.org/llamas?age=1&sort=desc",
            "How Long Do Llamas Live?",
            "Llamas live 15 to 25 years.",
        ),
        WebResult("https://farm.example.net/llama-care", "Llama care", "Feeding and shearing."),
    ]


def test_duckduckgo_limit_and_no_results() -> None:
    assert [r.url for r in parse_duckduckgo(DDG_HTML, 1)] == ["https://en.wikipedia.org/wiki/Llama"]
    empty = '<html><body><div class="no-results">No results.</div></body></html>'
    assert parse_duckduckgo(empty, 5) == []


def test_duckduckgo_links_without_result_blocks() -> None:
    """The original read `.result__title > a` and nothing else; a page with just those works."""
    html = (
        f'<h2 class="result__title"><a href="{ddg_link("https://a.example/x")}">A</a></h2>'
        '<h2 class="result__title"><a href="https://b.example/">B</a></h2>'
    )
    assert [r.url for r in parse_duckduckgo(html, 5)] == [
        "https://a.example/x",
        "https://b.example/",
    ]


@pytest.mark.parametrize(
    ("href", "url"),
    [
        (
            "//duckduckgo.com/l/?uddg=https%3A%2F%2Fen.wikipedia.org%2Fwiki%2FLlama&rut=abc",
            "https://en.wikipedia.org/wiki/Llama",
        ),
        (
            "https://duckduckgo.com/l/?uddg=http%3A%2F%2Fexample.com%2Fa%3Fb%3D1%26c%3D2",
            "http://example.com/a?b=1&c=2",
        ),
        ("/l/?kh=-1&uddg=https%3A%2F%2Fexample.org%2F", "https://example.org/"),
        ("https://example.org/direct", "https://example.org/direct"),
        ("https://duckduckgo.com/y.js?ad_domain=x.example&u3=https%3A%2F%2Fx.example", None),
        ("//duckduckgo.com/l/?rut=abc", None),  # no target
        ("//duckduckgo.com/l/?uddg=javascript%3Aalert(1)", None),
        ("//duckduckgo.com/l/?uddg=ftp%3A%2F%2Fexample.org%2F", None),
        ("/settings", None),
        ("mailto:someone@example.org", None),
        ("", None),
    ],
)
def test_unwrap_duckduckgo(href: str, url: str | None) -> None:
    assert unwrap_duckduckgo(href) == url


SEARXNG = {
    "query": "llama age",
    "number_of_results": 0,
    "results": [
        {
            "url": "https://en.wikipedia.org/wiki/Llama",
            "title": "Llama -  Wikipedia",
            "content": "The llama is a\n domesticated camelid.",
            "engine": "wikipedia",
            "score": 3.5,
        },
        {"url": "ftp://files.example/llama.txt", "title": "FTP", "content": "x"},
        {"url": "https://www.example.org/llamas", "title": None},
        {"title": "no url"},
        "not an object",
        {"url": "https://en.wikipedia.org/wiki/Llama", "title": "duplicate"},
        {"url": "https://third.example/", "title": "Third", "content": "3"},
    ],
    "answers": [],
    "suggestions": [],
}


def test_searxng_json() -> None:
    assert parse_searxng(SEARXNG, 10) == [
        WebResult(
            "https://en.wikipedia.org/wiki/Llama",
            "Llama - Wikipedia",
            "The llama is a domesticated camelid.",
        ),
        WebResult("https://www.example.org/llamas", "", ""),
        WebResult("https://third.example/", "Third", "3"),
    ]
    assert len(parse_searxng(SEARXNG, 2)) == 2
    assert parse_searxng({"results": []}, 5) == []
    for bad in ({"error": "x"}, [], "text", {"results": "x"}):
        with pytest.raises(Upstream):
            parse_searxng(bad, 5)


# ---------------------------------------------------------------------- the adapters


def client(handler: object) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_duckduckgo_adapter_request_and_failures() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=DDG_HTML)

    s = DuckDuckGoWebSearch("https://html.duckduckgo.com/html/", timeout=5, client=client(ok))
    got = s.search("  how old\ndo llamas   get? ", 2)
    assert [r.url for r in got] == [
        "https://en.wikipedia.org/wiki/Llama",
        "https://www.example.org/llamas?age=1&sort=desc",
    ]
    assert seen[0].url.params["q"] == "how old do llamas get?"
    assert seen[0].url.host == "html.duckduckgo.com"
    assert "Mozilla" in seen[0].headers["user-agent"]

    def status(code: int) -> object:
        return lambda request: httpx.Response(code, text="nope")

    for code in (202, 403, 500):
        with pytest.raises(Upstream, match=str(code)):
            DuckDuckGoWebSearch(
                "https://d.example/", timeout=5, client=client(status(code))
            ).search("q", 3)

    def challenge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text='<div class="anomaly-modal__title">Unfortunately</div>')

    with pytest.raises(Upstream, match="challenge"):
        DuckDuckGoWebSearch("https://d.example/", timeout=5, client=client(challenge)).search(
            "q", 3
        )

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(Upstream, match="ConnectError"):
        DuckDuckGoWebSearch("https://d.example/", timeout=5, client=client(down)).search("q", 3)


def test_searxng_adapter_request_and_failures() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SEARXNG)

    s = SearxngWebSearch("http://searx.local:8888/", timeout=5, client=client(ok))
    assert len(s.search("llama age", 5)) == 3
    assert seen[0].url.path == "/search"
    assert dict(seen[0].url.params) == {"q": "llama age", "format": "json"}

    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>json format disabled</html>")

    with pytest.raises(Upstream, match="JSON"):
        SearxngWebSearch("http://s.local", timeout=5, client=client(html)).search("q", 3)

    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text=json.dumps({}))

    with pytest.raises(Upstream, match="403"):
        SearxngWebSearch("http://s.local", timeout=5, client=client(forbidden)).search("q", 3)
