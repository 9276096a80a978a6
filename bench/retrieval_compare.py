"""Our retrieval against a plain LangChain FAISS retriever (same model) and BM25 alone, on the shipped sets.

One run, on both evaluation sets (XQuAD-vi subset and the hand-written set over the bundled articles):

- **ours (hybrid)**: what `hoidap ask` uses (`bot.wiring.build_retriever`: HybridRetriever);
- **ours, dense only**: our FAISS store searched with the query vector (title + chunk embedded);
- **BM25 plain** / **BM25 folded**: our LexicalIndex alone, on the text as written / accent-folded;
- **LangChain FAISS**: `FAISS.from_documents` over the very same chunk texts, embedded by
  `HuggingFaceEmbeddings` from the same model folder (with the e5 `query: ` / `passage: ` prompts,
  normalised), queried through `as_retriever(k=10)`.

Figures are article-level over answerable questions (a hit when a retrieved passage belongs to a gold
article): Recall@1/5/10 and MRR@10, overall and per tag group. Also indexing throughput on the same
chunks: our full `sync_index` (read, clean, chunk, embed, write) against `FAISS.from_documents`,
both with the model already loaded, as a ratio.

    .venv/bin/python bench/retrieval_compare.py [--sets xquad_vi,bundled]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask the Hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bot.evaluation import load_questions
from bot.settings import Settings
from bot.wiring import build_embedder, build_retriever, chunk_settings
from retrieval.search.lexical import open_lexical_index
from index.indexer import sync_index
from index.store import IndexStore
from retrieval.evaluation import EvalQuestion, hit_rank, mrr_at, percentile, recall_at
from retrieval.search.lexical import LexicalIndex

ROOT = Path(__file__).resolve().parent.parent
SETS = {
    "xquad_vi": (ROOT / "eval" / "xquad_vi" / "corpus.jsonl", ROOT / "eval" / "xquad_vi" / "questions.jsonl"),
    "bundled": (ROOT / "index" / "corpus", ROOT / "eval" / "bundled" / "questions.jsonl"),
}
K = 10

Ranker = Callable[[str], list[str]]  # question -> article ids of the top-K results, best first


def langchain_ranker(store: IndexStore, model_folder: Path, batch_size: int, repeats: int) -> tuple[Ranker, list[float]]:
    """A plain LangChain FAISS retriever over the store's chunks; returns it and its indexing seconds per build."""
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings

    embeddings = HuggingFaceEmbeddings(
        model_name=str(model_folder),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "prompt_name": "document", "batch_size": batch_size},
        query_encode_kwargs={"normalize_embeddings": True, "prompt_name": "query"},
    )
    embeddings.embed_query("khởi động")  # load the model outside the timed part, as for ours
    documents = [Document(page_content=c.text, metadata={"article_id": c.article_id}) for c in store.chunks()]
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        vectorstore = FAISS.from_documents(documents, embeddings)
        seconds.append(time.perf_counter() - started)
    retriever = vectorstore.as_retriever(search_kwargs={"k": K})
    return (lambda q: [d.metadata["article_id"] for d in retriever.invoke(q)]), seconds


def rankers(store: IndexStore, embedder, lexical: LexicalIndex) -> dict[str, Ranker]:
    """Our retrievers: hybrid as wired for `hoidap ask`, and its parts alone."""
    hybrid = build_retriever(store, embedder, open_lexical_index(store))

    def dense(question: str) -> list[str]:
        hits = store.search(embedder.embed_queries([question]), K)[0]
        return [store.chunk(chunk_id).article_id for chunk_id, _ in hits]

    def bm25(field: str) -> Ranker:
        return lambda q: [store.chunk(c).article_id for c, _ in lexical.search(q, K, field=field)]

    return {
        "ours (hybrid)": lambda q: [p.article_id for p in hybrid.retrieve(q, K)],
        "ours, dense only": dense,
        "BM25 plain": bm25("plain"),
        "BM25 folded": bm25("folded"),
    }


