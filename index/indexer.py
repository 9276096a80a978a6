"""Sync an index with its sources: one algorithm for every store, written through a small writer protocol.

Pass one reads every source, keeping only ids and content hashes, and works out what is added, updated,
removed and unchanged (the source registry, `--prune`, the more-than-half guard). Pass two reads the new
and changed articles again, one at a time: clean, chunk, embed `EMBED_BATCH` chunks at a time, hand
them to an `IndexWriter`; unchanged articles are never embedded again. Where the index lives is a
`SyncTarget`: the embedded one here (`EmbeddedTarget`: a new generation directory beside the current one,
swapped in atomically) and PostgreSQL (`index.stores.postgres_sync.PostgresTarget`: one transaction).

The embedded `index_dir` is a symlink to the current generation directory. A sync writes a complete new
generation next to it and then replaces the symlink with `os.replace`, which is atomic: a crash, Ctrl-C or
`kill -9` at any moment leaves either the old or the new generation in place, never a mix. The vectors a
sync embeds are kept in a journal until its index is written (`index.journal`), so the next sync after one
cut short does not embed them again.
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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Protocol

import faiss
import numpy as np

from index.chunking import iter_chunks
from index.cleaning import clean_article
from index.documents import Article, Chunk, RawDocument, Skipped
from index.embedding import Embedder
from index.errors import HoidapError, IndexCorruptError, IndexMissingError
from index.journal import EmbeddingJournal
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
    chunks_resumed: int = 0  # chunks whose vector a sync cut short had embedded (`index.journal`), not embedded again
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


class ArticleState(NamedTuple):
    """What a sync needs to know of an indexed article: never its text."""

    content_hash: str
    path: str | None


@dataclass
class _Seen:
    """What the first pass keeps of a document: never its text."""

    doc_id: str
    content_hash: str
    path: str | None
    n_chars: int


@dataclass
class SyncPlan:
    """The first pass over the sources: which articles each yields, and what the index holds after the sync."""

    sources: list[Source]  # every source the index remembers after this sync
    synced: list[Source]  # the ones read in this sync: their claims are replaced by `claims`
    seen: dict[str, _Seen]
    claims: dict[str, set[Source]]  # article -> sources that yield it, after this sync
    remembered: list[Source] = field(default_factory=list)  # the sources remembered before it
    dropped: list[Source] = field(default_factory=list)  # sources forgotten (--prune, `hoidap remove`)
    removed: list[str] = field(default_factory=list)  # articles to remove whatever claims them (`hoidap remove ID`)


class IndexWriter(Protocol):
    """Receives one sync's changes; nothing is visible to readers before `commit`, and `close` without
    `commit` leaves the index as it was."""

    def keep(self, article_ids: list[str]) -> None:
        """Articles that stay as they are, with their chunks and vectors."""

    def add_chunks(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """A batch of one article's chunks with their vectors; `add_article` follows its last batch."""

    def add_article(self, article: Article, content_hash: str, n_chunks: int) -> None:
        """The article whose chunks were just added."""

    def commit(self, plan: SyncPlan, summary: SyncSummary) -> None:
        """Make the sync visible at once; fills `summary.n_articles` and `n_chunks` (and may correct the lists
        when another process changed the index meanwhile)."""

    def close(self) -> None: ...


class SyncSession(Protocol):
    """One sync's view of a store, from opening (and locking) it to closing it."""

    exists: bool  # an index was there before this sync
    rebuilt_reason: str | None  # why the stored vectors cannot be reused (None: they can)

    def sources(self) -> list[Source]:
        """The sources the index remembers."""

    def reserve(self, sources: list[Source]) -> None:
        """Keep other syncs off these sources until the session ends (they wait)."""

    def previous(self) -> tuple[dict[str, ArticleState], dict[str, set[Source]], list[Source]]:
        """Articles, their claims and the remembered sources, as stored now."""

    def chunk_count(self) -> int: ...

    def stored(self, article_id: str) -> Article:
        """An indexed article as stored (a rebuild embeds it again from its text)."""

    def writer(self, plan: SyncPlan, progress: Progress | None = None) -> IndexWriter: ...


class SyncTarget(Protocol):
    """Where an index lives, for syncing it."""

    def session(self, embedder: Embedder | None, settings: ChunkSettings | None,
                rebuild: bool = False) -> AbstractContextManager[SyncSession]:
        """Open the index for a sync (`embedder` None: for removing, which embeds nothing and checks no model)."""

    def location(self) -> str:
        """Where the index is, for messages."""


