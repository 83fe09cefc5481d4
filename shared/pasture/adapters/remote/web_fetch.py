"""PageFetcher over HTTP: fetches public web pages for the internet chatbot, safely.

The URLs come from a web search, i.e. from strangers, so the fetcher is an SSRF guard first:

- http and https only, default or explicit port;
- the host is resolved here and every address it resolves to must be public (not private,
  loopback, link-local (169.254.169.254 included), multicast, reserved, unspecified, shared
  CGNAT 100.64/10, documentation, benchmarking, ...; IPv4-mapped, NAT64 and 6to4 IPv6
  addresses are judged by the IPv4 address inside them). Hosts are resolved with the system
  resolver, so numeric forms such as `2130706433`, `0177.0.0.1` or `0x7f.1` are judged by the
  address they really mean;
- the connection goes to the address that was checked (pinned: the URL's host is replaced by
  the IP, `Host` and, for https, SNI and certificate checks keep the hostname), so DNS
  rebinding cannot switch the address between the check and the connect;
- redirects are followed by hand (at most 5), each hop checked the same way;
- no proxy from the environment (a proxy would resolve the name itself);
- one deadline per page (connect to last byte), a byte limit counted while streaming the
  decoded body, and only text/html, application/xhtml+xml and text/plain are read.

`allow_private` turns the address check off (tests, closed networks); `allow_networks` lets
chosen networks through while the check stays on for everything else.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urljoin, urlsplit

import httpx

from pasture.domain.errors import Invalid, Upstream
from pasture.domain.web import WebPage
from pasture.ports import PageFetcher

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the host resolves to
Resolver = Callable[[str, int], Sequence[str]]

MAX_REDIRECTS = 5
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
MAX_TEXT_CHARS = 200_000  # extracted text kept per page
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0 Safari/537.36"
)
_REDIRECTS = {301, 302, 303, 307, 308}
# Elements that hold no readable content of the page itself.
_DROP = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "button",
    "select",
)
_BLOCKS = (
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "blockquote",
    "table",
    "tr",
    "td",
    "th",
    "caption",
    "figcaption",
    "hr",
    "address",
    "details",
    "summary",
)

# Every range IANA lists as special-purpose and not globally reachable, plus multicast and
# the reserved 240/4, spelled out so the verdict does not depend on the Python patch release
# (ipaddress's own `is_global` changed over 3.11.x and calls multicast and 6to4 global).
_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (CGNAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.31.196.0/24",  # AS112
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "192.175.48.0/24",  # AS112
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/8",  # unspecified, loopback, IPv4-compatible (mapped ones are unwrapped first)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and is routed to: IPv4-mapped
    (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a globally reachable unicast address (the only kind we connect to)."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    if any(ip in net for net in _BLOCKED if net.version == ip.version):
        return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Upstream(f"cannot resolve {host}: {exc}") from None
    out: list[str] = []
    for *_, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        if addr not in out:
            out.append(addr)
    return out


def parse_networks(spec: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """`"10.1.0.0/16, 192.168.5.7"` (or a list) -> networks; ValueError on a bad one."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in items if s.strip())


