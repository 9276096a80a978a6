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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from index.chunking import iter_chunks, split_into_chunks
from index.cleaning import clean_article
from index.documents import Article, Chunk, RawDocument, Skipped
from index.embedding import Embedder
from index.errors import HoidapError, IndexCorruptError, IndexMissingError
from index.loading import FILE_READERS
from index.sources import DEFAULT_LIMITS, ReadLimits, Source, SourceReader, read_source
from index.store import (
    DATABASE,
    MANIFEST,
    SCHEMA,
    SCHEMA_VERSION,
    VECTORS,
    ArticleRecord,
    ChunkRecord,
    IndexStore,
    Manifest,
    new_vector_index,
)

# Bump when cleaning or chunking changes what an unchanged file turns into: every article is redone.
PIPELINE_VERSION = "2"
EMBED_BATCH = 64

# (stage, done, total): stage "reading" counts documents read (total None: not known ahead), "embedding"
# counts characters of article text embedded, "writing" counts articles written.
Progress = Callable[[str, int, int | None], None]
Confirm = Callable[["SyncSummary"], bool]
# Identical passages (boilerplate, a repeated block) are embedded once per sync: the vectors of the last
# few thousand distinct passages are kept, so the memory this costs stays bounded.
_PASSAGE_CACHE = 4096


