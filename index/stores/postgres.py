"""The index in PostgreSQL with pgvector: articles, chunks, vectors and BM25 fields in tables of one database.

Selected by `HOIDAP_DATABASE_URL`. Tables (prefixed `hoidap_`, so they can share a database):
    hoidap_manifest   one row: what the index was built with (the embedded manifest.json), corpus
                      statistics for BM25, and the diacritic model of the corpus (JSON)
    hoidap_articles   one row per article, with its content hash
    hoidap_chunks     one row per chunk: offsets, text, its vector (`vector` or `halfvec`, HNSW index) and
                      the lengths of its three lexical fields
    hoidap_terms_*, hoidap_postings_*, hoidap_chunk_terms_*
                      per lexical field, the term dictionary (document frequencies), the postings in blocks of
                      128 chunk ids and each chunk's term ids (`index.stores.postings`)
    hoidap_block_lengths
                      per block of 128 chunk ids, the lengths of its chunks' three fields (BM25 scoring)
    hoidap_sources, hoidap_article_sources
                      the source registry (`index.sources`): the sources the index syncs, and which source
                      yielded each article, as the embedded store's `sources` and `article_sources`

The lexical fields hold the tokens of `index.text` (syllables as written, folded, syllables plus
pairs), not those of a text search configuration: `simple` + `unaccent` would split `74.127`, keep
`hoà` and `hòa` apart and know no syllable pairs, so its answers would differ from the embedded
store's for no reason. BM25 (Lucene's variant, as `bm25s`) is scored in SQL over per-term postings,
reading only the postings that can change the results (`index.stores.postings`).

Layout versions (`SCHEMA_VERSION`, in the manifest row): 1 kept the lexical fields as `tsvector`s with GIN
indexes; 2 kept postings as one row per (term, chunk); 3 keeps them in blocks of 128 chunks per term (~10x
smaller at 20k chunks, bench/README.md); 4 adds the chunk lengths by block. An index of an older layout is
upgraded in place, under the schema lock, by the next sync or by a store opened by a user allowed to (from 2
and 3 in SQL alone: the rows regrouped into blocks, the lengths gathered by block); a newer layout is refused
with one message.

A sync (`index.stores.postgres_sync`) embeds into temporary tables of its own session, then writes in one
short transaction: a crash, Ctrl-C or `kill -9` rolls it back (and the temporary tables go with the
session), and readers keep seeing the previous state until it commits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from index.documents import Article, Chunk
from index.errors import HoidapError, IndexMissingError
from index.sources import Source
from index.store import ArticleRecord, ChunkRecord, Manifest
from index.stores import postings
from index.stores.postings import FIELDS, STAGED_TERMS, LexicalField, lexical_fields

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4  # 1: tsvector fields and GIN indexes; 2: a postings row per (term, chunk); 3: block postings;
# 4: chunk lengths by block
VectorType = Literal["vector", "halfvec"]
EF_SEARCH = 400  # the default HNSW search depth (`HnswSettings`)
_SYNC_LOCK = 0x686F6964  # "hoid": the advisory lock taken to create (pgvector too), upgrade or rebuild the schema

_ARTICLE_COLUMNS = ("article_id", "title", "title_inferred", "date", "date_inferred", "source", "byline", "url",
                    "path", "text", "content_hash", "n_chunks")
_CHUNK_COLUMNS = ("chunk_id", "article_id", "ordinal", "start", "end", "text")
_CHUNK_FIELDS = 'article_id, ordinal, start, "end", text, embedding, plain_len, folded_len, pairs_len'
_UPGRADE_BATCH = 5000  # chunks tokenized per round when postings are built from stored texts
_COPY_BATCH = 5000  # chunks tokenized and copied at a time in a bulk load
BULK_ROUND = 256 * postings.BLOCK  # chunk ids per round of a bulk load: 32,768
STAGED_ARTICLES = "pg_temp.hoidap_staged_articles"
STAGED_CHUNKS = "pg_temp.hoidap_staged_chunks"


@dataclass(frozen=True)
class HnswSettings:
    """pgvector HNSW parameters: graph degree and build depth (index) and search depth (per query)."""

    m: int = 16
    ef_construction: int = 64
    # recall@10 against exact search, 100k synthetic chunks (bench/postgres_scale.py, m 16): ef 100 .729,
    # 200 .850, 400 .913, for p50 5.7 / 5.7 / 9.0 ms: the search depth costs little next to the rest of a question.
    ef_search: int = EF_SEARCH


class DatabaseError(HoidapError):
    """The database cannot be reached or lacks what the store needs."""


def describe_url(url: str) -> str:
    """host:port/database of a URL, without user or password (for messages and logs)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - a malformed URL is described as such, never echoed (it may hold a password)
        return "(malformed database URL)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def connect(url: str, *, vector: bool = True):
    """A psycopg connection (with the vector types registered unless `vector` is False: the bot's state needs
    none); one clear error when the server is unreachable."""
    import psycopg

    if not url.startswith(("postgresql://", "postgres://")):
        raise DatabaseError("HOIDAP_DATABASE_URL must be a postgresql:// URL.",
                            vi="HOIDAP_DATABASE_URL phải là một URL postgresql://.")
    where = describe_url(url)
    try:
        connection = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatabaseError(f"Cannot connect to the database at {where}: {reason}. Check HOIDAP_DATABASE_URL.",
                            vi=f"Không kết nối được cơ sở dữ liệu tại {where}: {reason}. Kiểm tra HOIDAP_DATABASE_URL.") from None
    if not vector:
        return connection
    try:
        _register_vector(connection)
    except Exception:
        connection.close()
        raise
    return connection