class HttpPageFetcher(PageFetcher):
    """PageFetcher over httpx, with the SSRF guard described above.

    `resolver` and `transport` are injectable for tests (a fake DNS, httpx.MockTransport).
    """

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        allow_private: bool = False,
        allow_networks: Iterable[IPNetwork] = (),
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.allow_networks = tuple(allow_networks)
        self._resolve = resolver
        self._transport = transport
        self._user_agent = user_agent

    # ------------------------------------------------------------------ the guard

    def address_allowed(self, ip: IPAddress) -> bool:
        if self.allow_private:
            return True
        if any(ip.version == n.version and ip in n for n in self.allow_networks):
            return True
        return is_public(ip)

    def check(self, url: str) -> tuple[httpx.URL, str, str]:
        """(URL to request with the host pinned to a checked address, Host header, hostname).
        Raises Invalid for a URL or an address we must not fetch."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise Invalid(f"not a valid URL: {url[:200]}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise Invalid(f"only http and https pages are fetched, not {scheme or 'this'}:")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise Invalid("the URL has no host")
        if parts.username is not None or parts.password is not None:
            raise Invalid("URLs with credentials are not fetched")
        port = port or (443 if scheme == "https" else 80)
        try:
            ascii_host = host if _is_ip(host) else host.encode("idna").decode("ascii")
        except UnicodeError:
            raise Invalid(f"not a valid host name: {host[:100]}") from None
        addresses = self._resolve(ascii_host, port)
        if not addresses:
            raise Upstream(f"{host} has no address")
        ips = []
        for a in addresses:
            try:
                ips.append(ipaddress.ip_address(a))
            except ValueError:
                raise Upstream(f"{host} resolved to something that is not an address") from None
        # Every address must pass: a name that also points inside the network is refused.
        refused = [ip for ip in ips if not self.address_allowed(ip)]
        if refused:
            raise Invalid(f"{host} resolves to a non-public address ({refused[0]}): not fetched")
        pinned = ips[0]
        try:
            target = httpx.URL(url).copy_with(
                scheme=scheme, host=str(pinned), port=port, fragment=None
            )
        except (httpx.InvalidURL, ValueError):
            raise Invalid(f"not a valid URL: {url[:200]}") from None
        default_port = 443 if scheme == "https" else 80
        host_header = ascii_host if ":" not in ascii_host else f"[{ascii_host}]"
        if port != default_port:
            host_header += f":{port}"
        return target, host_header, ascii_host

    # ------------------------------------------------------------------ fetching

    def fetch(self, url: str) -> WebPage:
        deadline = time.monotonic() + self.timeout
        current = url
        with httpx.Client(
            transport=self._transport, follow_redirects=False, trust_env=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                target, host_header, hostname = self.check(current)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Upstream(f"{url[:200]} timed out")
                headers = {
                    "Host": host_header,
                    "User-Agent": self._user_agent,
                    "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1",
                    "Accept-Encoding": "gzip, deflate",
                    "Accept-Language": "en-US,en;q=0.9",
                }
                extensions = {"sni_hostname": hostname} if target.scheme == "https" else {}
                try:
                    with client.stream(
                        "GET",
                        target,
                        headers=headers,
                        extensions=extensions,
                        timeout=httpx.Timeout(left),
                    ) as r:
                        location = r.headers.get("location")
                        if r.status_code in _REDIRECTS and location:
                            current = urljoin(current, location.strip())
                            continue
                        if r.status_code != 200:
                            raise Upstream(f"{url[:200]} answered HTTP {r.status_code}")
                        ctype, charset = _content_type(r.headers.get("content-type", ""))
                        if ctype not in TEXT_TYPES:
                            raise Upstream(f"{url[:200]} is not a text page ({ctype or 'no type'})")
                        body = self._read(r, deadline, url)
                except httpx.TimeoutException:
                    raise Upstream(f"{url[:200]} timed out") from None
                except httpx.HTTPError as exc:
                    raise Upstream(f"{url[:200]} failed: {type(exc).__name__}") from None
                return extract(body, ctype, charset, current)
        raise Upstream(f"{url[:200]} redirects more than {MAX_REDIRECTS} times")

    def _read(self, r: httpx.Response, deadline: float, url: str) -> bytes:
        declared = r.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise Upstream(f"{url[:200]} is larger than {self.max_bytes} bytes")
        buf = bytearray()
        for chunk in r.iter_bytes():  # decoded (gzip undone): the limit is on what we parse
            buf += chunk
            if len(buf) > self.max_bytes:
                raise Upstream(f"{url[:200]} is larger than {self.max_bytes} bytes")
            if time.monotonic() > deadline:
                raise Upstream(f"{url[:200]} timed out")
        return bytes(buf)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _content_type(value: str) -> tuple[str, str | None]:
    main, _, params = value.partition(";")
    charset = None
    m = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.I)
    if m:
        charset = m.group(1)
    return main.strip().lower(), charset


# ---------------------------------------------------------------------- text extraction


def extract(body: bytes, content_type: str, charset: str | None, url: str) -> WebPage:
    """Readable text of a page: for HTML, the visible text of the body without navigation,
    headers, footers, forms and scripts, one paragraph per block element."""
    if content_type == "text/plain":
        text = _decode(body, charset)
        return WebPage(url=url, title="", text=_tidy(text)[:MAX_TEXT_CHARS])
    return extract_html(body, url, charset)


def extract_html(html: bytes | str, url: str, charset: str | None = None) -> WebPage:
    from bs4 import BeautifulSoup

    try:
        soup = BeautifulSoup(
            html, "lxml", from_encoding=charset if isinstance(html, bytes) else None
        )
    except Exception as exc:  # a parser failure is the page's problem, not ours
        raise Upstream(f"{url[:200]} could not be parsed: {type(exc).__name__}") from None
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    for tag in soup(list(_DROP)):
        tag.decompose()
    for tag in soup.find_all(["head", "title"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(list(_BLOCKS)):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    return WebPage(url=url, title=title, text=_tidy(soup.get_text())[:MAX_TEXT_CHARS])


def _decode(body: bytes, charset: str | None) -> str:
    for enc in (charset, "utf-8"):
        if not enc:
            continue
        try:
            return body.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("latin-1")


def _tidy(text: str) -> str:
    """Paragraphs (blank-line separated) with their inner whitespace collapsed."""
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)
