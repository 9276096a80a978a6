"""Sync the PostgreSQL index (`index.indexer.sync_index` through `PostgresTarget`), and move an embedded index into it.

The sync algorithm is the embedded store's; only where it writes differs. Several `hoidap index`
processes, on one machine or several, may sync different sources into one database at once:

- A session takes a session-level advisory lock per source it syncs (sorted, so two sessions never wait
  on each other in a circle): a second sync of the same source waits for the first, syncs of other
  sources go on. Embedding, the slow part, holds no other lock.
- New and changed articles are embedded into temporary tables of the session (never seen by others,
  dropped with the session, so a crash or `kill -9` leaves nothing behind).
- The write is one short transaction: it locks the manifest row (write transactions take turns, for a
  time proportional to what they write, not to what they embed), checks that the index was not rebuilt
  with another model meanwhile, moves the staged rows in, and replaces the claims of the synced sources
  only. Sources and articles of other syncs are never overwritten: the write applies what changed, not
  the whole state read at the start.
- An article id yielded by two sources: the source that holds it in the database keeps it (as in the
  embedded store); when two syncs bring it at once, the first to commit holds it and the other reports
  it as a duplicate (`already indexed from ...`) and leaves it alone. The same file reached through two
  sources (a folder and a file in it) is one article claimed by both.
- The chunks' BM25 postings are staged with them and move in the same write transaction
  (`index.stores.postings`); deleting an article deletes its postings.
- The BM25 statistics and the diacritic model are recomputed after the commit, from one snapshot,
  written only if no sync committed after it (`index.stores.postgres.refresh_statistics`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from index.documents import Article, Chunk
from index.embedding import Embedder
from index.errors import HoidapError
from index.indexer import (
    PIPELINE_VERSION,
    ArticleState,
    ChunkSettings,
    Progress,
    SyncPlan,
    SyncSummary,
    duplicate,
    reuse_blocker,
)
from index.sources import Source
from index.store import IndexStore, Manifest
from index.stores.postgres import (
    BULK_ROUND,
    SCHEMA_VERSION,
    STAGED_ARTICLES,
    STAGED_CHUNKS,
    HnswSettings,
    VectorType,
    article_row,
    bulk_load_chunks,
    connect,
    copy_chunks,
    create_bulk_indexes,
    create_schema,
    create_staging,
    delete_articles,
    describe_url,
    drop_schema,
    drop_staging,
    insert_articles,
    lexical_texts,
    lock_for_sync,
    lock_manifest,
    move_staged,
    read_manifest,
    refresh_statistics,
    store_statistics,
    upgrade_or_refuse,
    vector_index_sql,
    write_manifest,
)
from index.stores.postings import FIELDS

log = logging.getLogger(__name__)

BUILD_MEMORY = "1GB"  # maintenance_work_mem for building the HNSW graph of a migrated index or a first sync

# Builds the diacritic model of the corpus (JSON) from its lexical texts; retrieval owns it, so it is passed in.
DeriveRestorer = Callable[[Iterable[str]], str]



def index_type(vector_type: VectorType) -> str:
    """What the manifest records as the index type: changing the vector type re-embeds nothing but rebuilds."""
    return f"{vector_type}-hnsw"


class IndexChangedError(HoidapError):
    """Another process rebuilt the index with other settings while this sync embedded; nothing was written."""


class PostgresTarget:
    """The index in the database at `url`, as a `index.indexer.SyncTarget`."""

    def __init__(self, url: str, *, vector_type: VectorType = "vector", hnsw: HnswSettings | None = None,
                 derive_restorer: DeriveRestorer | None = None) -> None:
        self.url = url
        self.vector_type = vector_type
        self.hnsw = hnsw or HnswSettings()
        self.derive_restorer = derive_restorer

    def location(self) -> str:
        return f"PostgreSQL at {describe_url(self.url)}"

    def settings_for(self, settings: ChunkSettings) -> ChunkSettings:
        """The chunk settings with this store's index type, as its manifest records them."""
        return ChunkSettings(settings.size_words, settings.overlap_sentences, index_type(self.vector_type))

    @contextmanager
    def session(self, embedder: Embedder | None, settings: ChunkSettings | None,
                rebuild: bool = False) -> Iterator[_PostgresSession]:
        connection = connect(self.url)
        connection.autocommit = True
        try:
            yield _PostgresSession(self, connection, embedder, settings and self.settings_for(settings), rebuild)
        finally:
            connection.close()  # the advisory locks and the staged rows go with the session