def _register_vector(connection) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        register_vector(connection)
    except psycopg.ProgrammingError:  # the `vector` type does not exist yet in this database
        connection.rollback()
        _create_extensions(connection)
        register_vector(connection)


def _create_extensions(connection) -> None:
    import psycopg

    try:
        with connection.transaction():
            # `IF NOT EXISTS` does not make two creations at once safe: the second waits on the first's catalog
            # row and then fails on its unique index (two `hoidap index` into a new database did). Creators
            # take turns on the schema lock, and the one waiting finds the extension there.
            lock_for_sync(connection)
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as error:
        where = f"{connection.info.host}:{connection.info.port}/{connection.info.dbname}"
        raise DatabaseError(
            f"The PostgreSQL server at {where} has no pgvector extension (or this user may not create it): "
            f"{str(error).strip().splitlines()[0]}. Install pgvector 0.8 or later, or run "
            "`CREATE EXTENSION vector` as a superuser.",
            vi=f"Máy chủ PostgreSQL tại {where} không có phần mở rộng pgvector (hoặc người dùng này không được tạo nó): "
               f"{str(error).strip().splitlines()[0]}. Cài pgvector 0.8 trở lên, hoặc chạy `CREATE EXTENSION vector` "
               "với quyền superuser.") from None


# ---------------------------------------------------------------------------- schema

def vector_index_sql(vector_type: VectorType, hnsw: HnswSettings) -> str:
    return (f"CREATE INDEX hoidap_chunks_hnsw ON hoidap_chunks USING hnsw (embedding {vector_type}_ip_ops) "
            f"WITH (m = {int(hnsw.m)}, ef_construction = {int(hnsw.ef_construction)})")


def _schema(dim: int, vector_type: VectorType) -> list[str]:
    return [
        """CREATE TABLE hoidap_manifest (
            singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
            schema_version INTEGER NOT NULL, embedding_model TEXT NOT NULL, embedding_weights_sha256 TEXT NOT NULL,
            dim INTEGER NOT NULL, chunk_size INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL,
            index_type TEXT NOT NULL, pipeline_version TEXT NOT NULL,
            avg_plain DOUBLE PRECISION NOT NULL DEFAULT 1, avg_folded DOUBLE PRECISION NOT NULL DEFAULT 1,
            avg_pairs DOUBLE PRECISION NOT NULL DEFAULT 1, restorer TEXT, generation BIGINT NOT NULL DEFAULT 0)""",
        """CREATE TABLE hoidap_articles (
            article_id TEXT PRIMARY KEY, title TEXT NOT NULL, title_inferred BOOLEAN NOT NULL, date TEXT,
            date_inferred BOOLEAN NOT NULL, source TEXT, byline TEXT, url TEXT, path TEXT, text TEXT NOT NULL,
            content_hash TEXT NOT NULL, n_chunks INTEGER NOT NULL)""",
        f"""CREATE TABLE hoidap_chunks (
            chunk_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            article_id TEXT NOT NULL REFERENCES hoidap_articles(article_id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
            embedding {vector_type}({dim}) NOT NULL,
            plain_len INTEGER NOT NULL, folded_len INTEGER NOT NULL, pairs_len INTEGER NOT NULL)""",
        "CREATE INDEX hoidap_chunks_by_article ON hoidap_chunks (article_id, ordinal)",
        "CREATE INDEX hoidap_articles_by_date ON hoidap_articles (date)",
        "CREATE INDEX hoidap_articles_by_source ON hoidap_articles (lower(source))",
        *postings.table_statements(),
        *_REGISTRY,
    ]


_REGISTRY = [
    "CREATE TABLE IF NOT EXISTS hoidap_sources (kind TEXT NOT NULL, locator TEXT NOT NULL, PRIMARY KEY (kind, locator))",
    """CREATE TABLE IF NOT EXISTS hoidap_article_sources (
        article_id TEXT NOT NULL REFERENCES hoidap_articles(article_id) ON DELETE CASCADE,
        kind TEXT NOT NULL, locator TEXT NOT NULL, PRIMARY KEY (article_id, kind, locator))""",
    "CREATE INDEX IF NOT EXISTS hoidap_article_sources_by_source ON hoidap_article_sources (kind, locator)",
]


class SchemaVersionError(DatabaseError):
    """The index was laid out by another version of hoidap, and this process may not (or cannot) upgrade it."""


def upgrade_schema(connection) -> None:
    """Bring an index written by an older hoidap to this layout, in the caller's transaction: the source
    registry (each article counting as coming from its own file, as `IndexStore.claims` reads an embedded
    index of that age) and the sync generation; from layout 1, postings built from the stored chunk texts
    and the tsvector fields dropped; from layout 2, the postings rows regrouped into blocks; from 2 and 3, the
    chunk lengths gathered by block. Call under `lock_for_sync`."""
    if not connection.execute("SELECT to_regclass('hoidap_sources') IS NOT NULL").fetchone()[0]:
        connection.execute("ALTER TABLE hoidap_manifest ADD COLUMN IF NOT EXISTS generation BIGINT NOT NULL DEFAULT 0")
        for statement in _REGISTRY:
            connection.execute(statement)
        connection.execute("INSERT INTO hoidap_sources SELECT DISTINCT 'file', path FROM hoidap_articles "
                           "WHERE path IS NOT NULL ON CONFLICT DO NOTHING")
        connection.execute("INSERT INTO hoidap_article_sources SELECT article_id, 'file', path FROM hoidap_articles "
                           "WHERE path IS NOT NULL")
    version = connection.execute("SELECT schema_version FROM hoidap_manifest").fetchone()[0]
    if version < 2:
        _postings_from_texts(connection)
    elif version == 2:
        _blocks_from_rows(connection)
    if version in (2, 3):
        log.warning("upgrading the index to layout %d: gathering the chunk lengths by block", SCHEMA_VERSION)
        postings.lengths_from_chunks(connection)
    connection.execute("UPDATE hoidap_manifest SET schema_version = %s", (SCHEMA_VERSION,))


