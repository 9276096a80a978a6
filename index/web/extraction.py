"""A web page into a document: trafilatura's main text and metadata, with our HTML loader's on top.

Which extractor gives which field was measured by bench/extraction.py on 60 pages (20 articles, three
layouts shaped like Vietnamese outlets; table in bench/README.md). Body text: trafilatura's (F1 .958
against our loader's .901: it leaves out related links, comments and "most read" lists that our
loader keeps when they sit inside `<article>` or a table), plus the bold lead ("sapo") that it drops
when the lead sits outside the body's block and our loader keeps (F1 .990 together). Title and date:
trafilatura's (60/60 and 60/60, ours 40/60 and 20/60: it reads `og:title`, JSON-LD and dates written
in the text), ours when it finds none. Outlet: the page's `og:site_name`, else trafilatura's, never a
bare host name. Vietnamese cleaning (bylines, outlets, dates in the text) follows in `clean_article`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import trafilatura

from index.documents import RawDocument
from index.errors import HoidapError, UnreadableFileError
from index.loading import read_html
from index.text import looks_vietnamese, normalize, words

Extractor = Literal["ours", "trafilatura", "both"]
MIN_WORDS = 40  # fewer words than a short news brief: an empty page, a paywall teaser or a listing
LEAD_MIN_WORDS = 20  # a lead is a sentence or two; dates, breadcrumbs, categories and bylines are shorter


class ExtractionError(HoidapError):
    """A page holds no article we can use; the message is the reason."""


@dataclass(frozen=True)
class PageFields:
    """What one extractor found on a page."""

    text: str
    title: str | None
    date: str | None
    source: str | None
    canonical_url: str | None


def extract_fields(html: str, url: str, extractor: Extractor = "both") -> PageFields:
    """The page's body text and metadata by `extractor` ("both" is what indexing uses)."""
    ours = _ours(html, url) if extractor in ("ours", "both") else None
    theirs = _trafilatura(html, url) if extractor in ("trafilatura", "both") else None
    if ours is None and theirs is None:
        return PageFields("", None, None, None, None)
    if ours is None or theirs is None:
        return ours or theirs  # type: ignore[return-value]
    return PageFields(
        text=_with_lead(theirs.text, ours.text, ours.title) if theirs.text else ours.text,
        title=theirs.title or ours.title,
        date=theirs.date or ours.date,
        source=ours.source or theirs.source,
        canonical_url=ours.canonical_url or theirs.canonical_url,
    )


def _with_lead(theirs: str, ours: str, title: str | None) -> str:
    """trafilatura's text with the lead ("sapo") it leaves out when the lead sits outside the body's block.

    Vietnamese outlets print the lead in bold above the body, often in its own element; our loader keeps
    it. The lines our loader found before trafilatura's first paragraph that are sentence-long (a date
    line, a breadcrumb or a category is not) and are not the headline are put back in front.
    """
    first = next((line for line in theirs.split("\n") if line.strip()), "")
    lines = [line.strip() for line in ours.split("\n") if line.strip()]
    start = next((i for i, line in enumerate(lines) if words(line) == words(first)), None)
    if start is None:
        return theirs
    headline, kept = words(title or ""), " ".join(words(theirs))
    lead = [line for line in lines[:start] if len(words(line)) >= LEAD_MIN_WORDS and words(line) != headline
            and " ".join(words(line)) not in kept]
    return "\n\n".join([*lead, theirs])


def extract_page(html: str, url: str, *, doc_id: str) -> RawDocument:
    """The article on a page as a document whose `url` is its canonical URL; raises ExtractionError."""
    fields = extract_fields(html, url)
    if len(words(fields.text)) < MIN_WORDS:
        raise ExtractionError(f"no article text on the page (empty, a listing or behind a paywall): {url}",
                              vi=f"trang không có nội dung bài báo (trống, trang danh mục hoặc cần trả phí): {url}")
    if not looks_vietnamese(fields.text):
        raise ExtractionError(f"the page is not in Vietnamese: {url}", vi=f"trang không viết bằng tiếng Việt: {url}")
    return RawDocument(doc_id=doc_id, text=fields.text, path=None, title=fields.title, date=fields.date,
                       url=canonical_url(fields.canonical_url, url), source=fields.source, kind="html")


def canonical_url(declared: str | None, fetched: str) -> str:
    """The page's declared canonical URL when it stays on the fetched site, else the fetched URL.

    A page may not claim another site's address: it would replace that site's article in the index.
    """
    if declared:
        absolute = urlsplit(declared if "://" in declared else _join(fetched, declared))
        if absolute.scheme in ("http", "https") and _site(absolute.hostname) == _site(urlsplit(fetched).hostname):
            return normalize_url(absolute.geturl())
    return normalize_url(fetched)


def normalize_url(url: str) -> str:
    """One spelling per address: lower-case scheme and host, no fragment, no tracking parameters."""
    parts = urlsplit(url.strip())
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith(("utm_", "fbclid=", "gclid=")))
    netloc = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    return parts._replace(scheme=parts.scheme.lower(), netloc=netloc, query=query, fragment="",
                          path=parts.path or "/").geturl()


def _join(base: str, relative: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, relative)


def _site(host: str | None) -> str:
    host = (host or "").lower()
    return host.removeprefix("www.")


def _ours(html: str, url: str) -> PageFields | None:
    try:
        doc = read_html(html, doc_id="page", path=url)
    except UnreadableFileError:
        return None
    return PageFields(doc.text, doc.title, doc.date, doc.source, doc.url)


def _trafilatura(html: str, url: str) -> PageFields | None:
    found = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                        include_tables=True, favor_precision=True)
    if found is None:
        return None
    text = normalize((found.text or "").strip())
    site = _clean(found.sitename)
    if site and site.lower() in ((found.hostname or "").lower(), urlsplit(url).netloc.lower()):
        site = None  # trafilatura's stand-in when the page names no outlet: a host is not an outlet's name
    return PageFields(text, _clean(found.title), _clean(found.date), site, None)


def _clean(value: str | None) -> str | None:
    value = normalize(value.strip()) if value else ""
    return value or None
