"""Sync an index with a set of article files: embed only what changed, build aside, swap atomically.

`index_dir` is a symlink to the current generation directory. A sync writes a complete new generation
next to it and then replaces the symlink with `os.replace`, which is atomic: a crash, Ctrl-C or
`kill -9` at any moment leaves either the old or the new generation in place, never a mix.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from index.chunking import split_into_chunks
from index.cleaning import clean_article
from index.documents import Article, Chunk, RawDocument, Skipped
from index.embedding import Embedder
from index.errors import HoidapError, IndexCorruptError, IndexMissingError
from index.loading import load_documents
from index.store import (
    DATABASE,
    MANIFEST,
    SCHEMA,
    SCHEMA_VERSION,
    VECTORS,
    IndexStore,
    Manifest,
    new_vector_index,
)

# Bump when cleaning or chunking changes what an unchanged file turns into: every article is redone.
PIPELINE_VERSION = "2"
EMBED_BATCH = 64

Progress = Callable[[int, int], None]  # (done, total) chunks embedded


@dataclass
class SyncSummary:
    """What a sync did, for the end-of-run report."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_embedded: int = 0
    n_articles: int = 0
    n_chunks: int = 0
    seconds: float = 0.0
    rebuilt_reason: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.rebuilt_reason)


@dataclass(frozen=True)
class ChunkSettings:
    size_words: int
    overlap_sentences: int
    index_type: str = "flat"


def content_hash(doc: RawDocument) -> str:
    """Identifies what a document turns into: its text, its metadata hints and the pipeline version."""
    payload = json.dumps([PIPELINE_VERSION, doc.text, doc.title, doc.date, doc.url, doc.source, doc.kind], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def passage_text(title: str, chunk_text: str) -> str:
    """What gets embedded for a chunk: the headline gives a short passage its context."""
    return f"{title}\n{chunk_text}" if title else chunk_text


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise HoidapError(f"Another `hoidap index` is running on {lock_path.parent}; wait for it to finish.") from error
        yield


def open_current(index_dir: Path) -> IndexStore | None:
    """The current generation, or None when there is none yet."""
    try:
        return IndexStore.open(index_dir)
    except IndexMissingError:
        return None


def sync_index(paths: Iterable[Path], index_dir: Path, embedder: Embedder, settings: ChunkSettings, *,
               rebuild: bool = False, progress: Progress | None = None) -> SyncSummary:
    """Make the index in `index_dir` hold exactly the articles found in `paths`."""
    documents, skipped = load_documents(paths)
    return _sync(documents, skipped, index_dir, embedder, settings, rebuild=rebuild, progress=progress,
                 remove_missing=True)


def sync_documents(documents: list[RawDocument], index_dir: Path, embedder: Embedder, settings: ChunkSettings, *,
                   skipped: Iterable[Skipped] = (), progress: Progress | None = None) -> SyncSummary:
    """Add or update `documents` (pages from the web) in the index; every other article stays as it is."""
    return _sync(documents, list(skipped), index_dir, embedder, settings, rebuild=False, progress=progress,
                 remove_missing=False)


def _sync(documents: list[RawDocument], skipped: list[Skipped], index_dir: Path, embedder: Embedder,
          settings: ChunkSettings, *, rebuild: bool, progress: Progress | None, remove_missing: bool) -> SyncSummary:
    started = time.perf_counter()
    summary = SyncSummary()
    summary.skipped.extend(skipped)
    documents = _unique(documents, summary)
    with _exclusive(index_dir.parent / f".{index_dir.name}.lock"):
        _remove_stale_generations(index_dir)
        try:
            current = None if rebuild else open_current(index_dir)
        except IndexCorruptError as error:
            current, summary.rebuilt_reason = None, f"previous index unreadable: {error}"
        if rebuild:
            summary.rebuilt_reason = "rebuild requested"
        if current is not None:
            reason = _reuse_blocker(current.manifest, embedder, settings)
            if not reason and (problems := current.verify()):
                # Never carry damaged rows or vectors into a new generation, nor call a damaged index unchanged.
                reason = f"previous index damaged: {'; '.join(problems)}"
            if reason:
                current.close()
                summary.rebuilt_reason, current = reason, None
        old = {a.article_id: a for a in current.articles()} if current else {}
        wanted = {doc.doc_id: doc for doc in documents}
        hashes = {doc_id: content_hash(doc) for doc_id, doc in wanted.items()}
        others = sorted(set(old) - set(wanted))
        if remove_missing:  # files no longer there go; articles from the web (no path) are not files
            summary.removed = [doc_id for doc_id in others if old[doc_id].path is not None]
            others = [doc_id for doc_id in others if old[doc_id].path is None]
        for doc_id in sorted(wanted):
            if doc_id not in old:
                summary.added.append(doc_id)
            elif old[doc_id].content_hash != hashes[doc_id]:
                summary.updated.append(doc_id)
            else:
                summary.unchanged.append(doc_id)
        if not summary.changed:
            summary.n_articles, summary.n_chunks = len(old), current.manifest.n_chunks if current else 0
            summary.seconds = time.perf_counter() - started
            return summary
        articles, chunks = _prepare(
            [wanted[i] for i in summary.added + summary.updated], settings, summary
        )
        generation = index_dir.parent / f"{index_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.building"
        generation.mkdir(parents=True)
        vectors = _embed(chunks, articles, embedder, progress)
        summary.chunks_embedded = len(chunks)
        _write_generation(generation, index_dir, current, summary.unchanged + others, articles, chunks, vectors, hashes, embedder, settings, summary)
        if current is not None:
            current.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _unique(documents: list[RawDocument], summary: SyncSummary) -> list[RawDocument]:
    seen: set[str] = set()
    unique = []
    for doc in documents:
        if doc.doc_id in seen:
            summary.skipped.append(Skipped(doc.path or doc.doc_id, f"duplicate article id {doc.doc_id!r}"))
            continue
        seen.add(doc.doc_id)
        unique.append(doc)
    return unique


def _reuse_blocker(manifest: Manifest, embedder: Embedder, settings: ChunkSettings) -> str | None:
    """Why the current vectors cannot be carried over, or None when they can."""
    manifest.check_model(embedder.identity)
    if (manifest.chunk_size, manifest.chunk_overlap) != (settings.size_words, settings.overlap_sentences):
        return "chunk settings changed"
    if manifest.index_type != settings.index_type:
        return "index type changed"
    if manifest.pipeline_version != PIPELINE_VERSION:
        return "cleaning or chunking changed"
    return None


def _prepare(documents: list[RawDocument], settings: ChunkSettings,
             summary: SyncSummary) -> tuple[dict[str, Article], list[Chunk]]:
    articles: dict[str, Article] = {}
    chunks: list[Chunk] = []
    for doc in documents:
        article = clean_article(doc)
        pieces = split_into_chunks(article, size_words=settings.size_words, overlap_sentences=settings.overlap_sentences)
        if not pieces:
            summary.skipped.append(Skipped(doc.path or doc.doc_id, "no text left after cleaning"))
            for bucket in (summary.added, summary.updated):
                if doc.doc_id in bucket:
                    bucket.remove(doc.doc_id)
            continue
        articles[article.article_id] = article
        chunks.extend(pieces)
    return articles, chunks


def _embed(chunks: list[Chunk], articles: dict[str, Article], embedder: Embedder,
           progress: Progress | None) -> np.ndarray:
    texts = [passage_text(articles[c.article_id].title, c.text) for c in chunks]
    parts = []
    for begin in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.embed_passages(texts[begin:begin + EMBED_BATCH]))
        if progress:
            progress(min(begin + EMBED_BATCH, len(texts)), len(texts))
    if not parts:
        return np.zeros((0, embedder.identity.dim), dtype=np.float32)
    return np.concatenate(parts)