class _PostgresSession:
    def __init__(self, target: PostgresTarget, connection, embedder: Embedder | None, settings: ChunkSettings | None,
                 rebuild: bool) -> None:
        self.target = target
        self.connection = connection
        self.embedder = embedder
        self.settings = settings
        self.rebuilt_reason: str | None = None
        self.manifest: Manifest | None = None
        self.claims: dict[str, set[Source]] = {}
        with connection.transaction():
            lock_for_sync(connection)  # two first syncs of an empty database must not both create the schema
            manifest = read_manifest(connection)
            self.exists = manifest is not None
            if manifest is None:
                if embedder is None:
                    return
                create_schema(connection, embedder.identity.dim, target.vector_type, target.hnsw)
                manifest = _manifest(embedder, settings)
                write_manifest(connection, manifest)
            else:
                upgrade_or_refuse(connection, target.url)
            if embedder is not None:
                # Another embedding model raises here, unless asked to rebuild.
                self.rebuilt_reason = "rebuild requested" if rebuild else reuse_blocker(manifest, embedder, settings)
        self.manifest = manifest

    def sources(self) -> list[Source]:
        rows = self.connection.execute("SELECT kind, locator FROM hoidap_sources ORDER BY kind, locator").fetchall()
        return [Source(*row) for row in rows]

    def reserve(self, sources: list[Source]) -> None:
        for source in sorted(set(sources)):
            self.connection.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_lock_key(source),))

    def previous(self) -> tuple[dict[str, ArticleState], dict[str, set[Source]], list[Source]]:
        with self.connection.transaction():  # one snapshot for the three
            articles = {article_id: ArticleState(digest, path) for article_id, digest, path in self.connection.execute(
                "SELECT article_id, content_hash, path FROM hoidap_articles")}
            claims: dict[str, set[Source]] = {}
            for article_id, kind, locator in self.connection.execute(
                    "SELECT article_id, kind, locator FROM hoidap_article_sources"):
                claims.setdefault(article_id, set()).add(Source(kind, locator))
            sources = self.sources()
        self.claims = claims  # the synced sources' claims stay so until the write: only their lock holder changes them
        return articles, claims, sources

    def chunk_count(self) -> int:
        return self.connection.execute("SELECT count(*) FROM hoidap_chunks").fetchone()[0]

    def stored(self, article_id: str) -> Article:
        row = self.connection.execute(
            "SELECT article_id, title, title_inferred, date, date_inferred, source, byline, url, path, text "
            "FROM hoidap_articles WHERE article_id = %s", (article_id,)).fetchone()
        return Article(*row)

    def writer(self, plan: SyncPlan, progress: Progress | None = None) -> _PostgresWriter:
        return _PostgresWriter(self, progress)


def _lock_key(source: Source) -> str:
    return f"hoidap source {source.kind}:{source.locator}"


