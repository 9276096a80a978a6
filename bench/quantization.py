"""fp32 against int8 embedding (HOIDAP_EMBEDDING_PRECISION), side by side in one run.

For each corpus: the index built by `sync_index` in each precision (passages and questions embedded in
the same one, as the product does), then for the corpus's question sets (answerable questions,
article level) dense-only and hybrid (`hoidap ask`'s retriever) R@1 / R@5 / MRR@10, and the cosine of
each chunk's int8 vector to its fp32 one. Then the encoders alone on the first `--chunks` chunks,
alternating precisions `--repeats` times (the machine is shared: best and median are printed).

    .venv/bin/python bench/quantization.py --corpus C.jsonl --questions Q1.jsonl [Q2.jsonl ...] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bot.evaluation import load_questions
from bot.settings import Settings
from bot.wiring import build_retriever, chunk_settings, offline_environment
from index.embedding import load_embedder
from index.indexer import passage_text, sync_index
from index.store import IndexStore
from retrieval.evaluation import hit_rank, mrr_at, recall_at
from retrieval.search.lexical import open_lexical_index

PRECISIONS = ("fp32", "int8")
K = 10


def figures(ranks: list[int | None]) -> str:
    return f"R@1 {recall_at(ranks, 1):.3f}  R@5 {recall_at(ranks, 5):.3f}  MRR@10 {mrr_at(ranks, K):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--questions", type=Path, nargs="+", required=True)
    parser.add_argument("--work-dir", type=Path, default=None, help="where the indexes go (default: a temporary folder)")
    parser.add_argument("--chunks", type=int, default=200, help="chunks timed through the encoders alone")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    offline_environment()
    settings = Settings()
    embedders = {p: load_embedder(settings.embedding_model, settings.models_dir, precision=p,
                                  batch_size=settings.embedding_batch_size) for p in PRECISIONS}
    for embedder in embedders.values():
        embedder.prepare()
    with tempfile.TemporaryDirectory(prefix="hoidap-quantization-") as temporary:
        work = args.work_dir or Path(temporary)
        stores = {}
        for precision, embedder in embedders.items():
            began, load = time.perf_counter(), os.getloadavg()[0]
            summary = sync_index([args.corpus], work / precision / "index", embedder, chunk_settings(settings))
            print(f"{precision}: {summary.n_chunks} chunks, {summary.chunks_embedded} embedded in "
                  f"{time.perf_counter() - began:.1f}s (load {load:.1f})", flush=True)
            stores[precision] = IndexStore.open(work / precision / "index", model=embedder.identity)
        fp32, int8 = (stores[p].vectors() for p in PRECISIONS)
        cosine = (fp32 * int8).sum(axis=1)  # both built from the same chunks in the same order
        print(f"chunk vectors int8 vs fp32: cosine min {cosine.min():.4f}, mean {cosine.mean():.4f}")
        for path in args.questions:
            questions = [q for q in load_questions(path) if q.answerable]
            print(f"\n{path} ({len(questions)} answerable questions)")
            for precision, embedder in embedders.items():
                store = stores[precision]
                hybrid = build_retriever(store, embedder, open_lexical_index(store))
                dense, fused = [], []
                for question in questions:
                    hits = store.search(embedder.embed_queries([question.question]), K)[0]
                    dense.append(hit_rank([store.chunk(c).article_id for c, _ in hits], question.passage_ids))
                    fused.append(hit_rank([p.article_id for p in hybrid.retrieve(question.question, K)],
                                          question.passage_ids))
                print(f"  {precision}  dense {figures(dense)}  |  hybrid {figures(fused)}", flush=True)
        store = stores["fp32"]
        texts = [passage_text(store.article(c.article_id).title, c.text) for c in store.chunks()][: args.chunks]
        for s in stores.values():
            s.close()
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    print(f"\nencoders alone, {len(texts)} chunks, batch {settings.embedding_batch_size}, load {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeats):
        for precision, embedder in embedders.items():
            began = time.perf_counter()
            embedder.embed_passages(texts)
            seconds[precision].append(time.perf_counter() - began)
    for precision in PRECISIONS:
        print(f"  {precision}: best {len(texts) / min(seconds[precision]):.1f} chunks/s, "
              f"median {len(texts) / statistics.median(seconds[precision]):.1f}")
    print(f"  int8 / fp32 (best): {min(seconds['fp32']) / min(seconds['int8']):.2f}x; load after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
