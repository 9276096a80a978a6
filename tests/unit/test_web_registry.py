"""The web registry, SQLite (data dir) and PostgreSQL (beside the index) alike: followed feeds with their
validators, robots.txt copies, fetched pages and the article each became; one test body over both."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from index.web.registry import FeedRegistry, Page, WebRegistry, open_registry
from index.web.registry_postgres import PostgresFeedRegistry
from index.web.syncing import WebSource, article_id_for
from tests.unit.test_web import ARTICLE, _Recorder, fetcher, render, site

Opener = Callable[[], WebRegistry]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the one registry again at each call, as the next command (or another machine) would."""
    if request.param == "sqlite":
        return lambda: open_registry(tmp_path / "data")
    url = request.getfixturevalue("postgres_cluster").create_database(f"w_{uuid.uuid4().hex[:10]}")
    return lambda: open_registry(tmp_path / "unused", url)


def test_feeds_are_followed_once_checked_and_removed(opener: Opener) -> None:
    registry = opener()
    assert registry.add_feed("http://news.example/rss", "feed", "Tin mới") is True
    assert registry.add_feed("http://news.example/sitemap.xml", "sitemap", None) is True
    registry.close()
    again = opener()
    assert again.add_feed("http://news.example/rss", "feed", "Tin mới") is False  # followed already
    again.feed_checked("http://news.example/rss", etag='"v1"', last_modified="Mon, 01 Dec 2025 00:00:00 GMT",
                       error=None)
    again.feed_checked("http://news.example/rss", etag=None, last_modified=None, error="HTTP 503")
    feed, sitemap = again.feeds()
    assert (feed.url, feed.kind, feed.title) == ("http://news.example/rss", "feed", "Tin mới")
    assert (feed.etag, feed.last_modified, feed.last_error) == ('"v1"', "Mon, 01 Dec 2025 00:00:00 GMT", "HTTP 503")
    assert feed.checked_at is not None and sitemap.checked_at is None and sitemap.kind == "sitemap"
    assert again.remove_feed("http://news.example/sitemap.xml") and not again.remove_feed("http://news.example/x")
    assert [f.url for f in again.feeds()] == ["http://news.example/rss"]
    again.close()


def test_robots_and_pages_round_trip(opener: Opener) -> None:
    registry = opener()
    assert registry.cached_robots("http://news.example") is None
    registry.store_robots("http://news.example", "User-agent: *\nDisallow: /x\n", '"r1"', None)
    registry.store_robots("http://news.example", "User-agent: *\n", '"r2"', "Tue, 02 Dec 2025 00:00:00 GMT")
    assert registry.cached_robots("http://news.example") == ("User-agent: *\n", '"r2"', "Tue, 02 Dec 2025 00:00:00 GMT")
    page = Page("http://news.example/a-amp.html", "http://news.example/a.html", "web-news.example-1", "h1", None, None)
    registry.page_fetched(page)
    registry.page_fetched(Page("http://news.example/a.html", "http://news.example/a.html", "web-news.example-1", "h1",
                               '"p"', None))
    registry.close()
    again = opener()
    assert again.page("http://news.example/a-amp.html") == page and again.page("http://news.example/b.html") is None
    assert again.article_with_text("h1") == "web-news.example-1" and again.article_with_text("h2") is None
    again.close()


def test_the_same_text_under_another_url_is_indexed_once_whichever_registry(opener: Opener) -> None:
    html = render(ARTICLE, "bao-dien-tu", "http://news.example/a.html")
    no_canonical = html.replace('<link rel="canonical" href="http://news.example/a.html">', "")
    handler, _ = site({"/a.html": httpx.Response(200, text=html, headers={"Content-Type": "text/html"}),
                       "/print/a": httpx.Response(200, text=no_canonical, headers={"Content-Type": "text/html"})})
    registry = opener()
    web, _ = fetcher(handler)
    WebSource(web, registry, _Recorder()).index_pages(["http://news.example/a.html"])
    registry.close()
    registry = opener()  # a later run, perhaps on another machine: the first page is remembered
    recorder = _Recorder()
    web, _ = fetcher(handler)
    WebSource(web, registry, recorder).index_pages(["http://news.example/print/a"])
    registry.close()
    documents, skipped = recorder.calls[-1]
    assert documents == [] and [s.path for s in skipped] == ["http://news.example/print/a"]
    assert skipped[0].reason.startswith(f"same text as article {article_id_for('http://news.example/a.html')}")


def test_the_registry_follows_the_database_setting(tmp_path: Path, postgres_cluster) -> None:
    url = postgres_cluster.create_database(f"w_{uuid.uuid4().hex[:10]}")
    embedded, database = open_registry(tmp_path), open_registry(tmp_path, url)
    assert isinstance(embedded, FeedRegistry) and isinstance(database, PostgresFeedRegistry)
    embedded.close()
    database.close()
