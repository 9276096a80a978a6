"""The index on disk: a directory with manifest.json, a native FAISS file and an SQLite store. No pickle.

Layout of `index_dir` (a symlink to the current generation, swapped atomically by the indexer):
    manifest.json   schema version, embedding model and weights hash, dimension, chunk settings
    vectors.faiss   faiss.write_index of IndexFlatIP or IndexHNSWFlat; row i is chunk_id i
    store.sqlite3   articles and chunks; the sources the index syncs, and which source yielded each article
                    (an index written before sources were remembered has neither table: each of its
                    articles counts as coming from its own file)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import faiss
import numpy as np

from index.embedding import ModelIdentity
from index.errors import IndexCorruptError, IndexMissingError, ModelMismatchError
from index.sources import Source

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
DATABASE = "store.sqlite3"

SCHEMA = """
CREATE TABLE articles (
    article_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    title_inferred INTEGER NOT NULL,
    date TEXT,
    date_inferred INTEGER NOT NULL,
    source TEXT,
    byline TEXT,
    url TEXT,
    path TEXT,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    n_chunks INTEGER NOT NULL
);
CREATE TABLE chunks (
    chunk_id INTEGER PRIMARY KEY,
    article_id TEXT NOT NULL REFERENCES articles(article_id),
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX chunks_by_article ON chunks(article_id, ordinal);
CREATE TABLE sources (
    kind TEXT NOT NULL,
    locator TEXT NOT NULL,
    PRIMARY KEY (kind, locator)
);
CREATE TABLE article_sources (
    article_id TEXT NOT NULL REFERENCES articles(article_id),
    kind TEXT NOT NULL,
    locator TEXT NOT NULL,
    PRIMARY KEY (article_id, kind, locator)
);
"""


@dataclass(frozen=True)
class Manifest:
    """What an index was built with; loading compares it with the configured model."""

    schema_version: int
    embedding_model: str
    embedding_weights_sha256: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    index_type: str
    n_articles: int
    n_chunks: int
    pipeline_version: str
    # What encoded the vectors (ModelIdentity.precision); indexes written before it was recorded are fp32.
    embedding_precision: str = "fp32"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: data[f.name] if f.default is MISSING else data.get(f.name, f.default)
                          for f in fields(cls)})
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise IndexCorruptError(
                f"The index manifest {path} is unreadable ({error}). Run `hoidap index --rebuild`."
            ) from error

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def check_model(self, model: ModelIdentity) -> None:
        """Refuse to mix vectors of two different embedding models, or of one model in two precisions."""
        if (model.weights_sha256, model.dim) == (self.embedding_weights_sha256, self.dim) \
                and model.precision != self.embedding_precision:
            raise ModelMismatchError(
                f"The index was embedded by {self.embedding_model!r} in {self.embedding_precision}, but the "
                f"configured precision is {model.precision}: vectors of two precisions are not mixed. Run "
                f"`hoidap index` (it embeds the articles again in {model.precision}), or set "
                f"HOIDAP_EMBEDDING_PRECISION={self.embedding_precision}."
            )
        if model.weights_sha256 != self.embedding_weights_sha256 or model.dim != self.dim:
            raise ModelMismatchError(
                f"The index was built with embedding model {self.embedding_model!r} "
                f"(weights {self.embedding_weights_sha256[:12]}, dim {self.dim}), but the configured model is "
                f"{model.name!r} (weights {model.weights_sha256[:12]}, dim {model.dim}). "
                "Set HOIDAP_EMBEDDING_MODEL back, or rebuild the index with `hoidap index --rebuild`."
            )


@dataclass(frozen=True)
class ArticleRecord:
    """A cleaned article as stored, with its metadata."""

    article_id: str
    title: str
    title_inferred: bool
    date: str | None
    date_inferred: bool
    source: str | None
    byline: str | None
    url: str | None
    path: str | None
    text: str
    content_hash: str
    n_chunks: int


@dataclass(frozen=True)
class ChunkRecord:
    """A passage of an article: `text == article.text[start:end]`; `chunk_id` is its FAISS row."""

    chunk_id: int
    article_id: str
    ordinal: int
    start: int
    end: int
    text: str


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """An SQLite connection; read-only connections cannot change an index that others are reading."""
    if read_only:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    return connection


def _article(row: sqlite3.Row) -> ArticleRecord:
    data = dict(row)
    data["title_inferred"] = bool(data["title_inferred"])
    data["date_inferred"] = bool(data["date_inferred"])
    return ArticleRecord(**data)


class IndexStore:
    """A loaded index: vector search over FAISS, articles and chunks from SQLite. Safe to share across threads."""

    def __init__(self, directory: Path, manifest: Manifest, vectors: faiss.Index, database: sqlite3.Connection):
        self.directory = directory
        self.manifest = manifest
        self._vectors = vectors
        self._database = database
        self._lock = threading.Lock()

    @classmethod
    def open(cls, index_dir: Path, *, model: ModelIdentity | None = None) -> IndexStore:
        """Load the index in `index_dir`; with `model`, refuse an index built by another embedding model."""
        directory = index_dir.resolve()
        if not (directory / MANIFEST).is_file():
            if index_dir.is_symlink():  # the generation it names was deleted or never completed
                raise IndexCorruptError(
                    f"The index link {index_dir} points to {directory}, which holds no index. "
                    f"Run `hoidap index --rebuild`."
                )
            raise IndexMissingError(f"No index in {index_dir}. Build it with `hoidap index`.")
        manifest = Manifest.read(directory / MANIFEST)
        if manifest.schema_version != SCHEMA_VERSION:
            raise IndexCorruptError(
                f"The index in {index_dir} has schema version {manifest.schema_version}; this hoidap reads "
                f"version {SCHEMA_VERSION}. Run `hoidap index --rebuild`."
            )
        if model is not None:
            manifest.check_model(model)
        try:
            vectors = faiss.read_index(str(directory / VECTORS))
            database = connect(directory / DATABASE, read_only=True)
            n_chunks = database.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            n_articles = database.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
        except (RuntimeError, sqlite3.Error) as error:
            raise _unreadable(index_dir, error) from error
        found = (vectors.ntotal, vectors.d, n_articles, n_chunks)
        if found != (n_chunks, manifest.dim, manifest.n_articles, manifest.n_chunks):
            raise IndexCorruptError(
                f"The index in {index_dir} is inconsistent ({vectors.ntotal} vectors of dimension {vectors.d}, "
                f"{n_chunks} chunks, {n_articles} articles; manifest says {manifest.n_chunks} chunks, "
                f"{manifest.n_articles} articles, dimension {manifest.dim}). Run `hoidap index --rebuild`."
            )
        # One query at a time gains nothing from OpenMP threads and pays for their wake-up (37 ms -> 6 ms at 100k).
        faiss.omp_set_num_threads(1)
        return cls(directory, manifest, vectors, database)

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Damage that opening did not reach (a cut-off database file) surfaces here, as a corrupt index."""
        with self._lock:
            try:
                return self._database.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as error:
                raise _unreadable(self.directory, error) from error

    def chunk_count(self) -> int:
        """How many chunks (and vectors) the index holds."""
        return self.manifest.n_chunks

    def describe(self) -> str:
        """One line for people: articles, chunks, model and folder."""
        manifest = self.manifest
        return (f"{manifest.n_articles} articles, {manifest.n_chunks} chunks, {manifest.embedding_model} "
                f"(dim {manifest.dim}) in {self.directory}")

    def articles(self) -> list[ArticleRecord]:
        """Every article, ordered by id."""
        return [_article(row) for row in self._query("SELECT * FROM articles ORDER BY article_id")]

    def article(self, article_id: str) -> ArticleRecord:
        rows = self._query("SELECT * FROM articles WHERE article_id = ?", (article_id,))
        if not rows:
            raise KeyError(article_id)
        return _article(rows[0])

    def chunks(self) -> list[ChunkRecord]:
        """Every chunk, ordered by chunk_id (= FAISS row)."""
        return list(self.iter_chunks())

    def iter_chunks(self, batch: int = 10_000) -> Iterator[ChunkRecord]:
        last = -1
        while True:
            rows = self._query("SELECT * FROM chunks WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?", (last, batch))
            if not rows:
                return
            for row in rows:
                yield ChunkRecord(**dict(row))
            last = rows[-1]["chunk_id"]

    def chunk_rows(self, article_id: str) -> list[ChunkRecord]:
        """The chunks of one article, in order."""
        rows = self._query("SELECT * FROM chunks WHERE article_id = ? ORDER BY ordinal", (article_id,))
        return [ChunkRecord(**dict(row)) for row in rows]

    def sources(self) -> list[Source]:
        """The sources this index syncs, in order."""
        if not self._has_table("sources"):
            return sorted({Source("file", path) for path in self._article_paths().values()})
        return [Source(row["kind"], row["locator"]) for row in self._query("SELECT kind, locator FROM sources ORDER BY kind, locator")]

    def claims(self) -> dict[str, set[Source]]:
        """For each article, the sources that yielded it."""
        if not self._has_table("article_sources"):
            return {article_id: {Source("file", path)} for article_id, path in self._article_paths().items()}
        claims: dict[str, set[Source]] = {}
        for row in self._query("SELECT article_id, kind, locator FROM article_sources"):
            claims.setdefault(row["article_id"], set()).add(Source(row["kind"], row["locator"]))
        return claims

    def _article_paths(self) -> dict[str, str]:
        rows = self._query("SELECT article_id, path FROM articles WHERE path IS NOT NULL")
        return {row["article_id"]: os.path.abspath(row["path"]) for row in rows}

    def _has_table(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def chunk(self, chunk_id: int) -> ChunkRecord:
        rows = self._query("SELECT * FROM chunks WHERE chunk_id = ?", (chunk_id,))
        if not rows:
            raise KeyError(chunk_id)
        return ChunkRecord(**dict(rows[0]))

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Per query, up to k (chunk_id, inner product) pairs, best first."""
        if self._vectors.ntotal == 0:
            return [[] for _ in range(len(query_vectors))]
        scores, ids = self._vectors.search(np.ascontiguousarray(query_vectors, dtype=np.float32), min(k, self._vectors.ntotal))
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0] for row_ids, row_scores in zip(ids, scores)]

    def vectors_of(self, chunk_ids: list[int]) -> np.ndarray:
        """The stored vectors of these chunks, in the order given."""
        if not chunk_ids:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        return self._vectors.reconstruct_batch(np.asarray(chunk_ids, dtype=np.int64))

    def vectors(self) -> np.ndarray:
        """All stored vectors in chunk_id order (used to carry unchanged articles into a new generation)."""
        if self._vectors.ntotal == 0:
            return np.zeros((0, self.manifest.dim), dtype=np.float32)
        return self._vectors.reconstruct_n(0, self._vectors.ntotal)

    def set_search_depth(self, ef_search: int) -> None:
        """For HNSW indexes: how many candidates a search explores (recall against speed)."""
        if isinstance(self._vectors, faiss.IndexHNSW):
            self._vectors.hnsw.efSearch = ef_search

    def verify(self) -> list[str]:
        """Every inconsistency between manifest, FAISS and SQLite, in words; empty when the index is sound.

        Reads everything once, so `hoidap index --check` and each sync run it (a sync must not carry
        damaged rows or vectors over), never a process that only answers questions.
        """
        try:
            integrity = [row[0] for row in self._query("PRAGMA quick_check")]
            if integrity != ["ok"]:
                return [f"SQLite integrity check failed: {'; '.join(integrity[:3])}"]
            schema = self._schema_problems()
            if schema:  # rows of another shape cannot be read as records
                return schema
            return [*self._count_problems(), *self._chunk_problems(), *self._vector_problems()]
        except IndexCorruptError as error:
            return [str(error)]

    def _schema_problems(self) -> list[str]:
        expected = sqlite3.connect(":memory:")
        expected.executescript(SCHEMA)
        problems = []
        for table in ("articles", "chunks"):
            wanted = [row[1] for row in expected.execute(f"PRAGMA table_info({table})")]
            found = [row[1] for row in self._query(f"PRAGMA table_info({table})")]
            if found != wanted:
                problems.append(f"table {table} has columns {found}, schema version {SCHEMA_VERSION} expects {wanted}")
        expected.close()
        return problems

    def _count_problems(self) -> list[str]:
        n_articles = self._query("SELECT COUNT(*) FROM articles")[0][0]
        n_chunks, first, last = self._query("SELECT COUNT(*), MIN(chunk_id), MAX(chunk_id) FROM chunks")[0]
        problems = []
        if n_articles != self.manifest.n_articles:
            problems.append(f"manifest says {self.manifest.n_articles} articles, the database holds {n_articles}")
        if n_chunks != self.manifest.n_chunks:
            problems.append(f"manifest says {self.manifest.n_chunks} chunks, the database holds {n_chunks}")
        if self._vectors.d != self.manifest.dim:
            problems.append(f"manifest says dimension {self.manifest.dim}, the vectors have {self._vectors.d}")
        if self._vectors.ntotal != n_chunks:
            problems.append(f"{self._vectors.ntotal} vectors for {n_chunks} chunk rows")
        if n_chunks and (first, last) != (0, n_chunks - 1):  # ids are unique (primary key): 0..n-1 means no gap
            problems.append(f"chunk ids run from {first} to {last}, not 0 to {n_chunks - 1}: "
                            "some FAISS rows have no chunk or some chunks no FAISS row")
        return problems

    def _chunk_problems(self) -> list[str]:
        orphans = [row[0] for row in self._query(
            "SELECT chunk_id FROM chunks WHERE article_id NOT IN (SELECT article_id FROM articles) LIMIT 5")]
        problems = [f"chunks {orphans} belong to no stored article"] if orphans else []
        miscounted, misplaced = [], []
        for article in self.articles():
            rows = self._query("SELECT chunk_id, start, end, text FROM chunks WHERE article_id = ?", (article.article_id,))
            if len(rows) != article.n_chunks:
                miscounted.append(f"{article.article_id} ({article.n_chunks} recorded, {len(rows)} stored)")
            misplaced += [row["chunk_id"] for row in rows if article.text[row["start"]:row["end"]] != row["text"]]
        if miscounted:
            problems.append(f"article chunk counts are wrong: {', '.join(miscounted[:5])}")
        if misplaced:
            problems.append(f"{len(misplaced)} chunk(s) differ from their article's text at their offsets "
                            f"(chunk ids {misplaced[:5]})")
        return problems

    def _vector_problems(self) -> list[str]:
        """The embedders store unit vectors; anything else is a damaged FAISS file."""
        bad = []
        for begin in range(0, self._vectors.ntotal, 10_000):
            block = self._vectors.reconstruct_n(begin, min(10_000, self._vectors.ntotal - begin))
            norms = np.linalg.norm(block, axis=1)
            bad += (begin + np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1) > 0.02))).tolist()  # bf16 rounds
        return [f"{len(bad)} vectors are not unit vectors (rows {bad[:5]})"] if bad else []

    def close(self) -> None:
        self._database.close()


def _unreadable(index_dir: Path, error: Exception) -> IndexCorruptError:
    return IndexCorruptError(f"The index in {index_dir} is unreadable ({error}). Run `hoidap index --rebuild`.")


def new_vector_index(dim: int, index_type: str) -> faiss.Index:
    """An empty FAISS index: exact inner product by default, HNSW for large corpora."""
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 96
        return index
    return faiss.IndexFlatIP(dim)