@dataclass
class SyncSummary:
    """What a sync did (or, when refused, would have done), for the end-of-run report."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    dropped_sources: list[Source] = field(default_factory=list)
    chunks_embedded: int = 0
    n_articles: int = 0
    n_chunks: int = 0
    n_before: int = 0
    seconds: float = 0.0
    rebuilt_reason: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.rebuilt_reason)


class SyncRefusedError(HoidapError):
    """A sync would remove more than half of the index and was not confirmed; nothing was changed."""


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
            raise HoidapError(f"Another `hoidap index` is running on {lock_path.parent}; wait for it to finish.",
                              vi=f"Một lệnh `hoidap index` khác đang chạy trên {lock_path.parent}; hãy chờ nó xong.") from error
        yield


def open_current(index_dir: Path) -> IndexStore | None:
    """The current generation, or None when there is none yet."""
    try:
        return IndexStore.open(index_dir)
    except IndexMissingError:
        return None


@dataclass
class _Seen:
    """What the first pass keeps of a document: never its text."""

    doc_id: str
    content_hash: str
    path: str | None
    n_chars: int


@dataclass
class _Plan:
    """The first pass over the sources: which articles each yields, and what the new generation holds."""

    sources: list[Source]  # every source the index remembers after this sync
    synced: list[Source]  # the ones read in this sync
    seen: dict[str, _Seen]
    claims: dict[str, set[Source]]  # article -> sources that yield it, after this sync


# Documents handed to `sync_documents` (web pages, feed items) are claimed by this source: it is never
# re-read by a sync, and what it does not hand in again stays.
HANDED_IN = Source("web", "pages")


def sync_documents(documents: list[RawDocument], index_dir: Path, embedder: Embedder, settings: ChunkSettings, *,
                   skipped: Iterable[Skipped] = (), progress: Progress | None = None) -> SyncSummary:
    """Add or update `documents` (pages from the web) in the index; every other article stays as it is."""
    items = [*documents, *skipped]
    return sync_index([HANDED_IN], index_dir, embedder, settings, progress=progress, additive=True,
                      readers={HANDED_IN.kind: lambda _source, _limits: iter(items)})


def sync_index(paths: Iterable[Path | Source] | None, index_dir: Path, embedder: Embedder, settings: ChunkSettings, *,
               default: Iterable[Path | Source] = (), rebuild: bool = False, prune: bool = False,
               progress: Progress | None = None, confirm: Confirm | None = None, limits: ReadLimits = DEFAULT_LIMITS,
               readers: Mapping[str, SourceReader] = FILE_READERS, additive: bool = False) -> SyncSummary:
    """Add or update the articles of `paths` (default: every remembered source, or `default` the first time).

    Articles of other sources are kept. An article is removed only when a source it came from no longer
    yields it (with `prune`, also when its source itself is gone). A sync that would remove more than
    half of the index goes ahead only if `confirm(summary)` says so; otherwise SyncRefusedError.
    `additive`: the sources are not remembered, and what they no longer yield stays (`sync_documents`).
    """
    started = time.perf_counter()
    summary = SyncSummary()
    given = [_as_source(p) for p in paths or ()]
    with _exclusive(index_dir.parent / f".{index_dir.name}.lock"):
        _remove_stale_generations(index_dir)
        current, summary.rebuilt_reason = _open_for_reuse(index_dir, embedder, settings, rebuild)
        old, old_claims, remembered = _previous(index_dir, current)
        summary.n_before = len(old)
        plan = _scan(given or remembered or [_as_source(p) for p in default], remembered, old, old_claims,
                     summary, limits, readers, prune, progress, additive)
        summary.sources = plan.sources
        for doc_id in sorted(plan.claims):
            if doc_id not in old or (summary.rebuilt_reason and doc_id in plan.seen):  # a rebuild adds afresh
                summary.added.append(doc_id)
            elif doc_id in plan.seen and old[doc_id].content_hash != plan.seen[doc_id].content_hash:
                summary.updated.append(doc_id)
            else:
                summary.unchanged.append(doc_id)
        summary.removed = sorted(set(old) - set(plan.claims))
        if len(summary.removed) * 2 > len(old) and not (confirm and confirm(summary)):
            raise _refusal(summary)
        sources_changed = set(plan.sources) != set(remembered) or plan.claims != {a: old_claims.get(a, set()) for a in plan.claims}
        if not (summary.changed or sources_changed) and current is not None:
            summary.n_articles, summary.n_chunks = len(old), current.manifest.n_chunks
            summary.seconds = time.perf_counter() - started
            current.close()
            return summary
        generation = index_dir.parent / f"{index_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.building"
        generation.mkdir(parents=True)
        writer = _GenerationWriter(generation, embedder, settings, progress)
        try:
            # In a rebuild nothing is reused: what no source yields now is re-embedded from its stored text.
            writer.carry_over([old[a] for a in summary.unchanged], current if summary.rebuilt_reason is None else None)
            writer.embed_new(plan, set(summary.added + summary.updated), summary, limits, readers)
            writer.finish(plan, summary)
        finally:
            writer.close()
            if current is not None:
                current.close()
        _swap_symlink(index_dir, generation.with_suffix(""))
    summary.seconds = time.perf_counter() - started
    return summary


def remove_from_index(targets: Iterable[str], index_dir: Path) -> tuple[list[str], list[Source]]:
    """Remove articles by id or path, and sources by path (with the articles only they yielded).

    Returns the removed article ids and sources; raises HoidapError, changing nothing, when a target
    names neither an article, nor an article's file, nor a remembered source.
    """
    with _exclusive(index_dir.parent / f".{index_dir.name}.lock"):
        current = open_current(index_dir)
        if current is None:
            raise IndexMissingError(f"No index in {index_dir}. Build it with `hoidap index`.",
                                    vi=f"Chưa có chỉ mục trong {index_dir}. Hãy tạo bằng `hoidap index`.")
        try:
            articles = {a.article_id: a for a in current.articles()}
            claims, sources = current.claims(), current.sources()
            drop_articles, drop_sources = _targets(list(targets), articles, sources)
            # An article goes with a removed source only when no other source yields it.
            drop_articles |= {a for a, claimed in claims.items() if claimed & drop_sources and not claimed - drop_sources}
            plan = _Plan([s for s in sources if s not in drop_sources], [], {},
                         {a: claims.get(a, set()) - drop_sources for a in articles if a not in drop_articles})
            generation = index_dir.parent / f"{index_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.building"
            generation.mkdir(parents=True)
            writer = _GenerationWriter.like(generation, current)
            try:
                writer.carry_over([a for a in articles.values() if a.article_id not in drop_articles], current)
                writer.finish(plan, SyncSummary())
            finally:
                writer.close()
        finally:
            current.close()
        _swap_symlink(index_dir, generation.with_suffix(""))
    return sorted(drop_articles), sorted(drop_sources)


def _targets(targets: list[str], articles: dict[str, ArticleRecord],
             sources: list[Source]) -> tuple[set[str], set[Source]]:
    by_path: dict[str, set[str]] = {}
    for article in articles.values():
        if article.path:
            by_path.setdefault(os.path.abspath(article.path), set()).add(article.article_id)
    drop_articles: set[str] = set()
    drop_sources: set[Source] = set()
    unknown = []
    for target in targets:
        absolute = os.path.abspath(target)
        matched = {s for s in sources if s.locator in (target, absolute)}
        if target in articles:
            drop_articles.add(target)
        elif matched or absolute in by_path:
            drop_sources |= matched
            drop_articles |= by_path.get(absolute, set())
        else:
            unknown.append(target)
    if unknown:
        listed = ", ".join(unknown)
        raise HoidapError(f"Not in the index (no such article id, article file or source): {listed}. "
                          "See `hoidap sources`. Nothing was removed.",
                          vi=f"Không có trong chỉ mục (không phải mã bài, tệp bài hay nguồn nào): {listed}. "
                             "Xem `hoidap sources`. Chưa xoá gì.")
    return drop_articles, drop_sources


def _as_source(item: Path | Source) -> Source:
    return item if isinstance(item, Source) else Source.for_path(Path(item))


def _refusal(summary: SyncSummary) -> SyncRefusedError:
    n, total = len(summary.removed), summary.n_before
    return SyncRefusedError(
        f"This sync would remove {n} of the {total} articles in the index (more than half); nothing was changed. "
        "Run it again with --yes if that is what you want, or check the path.",
        vi=f"Lần đồng bộ này sẽ xoá {n} trong {total} bài của chỉ mục (hơn một nửa); chưa thay đổi gì. "
           "Nếu đúng ý bạn, hãy chạy lại với --yes, hoặc kiểm tra lại đường dẫn.")


def _open_for_reuse(index_dir: Path, embedder: Embedder, settings: ChunkSettings,
                    rebuild: bool) -> tuple[IndexStore | None, str | None]:
    """The current generation, and why its vectors cannot be reused (None when they can)."""
    try:
        current = open_current(index_dir)
    except IndexCorruptError as error:
        return None, f"previous index unreadable: {error}"
    if current is None:
        return None, "rebuild requested" if rebuild else None
    if rebuild:
        return current, "rebuild requested"
    reason = _reuse_blocker(current.manifest, embedder, settings)
    if not reason and (problems := current.verify()):
        # Never carry damaged rows or vectors into a new generation, nor call a damaged index unchanged.
        current.close()
        return None, f"previous index damaged: {'; '.join(problems)}"
    return current, reason


def _previous(index_dir: Path, current: IndexStore | None) -> tuple[dict[str, ArticleRecord], dict[str, set[Source]], list[Source]]:
    """Articles, claims and sources of the current generation; a damaged one still tells its sources if it can."""
    if current is not None:
        return {a.article_id: a for a in current.articles()}, current.claims(), current.sources()
    try:
        damaged = open_current(index_dir)
    except HoidapError:
        return {}, {}, []
    if damaged is None:
        return {}, {}, []
    try:
        return {}, {}, damaged.sources()
    except HoidapError:
        return {}, {}, []
    finally:
        damaged.close()


def _scan(targets: list[Source], remembered: list[Source], old: dict[str, ArticleRecord],
          old_claims: dict[str, set[Source]], summary: SyncSummary, limits: ReadLimits,
          readers: Mapping[str, SourceReader], prune: bool, progress: Progress | None, additive: bool) -> _Plan:
    """Read every target source once, keeping only ids and hashes, and work out the claims after the sync."""
    sources = list(remembered) if additive else list(dict.fromkeys([*remembered, *targets]))
    if prune:
        targets = list(dict.fromkeys([*remembered, *targets]))
    synced, seen = [], {}
    yielded: dict[Source, set[str]] = {}
    read = 0
    for source in targets:
        if not source.exists():
            if prune:
                sources.remove(source)
                summary.dropped_sources.append(source)
                yielded[source] = set()
            else:
                count = sum(1 for claimed in old_claims.values() if source in claimed)
                summary.skipped.append(Skipped(
                    source.locator, f"source no longer exists; its {count} article(s) are kept "
                                    "(`hoidap index --prune` removes them)",
                    vi=f"nguồn không còn nữa; {count} bài của nó vẫn được giữ (`hoidap index --prune` để xoá)"))
            continue
        synced.append(source)
        yielded[source] = set()
        for item in read_source(source, limits, readers):
            if isinstance(item, Skipped):
                summary.skipped.append(item)
                continue
            read += 1
            if progress:
                progress("reading", read, None)
            if _claimed_elsewhere(item, seen, old, old_claims, targets, summary):
                continue
            seen.setdefault(item.doc_id, _Seen(item.doc_id, content_hash(item), item.path, len(item.text)))
            yielded[source].add(item.doc_id)
    claims: dict[str, set[Source]] = {}
    for article_id in set(old) | set(seen):
        claimed = {s for s in old_claims.get(article_id, set()) if additive or s not in yielded}
        claimed |= {s for s, ids in yielded.items() if article_id in ids}
        legacy_unclaimed = article_id in old and not old_claims.get(article_id)
        if claimed or legacy_unclaimed:
            claims[article_id] = claimed
    return _Plan(sources, synced, seen, claims)


def _claimed_elsewhere(doc: RawDocument, seen: dict[str, _Seen], old: dict[str, ArticleRecord],
                       old_claims: dict[str, set[Source]], targets: list[Source], summary: SyncSummary) -> bool:
    """A document whose id another file already holds (in this sync, or in a source not synced now) is skipped."""
    if doc.doc_id in seen:
        other = seen[doc.doc_id].path
    elif doc.doc_id in old and not old_claims.get(doc.doc_id, set()) <= set(targets):
        other = old[doc.doc_id].path
    else:
        return False
    if other is not None and doc.path is not None and os.path.abspath(other) == os.path.abspath(doc.path):
        return False  # the same file, reached through two sources (a folder and a file inside it)
    summary.skipped.append(Skipped(doc.path or doc.doc_id, f"duplicate article id {doc.doc_id!r}: already indexed from {other}",
                                   vi=f"trùng mã bài {doc.doc_id!r}: đã có trong chỉ mục từ {other}"))
    return True


# The database store's sync (index/stores/postgres_sync.py) still builds a whole batch at once with these.

def _unique(documents: list[RawDocument], summary: SyncSummary) -> list[RawDocument]:
    seen: set[str] = set()
    unique = []
    for doc in documents:
        if doc.doc_id in seen:
            summary.skipped.append(Skipped(doc.path or doc.doc_id, f"duplicate article id {doc.doc_id!r}",
                                           vi=f"trùng mã bài {doc.doc_id!r}"))
            continue
        seen.add(doc.doc_id)
        unique.append(doc)
    return unique


def _prepare(documents: list[RawDocument], settings: ChunkSettings,
             summary: SyncSummary) -> tuple[dict[str, Article], list[Chunk]]:
    articles: dict[str, Article] = {}
    chunks: list[Chunk] = []
    for doc in documents:
        article = clean_article(doc)
        pieces = split_into_chunks(article, size_words=settings.size_words, overlap_sentences=settings.overlap_sentences)
        if not pieces:
            summary.skipped.append(Skipped(doc.path or doc.doc_id, "no text left after cleaning",
                                           vi="không còn chữ nào sau khi làm sạch"))
            for bucket in (summary.added, summary.updated):
                if doc.doc_id in bucket:
                    bucket.remove(doc.doc_id)
            continue
        articles[article.article_id] = article
        chunks.extend(pieces)
    return articles, chunks


def _embed(chunks: list[Chunk], articles: dict[str, Article], embedder: Embedder,
           progress: Callable[[int, int], None] | None) -> np.ndarray:
    texts = [passage_text(articles[c.article_id].title, c.text) for c in chunks]
    parts = []
    for begin in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.embed_passages(texts[begin:begin + EMBED_BATCH]))
        if progress:
            progress(min(begin + EMBED_BATCH, len(texts)), len(texts))
    if not parts:
        return np.zeros((0, embedder.identity.dim), dtype=np.float32)
    return np.concatenate(parts)


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


class _GenerationWriter:
    """Writes one new generation, an article at a time: only one article's chunks are in memory at once."""

    def __init__(self, generation: Path, embedder: Embedder | None, settings: ChunkSettings,
                 progress: Progress | None = None, *, identity: dict | None = None):
        self.generation = generation
        self.embedder = embedder
        self.settings = settings
        self.progress = progress
        self.identity = identity or {
            "embedding_model": embedder.identity.name, "embedding_weights_sha256": embedder.identity.weights_sha256,
            "dim": embedder.identity.dim,
        }
        self.database = sqlite3.connect(generation / DATABASE)
        self.database.executescript(SCHEMA)
        self.vectors = new_vector_index(self.identity["dim"], settings.index_type)
        self.next_id = 0
        self.cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.embedded_chars = 0
        self.total_chars = 0
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building HNSW uses every core (queries use one)

    @classmethod
    def like(cls, generation: Path, current: IndexStore) -> _GenerationWriter:
        """A writer for a generation built with the same model and settings as `current` (no embedding)."""
        manifest = current.manifest
        settings = ChunkSettings(manifest.chunk_size, manifest.chunk_overlap, manifest.index_type)
        identity = {"embedding_model": manifest.embedding_model,
                    "embedding_weights_sha256": manifest.embedding_weights_sha256, "dim": manifest.dim}
        return cls(generation, None, settings, identity=identity)

    def carry_over(self, kept: list[ArticleRecord], current: IndexStore | None) -> None:
        """Copy kept articles with their vectors; without a reusable `current`, re-embed their stored text."""
        for number, record in enumerate(kept, start=1):
            if current is not None:
                rows = current.chunk_rows(record.article_id)
                self._insert_article(record.article_id, record, record.content_hash, len(rows))
                self._insert_chunks(rows, current.vectors_of([row.chunk_id for row in rows]))
            else:
                article = Article(record.article_id, record.title, record.title_inferred, record.date,
                                  record.date_inferred, record.source, record.byline, record.url, record.path, record.text)
                self._write_article(article, record.content_hash)
            if self.progress:
                self.progress("writing", number, len(kept))

    def embed_new(self, plan: _Plan, wanted: set[str], summary: SyncSummary, limits: ReadLimits,
                  readers: Mapping[str, SourceReader]) -> None:
        """Read the new and changed articles again, one at a time: clean, chunk, embed, write."""
        self.total_chars = sum(plan.seen[a].n_chars for a in wanted)
        written: set[str] = set()
        for source in plan.synced:
            for item in read_source(source, limits, readers):
                if isinstance(item, Skipped) or item.doc_id not in wanted or item.doc_id in written:
                    continue
                written.add(item.doc_id)
                n_chunks = self._write_article(clean_article(item), content_hash(item))
                summary.chunks_embedded += n_chunks
                if n_chunks == 0:
                    summary.skipped.append(Skipped(item.path or item.doc_id, "no text left after cleaning",
                                                   vi="không còn chữ nào sau khi làm sạch"))
                self.embedded_chars += len(item.text)
                if self.progress:
                    self.progress("embedding", min(self.embedded_chars, self.total_chars), self.total_chars)
        for gone in wanted - written:  # vanished or emptied between the two passes
            for bucket in (summary.added, summary.updated):
                if gone in bucket:
                    bucket.remove(gone)
            plan.claims.pop(gone, None)

    def _write_article(self, article: Article, digest: str) -> int:
        """Chunk and embed one article in batches; an article with no chunk is not written. Returns its chunks."""
        chunks = iter_chunks(article, size_words=self.settings.size_words, overlap_sentences=self.settings.overlap_sentences)
        batch: list[Chunk] = []
        count = 0
        first_id = self.next_id
        for chunk in chunks:
            batch.append(chunk)
            if len(batch) == EMBED_BATCH:
                self._embed_batch(article.title, batch)
                count += len(batch)
                batch = []
                if self.progress:
                    done = self.embedded_chars + min(chunk.end, len(article.text))
                    self.progress("embedding", min(done, self.total_chars), self.total_chars)
        if batch:
            self._embed_batch(article.title, batch)
            count += len(batch)
        if count:
            self._insert_article(article.article_id, article, digest, count)
        assert self.next_id == first_id + count
        return count

    def _embed_batch(self, title: str, batch: list[Chunk]) -> None:
        texts = [passage_text(title, c.text) for c in batch]
        keys = [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            fresh = self.embedder.embed_passages([texts[keys.index(k)] for k in missing])
            for key, vector in zip(missing, fresh):
                self.cache[key] = vector
        vectors = np.stack([self.cache[k] for k in keys])
        for key in keys:
            self.cache.move_to_end(key)
        while len(self.cache) > _PASSAGE_CACHE:
            self.cache.popitem(last=False)
        self._insert_chunks(batch, vectors)

    def _insert_article(self, article_id: str, article: Article | ArticleRecord, digest: str, n_chunks: int) -> None:
        self.database.execute("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
            article_id, article.title, article.title_inferred, article.date, article.date_inferred,
            article.source, article.byline, article.url, article.path, article.text, digest, n_chunks))

    def _insert_chunks(self, chunks: list[Chunk] | list[ChunkRecord], vectors: np.ndarray) -> None:
        self.database.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", [
            (self.next_id + i, c.article_id, c.ordinal, c.start, c.end, c.text) for i, c in enumerate(chunks)])
        if len(chunks):
            self.vectors.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.next_id += len(chunks)

    def finish(self, plan: _Plan, summary: SyncSummary) -> None:
        """Record sources and claims, write FAISS and the manifest, fsync, and mark the generation complete."""
        self.database.executemany("INSERT INTO sources VALUES (?,?)", [(s.kind, s.locator) for s in plan.sources])
        stored = {row[0] for row in self.database.execute("SELECT article_id FROM articles")}
        self.database.executemany("INSERT INTO article_sources VALUES (?,?,?)", [
            (article_id, s.kind, s.locator) for article_id, claimed in plan.claims.items() if article_id in stored
            for s in sorted(claimed)])
        self.database.commit()
        summary.n_articles = self.database.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
        summary.n_chunks = self.database.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        self.database.close()
        faiss.write_index(self.vectors, str(self.generation / VECTORS))
        Manifest(
            schema_version=SCHEMA_VERSION,
            embedding_model=self.identity["embedding_model"],
            embedding_weights_sha256=self.identity["embedding_weights_sha256"],
            dim=self.identity["dim"],
            chunk_size=self.settings.size_words,
            chunk_overlap=self.settings.overlap_sentences,
            index_type=self.settings.index_type,
            n_articles=summary.n_articles,
            n_chunks=summary.n_chunks,
            pipeline_version=PIPELINE_VERSION,
        ).write(self.generation / MANIFEST)
        _fsync_tree(self.generation)
        os.replace(self.generation, self.generation.with_suffix(""))  # drop ".building": a complete generation

    def close(self) -> None:
        try:
            self.database.close()
        except sqlite3.Error:
            pass


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.iterdir(), directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_symlink(index_dir: Path, target: Path) -> None:
    """Point `index_dir` at the complete generation `target`, atomically."""
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
