"""Can a fitted model say "not found" better than the hand-set gate? Features, a logistic fit, held-out figures.

Usage:
    .venv/bin/python bench/judgement.py --set NAME=CORPUS.jsonl,QUESTIONS.jsonl [--set ...] [--folds 2]

For every question of the sets (the `hoidap eval` format), over the real index of its corpus (the
evaluation index `hoidap eval --corpus` builds, reused), the shipped retriever returns the passages and
`retrieval.answering.grounding.support` measures them, as the gate does. The label is whether the
passages can support an answer: an answerable question whose gold article is among the passages the
gate considers. A logistic regression over the gate's own measurements (coverage, pair coverage,
lexical support, dense similarity, names and numbers missing, focus missing, present time, the kind
of question) and the retrieval scores (best score, margin) is fitted by Newton's method with a small
L2 penalty, and evaluated by cross-validation with folds by article (no article in both halves).

Printed: the hand-set gate's refusal rates (unanswerable questions answered "not found", answerable
ones wrongly refused, answerable ones whose passages hold the answer wrongly refused), then the fitted
model's at the thresholds that refuse 80/85/90/95 % of the unanswerable questions held out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.evaluation import eval_index_dir, load_questions  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.wiring import build_components  # noqa: E402
from retrieval.answering.grounding import PASSAGES_CONSIDERED, support  # noqa: E402
from retrieval.answering.sentences import parse_question, score_sentences  # noqa: E402

GATE_FEATURES = ("coverage", "pair_coverage", "lexical", "dense", "has_dense", "missing_share", "missing_focus",
                 "present_time", "kind_vi", "kind_plain", "kind_en", "top_score", "margin")
# What the extractive answerer's sentence reading adds: how well its best sentence covers the question,
# whether it states a value of the asked type, and how far it stands above the next one.
SENTENCE_FEATURES = ("sentence_score", "sentence_pairs", "sentence_typed", "sentence_margin", "asks_value")
# The dense similarity of the question to its best sentences (not whole passages): costs one batch of
# sentence embeddings per question.
SENTENCE_DENSE = ("sentence_dense_best", "sentence_dense_max3")
FEATURES = GATE_FEATURES + SENTENCE_FEATURES


def measure(settings: Settings, corpus: Path, questions: Path) -> list[dict]:
    """One row per question: features, the label, the hand-set gate's verdict, the gold article."""
    components = build_components(settings, answerer="extractive", index_dir=eval_index_dir(settings, corpus))
    idf = components.lexical.idf
    rows = []
    for item in load_questions(questions):
        passages = components.retriever.retrieve(item.question, settings.top_k)
        measured = support(item.question, passages, idf=idf)
        considered = {p.article_id for p in passages[:PASSAGES_CONSIDERED]}
        scores = [p.score for p in passages]
        required = max(1, len(measured.missing_names) + 1)
        parsed = parse_question(item.question)
        ranked = score_sentences(parsed, passages) if passages else []
        best = ranked[0] if ranked else None
        second = ranked[1].score if len(ranked) > 1 else 0.0
        similarities = [0.0]
        if ranked:
            question_vector = components.embedder.embed_queries([item.question])[0]
            sentence_vectors = components.embedder.embed_passages([r.text for r in ranked[:3]])
            similarities = [float(v @ question_vector) for v in sentence_vectors]
        rows.append({
            "coverage": measured.coverage, "pair_coverage": measured.pair_coverage, "lexical": measured.lexical,
            "dense": measured.dense or 0.0, "has_dense": float(measured.dense is not None),
            "missing_share": len(measured.missing_names) / required, "missing_focus": float(measured.missing_focus),
            "present_time": float(measured.present_time), "kind_vi": float(measured.kind == "vi"),
            "kind_plain": float(measured.kind == "vi_plain"), "kind_en": float(measured.kind == "en"),
            "top_score": scores[0] if scores else 0.0,
            "margin": (scores[0] - scores[1]) / scores[0] if len(scores) > 1 and scores[0] > 0 else 0.0,
            "sentence_score": best.score if best else 0.0, "sentence_pairs": best.pair_share if best else 0.0,
            "sentence_typed": float(bool(best and best.answers_type)),
            "sentence_margin": (best.score - second) / best.score if best and best.score > 0 else 0.0,
            "asks_value": float(parsed.asks_quantity or parsed.asks_time or parsed.asks_who or parsed.asks_where),
            "sentence_dense_best": similarities[0], "sentence_dense_max3": max(similarities),
            "label": float(item.answerable and bool(considered & set(item.passage_ids))),
            "answerable": item.answerable, "gate": measured.supported,
            "article": sorted(item.passage_ids)[0] if item.passage_ids else f"none:{item.id}",
        })
    components.store.close()
    return rows


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardisation (mean, scale) and logistic weights (bias last), by Newton's method."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + l2 * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return mean, scale, w