def _postings_from_texts(connection) -> None:
    """Layout 1 to 4: postings from every stored chunk (tokenized as a sync would), then the tsvectors go."""
    log.warning("upgrading the index to layout %d: building BM25 postings from the stored chunk texts", SCHEMA_VERSION)
    for statement in postings.table_statements():
        connection.execute(statement)
    connection.execute(postings.LENGTHS_KEY)  # a sync's write replaces rows of lengths by their key
    postings.create_term_staging(connection)
    with connection.cursor(name="hoidap_upgrade_chunks") as cursor:
        cursor.execute("SELECT c.article_id, c.ordinal, concat_ws(E'\\n', a.title, a.source), c.text "
                       "FROM hoidap_chunks c JOIN hoidap_articles a USING (article_id) ORDER BY c.chunk_id")
        while batch := cursor.fetchmany(_UPGRADE_BATCH):
            postings.stage_terms(connection, ((a, o, lexical_fields(head, text)) for a, o, head, text in batch))
    postings.write_postings(connection, None)
    for statement in postings.index_statements(lengths=False):
        connection.execute(statement)
    postings.drop_term_staging(connection)
    connection.execute(f"DROP INDEX IF EXISTS {', '.join(f'hoidap_chunks_{f}' for f in FIELDS)}")
    connection.execute(f"ALTER TABLE hoidap_chunks {', '.join(f'DROP COLUMN IF EXISTS {f}' for f in FIELDS)}")


def _blocks_from_rows(connection) -> None:
    """Layout 2 to 3 (then 4): each field's postings rows regrouped into blocks, with each chunk's term list."""
    log.warning("upgrading the index to layout %d: regrouping the BM25 postings into blocks", SCHEMA_VERSION)
    for f in FIELDS:
        connection.execute(f"ALTER TABLE hoidap_postings_{f} RENAME TO hoidap_rows_{f}")
        for statement in postings.block_table_statements(f):
            connection.execute(statement)
        postings.blocks_from_rows(connection, f, f"hoidap_rows_{f}")
        connection.execute(f"DROP TABLE hoidap_rows_{f}")  # with its indexes, whose names the new ones take
    for statement in postings.index_statements(lengths=False):
        connection.execute(statement)


def check_layout(connection, url: str, *, upgrade: bool) -> int:
    """The index's layout version, after upgrading an older one when `upgrade` (and this user may): a newer
    layout, or an older one left as it is, raises `SchemaVersionError` with what to do."""
    version = connection.execute("SELECT schema_version FROM hoidap_manifest").fetchone()[0]
    refuse_newer_layout(version, url)
    if version == SCHEMA_VERSION:
        return version
    if not upgrade or connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
        raise _old_layout(version, url)
    with connection.transaction():
        lock_for_sync(connection)
        upgrade_or_refuse(connection, url)  # nothing to do when another process upgraded it while this one waited
    return SCHEMA_VERSION


def upgrade_or_refuse(connection, url: str) -> None:
    """`upgrade_schema`, or `SchemaVersionError` saying what to do when this user may not change the tables
    (the caller's transaction is then rolled back). Call under `lock_for_sync`."""
    import psycopg

    version = connection.execute("SELECT schema_version FROM hoidap_manifest").fetchone()[0]
    refuse_newer_layout(version, url)
    try:
        with connection.transaction():  # a savepoint: the failed statement must not abort the caller's transaction
            upgrade_schema(connection)
    except psycopg.errors.InsufficientPrivilege:
        raise _old_layout(version, url) from None


def _old_layout(version: int, url: str) -> SchemaVersionError:
    where = describe_url(url)
    return SchemaVersionError(
        f"The index in the database at {where} has layout {version}, this hoidap reads layout {SCHEMA_VERSION}: "
        "run `hoidap index` once against the primary database, as the owner of its tables, to upgrade it in place.",
        vi=f"Chỉ mục trong cơ sở dữ liệu tại {where} có bố cục {version}, bản hoidap này đọc bố cục {SCHEMA_VERSION}: "
           "hãy chạy `hoidap index` một lần vào cơ sở dữ liệu chính, với người dùng sở hữu các bảng, để nâng cấp tại chỗ.")


def refuse_newer_layout(version: int, url: str) -> None:
    """Raise `SchemaVersionError` for an index laid out by a newer hoidap than this one."""
    if version > SCHEMA_VERSION:
        where = describe_url(url)
        raise SchemaVersionError(
            f"The index in the database at {where} was made by a newer hoidap (layout {version}, this one knows "
            f"{SCHEMA_VERSION}): upgrade hoidap on this machine.",
            vi=f"Chỉ mục trong cơ sở dữ liệu tại {where} do một phiên bản hoidap mới hơn tạo ra (bố cục {version}, "
               f"bản này chỉ biết {SCHEMA_VERSION}): hãy nâng cấp hoidap trên máy này.")


