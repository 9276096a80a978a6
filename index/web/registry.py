"""The feeds a user follows and the pages fetched from the web, in SQLite beside the index (no pickle).

`feeds` holds each followed feed or sitemap with the validators (ETag, Last-Modified) of its last
response, so an unchanged feed costs one conditional request. `robots` keeps each site's robots.txt for the same reason. `pages` maps every fetched URL to the
article it became (by canonical URL), with that page's validators and the hash of its text, so the
same article under a second URL, or a copy without a canonical link, is recognised and indexed once.

`WebRegistry` is what the web sync needs of it; `FeedRegistry` keeps it in `web.sqlite3` in the data dir,
`registry_postgres.PostgresFeedRegistry` in the `HOIDAP_DATABASE_URL` database beside the index (so every
machine and bot replica sees the same followed feeds). `open_registry` picks one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from index.web.feeds import SourceKind

REGISTRY = "web.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT,
    added_at REAL NOT NULL,
    etag TEXT,
    last_modified TEXT,
    checked_at REAL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY,
    canonical_url TEXT NOT NULL,
    article_id TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS robots (
    origin TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    fetched_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pages_by_hash ON pages(text_hash);
"""


@dataclass(frozen=True)
class Feed:
    """A followed feed or sitemap."""

    url: str
    kind: SourceKind
    title: str | None
    etag: str | None
    last_modified: str | None
    checked_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class Page:
    """A fetched page and the article it became."""

    url: str
    canonical_url: str
    article_id: str
    text_hash: str
    etag: str | None
    last_modified: str | None


class WebRegistry(Protocol):
    """Followed feeds, robots.txt copies and fetched pages, wherever they are kept."""

    def close(self) -> None: ...
    def add_feed(self, url: str, kind: SourceKind, title: str | None) -> bool:
        """Follow `url`; False when it was followed already."""
    def remove_feed(self, url: str) -> bool: ...
    def feeds(self) -> list[Feed]:
        """The followed feeds, oldest first."""
    def feed_checked(self, url: str, *, etag: str | None, last_modified: str | None, error: str | None) -> None:
        """Record a check of a feed: its new validators (kept when the answer had none), or the error."""
    def cached_robots(self, origin: str) -> tuple[str, str | None, str | None] | None: ...
    def store_robots(self, origin: str, text: str, etag: str | None, last_modified: str | None) -> None: ...
    def page(self, url: str) -> Page | None: ...
    def article_with_text(self, text_hash: str) -> str | None:
        """The article first fetched with this text, if any."""
    def page_fetched(self, page: Page) -> None: ...


def open_registry(data_dir: Path, database_url: str | None = None) -> WebRegistry:
    """The registry in the database when one is configured, else in `data_dir`."""
    if database_url is not None:
        from index.web.registry_postgres import PostgresFeedRegistry

        return PostgresFeedRegistry.open(database_url)
    return FeedRegistry.open(data_dir)


class FeedRegistry:
    """The feed and page tables of one data directory; one writer at a time (the sync lock)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, data_dir: Path) -> FeedRegistry:
        data_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(data_dir / REGISTRY, timeout=30, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.executescript(_SCHEMA)
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    # --- feeds ---

    def add_feed(self, url: str, kind: SourceKind, title: str | None) -> bool:
        """Follow `url`; False when it was followed already."""
        with self._db:
            cursor = self._db.execute("INSERT OR IGNORE INTO feeds (url, kind, title, added_at) VALUES (?,?,?,?)",
                                      (url, kind, title, time.time()))
        return cursor.rowcount == 1

    def remove_feed(self, url: str) -> bool:
        with self._db:
            return self._db.execute("DELETE FROM feeds WHERE url = ?", (url,)).rowcount == 1

    def feeds(self) -> list[Feed]:
        rows = self._db.execute("SELECT url, kind, title, etag, last_modified, checked_at, last_error "
                                "FROM feeds ORDER BY added_at, url").fetchall()
        return [Feed(**dict(row)) for row in rows]

    def feed_checked(self, url: str, *, etag: str | None, last_modified: str | None, error: str | None) -> None:
        """Record a check of a feed: its new validators (kept when the answer had none), or the error."""
        with self._db:
            self._db.execute(
                "UPDATE feeds SET etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified), "
                "checked_at = ?, last_error = ? WHERE url = ?", (etag, last_modified, time.time(), error, url))

    # --- robots.txt (the fetcher's RobotsCache) ---

    def cached_robots(self, origin: str) -> tuple[str, str | None, str | None] | None:
        row = self._db.execute("SELECT text, etag, last_modified FROM robots WHERE origin = ?", (origin,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def store_robots(self, origin: str, text: str, etag: str | None, last_modified: str | None) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO robots VALUES (?,?,?,?,?)",
                             (origin, text, etag, last_modified, time.time()))

    # --- pages ---

    def page(self, url: str) -> Page | None:
        row = self._db.execute("SELECT url, canonical_url, article_id, text_hash, etag, last_modified "
                               "FROM pages WHERE url = ?", (url,)).fetchone()
        return Page(**dict(row)) if row else None

    def article_with_text(self, text_hash: str) -> str | None:
        row = self._db.execute("SELECT article_id FROM pages WHERE text_hash = ? ORDER BY fetched_at LIMIT 1", (text_hash,)).fetchone()
        return row[0] if row else None

    def page_fetched(self, page: Page) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO pages VALUES (?,?,?,?,?,?,?)", (
                page.url, page.canonical_url, page.article_id, page.text_hash, page.etag, page.last_modified,
                time.time()))
