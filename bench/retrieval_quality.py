"""Retrieval quality on XQuAD-vi: BM25 (plain, folded), dense, and the hybrid, per kind of question.

Usage:
    .venv/bin/python bench/retrieval_quality.py [--index-dir DIR] [--grid] [--json OUT]

Builds (once) a real index of `../shared/eval/xquad_vi/corpus.jsonl` with the configured embedding model
in a cache folder (or uses `--index-dir`), then asks three question sets: the 300 Vietnamese questions,
the same with diacritics removed, and 100 of them translated into English (bench/xquad_en_questions.tsv).
A hit is a passage of the right paragraph (article); prints Recall@1, Recall@5 and MRR@10.
`--grid` also tries fusion methods and weights, which is how `DEFAULT_ROUTES` was chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.settings import Settings  # noqa: E402
from bot.wiring import build_embedder, chunk_settings  # noqa: E402
from index.indexer import sync_index  # noqa: E402
from index.store import IndexStore  # noqa: E402
from retrieval.hybrid import DEFAULT_ROUTES, HybridRetriever, Route  # noqa: E402
from retrieval.lexical import LexicalIndex  # noqa: E402
from retrieval.text import fold_diacritics  # noqa: E402

XQUAD = ROOT.parent / "shared" / "eval" / "xquad_vi"
ENGLISH = Path(__file__).resolve().parent / "xquad_en_questions.tsv"
KINDS = ("vi", "vi_plain", "en")


@dataclass(frozen=True)
class Question:
    text: str
    article_id: str


class CachedEmbedder:
    """Embeds each distinct query once, so that trying many fusion settings costs no model time."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.cache: dict[str, np.ndarray] = {}

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.cache]
        if missing:
            for text, vector in zip(missing, self.embedder.embed_queries(missing)):
                self.cache[text] = vector
        return np.stack([self.cache[t] for t in texts])


def question_sets() -> dict[str, list[Question]]:
    records = [json.loads(line) for line in (XQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {r["id"]: r for r in records}
    vi = [Question(r["question"], r["passage_id"]) for r in records]
    english = []
    for line in ENGLISH.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            qid, text = line.split("\t", 1)
            english.append(Question(text.strip(), by_id[qid]["passage_id"]))
    return {
        "vi": vi,
        "vi_plain": [Question(fold_diacritics(q.text), q.article_id) for q in vi],
        "en": english,
    }


def open_xquad_index(settings: Settings, index_dir: Path | None, embedder) -> IndexStore:
    if index_dir is None:
        index_dir = Path(settings.data_dir) / "bench-xquad" / "index"
        sync_index([XQUAD / "corpus.jsonl"], index_dir, embedder, chunk_settings(settings))
    return IndexStore.open(index_dir, model=embedder.identity)


def measure(retriever, questions: list[Question]) -> dict[str, float]:
    """Recall@1, Recall@5 and MRR@10 at the article level."""
    ranks = []
    for question in questions:
        passages = retriever.retrieve(question.text, 10)
        seen: list[str] = []
        for passage in passages:
            if passage.article_id not in seen:
                seen.append(passage.article_id)
        ranks.append(seen.index(question.article_id) + 1 if question.article_id in seen else None)
    n = len(ranks)
    return {
        "R@1": sum(1 for r in ranks if r == 1) / n,
        "R@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "MRR@10": sum(1 / r for r in ranks if r is not None) / n,
    }


def single(store, embedder, lexical, route: Route) -> HybridRetriever:
    return HybridRetriever(store, embedder, lexical, routes={kind: route for kind in KINDS})


def print_row(name: str, figures: dict[str, dict[str, float]]) -> None:
    cells = "  ".join(
        f"{figures[k]['R@1']:.3f} {figures[k]['R@5']:.3f} {figures[k]['MRR@10']:.3f}" for k in KINDS if k in figures
    )
    print(f"{name:<34} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, help="an index of the XQuAD-vi corpus (default: build one)")
    parser.add_argument("--grid", action="store_true", help="also try fusion methods and weights")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    settings = Settings()
    embedder = CachedEmbedder(build_embedder(settings))
    store = open_xquad_index(settings, args.index_dir, embedder.embedder)
    started = time.perf_counter()
    lexical = LexicalIndex.from_store(store)
    print(f"lexical index: {len(lexical)} chunks in {time.perf_counter() - started:.2f} s")
    sets = question_sets()

    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"{'method':<34} " + "  ".join(f"{k + ' R@1 R@5 MRR':<17}" for k in KINDS))
    candidates = {
        "BM25 plain": single(store, embedder, lexical, Route(1, 0, 0)),
        "BM25 folded": single(store, embedder, lexical, Route(0, 1, 0)),
        "dense": single(store, embedder, lexical, Route(0, 0, 1)),
        "hybrid (default routes)": HybridRetriever(store, embedder, lexical),
    }
    for name, retriever in candidates.items():
        results[name] = {kind: measure(retriever, questions) for kind, questions in sets.items()}
        print_row(name, results[name])

    if args.grid:
        for fusion, rrf_k in (("rrf", 60), ("rrf", 20), ("score", 0)):
            for plain, folded, dense in [
                (1, 0, 0), (1, 0.3, 0), (1, 0, 0.1), (1, 0, 0.2), (1, 0, 0.3), (1, 0, 0.5), (1, 0, 1),
                (1, 0.3, 0.2), (1, 0.3, 0.3), (1, 0.5, 0.3), (1, 0.3, 0.5), (1, 1, 1),
                (0, 1, 0.1), (0, 1, 0.2), (0, 1, 0.3), (0, 1, 0.5), (0, 1, 1),
                (0, 0.1, 1), (0, 0.2, 1), (0, 0.3, 1), (0, 0.5, 1),
            ]:
                route = Route(plain, folded, dense)
                retriever = HybridRetriever(store, embedder, lexical, routes={k: route for k in KINDS},
                                            fusion=fusion, rrf_k=rrf_k or 60)
                name = f"{fusion}{rrf_k or ''} p{plain} f{folded} d{dense}"
                results[name] = {kind: measure(retriever, questions) for kind, questions in sets.items()}
                print_row(name, results[name])

    routes = {kind: vars(route) for kind, route in DEFAULT_ROUTES.items()}
    if args.json:
        args.json.write_text(json.dumps({"routes": routes, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
