"""The page fetcher's SSRF guard (adapters/remote/web_fetch.py): which addresses count as
public, how URLs are checked, that the connection goes to the checked address, and that every
redirect hop is checked again.

No test leaves this machine: the web is an httpx.MockTransport and DNS a fake resolver (the
real resolver is only asked about numeric hosts and `localhost`, which it answers locally).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

import httpx
import pytest

from pasture.adapters.remote.web_fetch import (
    HttpPageFetcher,
    embedded_ipv4,
    is_public,
    parse_networks,
    system_resolver,
)
from pasture.config import Settings
from pasture.domain.errors import Invalid, Upstream

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",  # multicast (ipaddress calls it global on 3.11.7)
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "::1",
    "::",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "2001::1",  # Teredo
    "100::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0.0.0.0",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.128.0.1",  # just past CGNAT
    "100.63.255.255",
    "172.32.0.1",  # just past 172.16/12
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("addr", NOT_PUBLIC)
def test_non_public_addresses(addr: str) -> None:
    assert not is_public(ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_addresses(addr: str) -> None:
    assert is_public(ipaddress.ip_address(addr))


def test_embedded_ipv4() -> None:
    ip = ipaddress.ip_address
    assert embedded_ipv4(ip("::ffff:10.0.0.1")) == ip("10.0.0.1")
    assert embedded_ipv4(ip("64:ff9b::a9fe:a9fe")) == ip("169.254.169.254")
    assert embedded_ipv4(ip("2002:7f00:1::")) == ip("127.0.0.1")
    assert embedded_ipv4(ip("2606:4700::1")) is None
    assert embedded_ipv4(ip("8.8.8.8")) is None


# ---------------------------------------------------------------------- URL checks


def resolver(table: dict[str, Sequence[str]]) -> Callable[[str, int], Sequence[str]]:
    """A fake DNS; numeric hosts (IP literals in any form) go to the real resolver, which
    answers them without asking anyone."""

    def resolve(host: str, port: int) -> Sequence[str]:
        if host in table:
            return table[host]
        if host[:1].isdigit() or ":" in host:
            return system_resolver(host, port)
        raise Upstream(f"cannot resolve {host}")

    return resolve


def fetcher(
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    table: dict[str, Sequence[str]] | None = None,
    **kw: object,
) -> HttpPageFetcher:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    args: dict[str, object] = {"timeout": 5.0, "max_bytes": 100_000, **kw}
    if table is not None:
        args["resolver"] = resolver(table)
    return HttpPageFetcher(transport=httpx.MockTransport(handler or refuse), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8000/admin",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",  # hex, short form
        "http://127.1/",
        "http://0x7f000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:8080/",
        "http://0.0.0.0/",
        "https://[fe80::1]/",
    ],
)
def test_non_public_hosts_are_refused_with_the_real_resolver(url: str) -> None:
    with pytest.raises(Invalid, match="non-public"):
        fetcher().fetch(url)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
        "javascript:alert(1)",
        "http:///nohost",
        "http://user:pw@example.com/",
        "http://example.com:99999/",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(Invalid):
        fetcher(table={"example.com": ["93.184.216.34"]}).fetch(url)


def test_a_name_with_any_private_address_is_refused() -> None:
    f = fetcher(table={"mixed.example": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(Invalid, match=r"10\.0\.0\.5"):
        f.fetch("http://mixed.example/")


def page(body: str, status: int = 200, ctype: str = "text/html; charset=utf-8") -> httpx.Response:
    return httpx.Response(status, headers={"content-type": ctype}, content=body.encode())


HTML = "<html><head><title>Llamas</title></head><body><p>Llamas hum.</p></body></html>"


def test_connects_to_the_checked_address_with_the_hostname_kept() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return page(HTML)

    calls: list[str] = []
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # a rebinding DNS: public, then not

    def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return next(answers)

    f = HttpPageFetcher(
        timeout=5, max_bytes=100_000, resolver=rebinding, transport=httpx.MockTransport(handler)
    )
    got = f.fetch("https://www.example.com/wiki/Llama?x=1#top")
    assert got.title == "Llamas" and got.text == "Llamas hum."
    assert got.url == "https://www.example.com/wiki/Llama?x=1#top"
    assert calls == ["www.example.com"]  # resolved once; that answer is the one used
    (req,) = seen
    assert req.url.host == "93.184.216.34" and req.url.scheme == "https"
    assert req.url.raw_path == b"/wiki/Llama?x=1"
    assert req.headers["host"] == "www.example.com"
    assert req.extensions["sni_hostname"] == "www.example.com"


def test_ipv6_pinning_and_explicit_port() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return page(HTML)

    f = fetcher(handler, {"v6.example": ["2606:4700::6810:85e5"]})
    f.fetch("http://v6.example:8080/a")
    assert seen[0].url.host == "2606:4700::6810:85e5" and seen[0].url.port == 8080
    assert seen[0].headers["host"] == "v6.example:8080"
    assert "sni_hostname" not in seen[0].extensions  # plain http


@pytest.mark.parametrize(
    "location",
    [
        "http://internal.example/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://2130706433/",
    ],
)
def test_a_redirect_to_a_private_address_is_blocked(location: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": location})

    f = fetcher(
        handler,
        {"www.example.com": ["93.184.216.34"], "internal.example": ["10.0.0.7"]},
    )
    with pytest.raises(Invalid, match="non-public"):
        f.fetch("http://www.example.com/start")
    assert seen == ["http://93.184.216.34/start"]  # the private hop was never contacted


def test_redirects_are_followed_hop_by_hop_and_relative() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.headers['host']}{request.url.raw_path.decode()}")
        if request.url.path == "/old":
            return httpx.Response(301, headers={"location": "https://www.example.org/new"})
        if request.url.path == "/new":
            return httpx.Response(307, headers={"location": "/final"})
        return page(HTML)

    f = fetcher(handler, {"example.org": ["93.184.216.34"], "www.example.org": ["93.184.216.35"]})
    got = f.fetch("http://example.org/old")
    assert seen == ["example.org/old", "www.example.org/new", "www.example.org/final"]
    assert got.url == "https://www.example.org/final"


def test_too_many_redirects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.strip("/") or 0)
        return httpx.Response(302, headers={"location": f"/{n + 1}"})

    with pytest.raises(Upstream, match="redirects more than 5"):
        fetcher(handler, {"example.org": ["93.184.216.34"]}).fetch("http://example.org/0")


def test_allow_private_and_allowed_networks() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return page(HTML)

    table = {"wiki.corp": ["10.20.1.5"], "box.corp": ["192.168.1.5"]}
    with pytest.raises(Invalid):
        fetcher(handler, table).fetch("http://wiki.corp/")
    assert fetcher(handler, table, allow_private=True).fetch("http://wiki.corp/").text
    some = fetcher(handler, table, allow_networks=parse_networks("10.20.0.0/16"))
    assert some.fetch("http://wiki.corp/").text == "Llamas hum."
    with pytest.raises(Invalid):
        some.fetch("http://box.corp/")  # the rest stays behind the guard


def test_allow_networks_setting_is_checked() -> None:
    assert Settings(web_fetch_allow_networks="10.0.0.0/8, ::1").web_fetch_allow_networks
    with pytest.raises(ValueError):
        Settings(web_fetch_allow_networks="10.0.0.0/8,not-a-network")
    assert parse_networks("10.0.0.0/8, 192.168.1.5") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.5/32"),
    )


# ---------------------------------------------------------------------- what is read


def test_only_text_pages_are_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/doc.pdf":
            return page("%PDF-1.7", ctype="application/pdf")
        if request.url.path == "/plain":
            return page("First line\nsame paragraph.\n\nSecond.", ctype="text/plain")
        if request.url.path == "/missing":
            return page("gone", status=404)
        return page(HTML, ctype="application/xhtml+xml")

    f = fetcher(handler, {"example.org": ["93.184.216.34"]})
    with pytest.raises(Upstream, match="not a text page"):
        f.fetch("http://example.org/doc.pdf")
    with pytest.raises(Upstream, match="404"):
        f.fetch("http://example.org/missing")
    assert f.fetch("http://example.org/plain").text == "First line same paragraph.\n\nSecond."
    assert f.fetch("http://example.org/x").title == "Llamas"


def test_size_limit_with_and_without_content_length() -> None:
    big = "<p>" + "llama " * 50_000 + "</p>"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/declared":
            return page(big)
        # No Content-Length: only counting while streaming can stop it.
        return httpx.Response(
            200, headers={"content-type": "text/html"}, content=iter([big.encode()[:60_000]] * 5)
        )

    f = fetcher(handler, {"example.org": ["93.184.216.34"]}, max_bytes=100_000)
    for path in ("/declared", "/streamed"):
        with pytest.raises(Upstream, match="larger than 100000 bytes"):
            f.fetch(f"http://example.org{path}")


def test_html_text_extraction_drops_chrome() -> None:
    html = """<html><head><title> Llama  facts </title><style>p{color:red}</style></head>
    <body><header>Site header</header><nav><a href="/">Home</a></nav>
    <main><h1>Llamas</h1><p>Llamas are <b>camelids</b>.<br>They hum.</p>
    <script>var x = "script text";</script><ul><li>Wool</li><li>Packs</li></ul></main>
    <aside>Related links</aside><form>Search <input></form><footer>Copyright</footer>
    <noscript>Enable JS</noscript></body></html>"""

    def handler(request: httpx.Request) -> httpx.Response:
        return page(html)

    got = fetcher(handler, {"example.org": ["93.184.216.34"]}).fetch("http://example.org/")
    assert got.title == "Llama facts"
    assert got.text == "Llamas\n\nLlamas are camelids. They hum.\n\nWool\n\nPacks"
    for chrome in ("Site header", "Home", "script text", "Related", "Search", "Copyright", "JS"):
        assert chrome not in got.text
