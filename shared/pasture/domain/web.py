"""Web search values: what a WebSearch returns and what a page fetch yields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebResult:
    url: str  # absolute http(s) URL of the result page (search engines' redirects undone)
    title: str
    snippet: str


@dataclass(frozen=True)
class WebPage:
    url: str  # where the content came from, after redirects
    title: str
    text: str  # readable text extracted from the page
