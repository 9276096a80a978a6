"""Retrieval and answer latency at 1k, 10k, 100k and 1M chunks, flat vs HNSW, with HNSW's recall against flat.

The corpora are synthetic (bench/synthetic.py: text recombined from the real articles, vectors that
are noisy copies of real chunk vectors), written in the real index format and served by the real
classes: IndexStore, LexicalIndex, HybridRetriever and the extractive answerer, wired as `hoidap ask`
wires them. The queries are real questions (the hand-written set and XQuAD-vi), embedded by the real
model. For each size and index type it prints, warm, p50/p95 in milliseconds of:

- `vector`: the FAISS search alone (depth 50, what the hybrid retriever asks for);
- `bm25 x2`: the lexical search alone, both fields (as written and accent-folded), depth 50;
- `retrieve`: HybridRetriever.retrieve(question, top_k) — query embedding, BM25 (two fields), vector
  search, fusion, passage merging;
- `answer`: the full extractive answer (retrieval included);

and, for HNSW (M=32, efConstruction 80, as index/store.py builds it), recall@10 against the exact
flat search for efSearch 64, 96 (the default), 128, 256 and 512, with the vector search time at each.
`--vectors lineage` draws the synthetic vectors the other way bench/synthetic.py offers.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000,1000000] [--queries 200] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import build_synthetic_index  # noqa: E402

from bot.evaluation import load_questions  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.wiring import build_answerer, build_embedder  # noqa: E402
from retrieval.answering.judgement import CorpusGate  # noqa: E402
from index.store import IndexStore  # noqa: E402
from retrieval.evaluation import percentile  # noqa: E402
from retrieval.search.hybrid import HybridRetriever  # noqa: E402
from retrieval.search.lexical import LexicalIndex  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EF_SEARCH = (64, 96, 128, 256, 512)
DEPTH = 50


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def questions(n: int) -> list[str]:
    """Real questions: the hand-written set first, then XQuAD-vi, `n` in all."""
    bundled = [q.question for q in load_questions(ROOT / "eval" / "bundled" / "questions.jsonl")]
    xquad = [q.question for q in load_questions(ROOT / "eval" / "xquad_vi" / "questions.jsonl")]
    return (bundled + xquad)[:n]


def timed(action: Callable[[str | int], object], items: list) -> tuple[list[float], list]:
    """Milliseconds per call, and the results (after two warm-up calls)."""
    for item in items[:2]:
        action(item)
    times, results = [], []
    for item in items:
        started = time.perf_counter()
        results.append(action(item))
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def module_at(commit: str, path: str, name: str) -> types.ModuleType:
    """The module in file `path` as it was at `commit`, loaded as `name` (to measure the code before a change
    in the same run as the code after it)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(name)
    sys.modules[name] = module  # a dataclass in it looks its module up
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)  # noqa: S102 - our own code
    return module


def p(times: list[float]) -> str:
    return f"{percentile(times, 50):7.1f} {percentile(times, 95):7.1f}"


