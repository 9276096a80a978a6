"""SQL BM25 (`index.stores.postings.search`) as main runs it against the ways before it, side by side on the
same questions, at the sizes of bench/postgres_scale.py. The earlier ways are the module as it was at their
commit (loaded from git), over the same database:

- `before` (5186a63): rounds that each score their chunks fully, every further round reading up to `_GROWTH`
  times the postings read so far; each posting's chunk length from a hash of the chunk table;
- `bar` (82a4ea5): the same, but once a round has found `depth` chunks, the next reads the fewest terms whose
  left-out bounds stay below the depth-th score, so it is the last;
- `probe` (main, layout 4): probes of partial scores until `depth` chunks hold a term read, then one last
  query; the lengths from the lengths by block.
- `blockmax` (tried, not adopted): the same probes, then block-max bounds: a block's bound is the sum, over
  the query terms it holds, of the most each can add there (weight * block_max_tf / (block_max_tf + k1 (1 -
  b))); only the blocks whose bound reaches the probe's floor are read, every term of them, and scored fully.
  The bound sums every term's block maximum, so it is at least as tight as block-max MaxScore's. After its
  timings the script counts, per question, the blocks that pass against those holding a query term.

All give the results of scoring every chunk, so the rankings must be the same (scores to the last bits); the
figures are warm p50/p95 in ms of one field's search at depth 50, queries and terms read per question, the ways
interleaved question by question (the same cache state for each). The databases are bench/postgres_scale.py's
(`bench_<size>`, synthetic corpora moved in by `hoidap migrate`'s code; one of an older layout is upgraded on
opening): those of a server a run left up (`--running-cluster PGDATA`), or built here into a server started in
FOLDER and left up (`--keep-cluster`).

    .venv/bin/python bench/sql_bm25_rounds.py (--running-cluster PGDATA | --keep-cluster FOLDER)
        [--sizes 100000,1000000] [--queries 50] [--fields plain,folded,pairs] [--ways before,bar,probe,blockmax]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from scale import ROOT, module_at, p, questions  # this script's folder; it sets the models offline
from synthetic import build_synthetic_index

sys.path.insert(0, str(ROOT))  # for tests.postgres
import psycopg  # noqa: E402

from bot.settings import Settings  # noqa: E402
from bot.wiring import build_embedder, restorer_json  # noqa: E402
from index.store import IndexStore  # noqa: E402
from index.stores import postings, postgres_sync  # noqa: E402
from index.stores.postgres import PostgresStore  # noqa: E402
from index.stores.postgres_sync import migrate_embedded  # noqa: E402
from retrieval.search.lexical import query_tokens  # noqa: E402
from tests.postgres import POSTGRES_BIN_PATH, Cluster, start_cluster  # noqa: E402

DEPTH = 50


def _blocks_passing(field: str) -> str:
    """The blocks whose block-max bound reaches the floor (`blockmax`), as a common table expression."""
    return f"""q AS MATERIALIZED (SELECT * FROM unnest(%(ids)s::int[], %(weights)s::float8[]) AS q(term_id, weight)),
        passing AS MATERIALIZED (
            SELECT b.block FROM q JOIN hoidap_postings_{field} b ON b.term_id = q.term_id GROUP BY b.block
            HAVING sum(q.weight * b.block_max_tf / (b.block_max_tf + %(a0)s)) >= %(floor)s)"""


def _blockmax_sql(field: str, limits: str) -> str:
    within = (f"JOIN hoidap_chunks c ON c.chunk_id = b.block::bigint * {postings.BLOCK} + u.at AND {limits}"
              if limits else "")
    return f"""WITH {_blocks_passing(field)},
        scored AS (
            SELECT chunk_id, sum(share ORDER BY term_id) AS score
            FROM (SELECT b.block::bigint * {postings.BLOCK} + u.at AS chunk_id, q.term_id,
                         q.weight * u.tf / (u.tf + %(a0)s + %(a1)s * l.{field}[u.at + 1]) AS share
                  FROM passing k CROSS JOIN q
                  JOIN hoidap_postings_{field} b ON b.term_id = q.term_id AND b.block = k.block
                  JOIN hoidap_block_lengths l ON l.block = b.block
                  CROSS JOIN LATERAL unnest(b.offsets, b.tfs) AS u(at, tf) {within}
                  OFFSET 0) AS p
            GROUP BY chunk_id)
        SELECT chunk_id, score FROM scored ORDER BY score DESC, chunk_id LIMIT %(depth)s"""


BLOCKMAX_PARAMS: list[dict] = []  # each `blockmax` search's last query parameters, for counting its blocks


def blockmax_search(rows, field, terms, depth, average, limits=("", {})):
    """`postings.search`'s probes, then only the blocks whose block-max bound reaches the probe's floor."""
    if not terms:
        return []
    order = sorted(terms, key=lambda t: (-t.bound, t.df, t.term_id))
    read, floor = postings._first_read(order), 0.0
    while read < len(order):
        top = rows(postings._probe_sql(field, limits[0]), postings._round_params(order, read, depth, average, limits[1]))
        if len(top) == depth:
            floor = top[-1][0]
            break
        read = postings._next_read(order, read)
    params = {"ids": [t.term_id for t in order], "weights": [t.weight for t in order],
              "floor": floor * (1 - postings._MARGIN), "depth": depth, "a0": postings.BM25_K1 * (1 - postings.BM25_B),
              "a1": postings.BM25_K1 * postings.BM25_B / average, **limits[1]}
    BLOCKMAX_PARAMS.append(params)
    return [(int(c), float(s)) for c, s in rows(_blockmax_sql(field, limits[0]), params) if s > 0]


WAYS = {  # the search as it was at each commit
    "before": module_at("5186a63", "index/stores/postings.py", "postings_before").search,
    "bar": module_at("82a4ea5", "index/stores/postings.py", "postings_bar").search,
    "probe": postings.search,
    "blockmax": blockmax_search,
}
MAIN_SEARCH = postings.search


def database(cluster: Cluster, n_chunks: int, work_dir: Path, embedder) -> str:
    """The url of `bench_<n_chunks>`, migrated from the synthetic corpus first when the server lacks it."""
    name = f"bench_{n_chunks}"
    with psycopg.connect(cluster.url()) as connection:
        there = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if there:
        return cluster.url(name)
    directory = build_synthetic_index(work_dir, n_chunks, embedder, hnsw=False, report=print)["flat"]
    url = cluster.create_database(name)
    started = time.perf_counter()
    store = IndexStore.open(directory)
    migrate_embedded(store, url, derive_restorer=restorer_json)
    store.close()
    print(f"{n_chunks:,} chunks migrated in {time.perf_counter() - started:.0f}s", flush=True)
    return url


def same(ours: list[tuple[int, float]], theirs: list[tuple[int, float]]) -> bool:
    """The same chunks in the same order, the scores equal but for the last bits (the ways split a score's
    sum at different terms between the two parts of the query, so it is rounded differently)."""
    return [c for c, _ in ours] == [c for c, _ in theirs] and all(
        abs(a - b) <= 1e-9 * abs(b) for (_, a), (_, b) in zip(ours, theirs))


def compare(url: str, n_chunks: int, queries: list[str], fields: list[str], ways: list[str]) -> None:
    store = PostgresStore.open(url)
    plain_rows, reads = store._rows, []

    def counting(sql, params=()):
        if "WITH partial" in sql or "passing AS" in sql:  # a probe or a last query (blockmax's reads every term)
            reads.append(len(params["ids"]))
        return plain_rows(sql, params)

    def use(way: str) -> None:
        postings.search = WAYS[way]

    store._rows = counting
    try:
        for field in fields:
            tokens = [query_tokens(q, field) for q in queries]
            times, calls, terms, found = ({way: [] for way in ways} for _ in range(4))
            for way in ways:  # warm-up
                use(way)
                store.lexical_search(tokens[0], field, DEPTH)
            BLOCKMAX_PARAMS.clear()
            for one in tokens:
                for way in ways:
                    use(way)
                    reads.clear()
                    started = time.perf_counter()
                    found[way].append(store.lexical_search(one, field, DEPTH))
                    times[way].append((time.perf_counter() - started) * 1000)
                    calls[way].append(len(reads))
                    terms[way].append(reads[-1] if reads else 0)
            postings.search = MAIN_SEARCH
            for way in ways:
                differ = sum(not same(a, b) for a, b in zip(found[way], found[ways[0]]))
                print(f"{n_chunks:,} chunks, {field:6s} {way:7s}: p50/p95 ms {p(times[way])}; queries "
                      f"{sum(calls[way]) / len(queries):.2f}, terms read {sum(terms[way]) / len(queries):.1f} "
                      f"(of {sum(len(set(t)) for t in tokens) / len(queries):.1f}); rankings unlike {ways[0]}'s "
                      f"{differ}/{len(queries)}", flush=True)
            if BLOCKMAX_PARAMS:
                passing, holding = blocks_read(plain_rows, field, BLOCKMAX_PARAMS)
                print(f"{n_chunks:,} chunks, {field:6s} blockmax: blocks passing the floor {passing:,.0f} of "
                      f"{holding:,.0f} holding a query term (mean per question)", flush=True)
    finally:
        postings.search = MAIN_SEARCH
        store.close()


def blocks_read(rows, field: str, searches: list[dict]) -> tuple[float, float]:
    """The mean number of blocks `blockmax` read per question, and of blocks holding a query term."""
    passing = [rows(f"WITH {_blocks_passing(field)} SELECT count(*) FROM passing", params)[0][0] for params in searches]
    holding = [rows(f"SELECT count(DISTINCT block) FROM hoidap_postings_{field} WHERE term_id = ANY(%(ids)s)",
                    params)[0][0] for params in searches]
    return sum(passing) / len(searches), sum(holding) / len(searches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--running-cluster", type=Path, metavar="PGDATA")
    where.add_argument("--keep-cluster", type=Path, metavar="FOLDER")
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--fields", default=",".join(postings.FIELDS))
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench-scale")
    parser.add_argument("--build-memory", default=postgres_sync.BUILD_MEMORY)
    args = parser.parse_args()
    postgres_sync.BUILD_MEMORY = args.build_memory
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    for name in ("index.stores.postgres_sync", "index.stores.postgres"):  # the migration's progress
        logging.getLogger(name).setLevel(logging.INFO)
    fields = args.fields.split(",")
    if unknown := set(fields) - set(postings.FIELDS):
        parser.error(f"unknown fields: {', '.join(sorted(unknown))}")
    ways = args.ways.split(",")
    if unknown := set(ways) - set(WAYS):
        parser.error(f"unknown ways: {', '.join(sorted(unknown))}")
    embedder = build_embedder(Settings(_env_file=None, answerer="extractive"), new_index=True)
    if args.running_cluster:
        port = int((args.running_cluster / "postmaster.pid").read_text().split("\n")[3])  # its 4th line
        cluster = Cluster(args.running_cluster, port, None, POSTGRES_BIN_PATH)
    else:
        args.keep_cluster.mkdir(parents=True, exist_ok=True)
        cluster = start_cluster(args.keep_cluster / "pgdata")
    queries = questions(args.queries)
    print(f"{len(queries)} real questions; {os.cpu_count()} CPUs; depth {DEPTH}")
    for size in (int(s) for s in args.sizes.split(",")):
        compare(database(cluster, size, args.work_dir, embedder), size, queries, fields, ways)
    if args.keep_cluster:
        print(f"the server is left up: --running-cluster {cluster.pgdata}")


if __name__ == "__main__":
    main()
