"""Fit the answer judgement model, cross-validated by article, and print its refusal curve against the hand-set gate.

Usage:
    .venv/bin/python bench/judgement.py --set NAME=CORPUS.jsonl,QUESTIONS.jsonl [--set ...] [--folds 5]
        [--rows ROWS.jsonl] [--write retrieval/answering/judgement.json --fitted-on "..."]

For every question of the sets (the `hoidap eval` format), over the evaluation index of its corpus (the
one `hoidap eval --corpus` builds, reused), the shipped retriever returns the passages and
`retrieval.answering.judgement.answerability_features` measures them, exactly as the gate does at
answer time. The label is whether the passages can support an answer: an answerable question whose
gold article is among the passages the gate considers. A logistic regression (Newton's method, small L2
penalty) over the features is evaluated by cross-validation with folds by article: the questions of one
article (or of one removed article, for questions that must get "not found") are never on both sides.

Printed, per set and over all sets: the hand-set gate's refusal rates; then the fitted model's held-out
curve (threshold, unanswerable questions answered "not found", answerable ones wrongly refused,
answerable ones whose passages hold the answer wrongly refused), and the fitted model at the hand-set
gate's own rate of wrongly refused questions. `--rows` caches the measured rows (outside the
repository: they hold the questions); `--write` fits on every row and writes the model JSON, with the
threshold at the operating point: on the set named by `--operating-set`, the model may refuse no more
of the answerable questions whose answer was retrieved than `--refuse-retrieved` (default: the share the
hand-set gate refuses), so the extra questions it refuses are about articles not indexed or answers
retrieval missed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.evaluation import eval_index_dir, load_questions  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.wiring import build_components  # noqa: E402
from retrieval.answering.grounding import PASSAGES_CONSIDERED  # noqa: E402
from retrieval.answering.judgement import FEATURES, JudgementModel, answerability_features  # noqa: E402

L2 = 1.0  # ridge penalty on the standardised weights: held-out curves equal from 0.1 to 3 on the tuning set
CURVE = np.round(np.arange(0.05, 0.96, 0.05), 2)


def _article(item_id: str, passage_ids: list[str]) -> str:
    """The article a question is about: its gold article, or for ViNewsQA ids the article part of the id
    (`unans-uit_01__02800_0_3` -> `uit_01__02800`), so a removed article's questions stay together."""
    match = re.match(r"(?:unans-)?(.+)_\d+_\d+$", item_id)
    if match:
        return match.group(1)
    return sorted(passage_ids)[0] if passage_ids else f"none:{item_id}"


def measure(settings: Settings, name: str, corpus: Path, questions: Path) -> list[dict]:
    """One row per question: the features, the label, the hand-set gate's verdict, the article."""
    components = build_components(settings, answerer="extractive", index_dir=eval_index_dir(settings, corpus))
    idf = components.lexical.idf if components.lexical else None
    rows = []
    for item in load_questions(questions):
        passages = components.retriever.retrieve(item.question, settings.top_k)
        values, measured = answerability_features(item.question, passages, idf=idf, embedder=components.embedder)
        considered = {p.article_id for p in passages[:PASSAGES_CONSIDERED]}
        rows.append({**values, "set": name, "id": item.id,
                     "label": float(item.answerable and bool(considered & set(item.passage_ids))),
                     "answerable": item.answerable, "gate": measured.supported, "refuted": measured.refuted,
                     "article": f"{name}:{_article(item.id, sorted(item.passage_ids))}"})
    components.store.close()
    return rows


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardisation (mean, scale) and logistic weights (bias last), by Newton's method."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = l2 * np.eye(len(w))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -60, 60)))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return mean, scale, w