def run_size(n_chunks: int, kinds: list[str], settings: Settings, embedder, queries: list[str],
             query_vectors: np.ndarray, work_dir: Path, vectors: str) -> None:
    started = time.perf_counter()
    dirs = build_synthetic_index(work_dir, n_chunks, embedder, hnsw="hnsw" in kinds, vectors=vectors, report=print)
    print(f"  corpus ready in {time.perf_counter() - started:.0f}s")
    exact: list[set[int]] | None = None
    exact_passages: list[set[tuple[str, int]]] | None = None
    lexical: LexicalIndex | None = None
    for kind in kinds:
        store = IndexStore.open(dirs[kind], model=embedder.identity)
        if lexical is None:  # the same chunks for both kinds: build BM25 once
            started = time.perf_counter()
            lexical = LexicalIndex.from_store(store)
            print(f"  BM25 over {len(lexical):,} chunks built in {time.perf_counter() - started:.1f}s")
        # A fresh embedder per pass: its sentence memo holds only this pass's sentences (the synthetic
        # chunks reuse the real sentences, which an earlier pass would have embedded already).
        reader = build_embedder(settings, new_index=True)
        retriever = HybridRetriever(store, reader, lexical)  # as bot.wiring.build_retriever builds it
        answerer = build_answerer(settings, retriever, CorpusGate(lexical.idf, reader), "extractive")
        rows = range(len(query_vectors))
        vector_ms, hits = timed(lambda i: store.search(query_vectors[i:i + 1], DEPTH)[0], list(rows))
        top10 = [{c for c, _ in h[:10]} for h in hits]
        bm25_ms, _ = timed(lambda q: [lexical.search(q, DEPTH, field=f) for f in ("plain", "folded")], queries)
        retrieve_ms, retrieved = timed(lambda q: retriever.retrieve(q, settings.top_k), queries)
        passages = [{(x.article_id, x.start) for x in r} for r in retrieved]
        answer_ms, answers = timed(lambda q: answerer.answer(q), queries)
        found = sum(a.found for a in answers) / len(answers)
        print(f"  {n_chunks:>9,} {kind:<5} vector {p(vector_ms)} | bm25 x2 {p(bm25_ms)} | retrieve {p(retrieve_ms)} | "
              f"answer {p(answer_ms)} | found {found:.2f} | RSS {rss_mb():,.0f} MB", flush=True)
        if kind == "flat":
            exact, exact_passages = top10, passages
        elif exact is not None:
            same = np.mean([len(a & b) / max(len(a), 1) for a, b in zip(exact_passages, passages)])
            print(f"  {'':>9} hnsw: share of the hybrid retriever's top-{settings.top_k} passages also returned "
                  f"with flat: {same:.3f}")
            for ef in EF_SEARCH:
                store.set_search_depth(ef)
                ms, hits = timed(lambda i: store.search(query_vectors[i:i + 1], 10)[0], list(rows))
                recall = np.mean([len({c for c, _ in h} & e) / len(e) for h, e in zip(hits, exact)])
                print(f"  {'':>9} hnsw efSearch {ef:>3}: recall@10 vs flat {recall:.3f}, vector top-10 {p(ms)}")
        store.close()
        del store, retriever, answerer, reader
        gc.collect()


def bundled(settings: Settings, queries: list[str], work_dir: Path) -> None:
    """The same timings over the real index of the five bundled articles."""
    from bot.settings import BUNDLED_CORPUS
    from bot.wiring import build_components, sync

    local = settings.model_copy(update={"data_dir": work_dir / "data-bundled-real"})
    sync(local, [BUNDLED_CORPUS])
    components = build_components(local, answerer="extractive")
    for question in queries[:3]:  # warm
        components.answerer.answer(question)
    retrieve_ms, _ = timed(lambda q: components.retriever.retrieve(q, local.top_k), queries)
    answer_ms, answers = timed(lambda q: components.answerer.answer(q), queries)
    print(f"  bundled ({components.store.manifest.n_chunks} chunks, flat): retrieve {p(retrieve_ms)} | "
          f"answer {p(answer_ms)} | found {sum(a.found for a in answers) / len(answers):.2f}", flush=True)
    components.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--vectors", choices=["copies", "lineage"], default="copies",
                        help="how synthetic vectors are drawn (see bench/synthetic.py)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "hoidap-bench",
                        help="synthetic indexes are cached here (1M chunks take ~6 GB)")
    args = parser.parse_args()
    settings = Settings()
    embedder = build_embedder(settings, new_index=True)
    queries = questions(args.queries)
    embed_ms, vectors = timed(lambda q: embedder.embed_queries([q]), queries)
    query_vectors = np.concatenate(vectors)
    print(f"{len(queries)} real questions; query embedding alone p50/p95 {p(embed_ms)} ms; {os.cpu_count()} CPUs; "
          f"top_k {settings.top_k}")
    bundled(settings, queries, args.work_dir)
    for size in (int(s) for s in args.sizes.split(",")):
        run_size(size, args.kinds.split(","), settings, embedder, queries, query_vectors, args.work_dir, args.vectors)


if __name__ == "__main__":
    main()