class _PostgresWriter:
    """Stages the embedded articles in temporary tables, then applies the sync in one short transaction."""

    def __init__(self, session: _PostgresSession, progress: Progress | None) -> None:
        self.session = session
        self.connection = session.connection
        self.progress = progress
        self.full = session.rebuilt_reason is not None  # a rebuild replaces the whole index
        dim = session.embedder.identity.dim if session.embedder else session.manifest.dim
        create_staging(self.connection, dim, session.target.vector_type)
        self.heads: dict[str, str] = {}
        self.pending: list[tuple[list[Chunk], np.ndarray]] = []
        self.staged: dict[str, str | None] = {}  # article id -> path

    def keep(self, article_ids: list[str]) -> None:
        """Kept articles stay in their rows."""

    def add_chunks(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        # The lexical fields start with the title and outlet, known once the article is: held until then.
        self.pending.append((chunks, vectors))

    def add_article(self, article: Article, content_hash: str, n_chunks: int) -> None:
        head = "\n".join(filter(None, (article.title, article.source)))
        for chunks, vectors in self.pending:
            copy_chunks(self.connection, chunks, {article.article_id: head}, vectors, self.session.target.vector_type,
                        table=STAGED_CHUNKS)
        self.pending = []
        insert_articles(self.connection, [article_row(article, content_hash, n_chunks)], table=STAGED_ARTICLES)
        self.staged[article.article_id] = article.path

    def commit(self, plan: SyncPlan, summary: SyncSummary) -> None:
        with self.connection.transaction():
            if self.full:
                self._replace_all(plan)
            else:
                self._apply(plan, summary)
            self.connection.execute("UPDATE hoidap_manifest SET generation = generation + 1")
        if self.progress:
            self.progress("writing", len(self.staged), len(self.staged))
        refresh_statistics(self.connection, self.session.target.derive_restorer)
        summary.n_articles, summary.n_chunks = self.connection.execute(
            "SELECT (SELECT count(*) FROM hoidap_articles), (SELECT count(*) FROM hoidap_chunks)").fetchone()

    def _check_manifest(self) -> None:
        """Lock the manifest row (writers take turns) and make sure the index is still the one embedded for."""
        manifest = lock_manifest(self.connection)
        expected = self.session.manifest
        if manifest is None or _identity(manifest) != _identity(expected):
            where = describe_url(self.session.target.url)
            raise IndexChangedError(
                f"The index at {where} was rebuilt with other settings while this sync ran; nothing was written. "
                "Run `hoidap index` again.",
                vi=f"Chỉ mục tại {where} đã được dựng lại với thiết lập khác trong lúc đồng bộ; chưa ghi gì. "
                   "Hãy chạy lại `hoidap index`.")

    def _apply(self, plan: SyncPlan, summary: SyncSummary) -> None:
        """What this sync changed, on top of what other syncs committed meanwhile."""
        self._check_manifest()
        execute = self.connection.execute
        synced = set(plan.synced) | set(plan.dropped)
        added = [s for s in plan.sources if s not in set(plan.remembered)]
        self._executemany("INSERT INTO hoidap_sources VALUES (%s, %s) ON CONFLICT DO NOTHING",
                          [(s.kind, s.locator) for s in added])
        self._executemany("DELETE FROM hoidap_sources WHERE kind = %s AND locator = %s",
                          [(s.kind, s.locator) for s in plan.dropped])
        accepted = self._accept_staged(synced, plan, summary)
        self._move(accepted)
        # The claims of the synced sources change to the plan's (what changed only); an article no source
        # claims any more goes.
        before = {(a, s) for a, claimed in self.session.claims.items() for s in claimed & synced}
        after = {(a, s) for a, claimed in plan.claims.items() for s in claimed & synced}
        gone, new = sorted(before - after), sorted(after - before)
        if gone:
            execute("DELETE FROM hoidap_article_sources t USING unnest(%s::text[], %s::text[], %s::text[]) AS c(a, k, l) "
                    "WHERE (t.article_id, t.kind, t.locator) = (c.a, c.k, c.l)", _columns(gone))
        if new:
            execute("INSERT INTO hoidap_article_sources SELECT c.a, c.k, c.l FROM unnest(%s::text[], %s::text[], "
                    "%s::text[]) AS c(a, k, l) WHERE EXISTS (SELECT 1 FROM hoidap_articles WHERE article_id = c.a) "
                    "ON CONFLICT DO NOTHING", _columns(new))
        released = {a for a, _ in gone}
        removed = [row[0] for row in execute(
            "SELECT a.article_id FROM hoidap_articles a WHERE a.article_id = ANY(%s) AND (a.article_id = ANY(%s) OR "
            "NOT EXISTS (SELECT 1 FROM hoidap_article_sources s WHERE s.article_id = a.article_id))",
            (sorted(released | set(plan.removed)), list(plan.removed))).fetchall()]
        delete_articles(self.connection, removed)
        summary.removed = sorted(removed)  # what was removed in the end (another sync may have claimed some)

    def _accept_staged(self, synced: set[Source], plan: SyncPlan, summary: SyncSummary) -> list[str]:
        """The staged articles this sync may write: not those another source took meanwhile (first to commit
        keeps an id), unless it is the same file; the others are reported as duplicates."""
        staged = sorted(self.staged)
        if not staged:
            return []
        rows = self.connection.execute(
            "SELECT a.article_id, a.path, s.kind, s.locator FROM hoidap_articles a JOIN hoidap_article_sources s "
            "USING (article_id) WHERE a.article_id = ANY(%s) FOR UPDATE OF a", (staged,)).fetchall()
        taken: dict[str, str | None] = {}
        for article_id, path, kind, locator in rows:
            mine = self.staged[article_id]
            same_file = path is not None and mine is not None and os.path.abspath(path) == os.path.abspath(mine)
            if Source(kind, locator) not in synced and not same_file:
                taken[article_id] = path
        for article_id, other in taken.items():
            summary.skipped.append(duplicate(self.staged[article_id] or article_id, article_id, other))
            for bucket in (summary.added, summary.updated):
                if article_id in bucket:
                    bucket.remove(article_id)
            plan.claims.pop(article_id, None)
        return [a for a in staged if a not in taken]

    def _replace_all(self, plan: SyncPlan) -> None:
        """A rebuild: every article was embedded again; the index is replaced as a whole."""
        session = self.session
        lock_for_sync(self.connection)
        drop_schema(self.connection)
        create_schema(self.connection, session.embedder.identity.dim, session.target.vector_type, session.target.hnsw)
        write_manifest(self.connection, _manifest(session.embedder, session.settings))
        self._move(sorted(self.staged))
        self._executemany("INSERT INTO hoidap_sources VALUES (%s, %s)", [(s.kind, s.locator) for s in plan.sources])
        self._executemany("INSERT INTO hoidap_article_sources VALUES (%s, %s, %s)", [
            (a, s.kind, s.locator) for a, claimed in plan.claims.items() if a in self.staged for s in sorted(claimed)])

    def _move(self, article_ids: list[str]) -> None:
        """`move_staged`, with the HNSW graph built once after the rows when the index holds no chunk yet (a
        first sync, a rebuild): the write of a first sync of 200k chunks took 1,606 s with each chunk inserted
        into the graph, 369 s with the graph built after (bench/sync_disk.py). Dropping the graph locks the
        chunk table until the write commits, so questions to the empty index wait for it."""
        connection, target = self.connection, self.session.target
        [(empty,)] = connection.execute("SELECT NOT EXISTS (SELECT 1 FROM hoidap_chunks)").fetchall()
        if not (empty and article_ids):
            move_staged(connection, article_ids)
            return
        connection.execute("DROP INDEX IF EXISTS hoidap_chunks_hnsw")  # built again below
        move_staged(connection, article_ids)
        connection.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
        connection.execute(vector_index_sql(target.vector_type, target.hnsw))

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            with self.connection.cursor() as cursor:
                cursor.executemany(sql, rows)

    def close(self) -> None:
        import psycopg

        try:
            drop_staging(self.connection)
        except psycopg.Error:
            pass  # a dead connection took its temporary tables with it


def _columns(claims: list[tuple[str, Source]]) -> tuple[list[str], list[str], list[str]]:
    """(article ids, kinds, locators) of claims, as arrays for `unnest`."""
    return [a for a, _ in claims], [s.kind for _, s in claims], [s.locator for _, s in claims]


def _identity(manifest: Manifest) -> tuple:
    return (manifest.embedding_weights_sha256, manifest.embedding_precision, manifest.dim, manifest.chunk_size,
            manifest.chunk_overlap, manifest.index_type, manifest.pipeline_version)


def _manifest(embedder: Embedder, settings: ChunkSettings) -> Manifest:
    identity = embedder.identity
    return Manifest(schema_version=SCHEMA_VERSION, embedding_model=identity.name,
                    embedding_weights_sha256=identity.weights_sha256, dim=identity.dim,
                    chunk_size=settings.size_words, chunk_overlap=settings.overlap_sentences,
                    index_type=settings.index_type, n_articles=0, n_chunks=0, pipeline_version=PIPELINE_VERSION,
                    embedding_precision=identity.precision)


def migrate_embedded(store: IndexStore, url: str, *, vector_type: VectorType = "vector",
                     hnsw: HnswSettings | None = None, derive_restorer: DeriveRestorer | None = None,
                     replace: bool = False, round_chunks: int = BULK_ROUND) -> tuple[int, int]:
    """Copy an embedded index (articles, chunks and their vectors, its sources and claims; no re-embedding)
    into the database, with BM25 postings built from the chunk texts.

    Refuses a database that already holds an index unless `replace`. Returns (articles, chunks) copied.
    The chunks go in rounds of `round_chunks` (`postgres.bulk_load_chunks`), in the one transaction.
    """
    manifest = store.manifest
    hnsw = hnsw or HnswSettings()
    connection = connect(url)
    try:
        with connection.transaction():
            lock_for_sync(connection)
            if read_manifest(connection) is not None and not replace:
                raise HoidapError(
                    f"The database at {describe_url(url)} already holds an index; add --replace to overwrite it.",
                    vi=f"Cơ sở dữ liệu tại {describe_url(url)} đã có chỉ mục; thêm --replace để ghi đè.")
            started = time.perf_counter()
            drop_schema(connection)
            create_schema(connection, manifest.dim, vector_type, hnsw, indexes=False)
            write_manifest(connection, Manifest(**{**manifest.__dict__, "schema_version": SCHEMA_VERSION,
                                                   "index_type": index_type(vector_type)}))
            articles = store.articles()
            insert_articles(connection, [article_row(a, a.content_hash, a.n_chunks) for a in articles])
            heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in articles}
            vectors = store.vectors()
            chunks = store.chunks()
            bulk_load_chunks(connection, chunks, heads, lambda batch: vectors[[c.chunk_id for c in batch]],
                             vector_type, round_chunks=round_chunks)
            with connection.cursor() as cursor:
                cursor.executemany("INSERT INTO hoidap_sources VALUES (%s, %s)",
                                   [(s.kind, s.locator) for s in store.sources()])
                cursor.executemany("INSERT INTO hoidap_article_sources VALUES (%s, %s, %s)", [
                    (a, s.kind, s.locator) for a, claimed in store.claims().items() for s in sorted(claimed)])
            log.info("migrate: rows and postings written in %.1f s", time.perf_counter() - started)
            # The graph is built once over every vector; the memory lets pgvector build it in RAM.
            started = time.perf_counter()
            connection.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
            create_bulk_indexes(connection, vector_type, hnsw)
            log.info("migrate: HNSW and postings indexes built in %.1f s", time.perf_counter() - started)
            store_statistics(connection, derive_restorer(lexical_texts(connection)) if derive_restorer else None)
        # Index-only scans need the visibility map that VACUUM sets; the planner, the blocks' statistics.
        connection.autocommit = True
        postings_tables = [f"hoidap_{table}_{f}" for f in FIELDS for table in ("postings", "chunk_terms")]
        connection.execute(f"VACUUM ANALYZE hoidap_chunks, {', '.join(postings_tables)}")
    finally:
        connection.close()
    return len(articles), len(chunks)
