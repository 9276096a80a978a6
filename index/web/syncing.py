"""Pages, feeds and sitemaps into the index: follow a source, fetch what is new, index it incrementally.

Each page becomes a document whose id comes from its canonical URL, so the same article reached under
two URLs is one article, and an updated article replaces its old version. Pages are indexed with
`sync_documents`: nothing already indexed is removed, so a feed item that vanished stays indexed.
Every failure (fetch, feed format, extraction) is a `Skipped` with its reason; the run goes on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from index.documents import RawDocument, Skipped
from index.errors import HoidapError
from index.indexer import SyncSummary
from index.text import words
from index.web.extraction import extract_page, normalize_url
from index.web.feeds import (
    Listing,
    SourceKind,
    common_locations,
    discover_feeds,
    kind_of,
    read_listing,
)
from index.web.fetching import Fetched, Fetcher
from index.web.registry import Feed, Page, WebRegistry

IndexDocuments = Callable[[list[RawDocument], list[Skipped]], SyncSummary]
"""Adds or updates documents in the index (`sync_documents` bound to an index, embedder and settings)."""

MAX_SITEMAP_DEPTH = 2  # a sitemap index of sitemaps; deeper nesting is not followed
HTML_TYPES = ("text/html", "application/xhtml+xml")


class NoFeedFoundError(HoidapError):
    """A page announces no feed and the site has no feed or sitemap at the usual places."""


@dataclass(frozen=True)
class FollowedSource:
    """What `add_source` registered: the feeds or sitemaps found for the URL given."""

    given: str
    followed: list[tuple[str, SourceKind, str | None]]  # (url, kind, title)
    already: list[str] = field(default_factory=list)


def article_id_for(canonical_url: str) -> str:
    """A stable article id for a web page: its host and a hash of its canonical URL."""
    host = (urlsplit(canonical_url).hostname or "web").removeprefix("www.")
    return f"web-{host}-{hashlib.sha256(canonical_url.encode('utf-8')).hexdigest()[:12]}"


def text_hash(text: str) -> str:
    """Identifies an article's text whatever the page around it: its words, accents and case folded."""
    return hashlib.sha256(" ".join(words(text)).encode("utf-8")).hexdigest()


