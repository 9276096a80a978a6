"""What a URL is (a feed, a sitemap, a page) and the article links in it; feed discovery on a site.

RSS and Atom are read by feedparser (lenient with the broken feeds real sites serve, and it flags
them), JSON Feed by its spec (https://jsonfeed.org/version/1.1), sitemaps and sitemap indexes with
lxml, entities and network access off. Discovery looks, in order, at the page's
`<link rel="alternate">` feeds, the `Sitemap:` lines of robots.txt, then a few common locations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

import feedparser
from lxml import etree
from selectolax.lexbor import LexborHTMLParser

from index.errors import HoidapError

SourceKind = Literal["feed", "sitemap", "page"]
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/json")
COMMON_FEED_PATHS = ("/rss", "/rss.xml", "/feed", "/feed.xml", "/atom.xml", "/index.xml", "/feed.json", "/sitemap.xml")
MAX_LINKS = 2000  # per feed or sitemap: a bigger list is a site dump, not news to follow
_XML_START = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<([A-Za-z:]+)", re.DOTALL)
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=False)


class FeedFormatError(HoidapError):
    """A feed or sitemap that cannot be read; the message is the reason."""


@dataclass(frozen=True)
class Listing:
    """The links a feed or sitemap holds: article pages, and (for a sitemap index) further sitemaps."""

    kind: SourceKind
    title: str | None
    pages: list[str]
    sitemaps: list[str]


def kind_of(body: bytes, content_type: str) -> SourceKind:
    """Whether a response is a feed, a sitemap or a (HTML) page, by its content, then its type."""
    head = body.lstrip(b"\xef\xbb\xbf")
    root = _XML_START.match(head[:4096])
    tag = root.group(1).decode("ascii", "replace").split(":")[-1].lower() if root else ""
    if tag in ("rss", "feed", "rdf"):
        return "feed"
    if tag in ("urlset", "sitemapindex"):
        return "sitemap"
    if head[:1] == b"{" and b"jsonfeed.org" in head[:2048]:
        return "feed"
    return "page"


def read_listing(body: bytes, content_type: str, base_url: str) -> Listing:
    """The links of a feed or sitemap; raises FeedFormatError for a malformed one."""
    kind = kind_of(body, content_type)
    if kind == "sitemap":
        return _sitemap(body, base_url)
    if kind == "feed":
        return _json_feed(body, base_url) if body.lstrip(b"\xef\xbb\xbf")[:1] == b"{" else _xml_feed(body, base_url)
    raise FeedFormatError(f"not a feed or a sitemap: {base_url}", vi=f"không phải nguồn tin (RSS/Atom) hay sitemap: {base_url}")


def discover_feeds(html: str, page_url: str) -> list[str]:
    """The feeds a page announces with `<link rel="alternate" type="application/rss+xml" ...>`."""
    tree = LexborHTMLParser(html)
    found = []
    for link in tree.css("link[rel][href]"):
        rel = (link.attributes.get("rel") or "").lower().split()
        kind = (link.attributes.get("type") or "").lower().split(";")[0].strip()
        if "alternate" in rel and kind in FEED_TYPES:
            url = urljoin(page_url, (link.attributes.get("href") or "").strip())
            if url not in found:
                found.append(url)
    return found


def common_locations(site_url: str) -> list[str]:
    parts = urlsplit(site_url)
    return [f"{parts.scheme}://{parts.netloc}{path}" for path in COMMON_FEED_PATHS]


def _xml_feed(body: bytes, base_url: str) -> Listing:
    parsed = feedparser.parse(body, response_headers={"content-location": base_url})
    pages = _unique(urljoin(base_url, entry.get("link", "")) for entry in parsed.entries if entry.get("link"))
    if parsed.bozo and not pages:  # a feed broken but still readable (a stray "&") is read anyway
        raise FeedFormatError(f"malformed feed ({parsed.bozo_exception}): {base_url}",
                              vi=f"nguồn tin bị lỗi định dạng ({parsed.bozo_exception}): {base_url}")
    return Listing("feed", parsed.feed.get("title") or None, pages, [])


def _json_feed(body: bytes, base_url: str) -> Listing:
    try:
        data = json.loads(body.decode("utf-8-sig"))
        items = data["items"]
        if not isinstance(items, list):
            raise TypeError("items is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise FeedFormatError(f"malformed JSON feed ({error}): {base_url}",
                              vi=f"JSON Feed bị lỗi định dạng ({error}): {base_url}") from None
    links = (item.get("url") or item.get("external_url") for item in items if isinstance(item, dict))
    pages = _unique(urljoin(base_url, link) for link in links if isinstance(link, str) and link.strip())
    title = data.get("title") if isinstance(data.get("title"), str) else None
    return Listing("feed", title, pages, [])


def _sitemap(body: bytes, base_url: str) -> Listing:
    try:
        root = etree.fromstring(body, parser=_SAFE_XML)
    except etree.XMLSyntaxError as error:
        raise FeedFormatError(f"malformed sitemap ({error}): {base_url}",
                              vi=f"sitemap bị lỗi định dạng ({error}): {base_url}") from None
    locations = _unique(urljoin(base_url, (node.text or "").strip())
                        for node in root.iter("{*}loc") if (node.text or "").strip())
    if etree.QName(root).localname == "sitemapindex":
        return Listing("sitemap", None, [], locations)
    return Listing("sitemap", None, locations, [])


def _unique(urls) -> list[str]:
    seen: dict[str, None] = {}
    for url in urls:
        if urlsplit(url).scheme in ("http", "https"):
            seen.setdefault(url, None)
        if len(seen) >= MAX_LINKS:
            break
    return list(seen)