# Documents handed to `sync_documents` (web pages, feed items) are claimed by this source: it is never
# re-read by a sync, and what it does not hand in again stays.
HANDED_IN = Source("web", "pages")


def sync_documents(documents: list[RawDocument], target: SyncTarget | Path, embedder: Embedder, settings: ChunkSettings,
                   *, skipped: Iterable[Skipped] = (), progress: Progress | None = None,
                   journal: Path | None = None) -> SyncSummary:
    """Add or update `documents` (pages from the web) in the index; every other article stays as it is."""
    items = [*documents, *skipped]
    return sync_index([HANDED_IN], target, embedder, settings, progress=progress, additive=True, journal=journal,
                      readers={HANDED_IN.kind: lambda _source, _limits: iter(items)})


def sync_index(paths: Iterable[Path | Source] | None, target: SyncTarget | Path, embedder: Embedder,
               settings: ChunkSettings, *, default: Iterable[Path | Source] = (), rebuild: bool = False,
               prune: bool = False, progress: Progress | None = None, confirm: Confirm | None = None,
               limits: ReadLimits = DEFAULT_LIMITS, readers: Mapping[str, SourceReader] = FILE_READERS,
               additive: bool = False, journal: Path | None = None) -> SyncSummary:
    """Add or update the articles of `paths` (default: every remembered source, or `default` the first time).

    `target`: a store, or the embedded index directory. Articles of other sources are kept. An article is
    removed only when a source it came from no longer yields it (with `prune`, also when its source itself
    is gone). A sync that would remove more than half of the index goes ahead only if `confirm(summary)`
    says so; otherwise SyncRefusedError. `additive`: the sources are not remembered, and what they no
    longer yield stays (`sync_documents`). `journal`: where the vectors embedded are kept until the index is
    written (`index.journal`), so a sync cut short is resumed by the next without embedding them again.
    """
    target = EmbeddedTarget(target) if isinstance(target, Path) else target
    started = time.perf_counter()
    summary = SyncSummary()
    given = [_as_source(p) for p in paths or ()]
    with target.session(embedder, settings, rebuild) as session:
        summary.rebuilt_reason = session.rebuilt_reason
        targets = given or session.sources() or [_as_source(p) for p in default]
        session.reserve(sorted(set(targets) | (set(session.sources()) if prune else set())))
        old, old_claims, remembered = session.previous()
        summary.n_before = len(old)
        plan = _scan(targets, remembered, old, old_claims, summary, limits, readers, prune, progress, additive)
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
        if not (summary.changed or sources_changed) and session.exists:
            summary.n_articles = len(old)
            summary.n_chunks = session.chunk_count()
            summary.seconds = time.perf_counter() - started
            return summary
        writer = session.writer(plan, progress)
        kept = None if journal is None or embedder is None else EmbeddingJournal.open(journal, embedder.identity)
        try:
            embedding = _Embedding(writer, embedder, settings, progress, kept)
            if summary.rebuilt_reason is None:
                writer.keep(summary.unchanged)
            else:  # in a rebuild nothing is reused: what no source yields now is embedded again from its stored text
                embedding.total_chars = sum(plan.seen[a].n_chars if a in plan.seen else 0 for a in summary.unchanged)
                for number, article_id in enumerate(summary.unchanged, start=1):
                    stored = session.stored(article_id)
                    embedding.write_article(stored, old[article_id].content_hash)
                    embedding.embedded_chars += plan.seen[article_id].n_chars if article_id in plan.seen else 0
                    if progress:
                        progress("writing", number, len(summary.unchanged))
            embedding.embed_new(plan, set(summary.added + summary.updated), summary, limits, readers)
            summary.chunks_resumed = embedding.resumed
            writer.commit(plan, summary)
            if kept is not None:
                kept.forget_used()
        finally:
            writer.close()
            if kept is not None:
                kept.close()
    summary.seconds = time.perf_counter() - started
    return summary