def has_schema(connection) -> bool:
    return connection.execute("SELECT to_regclass('hoidap_manifest') IS NOT NULL").fetchone()[0]


def drop_schema(connection) -> None:
    """Drop the index's tables, in the caller's transaction (under `lock_for_sync`)."""
    if has_schema(connection):
        # A sync's write locks the manifest row first and then the other tables: taking the manifest first
        # here too waits for a write under way, where dropping in table order would hold the postings it
        # still needs while waiting for the manifest (a deadlock).
        connection.execute("LOCK TABLE hoidap_manifest IN ACCESS EXCLUSIVE MODE")
    connection.execute(f"DROP TABLE IF EXISTS {', '.join(postings.table_names())}, hoidap_article_sources, "
                       "hoidap_sources, hoidap_chunks, hoidap_articles, hoidap_manifest")


def create_schema(connection, dim: int, vector_type: VectorType, hnsw: HnswSettings, *, indexes: bool = True) -> None:
    """The tables and indexes; without `indexes` the HNSW and postings indexes are left for after a bulk load
    (`create_bulk_indexes`): built once over all rows, they take several times less than row by row."""
    for statement in _schema(dim, vector_type):
        connection.execute(statement)
    if indexes:
        create_bulk_indexes(connection, vector_type, hnsw)


def create_bulk_indexes(connection, vector_type: VectorType, hnsw: HnswSettings) -> None:
    connection.execute(vector_index_sql(vector_type, hnsw))
    for statement in postings.index_statements():
        connection.execute(statement)


def read_manifest(connection) -> Manifest | None:
    """The stored manifest (counts taken from the tables), or None when the database holds no index."""
    if not has_schema(connection):
        return None
    row = connection.execute(
        "SELECT schema_version, embedding_model, embedding_weights_sha256, dim, chunk_size, chunk_overlap, "
        "index_type, pipeline_version, (SELECT count(*) FROM hoidap_articles), (SELECT count(*) FROM hoidap_chunks) "
        "FROM hoidap_manifest").fetchone()
    if row is None:
        return None
    (schema_version, model, weights, dim, size, overlap, index_type, pipeline, n_articles, n_chunks) = row
    sha, precision = _read_weights(weights)
    return Manifest(schema_version=schema_version, embedding_model=model, embedding_weights_sha256=sha, dim=dim,
                    chunk_size=size, chunk_overlap=overlap, index_type=index_type, n_articles=n_articles,
                    n_chunks=n_chunks, pipeline_version=pipeline, embedding_precision=precision)


def _stored_weights(manifest: Manifest) -> str:
    """The weights column: the digest, with `:<precision>` after it unless fp32 (no layout change needed,
    and the rows of indexes written before the precision was recorded read as fp32)."""
    if manifest.embedding_precision == "fp32":
        return manifest.embedding_weights_sha256
    return f"{manifest.embedding_weights_sha256}:{manifest.embedding_precision}"


def _read_weights(column: str) -> tuple[str, str]:
    """(digest, precision) of a weights column written by `_stored_weights`."""
    sha, _, precision = column.partition(":")
    return sha, precision or "fp32"


def write_manifest(connection, manifest: Manifest) -> None:
    connection.execute(
        "INSERT INTO hoidap_manifest (schema_version, embedding_model, embedding_weights_sha256, dim, chunk_size, "
        "chunk_overlap, index_type, pipeline_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (singleton) DO UPDATE SET schema_version = EXCLUDED.schema_version, "
        "embedding_model = EXCLUDED.embedding_model, embedding_weights_sha256 = EXCLUDED.embedding_weights_sha256, "
        "dim = EXCLUDED.dim, chunk_size = EXCLUDED.chunk_size, chunk_overlap = EXCLUDED.chunk_overlap, "
        "index_type = EXCLUDED.index_type, pipeline_version = EXCLUDED.pipeline_version",
        (manifest.schema_version, manifest.embedding_model, _stored_weights(manifest), manifest.dim,
         manifest.chunk_size, manifest.chunk_overlap, manifest.index_type, manifest.pipeline_version))


def lock_for_sync(connection) -> None:
    """Serialise syncs of one database; the lock goes with the transaction (commit, rollback or a dead client)."""
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SYNC_LOCK,))


# ---------------------------------------------------------------------------- writing

def article_row(article: ArticleRecord | Article, content_hash: str, n_chunks: int) -> tuple:
    return (article.article_id, article.title, bool(article.title_inferred), article.date, bool(article.date_inferred),
            article.source, article.byline, article.url, article.path, article.text, content_hash, n_chunks)