def measure(ranker: Ranker, questions: list[EvalQuestion]) -> tuple[list[int | None], list[float]]:
    ranks, latencies = [], []
    for question in questions:
        started = time.perf_counter()
        articles = ranker(question.question)
        latencies.append((time.perf_counter() - started) * 1000)
        ranks.append(hit_rank(articles[:K], question.passage_ids))
    return ranks, latencies


def row(name: str, ranks: list[int | None], latencies: list[float] | None = None) -> str:
    figures = f"{recall_at(ranks, 1):6.3f} {recall_at(ranks, 5):6.3f} {recall_at(ranks, 10):6.3f} {mrr_at(ranks, 10):7.3f}"
    timing = f" {percentile(latencies, 50):7.1f} {percentile(latencies, 95):7.1f}" if latencies else ""
    return f"  {name:<18} {figures}{timing}"


def compare_set(name: str, corpus: Path, questions_path: Path, settings: Settings, embedder, work: Path,
                repeats: int) -> None:
    questions = [q for q in load_questions(questions_path) if q.answerable]
    index_dir = work / name / "index"
    embedder.embed_passages(["khởi động"])  # load the model outside the timed part
    # The machine is shared: each indexing is repeated and the fastest run counts.
    ours_seconds = []
    for _ in range(repeats):
        summary = sync_index([corpus], index_dir, embedder, chunk_settings(settings), rebuild=True)
        ours_seconds.append(summary.seconds)
    store = IndexStore.open(index_dir, model=embedder.identity)
    print(f"\n== {name}: {len(questions)} answerable questions, {summary.n_articles} articles, {summary.n_chunks} chunks")
    lexical = LexicalIndex.from_store(store)
    methods = rankers(store, embedder, lexical)
    lc_ranker, lc_seconds = langchain_ranker(store, embedder.folder, settings.embedding_batch_size, repeats)
    methods["LangChain FAISS"] = lc_ranker
    ours, theirs = min(ours_seconds), min(lc_seconds)
    print(f"  indexing the same {summary.n_chunks} chunks (best of {repeats}): ours {ours:.1f}s "
          f"({summary.n_chunks / ours:.1f} chunks/s: read, clean, chunk, embed title+chunk, write), "
          f"LangChain FAISS.from_documents {theirs:.1f}s ({summary.n_chunks / theirs:.1f} chunks/s); "
          f"throughput ours/LangChain {theirs / ours:.2f}")
    print(f"  {'method':<18} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR@10':>7} {'p50 ms':>7} {'p95 ms':>7}")
    results = {}
    for method, ranker in methods.items():
        ranker(questions[0].question)  # warm-up
        results[method] = measure(ranker, questions)
        print(row(method, *results[method]), flush=True)
    groups = sorted({t for q in questions for t in q.tags} & {"no-diacritics", "english", "conflicting"})
    for group in groups:
        members = [i for i, q in enumerate(questions) if group in q.tags]
        print(f"  -- group {group} ({len(members)} questions)")
        for method, (ranks, _) in results.items():
            print(row(method, [ranks[i] for i in members]))
    plain = [i for i, q in enumerate(questions) if not set(q.tags) & {"no-diacritics", "english"}]
    if len(plain) != len(questions):
        print(f"  -- Vietnamese with diacritics ({len(plain)} questions)")
        for method, (ranks, _) in results.items():
            print(row(method, [ranks[i] for i in plain]))
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--work-dir", type=Path, default=None, help="where the indexes go (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=1, help="indexing runs per method (the fastest counts)")
    args = parser.parse_args()
    settings = Settings()
    embedder = build_embedder(settings, new_index=True)
    print(f"model {settings.embedding_model} ({embedder.folder}), chunks of {settings.chunk_size} words, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="hoidap-compare-") as temporary:
        work = args.work_dir or Path(temporary)
        for name in args.sets.split(","):
            if name not in SETS:
                sys.exit(f"unknown set {name!r}; choose from {', '.join(SETS)}")
            compare_set(name, *SETS[name], settings, embedder, work, args.repeats)


if __name__ == "__main__":
    main()