class WebSource:
    """Follows feeds and indexes pages, with one fetcher, the feed registry and the index given."""

    def __init__(self, fetcher: Fetcher, registry: WebRegistry, index_documents: IndexDocuments) -> None:
        self._fetcher = fetcher
        self._registry = registry
        self._index_documents = index_documents

    # --- following ---

    def add_source(self, url: str) -> FollowedSource:
        """Follow a feed, a sitemap, or a site's feeds found from its home page; raises HoidapError."""
        url = normalize_url(url)
        fetched = self._fetcher.get(url)
        kind = kind_of(fetched.body, fetched.content_type)
        if kind != "page":
            listing = read_listing(fetched.body, fetched.content_type, fetched.url)
            return self._follow(url, [(fetched.url, listing)])
        found = self._discover(fetched)
        if not found:
            raise NoFeedFoundError(
                f"{url} is a page that announces no feed, and the site has no feed or sitemap at the usual places; "
                "index the page itself with `hoidap index URL`.",
                vi=f"{url} là một trang không khai báo nguồn tin nào, và trang web không có RSS hay sitemap ở các vị trí "
                   "thường gặp; hãy lập chỉ mục chính trang đó bằng `hoidap index URL`.")
        return self._follow(url, found)

    def add(self, url: str) -> tuple[FollowedSource | None, SyncSummary]:
        """Index a page, or follow a feed or sitemap and index its articles now (Telegram's `/add`)."""
        url = normalize_url(url)
        fetched = self._fetcher.get(url)
        if kind_of(fetched.body, fetched.content_type) == "page":
            return None, self.index_pages([url])
        listing = read_listing(fetched.body, fetched.content_type, fetched.url)
        followed = self._follow(url, [(fetched.url, listing)])
        skipped: list[Skipped] = []
        pages = listing.pages + self._sitemap_pages(listing.sitemaps, skipped, depth=1)
        self._registry.feed_checked(fetched.url, etag=fetched.etag, last_modified=fetched.last_modified, error=None)
        return followed, self.index_pages(list(dict.fromkeys(pages)), skipped=skipped)

    def _discover(self, page: Fetched) -> list[tuple[str, Listing]]:
        """Feeds announced by the page, else sitemaps from robots.txt, else the first common location that is one."""
        candidates = [discover_feeds(page.text(), page.url), self._fetcher.sitemaps_of(page.url)]
        candidates.append(common_locations(page.url))
        for group in candidates:
            found = [(url, listing) for url in group if (listing := self._try_listing(url)) is not None]
            if found:
                return found if group is not candidates[-1] else found[:1]
        return []

    def _try_listing(self, url: str) -> Listing | None:
        try:
            fetched = self._fetcher.get(url)
            return read_listing(fetched.body, fetched.content_type, fetched.url)
        except HoidapError:
            return None

    def _follow(self, given: str, found: list[tuple[str, Listing]]) -> FollowedSource:
        followed, already = [], []
        for url, listing in found:
            if self._registry.add_feed(url, listing.kind, listing.title):
                followed.append((url, listing.kind, listing.title))
            else:
                already.append(url)
        return FollowedSource(given, followed, already)

    def followed(self) -> list[Feed]:
        return self._registry.feeds()

    # --- syncing ---

    def sync(self) -> SyncSummary:
        """Fetch every followed feed (conditionally) and index its new or changed pages."""
        pages: list[str] = []
        skipped: list[Skipped] = []
        for feed in self._registry.feeds():
            pages += self._feed_pages(feed, skipped)
        return self.index_pages(list(dict.fromkeys(pages)), skipped=skipped)

    def _feed_pages(self, feed: Feed, skipped: list[Skipped]) -> list[str]:
        try:
            fetched = self._fetcher.get(feed.url, etag=feed.etag, last_modified=feed.last_modified)
            if fetched.not_modified:
                self._registry.feed_checked(feed.url, etag=fetched.etag, last_modified=fetched.last_modified, error=None)
                return []
            listing = read_listing(fetched.body, fetched.content_type, fetched.url)
            pages = listing.pages + self._sitemap_pages(listing.sitemaps, skipped, depth=1)
        except HoidapError as error:
            skipped.append(Skipped(feed.url, str(error), vi=getattr(error, "vi", None)))
            self._registry.feed_checked(feed.url, etag=None, last_modified=None, error=str(error))
            return []
        self._registry.feed_checked(feed.url, etag=fetched.etag, last_modified=fetched.last_modified, error=None)
        return pages

    def _sitemap_pages(self, sitemaps: list[str], skipped: list[Skipped], depth: int) -> list[str]:
        pages: list[str] = []
        for url in sitemaps:
            if depth > MAX_SITEMAP_DEPTH:
                skipped.append(Skipped(url, f"sitemap nested deeper than {MAX_SITEMAP_DEPTH} levels",
                                       vi=f"sitemap lồng sâu quá {MAX_SITEMAP_DEPTH} cấp"))
                continue
            try:
                fetched = self._fetcher.get(url)
                listing = read_listing(fetched.body, fetched.content_type, fetched.url)
            except HoidapError as error:
                skipped.append(Skipped(url, str(error), vi=getattr(error, "vi", None)))
                continue
            pages += listing.pages + self._sitemap_pages(listing.sitemaps, skipped, depth + 1)
        return pages

    def index_pages(self, urls: list[str], *, skipped: list[Skipped] | None = None) -> SyncSummary:
        """Fetch `urls` (conditionally when fetched before) and add or update their articles."""
        skipped = list(skipped or [])
        documents: dict[str, RawDocument] = {}
        hashes: dict[str, str] = {}  # text hash -> article id, for this run
        fetched_pages: list[Page] = []
        for url in urls:
            try:
                document = self._page_document(normalize_url(url), hashes, fetched_pages)
            except HoidapError as error:
                skipped.append(Skipped(url, str(error), vi=getattr(error, "vi", None)))
                continue
            if document is None:
                continue
            if document.doc_id in documents:
                first = documents[document.doc_id].url
                skipped.append(Skipped(url, f"same article as {first} (canonical URL)",
                                       vi=f"cùng bài với {first} (URL chuẩn)"))
                continue
            documents[document.doc_id] = document
        summary = self._index_documents(list(documents.values()), skipped)
        # Only once indexed: a crash before would otherwise leave pages the next sync sees as unchanged (304).
        for page in fetched_pages:
            self._registry.page_fetched(page)
        return summary

    def _page_document(self, url: str, hashes: dict[str, str], fetched_pages: list[Page]) -> RawDocument | None:
        """The page's document, or None when it did not change since the last fetch (304)."""
        known = self._registry.page(url)
        fetched = self._fetcher.get(url, etag=known.etag if known else None,
                                    last_modified=known.last_modified if known else None)
        if fetched.not_modified:
            return None
        media = fetched.content_type.split(";")[0].strip().lower()
        if media and media not in HTML_TYPES:
            raise HoidapError(f"not an HTML page ({media}): {url}", vi=f"không phải trang HTML ({media}): {url}")
        if kind_of(fetched.body, fetched.content_type) != "page":
            raise HoidapError(f"a feed or sitemap, not an article page; follow it with `hoidap feeds add`: {url}",
                              vi=f"đây là nguồn tin hoặc sitemap, không phải bài báo; hãy dùng `hoidap feeds add`: {url}")
        provisional = extract_page(fetched.text(), fetched.url, doc_id="")
        canonical = provisional.url or normalize_url(fetched.url)
        article_id = article_id_for(canonical)
        digest = text_hash(provisional.text)
        twin = hashes.get(digest) or self._registry.article_with_text(digest)
        fetched_pages.append(Page(url, canonical, article_id, digest, fetched.etag, fetched.last_modified))
        if twin is not None and twin != article_id:
            raise HoidapError(f"same text as article {twin} already indexed (content hash): {url}",
                              vi=f"trùng nội dung với bài {twin} đã có (cùng mã băm nội dung): {url}")
        hashes[digest] = article_id
        return RawDocument(doc_id=article_id, text=provisional.text, path=None, title=provisional.title,
                           date=provisional.date, url=canonical, source=provisional.source, kind="html")
