"""Sync the PostgreSQL index with a set of article files, and move an embedded index into it.

The same semantics as `index.indexer.sync_index` (content hashes, unchanged articles never embedded
again, the manifest checks), with one transaction per run instead of a new generation directory: the
articles, chunks, vectors and manifest change together at COMMIT or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from index.embedding import Embedder
from index.errors import HoidapError
from index.indexer import (
    PIPELINE_VERSION,
    ChunkSettings,
    Progress,
    SyncSummary,
    _embed,
    _prepare,
    _reuse_blocker,
    _unique,
    content_hash,
)
from index.loading import load_documents
from index.store import IndexStore, Manifest
from index.stores.postgres import (
    SCHEMA_VERSION,
    HnswSettings,
    VectorType,
    article_row,
    connect,
    create_schema,
    delete_articles,
    describe_url,
    drop_schema,
    insert_articles,
    insert_chunks,
    lexical_texts,
    lock_for_sync,
    read_manifest,
    store_statistics,
    vector_index_sql,
    write_manifest,
)

BUILD_MEMORY = "1GB"  # maintenance_work_mem for building the HNSW graph of a migrated index

# Builds the diacritic model of the corpus (JSON) from its lexical texts; retrieval owns it, so it is passed in.
DeriveRestorer = Callable[[Iterable[str]], str]


def index_type(vector_type: VectorType) -> str:
    """What the manifest records as the index type: changing the vector type re-embeds nothing but rebuilds."""
    return f"{vector_type}-hnsw"


def sync_postgres(paths: Iterable[Path], url: str, embedder: Embedder, settings: ChunkSettings, *,
                  vector_type: VectorType = "vector", hnsw: HnswSettings | None = None,
                  derive_restorer: DeriveRestorer | None = None, rebuild: bool = False,
                  progress: Progress | None = None) -> SyncSummary:
    """Make the index in the database at `url` hold the articles found in `paths` (and those from the web), in
    one transaction."""
    started = time.perf_counter()
    summary = SyncSummary()
    documents, skipped = load_documents(paths)
    summary.skipped.extend(skipped)
    wanted = {doc.doc_id: doc for doc in _unique(documents, summary)}
    hashes = {doc_id: content_hash(doc) for doc_id, doc in wanted.items()}
    settings = ChunkSettings(settings.size_words, settings.overlap_sentences, index_type(vector_type))
    connection = connect(url)
    try:
        with connection.transaction():
            lock_for_sync(connection)
            manifest = read_manifest(connection)
            if manifest is not None and not rebuild:
                summary.rebuilt_reason = _reuse_blocker(manifest, embedder, settings)  # a model mismatch raises
            elif manifest is not None:
                summary.rebuilt_reason = "rebuild requested"
            if manifest is None or summary.rebuilt_reason:
                drop_schema(connection)
                create_schema(connection, embedder.identity.dim, vector_type, hnsw or HnswSettings())
                write_manifest(connection, _manifest(embedder, settings))
            rows = connection.execute("SELECT article_id, content_hash, path FROM hoidap_articles").fetchall()
            old = {article_id: content_hash for article_id, content_hash, _ in rows}
            from_files = {article_id for article_id, _, path in rows if path is not None}
            _classify(summary, old, hashes, from_files)
            if summary.changed:
                _apply(connection, summary, wanted, hashes, embedder, settings, vector_type, progress)
                texts = lexical_texts(connection)
                store_statistics(connection, derive_restorer(texts) if derive_restorer else None)
            summary.n_articles, summary.n_chunks = connection.execute(
                "SELECT (SELECT count(*) FROM hoidap_articles), (SELECT count(*) FROM hoidap_chunks)").fetchone()
    finally:
        connection.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _classify(summary: SyncSummary, old: dict[str, str], hashes: dict[str, str], from_files: set[str]) -> None:
    """As `index.indexer`: files no longer there go; articles from the web (no path) are not files and stay."""
    summary.removed = sorted((set(old) - set(hashes)) & from_files)
    for doc_id in sorted(hashes):
        if doc_id not in old:
            summary.added.append(doc_id)
        elif old[doc_id] != hashes[doc_id]:
            summary.updated.append(doc_id)
        else:
            summary.unchanged.append(doc_id)


def _apply(connection, summary: SyncSummary, wanted, hashes, embedder: Embedder, settings: ChunkSettings,
           vector_type: VectorType, progress: Progress | None) -> None:
    """Delete removed and changed articles, embed and insert the new versions."""
    delete_articles(connection, summary.removed + summary.updated)
    articles, chunks = _prepare([wanted[i] for i in summary.added + summary.updated], settings, summary)
    vectors = _embed(chunks, articles, embedder, progress)
    summary.chunks_embedded = len(chunks)
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.article_id] = counts.get(chunk.article_id, 0) + 1
    insert_articles(connection, [article_row(a, hashes[a.article_id], counts.get(a.article_id, 0))
                                 for a in articles.values()])
    heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in articles.values()}
    insert_chunks(connection, chunks, heads, vectors, vector_type)


def _manifest(embedder: Embedder, settings: ChunkSettings) -> Manifest:
    identity = embedder.identity
    return Manifest(schema_version=SCHEMA_VERSION, embedding_model=identity.name,
                    embedding_weights_sha256=identity.weights_sha256, dim=identity.dim,
                    chunk_size=settings.size_words, chunk_overlap=settings.overlap_sentences,
                    index_type=settings.index_type, n_articles=0, n_chunks=0, pipeline_version=PIPELINE_VERSION)


def migrate_embedded(store: IndexStore, url: str, *, vector_type: VectorType = "vector",
                     hnsw: HnswSettings | None = None, derive_restorer: DeriveRestorer | None = None,
                     replace: bool = False) -> tuple[int, int]:
    """Copy an embedded index (articles, chunks and their vectors, no re-embedding) into the database.

    Refuses a database that already holds an index unless `replace`. Returns (articles, chunks) copied.
    """
    manifest = store.manifest
    connection = connect(url)
    try:
        with connection.transaction():
            lock_for_sync(connection)
            if read_manifest(connection) is not None and not replace:
                raise HoidapError(
                    f"The database at {describe_url(url)} already holds an index; add --replace to overwrite it.",
                    vi=f"Cơ sở dữ liệu tại {describe_url(url)} đã có chỉ mục; thêm --replace để ghi đè.")
            drop_schema(connection)
            create_schema(connection, manifest.dim, vector_type, hnsw or HnswSettings(), vector_index=False)
            write_manifest(connection, Manifest(**{**manifest.__dict__, "index_type": index_type(vector_type)}))
            articles = store.articles()
            insert_articles(connection, [article_row(a, a.content_hash, a.n_chunks) for a in articles])
            heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in articles}
            vectors = store.vectors()
            chunks = store.chunks()
            for begin in range(0, len(chunks), 5000):
                batch = chunks[begin:begin + 5000]
                insert_chunks(connection, batch, heads, vectors[[c.chunk_id for c in batch]], vector_type)
            # The graph is built once over every vector; the memory lets pgvector build it in RAM.
            connection.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
            connection.execute(vector_index_sql(vector_type, hnsw or HnswSettings()))
            store_statistics(connection, derive_restorer(lexical_texts(connection)) if derive_restorer else None)
    finally:
        connection.close()
    return len(articles), len(chunks)