def insert_articles(connection, rows: Iterable[tuple], table: str = "hoidap_articles") -> None:
    with connection.cursor() as cursor, cursor.copy(
            f"COPY {table} ({', '.join(_ARTICLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["text", "text", "bool", "text", "bool", "text", "text", "text", "text", "text", "text", "int4"])
        for row in rows:
            copy.write_row(row)


def copy_chunks(connection, chunks: Sequence[Chunk | ChunkRecord], heads: dict[str, str], vectors: np.ndarray,
                vector_type: VectorType, table: str = "hoidap_chunks", *, first_id: int | None = None) -> None:
    """Write chunks with their vectors and field lengths into `table`, and stage their terms (`heads`: article
    id -> title and outlet), by binary COPY; `postings.write_postings` makes the terms postings once the chunks
    are in `hoidap_chunks`. `first_id`: the chunks get ids first_id, first_id + 1, ... (a bulk load into an
    empty table) instead of the table's next ones."""
    fields = [lexical_fields(heads.get(chunk.article_id, ""), chunk.text) for chunk in chunks]
    columns, types = _CHUNK_FIELDS, ["text", "int4", "int4", "int4", "text", vector_type, "int4", "int4", "int4"]
    if first_id is not None:
        columns, types = f"chunk_id, {columns}", ["int8", *types]
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for at, (chunk, vector, tokens) in enumerate(zip(chunks, vectors, fields, strict=True)):
            row = (chunk.article_id, chunk.ordinal, chunk.start, chunk.end, chunk.text,
                   np.asarray(vector, dtype=np.float32), *(len(tokens[name]) for name in FIELDS))
            copy.write_row(row if first_id is None else (first_id + at, *row))
    postings.stage_terms(connection, ((c.article_id, c.ordinal, f) for c, f in zip(chunks, fields, strict=True)))


def bulk_load_chunks(connection, chunks: Sequence[Chunk | ChunkRecord], heads: dict[str, str],
                     vectors_of: Callable[[Sequence[Chunk | ChunkRecord]], np.ndarray], vector_type: VectorType,
                     *, round_chunks: int = BULK_ROUND) -> None:
    """Write chunks and their postings into an empty index (`hoidap migrate`), chunk ids 1, 2, ... in their
    order, in rounds of `round_chunks` ids (whole postings blocks, so no block spans two rounds and each
    round's postings are plain inserts). `vectors_of` gives a round's vectors. Each round's staged terms are
    emptied before the next: one round's staging on disk at a time, where staging every chunk at once took
    three times the finished index at 1M chunks (bench/postgres_scale.py). The caller's transaction holds
    the whole load."""
    if round_chunks <= 0 or round_chunks % postings.BLOCK:
        raise ValueError(f"a round of {round_chunks} chunks is not whole blocks of {postings.BLOCK}")
    postings.create_term_staging(connection)
    started = time.perf_counter()
    for low in range(0, len(chunks) + 1, round_chunks):
        ids = range(max(low, 1), min(low + round_chunks, len(chunks) + 1))  # chunk id 0 is never given
        part = chunks[ids.start - 1:ids.stop - 1]
        for begin in range(0, len(part), _COPY_BATCH):
            batch = part[begin:begin + _COPY_BATCH]
            copy_chunks(connection, batch, heads, vectors_of(batch), vector_type, first_id=ids.start + begin)
        postings.write_postings(connection, None, new_blocks=ids)
        connection.execute(f"TRUNCATE {STAGED_TERMS}")
        log.info("bulk load: %d of %d chunks written in %.0f s", ids.stop - 1, len(chunks),
                 time.perf_counter() - started)
    postings.count_terms(connection)
    if chunks:
        connection.execute("SELECT setval(pg_get_serial_sequence('hoidap_chunks', 'chunk_id'), %s)", (len(chunks),))
    postings.drop_term_staging(connection)


def create_staging(connection, dim: int, vector_type: VectorType) -> None:
    """Temporary tables (of this session only) where a sync stages what it embedded until it writes."""
    connection.execute(f"DROP TABLE IF EXISTS {STAGED_CHUNKS}, {STAGED_ARTICLES}")
    connection.execute("CREATE TEMPORARY TABLE hoidap_staged_articles AS SELECT * FROM hoidap_articles WITH NO DATA")
    connection.execute(
        'CREATE TEMPORARY TABLE hoidap_staged_chunks (article_id TEXT NOT NULL, ordinal INTEGER NOT NULL, '
        'start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL, '
        f"embedding {vector_type}({int(dim)}) NOT NULL, "
        "plain_len INTEGER NOT NULL, folded_len INTEGER NOT NULL, pairs_len INTEGER NOT NULL)")
    postings.create_term_staging(connection)


def drop_staging(connection) -> None:
    connection.execute(f"DROP TABLE IF EXISTS {STAGED_CHUNKS}, {STAGED_ARTICLES}")
    postings.drop_term_staging(connection)


def move_staged(connection, article_ids: Sequence[str], *, round_chunks: int = BULK_ROUND) -> None:
    """Replace the rows of these articles (their article row kept, so its claims stay), all their chunks and
    their postings with the staged ones, in the caller's transaction.

    In rounds of articles holding up to `round_chunks` staged chunks, in article id order (the chunk ids are
    those of one pass), with the tables of fresh postings made anew in this transaction: each field's and
    round's are then emptied in place, so one field of one round is on disk at a time. (Made at the start of
    the session, a table emptied in a later transaction keeps its files until it commits: a first sync of an
    archive held every field's fresh postings of every chunk at once; bench/sync_disk.py.)"""
    if not article_ids:
        return
    rounds = _rounds(connection, sorted(article_ids), round_chunks)
    postings.create_fresh_tables(connection)
    if len(rounds) > 1:  # each round reads its own articles' staged rows
        for table in (STAGED_CHUNKS, STAGED_TERMS):
            connection.execute(f"CREATE INDEX ON {table} (article_id)")
            connection.execute(f"ANALYZE {table}")
    for number, part in enumerate(rounds, 1):
        _move_round(connection, part)
        if len(rounds) > 1:
            log.info("sync: round %d of %d written (%d articles)", number, len(rounds), len(part))


def _rounds(connection, ids: list[str], round_chunks: int) -> list[list[str]]:
    """`ids` cut into runs whose staged chunks add up to at most `round_chunks` (an article longer alone)."""
    counts = dict(connection.execute(f"SELECT article_id, count(*) FROM {STAGED_CHUNKS} "
                                     "WHERE article_id = ANY(%s) GROUP BY article_id", (ids,)).fetchall())
    rounds: list[list[str]] = [[]]
    held = 0
    for article_id in ids:
        n = counts.get(article_id, 0)
        if rounds[-1] and held + n > round_chunks:
            rounds.append([])
            held = 0
        rounds[-1].append(article_id)
        held += n
    return rounds


def _move_round(connection, ids: list[str]) -> None:
    postings.delete_postings(connection, ids)
    connection.execute("DELETE FROM hoidap_chunks WHERE article_id = ANY(%s)", (ids,))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _ARTICLE_COLUMNS if c != "article_id")
    connection.execute(f"INSERT INTO hoidap_articles SELECT * FROM {STAGED_ARTICLES} WHERE article_id = ANY(%s) "
                       f"ON CONFLICT (article_id) DO UPDATE SET {updates}", (ids,))
    connection.execute(f"INSERT INTO hoidap_chunks ({_CHUNK_FIELDS}) SELECT {_CHUNK_FIELDS} FROM {STAGED_CHUNKS} "
                       "WHERE article_id = ANY(%s) ORDER BY article_id, ordinal", (ids,))
    postings.write_postings(connection, ids)