def _write_generation(generation: Path, index_dir: Path, current: IndexStore | None, keep: list[str], articles: dict[str, Article],
                      chunks: list[Chunk], vectors: np.ndarray, hashes: dict[str, str], embedder: Embedder,
                      settings: ChunkSettings, summary: SyncSummary) -> None:
    database = sqlite3.connect(generation / DATABASE)
    database.executescript(SCHEMA)
    vector_index = new_vector_index(embedder.identity.dim, settings.index_type)
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # building HNSW uses every core (queries use one)
    next_id = 0
    if current is not None and keep:
        old_vectors = current.vectors()
        kept = set(keep)
        rows = [c for c in current.iter_chunks() if c.article_id in kept]
        for record in current.articles():
            if record.article_id in kept:
                database.execute("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
                    record.article_id, record.title, record.title_inferred, record.date, record.date_inferred,
                    record.source, record.byline, record.url, record.path, record.text, record.content_hash,
                    record.n_chunks))
        database.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", [
            (next_id + i, c.article_id, c.ordinal, c.start, c.end, c.text) for i, c in enumerate(rows)])
        if rows:
            vector_index.add(old_vectors[[c.chunk_id for c in rows]])
        next_id += len(rows)
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.article_id] = counts.get(chunk.article_id, 0) + 1
    for article in articles.values():
        database.execute("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
            article.article_id, article.title, article.title_inferred, article.date, article.date_inferred,
            article.source, article.byline, article.url, article.path, article.text, hashes[article.article_id],
            counts.get(article.article_id, 0)))
    database.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", [
        (next_id + i, c.article_id, c.ordinal, c.start, c.end, c.text) for i, c in enumerate(chunks)])
    if len(vectors):
        vector_index.add(vectors)
    database.commit()
    summary.n_articles = database.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
    summary.n_chunks = database.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    database.close()
    faiss.write_index(vector_index, str(generation / VECTORS))
    Manifest(
        schema_version=SCHEMA_VERSION,
        embedding_model=embedder.identity.name,
        embedding_weights_sha256=embedder.identity.weights_sha256,
        dim=embedder.identity.dim,
        chunk_size=settings.size_words,
        chunk_overlap=settings.overlap_sentences,
        index_type=settings.index_type,
        n_articles=summary.n_articles,
        n_chunks=summary.n_chunks,
        pipeline_version=PIPELINE_VERSION,
    ).write(generation / MANIFEST)
    _fsync_tree(generation)
    final = generation.with_suffix("")  # drop ".building": a complete generation
    os.replace(generation, final)
    _swap_symlink(index_dir, final)


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.iterdir(), directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_symlink(index_dir: Path, target: Path) -> None:
    if index_dir.exists() and not index_dir.is_symlink():
        raise HoidapError(f"{index_dir} is a plain directory, not an index made by hoidap; move it away first.")
    temporary = index_dir.parent / f".{index_dir.name}.link-{os.getpid()}"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(target.name)
    os.replace(temporary, index_dir)
    fd = os.open(index_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _remove_stale_generations(index_dir)


def _remove_stale_generations(index_dir: Path) -> None:
    """Delete generations that are neither current nor complete (left by a crash or superseded)."""
    if not index_dir.parent.is_dir():
        return
    current = index_dir.resolve().name if index_dir.is_symlink() else None
    for path in index_dir.parent.glob(f"{index_dir.name}.*"):
        if path.is_dir() and path.name != current:
            shutil.rmtree(path, ignore_errors=True)
    for path in index_dir.parent.glob(f".{index_dir.name}.link-*"):
        path.unlink(missing_ok=True)