def predict(x: np.ndarray, model: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    mean, scale, w = model
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    return 1 / (1 + np.exp(-np.clip(z @ w, -60, 60)))


def refusal_rates(refused: np.ndarray, rows: list[dict]) -> tuple[float, float, float]:
    """(unanswerable refused, answerable refused, answerable with the answer retrieved refused)."""
    unanswerable = np.array([not r["answerable"] for r in rows])
    supportable = np.array([r["label"] == 1.0 for r in rows])
    shares = [float(refused[mask].mean()) if mask.any() else float("nan")
              for mask in (unanswerable, ~unanswerable, supportable)]
    return shares[0], shares[1], shares[2]


def describe(refused: np.ndarray, rows: list[dict]) -> str:
    unans, answerable, supportable = refusal_rates(refused, rows)
    return f"not found (unans.) {unans:.3f} | answerable refused {answerable:.3f} | answer retrieved, refused {supportable:.3f}"


def held_out(rows: list[dict], features: tuple[str, ...], folds: int) -> np.ndarray:
    """Each row's probability from a model fitted on the folds that do not hold its article."""
    x = np.array([[r[f] for f in features] for r in rows])
    y = np.array([r["label"] for r in rows])
    articles = sorted({r["article"] for r in rows})
    fold_of = {a: i % folds for i, a in enumerate(np.random.default_rng(0).permutation(articles))}
    fold = np.array([fold_of[r["article"]] for r in rows])
    probability = np.zeros(len(rows))
    for k in range(folds):
        probability[fold == k] = predict(x[fold == k], fit(x[fold != k], y[fold != k]))
    return probability


def refused_by(probability: np.ndarray, rows: list[dict], threshold: float) -> np.ndarray:
    """The shipped decision: refuse below the threshold, or when a hard rule refutes the passages."""
    return (probability < threshold) | np.array([r["refuted"] for r in rows])


def curve(name: str, rows: list[dict], probability: np.ndarray) -> None:
    gate = ~np.array([r["gate"] for r in rows])
    print(f"  {name} ({len(rows)} questions) hand-set gate: {describe(gate, rows)}")
    print("  threshold | not found (unans.) | answerable refused | answer retrieved, refused")
    for threshold in CURVE:
        unans, answerable, supportable = refusal_rates(refused_by(probability, rows, threshold), rows)
        print(f"  {threshold:.2f} | {unans:.3f} | {answerable:.3f} | {supportable:.3f}")
    _, gate_answerable, _ = refusal_rates(gate, rows)
    threshold = threshold_for(probability, rows, gate_answerable)
    print(f"  fitted at the hand gate's answerable-refused rate (threshold {threshold:.3f}): "
          f"{describe(refused_by(probability, rows, threshold), rows)}")


def threshold_for(probability: np.ndarray, rows: list[dict], answerable_refused: float, *,
                  retrieved_only: bool = False) -> float:
    """The highest threshold that wrongly refuses at most this share of the answerable questions (of those
    whose answer was retrieved, with `retrieved_only`)."""
    answerable = np.array([r["label"] == 1.0 if retrieved_only else r["answerable"] for r in rows])
    refuted = np.array([r["refuted"] for r in rows])
    candidates = np.sort(np.unique(probability[answerable]))
    best = 1e-6
    for t in candidates:
        refused = ((probability < t) | refuted)[answerable].mean()
        if refused <= answerable_refused:
            best = float(t)
        else:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], help="NAME=CORPUS.jsonl,QUESTIONS.jsonl")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rows", type=Path, help="cache of the measured rows (JSON lines; never in the repository)")
    parser.add_argument("--features", help="comma-separated subset of the features (default: all)")
    parser.add_argument("--write", type=Path, help="fit on every row and write the model JSON here")
    parser.add_argument("--fitted-on", default="", help="the data the written model is fitted on, named")
    parser.add_argument("--operating-set", default="unanswerable", help="the set whose curve sets the threshold")
    parser.add_argument("--english-set", default="xquad-en",
                        help="the set of answerable English questions whose curve sets the English threshold")
    parser.add_argument("--refuse-retrieved", type=float, default=None,
                        help="share of the operating set's answerable questions whose answer was retrieved that the "
                             "threshold may refuse (default: the hand-set gate's own share on that set)")
    args = parser.parse_args()
    settings = Settings()
    rows: list[dict] = []
    if args.rows and args.rows.exists() and not args.set:
        rows = [json.loads(line) for line in args.rows.read_text(encoding="utf-8").splitlines()]
    for spec in args.set:
        name, paths = spec.split("=", 1)
        corpus, questions = (Path(p) for p in paths.split(","))
        rows += measure(settings, name, corpus, questions)
        print(f"{name}: measured", flush=True)
    if args.rows and args.set:
        args.rows.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    features = tuple(args.features.split(",")) if args.features else FEATURES
    probability = held_out(rows, features, args.folds)
    print(f"--- held out by article ({args.folds} folds), features: {', '.join(features)}")
    names = sorted({r["set"] for r in rows})
    for name in names:
        mask = [i for i, r in enumerate(rows) if r["set"] == name]
        curve(name, [rows[i] for i in mask], probability[mask])
    if len(names) > 1:
        curve("all sets", rows, probability)
    if args.write:
        operating = [i for i, r in enumerate(rows) if r["set"] == args.operating_set]
        chosen = [rows[i] for i in operating]
        limit = args.refuse_retrieved
        if limit is None:
            limit = refusal_rates(~np.array([r["gate"] for r in chosen]), chosen)[2]
        threshold = threshold_for(probability[operating], chosen, limit, retrieved_only=True)
        english = [i for i, r in enumerate(rows) if r["set"] == args.english_set]
        english_threshold, english_words = None, ""
        if english:
            # English questions are matched by their names and the dense similarity alone: their operating
            # point is the highest that refuses at most one more of them than the hand-set gate does.
            chosen_en = [rows[i] for i in english]
            gate_en = refusal_rates(~np.array([r["gate"] for r in chosen_en]), chosen_en)[1]
            english_threshold = round(threshold_for(probability[english], chosen_en, gate_en + 1.01 / len(english)), 4)
            english_words = (f"; English questions at {english_threshold} (set '{args.english_set}': "
                             f"{describe(refused_by(probability[english], chosen_en, english_threshold), chosen_en)})")
        x = np.array([[r[f] for f in features] for r in rows])
        mean, scale, w = fit(x, np.array([r["label"] for r in rows]))
        refused = refused_by(probability[operating], [rows[i] for i in operating], threshold)
        model = JudgementModel(features, tuple(map(float, mean)), tuple(map(float, scale)), tuple(map(float, w[:-1])),
                               float(w[-1]), round(threshold, 4), args.fitted_on,
                               f"threshold chosen held out on '{args.operating_set}' to refuse at most "
                               f"{limit:.1%} of its answerable questions whose answer was retrieved: "
                               f"{describe(refused, chosen)}{english_words}", english_threshold)
        args.write.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.write}: {model.operating_point}")
        print("weights (standardised):", {f: round(v, 3) for f, v in zip(features, model.weights)})


if __name__ == "__main__":
    main()