def remove_from_index(targets: Iterable[str], index: SyncTarget | Path) -> tuple[list[str], list[Source]]:
    """Remove articles by id or path, and sources by path (with the articles only they yielded).

    Returns the removed article ids and sources; raises HoidapError, changing nothing, when a target
    names neither an article, nor an article's file, nor a remembered source.
    """
    store = EmbeddedTarget(index) if isinstance(index, Path) else index
    wanted = list(targets)
    with store.session(None, None) as session:
        if not session.exists:
            raise IndexMissingError(f"No index in {store.location()}. Build it with `hoidap index`.",
                                    vi=f"Chưa có chỉ mục trong {store.location()}. Hãy tạo bằng `hoidap index`.")
        articles, claims, sources = session.previous()
        drop_articles, drop_sources = _removal(wanted, articles, claims, sources)
        # Syncs of the sources involved finish first; then the state is read again under their locks.
        session.reserve(sorted(drop_sources | {s for a in drop_articles for s in claims.get(a, set())}))
        articles, claims, sources = session.previous()
        drop_articles, drop_sources = _removal(wanted, articles, claims, sources)
        plan = SyncPlan([s for s in sources if s not in drop_sources], [], {},
                        {a: claims.get(a, set()) - drop_sources for a in articles if a not in drop_articles},
                        remembered=sources, dropped=sorted(drop_sources), removed=sorted(drop_articles))
        writer = session.writer(plan)
        try:
            writer.keep([a for a in articles if a not in drop_articles])
            writer.commit(plan, SyncSummary())
        finally:
            writer.close()
    return sorted(drop_articles), sorted(drop_sources)


def _removal(targets: list[str], articles: dict[str, ArticleState], claims: dict[str, set[Source]],
             sources: list[Source]) -> tuple[set[str], set[Source]]:
    drop_articles, drop_sources = _targets(targets, articles, sources)
    # An article goes with a removed source only when no other source yields it.
    drop_articles |= {a for a, claimed in claims.items() if claimed & drop_sources and not claimed - drop_sources}
    return drop_articles, drop_sources


def _targets(targets: list[str], articles: dict[str, ArticleState],
             sources: list[Source]) -> tuple[set[str], set[Source]]:
    by_path: dict[str, set[str]] = {}
    for article_id, article in articles.items():
        if article.path:
            by_path.setdefault(os.path.abspath(article.path), set()).add(article_id)
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


def _scan(targets: list[Source], remembered: list[Source], old: dict[str, ArticleState],
          old_claims: dict[str, set[Source]], summary: SyncSummary, limits: ReadLimits,
          readers: Mapping[str, SourceReader], prune: bool, progress: Progress | None, additive: bool) -> SyncPlan:
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
    return SyncPlan(sources, synced, seen, claims, remembered=list(remembered),
                    dropped=list(summary.dropped_sources))


