"""How many terms each round of SQL BM25 reads (`index.stores.postings.search`): the rule on main against the
one before it, side by side on the same questions, at the sizes of bench/postgres_scale.py.

- `growth`: every further round reads up to `_GROWTH` times the postings read so far (the rule before);
- `bar`: the same until a round has found `depth` chunks; then the fewest terms whose left-out bounds stay
  below the depth-th score found, so that the next round is the last (the rule on main).

Both give the results of scoring every chunk, so the rankings must be the same; the figures are warm p50/p95
in ms of one field's search at depth 50, the rounds and the terms read per question, the rules interleaved
question by question (the same cache state for both). The databases are bench/postgres_scale.py's
(`bench_<size>`, synthetic corpora moved in by `hoidap migrate`'s code): those of a server a run left up
(`--running-cluster PGDATA`), or built here into a server started in FOLDER and left up (`--keep-cluster`).

    .venv/bin/python bench/sql_bm25_rounds.py (--running-cluster PGDATA | --keep-cluster FOLDER)
        [--sizes 100000,1000000] [--queries 50] [--fields plain,folded,pairs]
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

import psycopg  # noqa: E402
from scale import p, questions  # noqa: E402
from synthetic import build_synthetic_index  # noqa: E402

from bot.settings import Settings  # noqa: E402
from bot.wiring import build_embedder, restorer_json  # noqa: E402
from index.store import IndexStore  # noqa: E402
from index.stores import postings, postgres_sync  # noqa: E402
from index.stores.postgres import PostgresStore  # noqa: E402
from index.stores.postgres_sync import migrate_embedded  # noqa: E402
from retrieval.search.lexical import query_tokens  # noqa: E402
from tests.postgres import POSTGRES_BIN_PATH, Cluster, start_cluster  # noqa: E402

DEPTH = 50
BAR_RULE = postings._next_read
RULES = {
    "growth": lambda order, read, bar: BAR_RULE(order, read, None),
    "bar": BAR_RULE,
}


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
    """The same chunks in the same order, the scores equal but for the last bits (the rules split a score's
    sum at different terms between the two parts of the query, so it is rounded differently)."""
    return [c for c, _ in ours] == [c for c, _ in theirs] and all(
        abs(a - b) <= 1e-9 * abs(b) for (_, a), (_, b) in zip(ours, theirs))


def compare(url: str, n_chunks: int, queries: list[str], fields: list[str]) -> None:
    store = PostgresStore.open(url)
    plain_rows, reads = store._rows, []

    def counting(sql, params=()):
        if "WITH partial" in sql:
            reads.append(len(params["ids"]))
        return plain_rows(sql, params)

    store._rows = counting
    try:
        for field in fields:
            tokens = [query_tokens(q, field) for q in queries]
            times = {rule: [] for rule in RULES}
            rounds = {rule: [] for rule in RULES}
            terms = {rule: [] for rule in RULES}
            found = {rule: [] for rule in RULES}
            for rule, next_read in RULES.items():  # warm-up
                postings._next_read = next_read
                store.lexical_search(tokens[0], field, DEPTH)
            for one in tokens:
                for rule, next_read in RULES.items():
                    postings._next_read = next_read
                    reads.clear()
                    started = time.perf_counter()
                    found[rule].append(store.lexical_search(one, field, DEPTH))
                    times[rule].append((time.perf_counter() - started) * 1000)
                    rounds[rule].append(len(reads))
                    terms[rule].append(reads[-1] if reads else 0)
            postings._next_read = BAR_RULE
            differ = sum(not same(a, b) for a, b in zip(found["growth"], found["bar"]))
            for rule in RULES:
                print(f"{n_chunks:,} chunks, {field:6s} {rule:6s}: p50/p95 ms {p(times[rule])}; rounds "
                      f"{sum(rounds[rule]) / len(queries):.2f}, terms read {sum(terms[rule]) / len(queries):.1f} "
                      f"(of {sum(len(set(t)) for t in tokens) / len(queries):.1f})", flush=True)
            print(f"{n_chunks:,} chunks, {field:6s}: rankings that differ between the rules {differ}/{len(queries)}")
    finally:
        postings._next_read = BAR_RULE
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--running-cluster", type=Path, metavar="PGDATA")
    where.add_argument("--keep-cluster", type=Path, metavar="FOLDER")
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--fields", default=",".join(postings.FIELDS))
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench-scale")
    parser.add_argument("--build-memory", default=postgres_sync.BUILD_MEMORY)
    args = parser.parse_args()
    postgres_sync.BUILD_MEMORY = args.build_memory
    fields = args.fields.split(",")
    if unknown := set(fields) - set(postings.FIELDS):
        parser.error(f"unknown fields: {', '.join(sorted(unknown))}")
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
        compare(database(cluster, size, args.work_dir, embedder), size, queries, fields)
    if args.keep_cluster:
        print(f"the server is left up: --running-cluster {cluster.pgdata}")


if __name__ == "__main__":
    main()
