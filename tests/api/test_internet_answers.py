"""Web answers (`GET /conversations/inference_internet/{chat_id}`) end to end inside the app:
the real search adapters, the real page fetcher with its SSRF guard, the real embedder
ranking passages, and a fake chat model that records the prompt.

The search engines and web pages are fakes served by threaded `http.server`s on loopback
(127.0.0.1, and 127.0.0.2 for the "internal" server a redirect points at): tests may not
talk to anything but this machine. The engine answers in DuckDuckGo's HTML shape
(`/html/?q=`) and in SearXNG's JSON shape (`/search?q=&format=json`); the pages are one about
the question's topic and two about other things.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.bootstrap import build_container
from pasture.config import Settings
from tests.helpers.fakes import FakeChatModel
from tests.helpers.ragflow_chats import fake_factory

QUESTION = "How old is Quillon the llama?"
REPLY = "Quillon is 27 years old [1]."
LLAMA = (
    "Quillon is the oldest llama on the Pasture test farm. Quillon is 27 years old, which is"
    " very old for a llama, and he still eats four kilograms of hay every day."
)
WEATHER = (
    "The weather on the coast was mild all through October, with light rain most evenings"
    " and a cold wind from the north on the last weekend of the month."
)
COMPOST = (
    "A good compost heap needs both green and brown material, kept as damp as a wrung-out"
    " sponge and turned every few weeks so that air reaches the middle."
)
# The page's heading is packed into the passage with its paragraph.
QUILLON = f"Quillon the llama {LLAMA}"
SECRET = "INTERNAL-ONLY: the admin password of the intranet is hunter2."
OVERSIZE = "OVERSIZE-PAGE: Quillon the llama is 27 years old, says this very large page."
SLOW = "SLOW-PAGE: Quillon the llama is 27 years old, says this very slow page."
ANSWER_TOKENS = 32


# ---------------------------------------------------------------------- fake servers


Route = Callable[[BaseHTTPRequestHandler], None]


class FakeServer:
    """A threaded HTTP server on a loopback address; `routes` maps a path to a handler and
    `hits` records every request's path and query."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                route = outer.routes.get(urlsplit(self.path).path)
                if route is None:
                    self.send_error(404)
                    return
                # The client may give up (timeouts, size limits): expected here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send(
    handler: BaseHTTPRequestHandler, body: str, ctype: str = "text/html; charset=utf-8"
) -> None:
    data = body.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def html_page(title: str, *paragraphs: str) -> Route:
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    page = (
        f"<html><head><title>{escape(title)}</title><script>var tracking = 1;</script></head>"
        f"<body><nav><a href='/'>Home</a> | <a href='/about'>About us</a></nav>"
        f"<main><h1>{escape(title)}</h1>{body}</main><footer>Copyright 2024</footer></body></html>"
    )
    return lambda h: send(h, page)


def redirect(location: str) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def oversize(h: BaseHTTPRequestHandler) -> None:
    """300 KB with no Content-Length: only counting while reading can stop it."""
    h.protocol_version = "HTTP/1.0"
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    h.wfile.write(f"<html><body><p>{OVERSIZE}</p>".encode())
    for _ in range(300):
        h.wfile.write(b"<p>" + b"filler text " * 85 + b"</p>")
    h.wfile.write(b"</body></html>")