def predict(x: np.ndarray, model: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    mean, scale, w = model
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    return 1 / (1 + np.exp(-z @ w))


def rates(refused: np.ndarray, rows: list[dict]) -> str:
    unanswerable = np.array([not r["answerable"] for r in rows])
    supportable = np.array([r["label"] == 1.0 for r in rows])
    answerable = ~unanswerable
    return (f"unanswerable refused {refused[unanswerable].mean():.3f} ({unanswerable.sum()}) | answerable refused "
            f"{refused[answerable].mean():.3f} ({answerable.sum()}) | answerable with the answer retrieved refused "
            f"{refused[supportable].mean():.3f} ({supportable.sum()})")


def evaluate(rows: list[dict], y: np.ndarray, x: np.ndarray, features: tuple[str, ...], folds_wanted: int) -> None:
    """Held-out refusal rates of a logistic model over `features`, at four operating points."""
    articles = sorted({r["article"] for r in rows})
    fold_of = {a: i % folds_wanted for i, a in enumerate(np.random.default_rng(0).permutation(articles))}
    folds = np.array([fold_of[r["article"]] for r in rows])
    held_out = np.zeros(len(rows))
    for k in range(folds_wanted):
        model = fit(x[folds != k], y[folds != k])
        held_out[folds == k] = predict(x[folds == k], model)
    unanswerable = np.array([not r["answerable"] for r in rows])
    for share in (0.80, 0.85, 0.90, 0.95):
        threshold = float(np.quantile(held_out[unanswerable], share)) if unanswerable.any() else 0.5
        print(f"fitted, held out, threshold {threshold:.3f} (refuses {share:.0%} of unanswerable): "
              f"{rates(held_out < threshold, rows)}")
    model = fit(x, y)
    print("weights (standardised features):", {f: round(float(w), 3) for f, w in zip(features, model[2])},
          "bias", round(float(model[2][-1]), 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True, help="NAME=CORPUS.jsonl,QUESTIONS.jsonl")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--save", type=Path, help="write the rows as JSON lines here (never into the repository)")
    args = parser.parse_args()
    settings = Settings()
    rows: list[dict] = []
    for spec in args.set:
        name, paths = spec.split("=", 1)
        corpus, questions = (Path(p) for p in paths.split(","))
        measured = measure(settings, corpus, questions)
        print(f"{name}: {len(measured)} questions; hand-set gate: {rates(~np.array([r['gate'] for r in measured]), measured)}",
              flush=True)
        rows += [{**r, "set": name} for r in measured]
    if args.save:
        args.save.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    print(f"all sets, hand-set gate: {rates(~np.array([r['gate'] for r in rows]), rows)}")
    y = np.array([r["label"] for r in rows])
    for name, features in (("gate measurements", GATE_FEATURES), ("gate + sentence reading", FEATURES),
                           ("gate + sentence reading + sentence dense", FEATURES + SENTENCE_DENSE)):
        print(f"--- fitted on {name}")
        evaluate(rows, y, np.array([[r[f] for f in features] for r in rows]), features, args.folds)


if __name__ == "__main__":
    main()