def _claimed_elsewhere(doc: RawDocument, seen: dict[str, _Seen], old: dict[str, ArticleState],
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
    summary.skipped.append(duplicate(doc.path or doc.doc_id, doc.doc_id, other))
    return True


def duplicate(where: str, article_id: str, other: str | None) -> Skipped:
    """The reason a document is not indexed: its id is already indexed from another file."""
    return Skipped(where, f"duplicate article id {article_id!r}: already indexed from {other}",
                   vi=f"trùng mã bài {article_id!r}: đã có trong chỉ mục từ {other}")


def reuse_blocker(manifest: Manifest, embedder: Embedder, settings: ChunkSettings) -> str | None:
    """Why the stored vectors cannot be carried over, or None when they can (another model raises)."""
    # Another model raises; the same model in another precision embeds every article again.
    manifest.check_model(replace(embedder.identity, precision=manifest.embedding_precision))
    if manifest.embedding_precision != embedder.identity.precision:
        return f"embedding precision changed ({manifest.embedding_precision} -> {embedder.identity.precision})"
    if (manifest.chunk_size, manifest.chunk_overlap) != (settings.size_words, settings.overlap_sentences):
        return "chunk settings changed"
    if manifest.index_type != settings.index_type:
        return "index type changed"
    if manifest.pipeline_version != PIPELINE_VERSION:
        return "cleaning or chunking changed"
    return None


class _Embedding:
    """Pass two: clean, chunk and embed articles one at a time, `EMBED_BATCH` chunks at a time, into a writer."""

    def __init__(self, writer: IndexWriter, embedder: Embedder | None, settings: ChunkSettings | None,
                 progress: Progress | None, journal: EmbeddingJournal | None = None) -> None:
        self.writer = writer
        self.embedder = embedder
        self.settings = settings
        self.progress = progress
        self.journal = journal
        self.resumed = 0  # chunks whose vector a sync cut short had embedded (`journal`)
        # Identical passages (boilerplate, a repeated block) are embedded once per sync.
        self.cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.embedded_chars = 0
        self.total_chars = 0

    def embed_new(self, plan: SyncPlan, wanted: set[str], summary: SyncSummary, limits: ReadLimits,
                  readers: Mapping[str, SourceReader]) -> None:
        """Read the new and changed articles again, one at a time: clean, chunk, embed, write."""
        self.total_chars += sum(plan.seen[a].n_chars for a in wanted)
        written: set[str] = set()
        for source in plan.synced:
            if not wanted - written:
                break
            for item in read_source(source, limits, readers):
                if isinstance(item, Skipped) or item.doc_id not in wanted or item.doc_id in written:
                    continue
                written.add(item.doc_id)
                n_chunks = self.write_article(clean_article(item), content_hash(item))
                summary.chunks_embedded += n_chunks
                self.embedded_chars += len(item.text)
                self._report(0)
                if n_chunks == 0:
                    summary.skipped.append(Skipped(item.path or item.doc_id, "no text left after cleaning",
                                                   vi="không còn chữ nào sau khi làm sạch"))
        for gone in wanted - written:  # vanished or emptied between the two passes
            for bucket in (summary.added, summary.updated):
                if gone in bucket:
                    bucket.remove(gone)
            plan.claims.pop(gone, None)

    def write_article(self, article: Article, digest: str) -> int:
        """Chunk and embed one article in batches; an article with no chunk is not written. Returns its chunks."""
        assert self.embedder is not None and self.settings is not None
        chunks = iter_chunks(article, size_words=self.settings.size_words, overlap_sentences=self.settings.overlap_sentences)
        batch: list[Chunk] = []
        count = 0
        for chunk in chunks:
            batch.append(chunk)
            if len(batch) == EMBED_BATCH:
                self._embed_batch(article.title, batch)
                count += len(batch)
                batch = []
                self._report(min(chunk.end, len(article.text)))
        if batch:
            self._embed_batch(article.title, batch)
            count += len(batch)
        if count:
            self.writer.add_article(article, digest, count)
        return count

    def _report(self, within: int) -> None:
        if self.progress:
            done = self.embedded_chars + within
            self.progress("embedding", min(done, self.total_chars), self.total_chars)

    def _embed_batch(self, title: str, batch: list[Chunk]) -> None:
        texts = [passage_text(title, c.text) for c in batch]
        keys = [hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing and self.journal is not None:
            kept = self.journal.recall(missing)
            self.cache.update(kept)
            self.resumed += sum(1 for k in keys if k in kept)
            missing = [k for k in missing if k not in kept]
        if missing:
            fresh = self.embedder.embed_passages([texts[keys.index(k)] for k in missing])
            for key, vector in zip(missing, fresh):
                self.cache[key] = vector
            if self.journal is not None:
                self.journal.remember(zip(missing, fresh))
        vectors = np.stack([self.cache[k] for k in keys])
        for key in keys:
            self.cache.move_to_end(key)
        while len(self.cache) > _PASSAGE_CACHE:
            self.cache.popitem(last=False)
        self.writer.add_chunks(batch, vectors)


# ---------------------------------------------------------------------------- the embedded store

def open_current(index_dir: Path) -> IndexStore | None:
    """The current generation, or None when there is none yet."""
    try:
        return IndexStore.open(index_dir)
    except IndexMissingError:
        return None


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


class EmbeddedTarget:
    """The FAISS + SQLite index in `index_dir`: one sync at a time (a file lock), each writing a new generation."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir

    def location(self) -> str:
        return str(self.index_dir)

    @contextmanager
    def session(self, embedder: Embedder | None, settings: ChunkSettings | None,
                rebuild: bool = False) -> Iterator[_EmbeddedSession]:
        with _exclusive(self.index_dir.parent / f".{self.index_dir.name}.lock"):
            _remove_stale_generations(self.index_dir)
            session = _EmbeddedSession(self.index_dir, embedder, settings, rebuild)
            try:
                yield session
            finally:
                session.close()


class _EmbeddedSession:
    def __init__(self, index_dir: Path, embedder: Embedder | None, settings: ChunkSettings | None, rebuild: bool):
        self.index_dir = index_dir
        self.embedder = embedder
        self.settings = settings
        if embedder is None:
            self.current, self.rebuilt_reason = open_current(index_dir), None
        else:
            self.current, self.rebuilt_reason = _open_for_reuse(index_dir, embedder, settings, rebuild)
        self.exists = self.current is not None
        self._previous: tuple[dict[str, ArticleState], dict[str, set[Source]], list[Source]] | None = None

    def sources(self) -> list[Source]:
        return self.previous()[2]

    def reserve(self, sources: list[Source]) -> None:
        """The file lock already keeps every other sync out."""

    def chunk_count(self) -> int:
        return self.current.manifest.n_chunks if self.current else 0

    def previous(self) -> tuple[dict[str, ArticleState], dict[str, set[Source]], list[Source]]:
        if self._previous is None:
            self._previous = _previous(self.index_dir, self.current)
        return self._previous

    def stored(self, article_id: str) -> Article:
        record = self.current.article(article_id)
        return Article(record.article_id, record.title, record.title_inferred, record.date, record.date_inferred,
                       record.source, record.byline, record.url, record.path, record.text)

    def writer(self, plan: SyncPlan, progress: Progress | None = None) -> _GenerationWriter:
        generation = self.index_dir.parent / f"{self.index_dir.name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.building"
        generation.mkdir(parents=True)
        if self.embedder is None:
            return _GenerationWriter.like(self.index_dir, generation, self.current)
        return _GenerationWriter(self.index_dir, generation, self.embedder, self.settings, progress=progress,
                                 current=self.current if self.rebuilt_reason is None else None)

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


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
    reason = reuse_blocker(current.manifest, embedder, settings)
    if not reason and (problems := current.verify()):
        # Never carry damaged rows or vectors into a new generation, nor call a damaged index unchanged.
        current.close()
        return None, f"previous index damaged: {'; '.join(problems)}"
    return current, reason


def _previous(index_dir: Path, current: IndexStore | None) -> tuple[dict[str, ArticleState], dict[str, set[Source]], list[Source]]:
    """Articles, claims and sources of the current generation; a damaged one still tells its sources if it can."""
    if current is not None:
        return ({a.article_id: ArticleState(a.content_hash, a.path) for a in current.articles()},
                current.claims(), current.sources())
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


class _GenerationWriter:
    """Writes one new generation, an article at a time: only one article's chunks are in memory at once.
    `commit` swaps it in; `close` without it leaves a `.building` folder the next sync deletes."""

    def __init__(self, index_dir: Path, generation: Path, embedder: Embedder | None, settings: ChunkSettings, *,
                 current: IndexStore | None = None, identity: dict | None = None, progress: Progress | None = None):
        self.index_dir = index_dir
        self.progress = progress
        self.generation = generation
        self.settings = settings
        self.current = current
        self.identity = identity or {
            "embedding_model": embedder.identity.name, "embedding_weights_sha256": embedder.identity.weights_sha256,
            "dim": embedder.identity.dim, "embedding_precision": embedder.identity.precision,
        }
        self.database = sqlite3.connect(generation / DATABASE)
        self.database.executescript(SCHEMA)
        self.vectors = new_vector_index(self.identity["dim"], settings.index_type)
        self.next_id = 0
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building HNSW uses every core (queries use one)

    @classmethod
    def like(cls, index_dir: Path, generation: Path, current: IndexStore) -> _GenerationWriter:
        """A writer for a generation built with the same model and settings as `current` (no embedding)."""
        manifest = current.manifest
        settings = ChunkSettings(manifest.chunk_size, manifest.chunk_overlap, manifest.index_type)
        identity = {"embedding_model": manifest.embedding_model,
                    "embedding_weights_sha256": manifest.embedding_weights_sha256, "dim": manifest.dim,
                    "embedding_precision": manifest.embedding_precision}
        return cls(index_dir, generation, None, settings, current=current, identity=identity)

    def keep(self, article_ids: list[str]) -> None:
        """Copy the kept articles with their vectors from the current generation."""
        for number, article_id in enumerate(article_ids, start=1):
            record = self.current.article(article_id)
            rows = self.current.chunk_rows(article_id)
            self._insert_article(article_id, record, record.content_hash, len(rows))
            self._insert_chunks(rows, self.current.vectors_of([row.chunk_id for row in rows]))
            if self.progress:
                self.progress("writing", number, len(article_ids))

    def add_chunks(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self._insert_chunks(chunks, vectors)

    def add_article(self, article: Article, content_hash: str, n_chunks: int) -> None:
        self._insert_article(article.article_id, article, content_hash, n_chunks)

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

    def commit(self, plan: SyncPlan, summary: SyncSummary) -> None:
        """Record sources and claims, write FAISS and the manifest, fsync, mark the generation complete, swap it in."""
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
            embedding_precision=self.identity["embedding_precision"],
        ).write(self.generation / MANIFEST)
        _fsync_tree(self.generation)
        complete = self.generation.with_suffix("")
        os.replace(self.generation, complete)  # drop ".building": a complete generation
        _swap_symlink(self.index_dir, complete)

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