def slow(h: BaseHTTPRequestHandler) -> None:
    """Headers and the first paragraph at once, the rest after 5 s."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    h.wfile.write(f"<html><body><p>{SLOW}</p>".encode())
    h.wfile.flush()
    time.sleep(5)
    h.wfile.write(b"<p>the end</p></body></html>")


@dataclass
class Web:
    engine: FakeServer  # DuckDuckGo-shaped and SearXNG-shaped search
    site: FakeServer  # the pages results point at
    internal: FakeServer  # 127.0.0.2: what a redirect must not reach
    results: list[tuple[str, str]]  # (url, title) the engine answers with

    def reset(self, *paths: str) -> None:
        self.results = [(self.site.url(p), p.strip("/").title()) for p in paths]
        for s in (self.engine, self.site, self.internal):
            s.hits.clear()

    def page_hits(self) -> list[str]:
        return list(self.site.hits)


def ddg_html(results: list[tuple[str, str]]) -> str:
    ad = (
        '<div class="result results_links results_links_deep result--ad">'
        '<h2 class="result__title"><a class="result__a" href="https://duckduckgo.com/y.js?'
        'ad_domain=llamas.example&amp;u3=x">Buy llamas</a></h2></div>'
    )
    items = "".join(
        '<div class="result results_links results_links_deep web-result">'
        '<div class="links_main links_deep result__body"><h2 class="result__title">'
        f'<a rel="nofollow" class="result__a" href="//duckduckgo.com/l/?uddg={quote(u, safe="")}'
        f'&amp;rut=abc">{escape(t)}</a></h2>'
        f'<a class="result__snippet" href="#">About {escape(t)}.</a></div></div>'
        for u, t in results
    )
    return f'<html><body><div id="links" class="results">{ad}{items}</div></body></html>'


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    engine, site, internal = FakeServer(), FakeServer(), FakeServer("127.0.0.2")
    w = Web(engine, site, internal, [])
    engine.routes["/html/"] = lambda h: send(h, ddg_html(w.results))
    engine.routes["/search"] = lambda h: send(
        h,
        json.dumps(
            {
                "query": parse_qs(urlsplit(h.path).query).get("q", [""])[0],
                "results": [
                    {"url": u, "title": t, "content": f"About {t}.", "engine": "fake"}
                    for u, t in w.results
                ],
            }
        ),
        "application/json",
    )
    engine.routes["/broken/"] = lambda h: h.send_error(500)
    site.routes.update(
        {
            "/quillon": html_page("Quillon the llama", LLAMA),
            "/weather": html_page("Coastal weather", WEATHER),
            "/compost": html_page("Compost basics", COMPOST),
            "/to-internal": redirect(internal.url("/secret")),
            "/huge": oversize,
            "/slow": slow,
        }
    )
    internal.routes["/secret"] = html_page("Intranet", SECRET)
    try:
        yield w
    finally:
        for s in (engine, site, internal):
            s.close()


# ---------------------------------------------------------------------- asking


@dataclass
class Answer:
    status: int
    raw: bytes
    prompt: str  # the transcript the model was given
    stored: str  # the Assistant row stored afterwards
    seconds: float


def ask(tmp: Path, model_cache: Path, **settings: Any) -> Answer:
    s = Settings(
        data_dir=tmp,
        model_cache_dir=model_cache,
        chat_preload=False,
        chat_max_tokens=ANSWER_TOKENS,
        **settings,
    )
    fakes = {"smollm2-135m-instruct": FakeChatModel("smollm2-135m-instruct", reply=REPLY)}
    c = build_container(s, chat_factory=fake_factory(s, fakes))
    try:
        with TestClient(create_app(container=c), raise_server_exceptions=False) as client:
            chat = client.post("/chats/create", json={"name": "web"}).json()
            r = client.post(
                "/conversations/create",
                json={"chat_id": chat["id"], "role": "Human", "message": QUESTION},
            )
            assert r.status_code == 201, r.text
            t0 = time.monotonic()
            r = client.get(f"/conversations/inference_internet/{chat['id']}")
            seconds = time.monotonic() - t0
            rows = client.get("/conversations/", params={"chat_id": chat["id"]}).json()
    finally:
        c.close()
    (fake,) = fakes.values()
    assert len(fake.prompts) == 1, r.text
    return Answer(
        r.status_code, r.content, fake.prompts[0][1].content, rows[-1]["message"], seconds
    )


def ddg(web: Web, **kw: Any) -> dict[str, Any]:
    return {
        "web_search": "duckduckgo",
        "duckduckgo_url": web.engine.url("/html/"),
        "web_fetch_allow_private": True,
        **kw,
    }


def sources_frame(*urls: str) -> bytes:
    return (
        b"data:\ndata:\ndata:Sources:\n"
        + b"".join(f"data:[{i}] {u}\n".encode() for i, u in enumerate(urls, 1))
        + b"\n"
    )


# ---------------------------------------------------------------------- tests


def test_duckduckgo_answer_uses_the_relevant_page(
    web: Web, tmp_path: Path, model_cache: Path
) -> None:
    web.reset("/weather", "/quillon", "/compost")  # the relevant page is not the first result
    a = ask(tmp_path, model_cache, **ddg(web, web_passages=1))
    quillon = web.site.url("/quillon")
    assert a.status == 200
    # The question went to the engine; every result page was fetched.
    (search,) = web.engine.hits
    assert parse_qs(urlsplit(search).query)["q"] == [QUESTION]
    assert sorted(web.page_hits()) == ["/compost", "/quillon", "/weather"]
    # Only the passage about the question made it into the prompt, cited with its URL.
    assert a.prompt == (
        f"[[Human]]: {QUESTION}\n"
        f"[[Fetched Information]]: [1] {quillon}: {QUILLON}\n"
        "[[Human]]: Please understand the [[Fetched Information]] and give an answer to me"
        " [[Assistant]]. Cite the sources you use like [1].\n"
        "[[Assistant]]:"
    )
    assert WEATHER not in a.prompt and COMPOST not in a.prompt
    assert "Copyright" not in a.prompt and "tracking" not in a.prompt
    # The stream: the model's tokens, then the sources; the same is stored.
    assert a.raw.startswith(b"data:Quillon\n\ndata: is\n\ndata: 27\n\n")
    assert a.raw.endswith(b"data: [1].\n\n" + sources_frame(quillon))
    assert a.stored == f"{REPLY}\n\nSources:\n[1] {quillon}"


def test_passages_are_ranked_best_first(web: Web, tmp_path: Path, model_cache: Path) -> None:
    web.reset("/weather", "/compost", "/quillon")
    a = ask(tmp_path, model_cache, **ddg(web, web_passages=3))
    fetched = [ln for ln in a.prompt.splitlines() if ln.startswith("[[Fetched Information]]")]
    assert len(fetched) == 3
    assert fetched[0] == f"[[Fetched Information]]: [1] {web.site.url('/quillon')}: {QUILLON}"
    assert a.raw.endswith(
        sources_frame(web.site.url("/quillon"), *(ln.split()[3][:-1] for ln in fetched[1:]))
    )


def test_searxng_answer(web: Web, tmp_path: Path, model_cache: Path) -> None:
    web.reset("/compost", "/quillon", "/weather")
    a = ask(
        tmp_path,
        model_cache,
        web_search="searxng",
        searxng_url=web.engine.url(""),
        web_fetch_allow_private=True,
        web_passages=1,
    )
    (search,) = web.engine.hits
    assert urlsplit(search).path == "/search"
    assert parse_qs(urlsplit(search).query) == {"q": [QUESTION], "format": ["json"]}
    assert f"[[Fetched Information]]: [1] {web.site.url('/quillon')}: {QUILLON}" in a.prompt
    assert WEATHER not in a.prompt and COMPOST not in a.prompt
    assert a.raw.endswith(sources_frame(web.site.url("/quillon")))


def test_the_guard_fetches_nothing_on_loopback(web: Web, tmp_path: Path, model_cache: Path) -> None:
    web.reset("/weather", "/quillon", "/compost")
    a = ask(tmp_path, model_cache, **ddg(web, web_fetch_allow_private=False))
    assert a.status == 200
    assert web.page_hits() == []  # refused before connecting
    assert LLAMA not in a.prompt and WEATHER not in a.prompt and COMPOST not in a.prompt
    assert "[[Fetched Information]]: (none: no result page could be fetched)" in a.prompt
    assert a.raw.endswith(b"data:\ndata:\ndata:Sources: none (no result page could be fetched)\n\n")
    assert a.stored.endswith("Sources: none (no result page could be fetched)")


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "control"])
def test_a_redirect_to_an_internal_address_is_blocked(
    web: Web, tmp_path: Path, model_cache: Path, guarded: bool
) -> None:
    """127.0.0.1 (the fake internet) is let through by `web_fetch_allow_networks`; a page
    there redirects to 127.0.0.2 (the fake intranet). The control lets 127.0.0.2 through
    too, to show the secret would otherwise end up in the prompt."""
    web.reset("/to-internal", "/quillon")
    allow = "127.0.0.1/32" if guarded else "127.0.0.1/32,127.0.0.2/32"
    a = ask(
        tmp_path,
        model_cache,
        **ddg(web, web_fetch_allow_private=False, web_fetch_allow_networks=allow, web_passages=4),
    )
    assert "/to-internal" in web.page_hits()
    assert f"[1] {web.site.url('/quillon')}: {QUILLON}" in a.prompt
    if guarded:
        assert web.internal.hits == [] and SECRET not in a.prompt
        assert a.raw.endswith(sources_frame(web.site.url("/quillon")))
    else:
        assert web.internal.hits == ["/secret"] and SECRET in a.prompt


def test_oversize_and_slow_pages_are_skipped(web: Web, tmp_path: Path, model_cache: Path) -> None:
    web.reset("/huge", "/slow", "/quillon")
    a = ask(
        tmp_path,
        model_cache,
        **ddg(web, web_fetch_max_bytes=100_000, web_fetch_timeout=1.0, web_passages=4),
    )
    assert sorted(web.page_hits()) == ["/huge", "/quillon", "/slow"]
    assert OVERSIZE not in a.prompt and SLOW not in a.prompt
    assert f"[1] {web.site.url('/quillon')}: {QUILLON}" in a.prompt
    assert a.raw.endswith(sources_frame(web.site.url("/quillon")))
    assert a.seconds < 4.5, a.seconds  # the slow page's 5 s were not waited for


def test_oversize_control(web: Web, tmp_path: Path, model_cache: Path) -> None:
    """With room for it, the big page is read: the limit above is what kept it out."""
    web.reset("/huge")
    a = ask(tmp_path, model_cache, **ddg(web, web_fetch_max_bytes=1_000_000, web_passages=4))
    assert OVERSIZE in a.prompt


@pytest.mark.parametrize(
    ("engine_path", "results", "why"),
    [
        ("/html/", [], "the web search found nothing"),
        ("/broken/", ["/quillon"], "the web search failed"),
    ],
)
def test_without_web_results(
    web: Web,
    tmp_path: Path,
    model_cache: Path,
    engine_path: str,
    results: list[str],
    why: str,
) -> None:
    web.reset(*results)
    a = ask(tmp_path, model_cache, **ddg(web, duckduckgo_url=web.engine.url(engine_path)))
    assert a.status == 200
    assert f"[[Fetched Information]]: (none: {why})" in a.prompt
    assert a.raw.endswith(f"data:Sources: none ({why})\n\n".encode())
    assert web.page_hits() == []


def test_passages_keep_paragraphs_and_stay_under_150_words() -> None:
    from pasture.services.chatbot import split_passages

    para = " ".join(f"word{i}" for i in range(60)) + "."
    sentences = " ".join(f"Sentence {i} has exactly six words." for i in range(60))  # 360 words
    long = " ".join(f"long{i}" for i in range(149))
    menu = "Home | About"  # a short piece left on its own is dropped
    got = split_passages("\n\n".join([para, para, sentences, "x " * 400, long, menu]))
    assert [len(p.split()) for p in got] == [120, 150, 150, 60, 150, 150, 100, 149]
    assert got[0] == f"{para} {para}"  # two short paragraphs packed into one passage
    # The long paragraph is cut at sentence ends, never inside a sentence.
    assert all(p.endswith("words.") for p in got[1:4])
    assert menu not in " ".join(got)
    assert split_passages("Only a line.") == ["Only a line."]
    assert split_passages("") == []
