"""Retrieval quality: BM25 (plain, folded), dense, and the hybrid, per kind of question; and the grounding gate.

Usage:
    .venv/bin/python bench/retrieval_quality.py [--xquad-index DIR] [--bundled-index DIR] [--grid] [--grounding]

Builds (once, under the data directory) real indexes of `../shared/eval/xquad_vi/corpus.jsonl` and of the
bundled articles with the configured embedding model, or uses the given index directories. Question sets:
XQuAD-vi's 300 questions, the same with diacritics removed, 100 of them translated into English
(bench/xquad_en_questions.tsv), and the answerable questions of eval/bundled/questions.jsonl grouped by
kind. A hit is a passage of a right article; prints Recall@1, Recall@5 and MRR@10.
`--grid` tries fusion methods and weights (how `DEFAULT_ROUTES` was chosen); `--grounding` prints how
often the gate passes answerable questions and refuses the XQuAD questions asked of the bundled articles.
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
from retrieval.search.hybrid import DEFAULT_ROUTES, HybridRetriever, Route  # noqa: E402
from retrieval.search.lexical import LexicalIndex  # noqa: E402
from retrieval.answering.grounding import DENSE_THRESHOLD, LEXICAL_THRESHOLDS, support  # noqa: E402
from index.text import detect_query_kind, fold_diacritics  # noqa: E402

XQUAD = ROOT.parent / "shared" / "eval" / "xquad_vi"
ENGLISH = Path(__file__).resolve().parent / "xquad_en_questions.tsv"
BUNDLED_QUESTIONS = ROOT / "eval" / "bundled" / "questions.jsonl"
BUNDLED_CORPUS = ROOT / "index" / "corpus"
KINDS = ("vi", "vi_plain", "en")


@dataclass(frozen=True)
class Question:
    text: str
    article_ids: frozenset[str]
    answerable: bool = True


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
    vi = [Question(r["question"], frozenset([r["passage_id"]])) for r in records]
    english = []
    for line in ENGLISH.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            qid, text = line.split("\t", 1)
            english.append(Question(text.strip(), frozenset([by_id[qid]["passage_id"]])))
    return {
        "vi": vi,
        "vi_plain": [Question(fold_diacritics(q.text), q.article_ids) for q in vi],
        "en": english,
    }


def bundled_sets() -> dict[str, list[Question]]:
    """The hand-written questions over the bundled articles, grouped by the kind the router sees."""
    sets: dict[str, list[Question]] = {kind: [] for kind in KINDS}
    for line in BUNDLED_QUESTIONS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        gold = record.get("passage_ids") or ([record["passage_id"]] if record.get("passage_id") else [])
        question = Question(record["question"], frozenset(gold), bool(record.get("answerable", True)))
        sets[detect_query_kind(question.text)].append(question)
    return sets


def open_index(settings: Settings, index_dir: Path | None, name: str, corpus: Path, embedder) -> IndexStore:
    if index_dir is None:
        index_dir = Path(settings.data_dir) / f"bench-{name}" / "index"
        sync_index([corpus], index_dir, embedder, chunk_settings(settings))
    return IndexStore.open(index_dir, model=embedder.identity)


def measure(retriever, questions: list[Question]) -> dict[str, float]:
    """Recall@1, Recall@5 and MRR@10 at the article level."""
    ranks = []
    for question in questions:
        if not question.answerable:
            continue
        passages = retriever.retrieve(question.text, 10)
        seen: list[str] = []
        for passage in passages:
            if passage.article_id not in seen:
                seen.append(passage.article_id)
        hits = [i for i, article_id in enumerate(seen, 1) if article_id in question.article_ids]
        ranks.append(hits[0] if hits else None)
    n = len(ranks)
    return {
        "R@1": sum(1 for r in ranks if r == 1) / n,
        "R@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "MRR@10": sum(1 / r for r in ranks if r is not None) / n,
    }


def single(store, embedder, lexical, route: Route) -> HybridRetriever:
    return HybridRetriever(store, embedder, lexical, routes={kind: route for kind in KINDS})


def print_row(name: str, figures: dict[str, dict[str, dict[str, float]]]) -> None:
    def cells(part: dict[str, dict[str, float]]) -> str:
        return "  ".join(
            f"{part[k]['R@1']:.3f} {part[k]['R@5']:.3f} {part[k]['MRR@10']:.3f}" if k in part else f"{'-':<17}"
            for k in KINDS
        )
    print(f"{name:<34} {cells(figures['xquad'])}   {cells(figures['bundled'])}", flush=True)


def grid_routes() -> list[Route]:
    """The fusion settings tried by `--grid`."""
    routes = []
    for fusion, rrf_k in (("score", 60), ("rrf", 60), ("rrf", 20)):
        for plain, folded, dense in [
            (1, 0, 0.5), (0.5, 0.5, 0.5), (1, 0.5, 0.5), (0.5, 0.5, 0.3), (0, 1, 0.1), (0, 1, 0.2),
            (0, 0.3, 1), (0, 0.5, 1), (0, 0.7, 1),
        ]:
            routes.append(Route(plain, folded, dense, fusion=fusion, rrf_k=rrf_k))
    return routes


def grounding_report(sets, bundled, xquad_retriever, bundled_retriever) -> dict:
    """Pass rates of the gate: answerable questions should pass, questions foreign to the articles should not."""
    groups = {}
    for kind in KINDS:
        groups[f"xquad {kind} on its corpus (answerable)"] = (kind, [support(q.text, xquad_retriever.retrieve(q.text, 5)) for q in sets[kind]], True)
        groups[f"xquad {kind} on bundled articles (foreign)"] = (kind, [support(q.text, bundled_retriever.retrieve(q.text, 5)) for q in sets[kind]], False)
        answerable = [q for q in bundled[kind] if q.answerable]
        unanswerable = [q for q in bundled[kind] if not q.answerable]
        groups[f"bundled {kind} answerable"] = (kind, [support(q.text, bundled_retriever.retrieve(q.text, 5)) for q in answerable], True)
        groups[f"bundled {kind} unanswerable"] = (kind, [support(q.text, bundled_retriever.retrieve(q.text, 5)) for q in unanswerable], False)
    report = {}
    print(f"\ngrounding gate (lexical >= {LEXICAL_THRESHOLDS}, dense >= {DENSE_THRESHOLD} for English): share passed")
    for name, (kind, supports, answerable) in groups.items():
        if not supports:
            continue
        passed = sum(s.supported for s in supports) / len(supports)
        report[name] = {"n": len(supports), "passed": passed}
        print(f"  {name:<48} n={len(supports):<4} passed {passed:.3f}")
    print("\nsweep (share passed at each threshold, before the rule that most names missing refutes):")
    for name, (kind, supports, answerable) in groups.items():
        if not supports:
            continue
        if kind == "en":
            values = [s.dense if s.dense is not None else 0.0 for s in supports]
            thresholds = (0.72, 0.74, 0.75, 0.76, 0.77, 0.78, 0.80)
        else:
            values = [s.lexical for s in supports]
            thresholds = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
        cells = " ".join(f"{t}:{sum(v >= t for v in values) / len(values):.2f}" for t in thresholds)
        print(f"  {name:<48} {cells}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xquad-index", type=Path, help="an index of the XQuAD-vi corpus (default: build one)")
    parser.add_argument("--bundled-index", type=Path, help="an index of the bundled articles (default: build one)")
    parser.add_argument("--grid", action="store_true", help="also try fusion methods and weights")
    parser.add_argument("--grounding", action="store_true", help="also calibrate the grounding gate")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    settings = Settings()
    embedder = CachedEmbedder(build_embedder(settings))
    xquad = open_index(settings, args.xquad_index, "xquad", XQUAD / "corpus.jsonl", embedder.embedder)
    bundled = open_index(settings, args.bundled_index, "bundled", BUNDLED_CORPUS, embedder.embedder)
    started = time.perf_counter()
    xquad_lexical = LexicalIndex.from_store(xquad)
    print(f"lexical index: {len(xquad_lexical)} chunks in {time.perf_counter() - started:.2f} s")
    bundled_lexical = LexicalIndex.from_store(bundled)
    sets, bundled_questions = question_sets(), bundled_sets()

    def evaluate(make) -> dict[str, dict[str, dict[str, float]]]:
        x, b = make(xquad, xquad_lexical), make(bundled, bundled_lexical)
        return {
            "xquad": {kind: measure(x, questions) for kind, questions in sets.items()},
            "bundled": {kind: measure(b, q) for kind, q in bundled_questions.items() if any(i.answerable for i in q)},
        }

    results: dict[str, dict] = {}
    print(f"{'':<34} {'XQuAD-vi (R@1 R@5 MRR@10)':<58} bundled articles")
    print(f"{'method':<34} " + "  ".join(f"{k:<17}" for k in KINDS) + "   " + "  ".join(f"{k:<17}" for k in KINDS))
    candidates = {
        "BM25 plain": Route(1, 0, 0),
        "BM25 folded": Route(0, 1, 0),
        "dense": Route(0, 0, 1),
        "hybrid (default routes)": None,
    }
    for name, route in candidates.items():
        if route is None:
            results[name] = evaluate(lambda store, lexical: HybridRetriever(store, embedder, lexical))
        else:
            results[name] = evaluate(lambda store, lexical, r=route: single(store, embedder, lexical, r))
        print_row(name, results[name])

    if args.grid:
        for route in grid_routes():
            name = f"{route.fusion}{route.rrf_k if route.fusion == 'rrf' else ''} p{route.plain} f{route.folded} d{route.dense}"
            results[name] = evaluate(lambda store, lexical, r=route: single(store, embedder, lexical, r))
            print_row(name, results[name])

    if args.grounding:
        results["grounding"] = grounding_report(
            sets, bundled_questions, HybridRetriever(xquad, embedder, xquad_lexical),
            HybridRetriever(bundled, embedder, bundled_lexical),
        )

    routes = {kind: vars(route) for kind, route in DEFAULT_ROUTES.items()}
    if args.json:
        args.json.write_text(json.dumps({"routes": routes, "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
