"""The web registry (followed feeds, robots.txt copies, fetched pages) in PostgreSQL, beside the index.

The same rows as `registry.FeedRegistry`'s SQLite tables, in `hoidap_web_feeds`, `hoidap_web_pages`
and `hoidap_web_robots`, created idempotently by the first process to open them (under an advisory
lock) with their layout version in `hoidap_web_schema`. A registry lives for one command or one
refresh round, so a connection the server dropped is opened again by the next one.
"""

from __future__ import annotations

import time

from index.stores.postgres import connect
from index.stores.tables import TableSet, create_tables
from index.web.feeds import SourceKind
from index.web.registry import Feed, Page

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hoidap_web_schema (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoidap_web_feeds (
        url TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT, added_at DOUBLE PRECISION NOT NULL, etag TEXT,
        last_modified TEXT, checked_at DOUBLE PRECISION, last_error TEXT)""",
    """CREATE TABLE IF NOT EXISTS hoidap_web_pages (
        url TEXT PRIMARY KEY, canonical_url TEXT NOT NULL, article_id TEXT NOT NULL, text_hash TEXT NOT NULL,
        etag TEXT, last_modified TEXT, fetched_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hoidap_web_pages_by_hash ON hoidap_web_pages (text_hash)",
    """CREATE TABLE IF NOT EXISTS hoidap_web_robots (
        origin TEXT PRIMARY KEY, text TEXT NOT NULL, etag TEXT, last_modified TEXT,
        fetched_at DOUBLE PRECISION NOT NULL)""",
)
TABLES = TableSet(_SCHEMA, "hoidap_web_schema", SCHEMA_VERSION,
                  lock=0x686F6977,  # "hoiw": taken while a process creates or checks the tables
                  what="The feed tables", what_vi="Các bảng nguồn tin")
_FEED_COLUMNS = "url, kind, title, etag, last_modified, checked_at, last_error"
_PAGE_COLUMNS = "url, canonical_url, article_id, text_hash, etag, last_modified"


class PostgresFeedRegistry:
    """`registry.WebRegistry` in the database at `url` (autocommit: each change is kept at once)."""

    def __init__(self, connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, url: str) -> PostgresFeedRegistry:
        connection = connect(url, vector=False)
        connection.autocommit = True
        try:
            create_tables(connection, TABLES, url)
        except Exception:
            connection.close()
            raise
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    # --- feeds ---

    def add_feed(self, url: str, kind: SourceKind, title: str | None) -> bool:
        return self._db.execute("INSERT INTO hoidap_web_feeds (url, kind, title, added_at) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT (url) DO NOTHING", (url, kind, title, time.time())).rowcount == 1

    def remove_feed(self, url: str) -> bool:
        return self._db.execute("DELETE FROM hoidap_web_feeds WHERE url = %s", (url,)).rowcount == 1

    def feeds(self) -> list[Feed]:
        rows = self._db.execute(f"SELECT {_FEED_COLUMNS} FROM hoidap_web_feeds ORDER BY added_at, url").fetchall()
        return [Feed(*row) for row in rows]

    def feed_checked(self, url: str, *, etag: str | None, last_modified: str | None, error: str | None) -> None:
        self._db.execute("UPDATE hoidap_web_feeds SET etag = COALESCE(%s, etag), "
                         "last_modified = COALESCE(%s, last_modified), checked_at = %s, last_error = %s WHERE url = %s",
                         (etag, last_modified, time.time(), error, url))

    # --- robots.txt (the fetcher's RobotsCache) ---

    def cached_robots(self, origin: str) -> tuple[str, str | None, str | None] | None:
        rows = self._db.execute("SELECT text, etag, last_modified FROM hoidap_web_robots WHERE origin = %s",
                                (origin,)).fetchall()
        return tuple(rows[0]) if rows else None

    def store_robots(self, origin: str, text: str, etag: str | None, last_modified: str | None) -> None:
        self._db.execute(
            "INSERT INTO hoidap_web_robots (origin, text, etag, last_modified, fetched_at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (origin) DO UPDATE SET text = EXCLUDED.text, etag = EXCLUDED.etag, "
            "last_modified = EXCLUDED.last_modified, fetched_at = EXCLUDED.fetched_at",
            (origin, text, etag, last_modified, time.time()))

    # --- pages ---

    def page(self, url: str) -> Page | None:
        rows = self._db.execute(f"SELECT {_PAGE_COLUMNS} FROM hoidap_web_pages WHERE url = %s", (url,)).fetchall()
        return Page(*rows[0]) if rows else None

    def article_with_text(self, text_hash: str) -> str | None:
        rows = self._db.execute("SELECT article_id FROM hoidap_web_pages WHERE text_hash = %s "
                                "ORDER BY fetched_at LIMIT 1", (text_hash,)).fetchall()
        return rows[0][0] if rows else None

    def page_fetched(self, page: Page) -> None:
        self._db.execute(
            f"INSERT INTO hoidap_web_pages ({_PAGE_COLUMNS}, fetched_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (url) DO UPDATE SET canonical_url = EXCLUDED.canonical_url, article_id = EXCLUDED.article_id, "
            "text_hash = EXCLUDED.text_hash, etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified, "
            "fetched_at = EXCLUDED.fetched_at",
            (page.url, page.canonical_url, page.article_id, page.text_hash, page.etag, page.last_modified,
             time.time()))