def lock_manifest(connection) -> Manifest | None:
    """Lock the manifest row until the transaction ends (writers take turns); what it says, counts left at 0."""
    row = connection.execute(
        "SELECT schema_version, embedding_model, embedding_weights_sha256, dim, chunk_size, chunk_overlap, "
        "index_type, pipeline_version FROM hoidap_manifest FOR UPDATE").fetchone()
    if row is None:
        return None
    (schema_version, model, weights, dim, size, overlap, index_type, pipeline) = row
    sha, precision = _read_weights(weights)
    return Manifest(schema_version=schema_version, embedding_model=model, embedding_weights_sha256=sha, dim=dim,
                    chunk_size=size, chunk_overlap=overlap, index_type=index_type, n_articles=0, n_chunks=0,
                    pipeline_version=pipeline, embedding_precision=precision)


def delete_articles(connection, article_ids: Sequence[str]) -> None:
    """Delete articles with their chunks (a cascade), their claims (a cascade) and their postings."""
    if article_ids:
        postings.delete_postings(connection, article_ids)
        connection.execute("DELETE FROM hoidap_articles WHERE article_id = ANY(%s)", (list(article_ids),))


def store_statistics(connection, restorer_json: str | None) -> None:
    """Average field lengths (BM25) and the diacritic model of the corpus, after the chunks changed."""
    connection.execute(
        "UPDATE hoidap_manifest SET avg_plain = stats.p, avg_folded = stats.f, avg_pairs = stats.s, restorer = %s "
        "FROM (SELECT greatest(coalesce(avg(plain_len), 1), 1) AS p, greatest(coalesce(avg(folded_len), 1), 1) AS f, "
        "greatest(coalesce(avg(pairs_len), 1), 1) AS s FROM hoidap_chunks) AS stats", (restorer_json,))


def refresh_statistics(connection, derive_restorer: Callable[[Iterable[str]], str] | None) -> None:
    """Recompute the BM25 averages and the diacritic model from one snapshot, after a sync committed, outside
    its transaction (reading every chunk would hold up the other syncs' writes).

    Syncs may commit while this runs: it writes only if none committed after its snapshot (the manifest's
    generation), so the statistics left are those of the last sync to commit, whichever finishes first.
    """
    with connection.transaction():
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        generation, *averages = connection.execute(
            "SELECT (SELECT generation FROM hoidap_manifest), greatest(coalesce(avg(plain_len), 1), 1), "
            "greatest(coalesce(avg(folded_len), 1), 1), greatest(coalesce(avg(pairs_len), 1), 1) "
            "FROM hoidap_chunks").fetchone()
        restorer = derive_restorer(lexical_texts(connection)) if derive_restorer else None
    connection.execute("UPDATE hoidap_manifest SET avg_plain = %s, avg_folded = %s, avg_pairs = %s, restorer = %s "
                       "WHERE generation = %s", (*averages, restorer, generation))


def lexical_texts(connection) -> Iterator[str]:
    """Every chunk's lexical text (title and outlet, then the passage), in chunk order."""
    with connection.cursor(name="hoidap_lexical_texts") as cursor:
        cursor.itersize = 5000
        cursor.execute("SELECT concat_ws(E'\\n', a.title, a.source), c.text FROM hoidap_chunks c "
                       "JOIN hoidap_articles a USING (article_id) ORDER BY c.chunk_id")
        for head, text in cursor:
            yield f"{head}\n{text}"


# ---------------------------------------------------------------------------- reading

