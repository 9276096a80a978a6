"""BM25 in SQL over the two postings layouts, side by side on one server and one corpus: layout 2 (a row per
(term, chunk), primary key including tf, an index by chunk) against layout 3 (`index.stores.postings`: a row
per term and block of 128 chunks).

The corpus is bench/synthetic.py's, moved into PostgreSQL by `hoidap migrate`'s code (layout 3); a copy of that
database is turned back into layout 2 rows in SQL (the same chunk ids, terms and frequencies), and layout 2 is
searched by the search code of an older commit (`--rows-commit`, read with `git show`), so both answer from the
same data. Questions alternate which layout goes first. Prints, per field, p50/p95 ms of each and how many
results were identical (chunk ids and scores), and the bytes per chunk of each layout's postings.

    PYTHONPATH=. .venv/bin/python bench/postings_layouts.py [--size 20000] [--queries 100] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from scale import module_at, p, questions  # noqa: E402
from synthetic import build_synthetic_index  # noqa: E402

from bot.settings import Settings  # noqa: E402
from bot.wiring import build_embedder  # noqa: E402
from index.store import IndexStore  # noqa: E402
from index.stores.postgres import PostgresStore  # noqa: E402
from index.stores.postgres_sync import migrate_embedded  # noqa: E402
from index.stores.postings import BLOCK, FIELDS  # noqa: E402
from retrieval.search.lexical import query_tokens  # noqa: E402
from tests.postgres import private_folder, remove_cluster, start_cluster  # noqa: E402

DEPTH = 50
ROWS_COMMIT = "cfdbfe8"  # the last commit of layout 2


def to_rows(url: str) -> None:
    """Layout 3 blocks to layout 2 rows (as hoidap wrote them), in place."""
    with psycopg.connect(url, autocommit=True) as connection:
        for f in FIELDS:
            connection.execute(f"ALTER TABLE hoidap_postings_{f} RENAME TO blocks_{f}")
            connection.execute(f"DROP TABLE hoidap_chunk_terms_{f}")
            connection.execute(f"CREATE TABLE hoidap_postings_{f} (chunk_id BIGINT NOT NULL, term_id INTEGER NOT NULL, "
                               "tf INTEGER NOT NULL)")
            connection.execute(f"INSERT INTO hoidap_postings_{f} SELECT b.block::bigint * {BLOCK} + u.at, b.term_id, "
                               f"u.tf FROM blocks_{f} b, unnest(b.offsets, b.tfs) AS u(at, tf) ORDER BY 2, 1")
            connection.execute(f"DROP TABLE blocks_{f}")
            connection.execute(f"ALTER TABLE hoidap_postings_{f} ADD PRIMARY KEY (term_id, chunk_id) INCLUDE (tf)")
            connection.execute(f"CREATE INDEX hoidap_postings_{f}_by_chunk ON hoidap_postings_{f} (chunk_id)")
            connection.execute(f"VACUUM ANALYZE hoidap_postings_{f}")
        connection.execute("UPDATE hoidap_manifest SET schema_version = 2")


def postings_bytes(url: str, tables: tuple[str, ...]) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT " + " + ".join(f"pg_total_relation_size('hoidap_{t}_{f}')"
                                                         for t in tables for f in FIELDS)).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rows-commit", default=ROWS_COMMIT)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench-scale")
    args = parser.parse_args()
    embedder = build_embedder(Settings(_env_file=None), new_index=True)
    queries = questions(args.queries)
    old = module_at(args.rows_commit, "index/stores/postings.py", "postings_rows")
    store = IndexStore.open(build_synthetic_index(args.work_dir, args.size, embedder, hnsw=False, report=print)["flat"])
    with private_folder() as folder:
        cluster = start_cluster(folder / "pgdata")
        try:
            blocks_url = cluster.create_database("blocks")
            started = time.perf_counter()
            migrate_embedded(store, blocks_url)
            print(f"{args.size:,} chunks migrated (layout 3) in {time.perf_counter() - started:.0f}s")
            with psycopg.connect(cluster.url(), autocommit=True) as admin:
                admin.execute("CREATE DATABASE rows_copy TEMPLATE blocks")
            rows_url = cluster.url("rows_copy")
            to_rows(rows_url)
            n = args.size
            print(f"postings bytes/chunk: layout 2 rows {postings_bytes(rows_url, ('postings',)) / n:,.0f}; layout 3 "
                  f"blocks {postings_bytes(blocks_url, ('postings',)) / n:,.0f} + chunk term lists "
                  f"{postings_bytes(blocks_url, ('chunk_terms',)) / n:,.0f}")
            compare(blocks_url, rows_url, old, queries)
        finally:
            remove_cluster(cluster)
    store.close()


def compare(blocks_url: str, rows_url: str, old: types.ModuleType, queries: list[str]) -> None:
    blocks = PostgresStore.open(blocks_url)
    with psycopg.connect(rows_url, autocommit=True) as connection:
        def rows(sql, params=()):
            return connection.execute(sql, params).fetchall()

        n_chunks = rows("SELECT count(*) FROM hoidap_chunks")[0][0]
        for field in FIELDS:
            average = rows(f"SELECT avg_{field} FROM hoidap_manifest")[0][0]

            def search_rows(tokens):
                known = rows(f"SELECT term, term_id, df, max_tf FROM hoidap_terms_{field} WHERE term = ANY(%s) "
                             "AND df > 0", (sorted(set(tokens)),))
                return old.search(rows, field, old.query_terms(known, tokens, n_chunks), DEPTH, average)

            def search_blocks(tokens):
                return blocks.lexical_search(tokens, field, DEPTH)

            for question in queries[:2]:  # warm
                search_rows(query_tokens(question, field)), search_blocks(query_tokens(question, field))
            times = {"rows": [], "blocks": []}
            same = 0
            for i, question in enumerate(queries):
                tokens = query_tokens(question, field)
                found = {}
                order = [("rows", search_rows), ("blocks", search_blocks)]
                for name, search in order if i % 2 else order[::-1]:
                    started = time.perf_counter()
                    found[name] = search(tokens)
                    times[name].append((time.perf_counter() - started) * 1000)
                same += found["rows"] == found["blocks"]
            print(f"  bm25 {field}: layout 2 rows {p(times['rows'])}, layout 3 blocks {p(times['blocks'])} "
                  f"(p50 p95 ms); identical results {same}/{len(queries)}")
    blocks.close()


if __name__ == "__main__":
    main()