class PostgresStore:
    """An index in PostgreSQL: the `index.stores.Store` protocol, plus dense and BM25 search in SQL.

    One connection, used by one query at a time (a lock), in autocommit mode: each question sees the
    last committed sync. Safe to share across threads.
    """

    def __init__(self, connection, url: str, manifest: Manifest, statistics: tuple[float, float, float],
                 restorer_json: str | None, hnsw: HnswSettings, generation: int = 0) -> None:
        self.url = url
        self.manifest = manifest
        self.generation = generation
        self._average = dict(zip(FIELDS, statistics))
        self.restorer_json = restorer_json
        self._hnsw = hnsw
        self._lock = threading.Lock()
        self._df: dict[tuple[LexicalField, str], int] = {}  # for `idf`, asked about every question word
        self._connection = self._prepare(connection)

    def _prepare(self, connection):
        connection.autocommit = True
        connection.execute(f"SET hnsw.ef_search = {int(self._hnsw.ef_search)}")
        # Filtered searches keep scanning the graph until `depth` rows pass the filter (pgvector 0.8).
        connection.execute("SET hnsw.iterative_scan = strict_order")
        return connection

    @classmethod
    def open(cls, url: str, *, model=None, hnsw: HnswSettings | None = None, upgrade: bool = True) -> PostgresStore:
        """Open the index in the database at `url`; with `model`, refuse one built by another embedding model.

        An index of an older layout is upgraded first when `upgrade` and this user may (`check_layout`)."""
        connection = connect(url)
        connection.autocommit = True
        try:
            manifest = read_manifest(connection)
            if manifest is None:
                raise IndexMissingError(f"No index in the database at {describe_url(url)}. Build it with `hoidap index`.",
                                        vi=f"Cơ sở dữ liệu tại {describe_url(url)} chưa có chỉ mục. Hãy tạo bằng `hoidap index`.")
            if manifest.schema_version != SCHEMA_VERSION:
                check_layout(connection, url, upgrade=upgrade)
                manifest = read_manifest(connection)
            if model is not None:
                manifest.check_model(model)
            *statistics, restorer, generation = connection.execute(
                "SELECT avg_plain, avg_folded, avg_pairs, restorer, generation FROM hoidap_manifest").fetchone()
            return cls(connection, url, manifest, tuple(statistics), restorer, hnsw or HnswSettings(), generation)
        except Exception:
            connection.close()
            raise

    def _rows(self, sql: str, params: Sequence | dict = ()) -> list[tuple]:
        """Run one query; a dropped connection (server restart, failover, idle timeout) is opened again once."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._connection.closed:
                        self._connection = self._prepare(connect(self.url))
                    return self._connection.execute(sql, params).fetchall()
                except psycopg.errors.InsufficientPrivilege as error:
                    # A read-only role granted table by table lacks the tables an upgrade added.
                    where = describe_url(self.url)
                    raise DatabaseError(
                        f"This database user may not read the index at {where} ({str(error).strip()[:200]}): "
                        "grant it SELECT on the hoidap_* tables (ALTER DEFAULT PRIVILEGES covers those an upgrade "
                        "adds later).",
                        vi=f"Người dùng cơ sở dữ liệu này không được đọc chỉ mục tại {where} "
                           f"({str(error).strip()[:200]}): hãy cấp quyền SELECT trên các bảng hoidap_* (ALTER DEFAULT "
                           "PRIVILEGES áp dụng cho cả các bảng do nâng cấp thêm sau này).") from None
                except psycopg.OperationalError as error:
                    self._connection.close()
                    if attempt == 2:
                        where = describe_url(self.url)
                        raise DatabaseError(
                            f"The database at {where} stopped answering ({str(error).strip()[:200]}); "
                            "the next question will connect again.",
                            vi=f"Cơ sở dữ liệu tại {where} ngừng trả lời ({str(error).strip()[:200]}); "
                               "câu hỏi sau sẽ kết nối lại.") from None
        raise AssertionError("unreachable")

    def describe(self) -> str:
        manifest = self.manifest
        return (f"{manifest.n_articles} articles, {manifest.n_chunks} chunks, {manifest.embedding_model} "
                f"(dim {manifest.dim}) in PostgreSQL at {describe_url(self.url)}")

    def chunk_count(self) -> int:
        return self.manifest.n_chunks

    def articles(self) -> list[ArticleRecord]:
        rows = self._rows(f"SELECT {', '.join(_ARTICLE_COLUMNS)} FROM hoidap_articles ORDER BY article_id")
        return [ArticleRecord(*row) for row in rows]

    def article(self, article_id: str) -> ArticleRecord:
        rows = self._rows(f"SELECT {', '.join(_ARTICLE_COLUMNS)} FROM hoidap_articles WHERE article_id = %s",
                          (article_id,))
        if not rows:
            raise KeyError(article_id)
        return ArticleRecord(*rows[0])

    def sources(self) -> list[Source]:
        """The sources the index syncs, in order."""
        return [Source(*row) for row in self._rows("SELECT kind, locator FROM hoidap_sources ORDER BY kind, locator")]

    def claims(self) -> dict[str, set[Source]]:
        """For each article, the sources that yielded it."""
        claims: dict[str, set[Source]] = {}
        for article_id, kind, locator in self._rows("SELECT article_id, kind, locator FROM hoidap_article_sources"):
            claims.setdefault(article_id, set()).add(Source(kind, locator))
        return claims

    def chunks(self) -> list[ChunkRecord]:
        return [ChunkRecord(*row) for row in self._rows('SELECT chunk_id, article_id, ordinal, start, "end", text '
                                                          "FROM hoidap_chunks ORDER BY chunk_id")]

    def chunk(self, chunk_id: int) -> ChunkRecord:
        rows = self._rows('SELECT chunk_id, article_id, ordinal, start, "end", text FROM hoidap_chunks '
                          "WHERE chunk_id = %s", (chunk_id,))
        if not rows:
            raise KeyError(chunk_id)
        return ChunkRecord(*rows[0])

    def chunks_with_vectors(self, batch: int = 5000) -> Iterator[tuple[ChunkRecord, np.ndarray]]:
        last = 0
        while True:
            rows = self._rows('SELECT chunk_id, article_id, ordinal, start, "end", text, embedding FROM hoidap_chunks '
                              "WHERE chunk_id > %s ORDER BY chunk_id LIMIT %s", (last, batch))
            if not rows:
                return
            for *record, vector in rows:
                yield ChunkRecord(*record), np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector,
                                                       dtype=np.float32)
            last = rows[-1][0]

    def dense_search(self, vector: np.ndarray, depth: int, limits: ArticleLimits | None = None) -> list[tuple[int, float]]:
        """Up to `depth` (chunk_id, inner product) pairs, best first, within `limits` (HNSW, iterative scan)."""
        from pgvector import HalfVector, Vector

        value = HalfVector(vector) if self.manifest.index_type.startswith("halfvec") else Vector(vector)
        where, params = _limits_sql(limits)
        sql = (f"SELECT chunk_id, -(embedding <#> %(q)s) FROM hoidap_chunks c {where} "
               "ORDER BY embedding <#> %(q)s LIMIT %(depth)s")
        return [(int(cid), float(score)) for cid, score in self._rows(sql, {"q": value, "depth": depth, **params})]

    def lexical_search(self, tokens: Sequence[str], field: LexicalField, depth: int,
                       limits: ArticleLimits | None = None) -> list[tuple[int, float]]:
        """Up to `depth` (chunk_id, BM25 score) pairs with a positive score, best first, within `limits`."""
        if field not in FIELDS:
            raise ValueError(f"no lexical field {field!r}")
        distinct = sorted(set(tokens))
        if not distinct:
            return []
        known = self._rows(f"SELECT term, term_id, df, max_tf FROM hoidap_terms_{field} WHERE term = ANY(%s) AND df > 0",
                           (distinct,))
        terms = postings.query_terms(known, tokens, self.manifest.n_chunks)
        where, params = _limits_sql(limits)
        return postings.search(self._rows, field, terms, depth, self._average[field],
                               (where.removeprefix("WHERE "), params))

    def idf(self, token: str, field: LexicalField = "folded") -> float:
        """Lucene IDF of a token in a field (as `LexicalIndex.idf`); 0 for a token the corpus never uses."""
        key = (field, token)
        if key not in self._df:
            if field not in FIELDS:
                raise ValueError(f"no lexical field {field!r}")
            found = self._rows(f"SELECT df FROM hoidap_terms_{field} WHERE term = %s", (token,))
            self._df[key] = found[0][0] if found else 0
        return postings.idf(self._df[key], self.manifest.n_chunks)

    def is_current(self) -> bool:
        """Whether no sync committed since this store was opened (the manifest's generation), so that what it
        keeps of the corpus (counts, BM25 averages, document frequencies) is still the database's."""
        return self._rows("SELECT generation FROM hoidap_manifest")[0][0] == self.generation

    def ping(self) -> None:
        """Raise `DatabaseError` unless the database answers (for health checks)."""
        self._rows("SELECT 1")

    def verify(self) -> list[str]:
        """Every inconsistency between articles and chunks, in words; empty when the index is sound."""
        miscounted = [row[0] for row in self._rows(
            "SELECT a.article_id FROM hoidap_articles a LEFT JOIN hoidap_chunks c USING (article_id) "
            "GROUP BY a.article_id, a.n_chunks HAVING count(c.chunk_id) <> a.n_chunks ORDER BY 1 LIMIT 5")]
        misplaced = [row[0] for row in self._rows(
            'SELECT c.chunk_id FROM hoidap_chunks c JOIN hoidap_articles a USING (article_id) '
            'WHERE substr(a.text, c.start + 1, c."end" - c.start) <> c.text ORDER BY 1 LIMIT 5')]
        problems = postings.postings_problems(self._rows)
        if miscounted:
            problems.append(f"article chunk counts are wrong: {', '.join(miscounted)}")
        if misplaced:
            problems.append(f"chunks differ from their article's text at their offsets (chunk ids {misplaced})")
        return problems

    def close(self) -> None:
        self._connection.close()


@dataclass(frozen=True)
class ArticleLimits:
    """Which articles a search may return: ISO dates (inclusive, on the first 10 characters) and outlets."""

    date_from: str | None = None
    date_to: str | None = None
    sources: tuple[str, ...] = ()


def _limits_sql(limits: ArticleLimits | None) -> tuple[str, dict]:
    """A WHERE clause on chunk alias `c` keeping the chunks of the allowed articles, pushed into the scan."""
    if limits is None or not (limits.date_from or limits.date_to or limits.sources):
        return "", {}
    conditions, params = [], {}
    if limits.date_from:
        conditions.append("left(a.date, 10) >= %(date_from)s")
        params["date_from"] = limits.date_from
    if limits.date_to:
        conditions.append("left(a.date, 10) <= %(date_to)s")
        params["date_to"] = limits.date_to
    if limits.sources:
        conditions.append("lower(a.source) = ANY(%(sources)s)")
        params["sources"] = [s.casefold() for s in limits.sources]
    allowed = f"SELECT a.article_id FROM hoidap_articles a WHERE {' AND '.join(conditions)}"
    return f"WHERE c.article_id IN ({allowed})", params
