"""Whether retrieved passages answer a question: a small fitted model, not hand-set thresholds.

The gate's measurements (`retrieval.answering.grounding.support`), the retrieval scores and the
sentence reading (`retrieval.answering.sentences`) become a few numbers (`answerability_features`); a
logistic model fitted on the tuning set turns them into a probability that the passages hold the answer,
and the question is answered when that probability reaches the operating point stored with the model.
The model is JSON (`judgement.json` beside this module: feature names, standardisation, weights, the
threshold and the data it was fitted on), written by `bench/judgement.py --write`; nothing is unpickled.

Three rules stay outside the model because no tuning set can teach them and they hold for any corpus:
a question whose names and numbers are mostly found in no passage is not about these articles, nor is
one none of whose word-like pairs the corpus ever says (the tuning set's questions are all about its own
topic, so they cannot show it), and a question about the reader's present cannot be answered by dated
articles that do not speak of it.

The features that separate a question about an article not in the index from one about an article that
is (measured on the tuning set, where both are about the same health topics) are those that look at
the question's *rarer* words: whether the passage holds them close together, whether the best article
holds more of them than any other article does, and how many of them the corpus never uses at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from importlib import resources
from pathlib import Path

import numpy as np

from index.errors import HoidapError
from index.text import fold_diacritics, is_number, tokenize
from retrieval.answering.grounding import (
    PASSAGES_CONSIDERED,
    Idf,
    KnownPair,
    Support,
    question_terms_for,
    support,
    term_weights,
)
from retrieval.answering.sentences import Question, ScoredSentence, parse_question, score_sentences
from retrieval.types import Passage

MODEL_FORMAT = 1
MODEL_FILE = "judgement.json"
# Words of the question within this many tokens of each other count as said together (a news sentence
# is ~25-35 syllables; the window is about one clause).
WINDOW = 16
# The rarer words of a question: those whose corpus IDF is at least this share of its heaviest word's.
RARE_SHARE = 0.75


class JudgementModelError(HoidapError):
    """The fitted judgement model's JSON file is missing, unreadable or not of the expected shape."""


@dataclass(frozen=True)
class JudgementModel:
    """A logistic model over named features, with the operating point at which it answers."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float  # answer when the probability is at least this
    fitted_on: str  # the data it was fitted on, named
    operating_point: str  # what the threshold was chosen for, in words
    english_threshold: float | None = None  # English questions' own operating point, when chosen apart

    def threshold_for(self, kind: str) -> float:
        """The operating point for a question of this kind (`vi`, `vi_plain`, `en`)."""
        return self.english_threshold if kind == "en" and self.english_threshold is not None else self.threshold

    def probability(self, values: Mapping[str, float]) -> float:
        """The calibrated probability that the passages hold the answer."""
        z = self.bias + sum(w * (values[f] - m) / s
                            for f, m, s, w in zip(self.features, self.mean, self.scale, self.weights))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def to_json(self) -> dict:
        return {"format": MODEL_FORMAT, "features": list(self.features), "mean": list(self.mean),
                "scale": list(self.scale), "weights": list(self.weights), "bias": self.bias,
                "threshold": self.threshold, "english_threshold": self.english_threshold,
                "fitted_on": self.fitted_on, "operating_point": self.operating_point}

    @classmethod
    def from_json(cls, data: object, *, where: str = "the judgement model") -> JudgementModel:
        """Check the shape strictly: a model that silently lost a feature would answer everything."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise _damaged(where, f"not a format {MODEL_FORMAT} judgement model")
        try:
            features = tuple(str(f) for f in data["features"])
            arrays = [tuple(float(v) for v in data[key]) for key in ("mean", "scale", "weights")]
            bias, threshold = float(data["bias"]), float(data["threshold"])
            english = data.get("english_threshold")
            english = None if english is None else float(english)
            fitted_on, operating_point = str(data["fitted_on"]), str(data["operating_point"])
        except (KeyError, TypeError, ValueError) as error:
            raise _damaged(where, f"missing or malformed field ({error})") from None
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise _damaged(where, f"unknown features {unknown}")
        if not features or any(len(a) != len(features) for a in arrays) or len(set(features)) != len(features):
            raise _damaged(where, "the feature list and the weight lists do not match")
        if any(s <= 0 for s in arrays[1]) or not all(math.isfinite(v) for a in arrays for v in a):
            raise _damaged(where, "non-finite weights or a non-positive scale")
        if not all(0.0 < t < 1.0 for t in (threshold, english if english is not None else 0.5)) or not math.isfinite(bias):
            raise _damaged(where, "the threshold must be a probability strictly between 0 and 1")
        return cls(features, *arrays, bias=bias, threshold=threshold, fitted_on=fitted_on,
                   operating_point=operating_point, english_threshold=english)

    @classmethod
    def load(cls, path: Path | None = None) -> JudgementModel:
        """The model at `path`, or the one shipped with hoidap."""
        where = str(path) if path else f"retrieval/answering/{MODEL_FILE}"
        try:
            text = path.read_text(encoding="utf-8") if path else \
                resources.files("retrieval.answering").joinpath(MODEL_FILE).read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _damaged(where, str(error)) from None
        return cls.from_json(data, where=where)


def _damaged(where: str, why: str) -> JudgementModelError:
    return JudgementModelError(
        f"The answer judgement model {where} cannot be used: {why}. Reinstall hoidap or refit it with "
        "`python bench/judgement.py --write`.",
        vi=f"Không dùng được mô hình đánh giá câu trả lời {where}: {why}. Hãy cài lại hoidap hoặc khớp lại "
           "bằng `python bench/judgement.py --write`.")


@dataclass(frozen=True)
class Judgement:
    """The verdict on one question's passages, with what it was based on."""

    supported: bool
    probability: float
    features: dict[str, float]
    measured: Support


class SentenceEmbedder(Protocol):
    """The part of `index.embedding.Embedder` the judgement uses: questions and sentences as unit vectors."""

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_sentences(self, texts: list[str]) -> np.ndarray:
        """Sentences as passages (the document prompt), read at question time: may be remembered."""
        ...


# The best sentences whose dense similarity to the question is measured (one batch per question).
SENTENCES_EMBEDDED = 3


def answerability_features(question: str, passages: Sequence[Passage], *, idf: Idf | None = None,
                           embedder: SentenceEmbedder | None = None, known_pair: KnownPair | None = None,
                           parsed: Question | None = None,
                           ranked: Sequence[ScoredSentence] | None = None,
                           measured: Support | None = None) -> tuple[dict[str, float], Support]:
    """Every feature a judgement model may use, measured on the question and its retrieved passages
    (`measured`: the gate's measurements of the same, when already taken)."""
    measured = support(question, passages, idf=idf, known_pair=known_pair) if measured is None else measured
    parsed = parsed or parse_question(question)
    if ranked is None:
        ranked = score_sentences(parsed, passages) if passages else []
    considered = list(passages[:PASSAGES_CONSIDERED])
    terms = question_terms_for(question, measured.kind)
    weights = term_weights(terms, idf)
    fold = measured.kind != "vi"
    scores = [p.score for p in passages]
    best = ranked[0] if ranked else None
    second = ranked[1].score if len(ranked) > 1 else 0.0
    content = [t for t in dict.fromkeys(terms) if not is_number(t)]
    unseen = [t for t in content if idf is not None and idf(fold_diacritics(t)) <= 0]
    rare = _rare_terms(weights)
    per_passage = [_passage_measures(p, terms, weights, rare, fold) for p in considered]
    asked = _tokens(question, fold)
    runs = [_shared_runs(asked, _tokens(p.text, fold)) for p in considered]
    top_article = considered[0].article_id if considered else None
    own = [m for p, m in zip(considered, per_passage) if p.article_id == top_article]
    other = [m for p, m in zip(considered, per_passage) if p.article_id != top_article]
    rare_best = max((m[0] for m in own), default=0.0)
    rare_other = max((m[0] for m in other), default=0.0)
    window_best = max((m[1] for m in own), default=0.0)
    window_other = max((m[1] for m in other), default=0.0)
    dense_own = [p.dense_score for p in passages if p.article_id == top_article and p.dense_score is not None]
    dense_other = [p.dense_score for p in passages if p.article_id != top_article and p.dense_score is not None]
    dense_values = [(p.dense_score, i) for i, p in enumerate(passages) if p.dense_score is not None]
    sentence_rare, sentence_weighted = _sentence_measures(best, terms, weights, rare, fold) if best else (0.0, 0.0)
    similarities = [0.0]
    if embedder is not None and ranked:
        vector = embedder.embed_queries([question])[0]
        sentences = embedder.embed_sentences([r.text for r in ranked[:SENTENCES_EMBEDDED]])
        similarities = [float(v @ vector) for v in sentences]
    values = {
        "sentence_dense_best": similarities[0], "sentence_dense_max": max(similarities),
        "coverage": measured.coverage, "pair_coverage": measured.pair_coverage, "lexical": measured.lexical,
        "dense": measured.dense or 0.0, "has_dense": float(measured.dense is not None),
        "missing_share": len(measured.missing_names) / max(1, len(measured.missing_names) + 1),
        "missing_focus": float(measured.missing_focus),
        "kind_vi": float(measured.kind == "vi"), "kind_plain": float(measured.kind == "vi_plain"),
        "kind_en": float(measured.kind == "en"),
        "top_score": scores[0] if scores else 0.0,
        "margin": (scores[0] - scores[1]) / scores[0] if len(scores) > 1 and scores[0] > 0 else 0.0,
        "sentence_score": best.score if best else 0.0, "sentence_pairs": best.pair_share if best else 0.0,
        "sentence_typed": float(bool(best and best.answers_type)),
        "sentence_margin": (best.score - second) / best.score if best and best.score > 0 else 0.0,
        "asks_value": float(parsed.asks_quantity or parsed.asks_time or parsed.asks_who or parsed.asks_where),
        # New: the question's rarer words.
        "unseen_share": len(unseen) / len(content) if content else 0.0,
        "rare_best": rare_best, "rare_gap": rare_best - rare_other,
        "window_best": window_best, "window_gap": window_best - window_other,
        "sentence_rare": sentence_rare, "sentence_weighted": sentence_weighted,
        "dense_gap": (max(dense_own) - max(dense_other)) if dense_own and dense_other else 0.0,
        "dense_agrees": float(bool(dense_values) and max(dense_values)[1] == 0),
        "articles": float(len({p.article_id for p in passages})),
        "longest_run": max((r[0] for r in runs), default=0.0), "trigram_share": max((r[1] for r in runs), default=0.0),
        "terms": float(len(content)),
    }
    return values, measured


FEATURES: tuple[str, ...] = (
    "coverage", "pair_coverage", "lexical", "dense", "has_dense", "missing_share", "missing_focus",
    "kind_vi", "kind_plain", "kind_en", "top_score", "margin", "sentence_score", "sentence_pairs",
    "sentence_typed", "sentence_margin", "asks_value", "unseen_share", "rare_best", "rare_gap",
    "window_best", "window_gap", "sentence_rare", "sentence_weighted", "dense_gap", "dense_agrees",
    "articles", "terms", "longest_run", "trigram_share", "sentence_dense_best", "sentence_dense_max",
)
# Measured only with an embedder (the gate is given the index's embedding model).
DENSE_FEATURES = frozenset({"sentence_dense_best", "sentence_dense_max"})


def _rare_terms(weights: Mapping[str, float]) -> set[str]:
    words = {t: w for t, w in weights.items() if not is_number(t)}
    if not words:
        return set()
    heaviest = max(words.values())
    return {t for t, w in words.items() if w >= RARE_SHARE * heaviest}


def _tokens(text: str, fold: bool) -> list[str]:
    return tokenize(text, fold=fold, number_variants=False)


def _passage_measures(passage: Passage, terms: Sequence[str], weights: Mapping[str, float], rare: set[str],
                      fold: bool) -> tuple[float, float]:
    """(share of the rare words the passage holds, best weighted share of the question's words inside
    one window of `WINDOW` tokens)."""
    context = "\n".join(filter(None, (passage.title, passage.source, passage.date, passage.text)))
    tokens = _tokens(context, fold)
    present = set(tokens)
    rare_share = sum(1 for t in rare if t in present) / len(rare) if rare else 0.0
    return rare_share, _window_share(tokens, weights)


def _shared_runs(asked: Sequence[str], tokens: Sequence[str]) -> tuple[float, float]:
    """(longest run of the question's tokens found word for word in the text, as a share of the question;
    share of the question's three-token sequences found in it): questions are often written from the
    article they ask about, in its own words."""
    if not asked:
        return 0.0, 0.0
    grams = {n: set(zip(*(tokens[i:] for i in range(n)))) for n in (3,)}
    longest = 0
    present = set(tokens)
    positions: dict[str, list[int]] = {}
    for i, t in enumerate(tokens):
        positions.setdefault(t, []).append(i)
    for start in range(len(asked)):
        if asked[start] not in present:
            continue
        for j in positions[asked[start]]:
            length = 0
            while start + length < len(asked) and j + length < len(tokens) and asked[start + length] == tokens[j + length]:
                length += 1
            longest = max(longest, length)
    trigrams = list(zip(asked, asked[1:], asked[2:]))
    share = sum(1 for g in trigrams if g in grams[3]) / len(trigrams) if trigrams else 0.0
    return longest / len(asked), share


def _window_share(tokens: Sequence[str], weights: Mapping[str, float]) -> float:
    """The largest weighted share of the question's distinct words found within `WINDOW` tokens."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    positions = [(i, t) for i, t in enumerate(tokens) if t in weights]
    best = 0.0
    start = 0
    inside: dict[str, int] = {}
    for end, (i, t) in enumerate(positions):
        inside[t] = inside.get(t, 0) + 1
        while i - positions[start][0] > WINDOW:
            left = positions[start][1]
            inside[left] -= 1
            if not inside[left]:
                del inside[left]
            start += 1
        best = max(best, sum(weights[w] for w in inside) / total)
    return best


def _sentence_measures(sentence: ScoredSentence, terms: Sequence[str], weights: Mapping[str, float],
                       rare: set[str], fold: bool) -> tuple[float, float]:
    """(share of the rare words in the best sentence, its corpus-weighted share of the question's words)."""
    present = set(_tokens(sentence.text, fold))
    total = sum(weights.values())
    rare_share = sum(1 for t in rare if t in present) / len(rare) if rare else 0.0
    weighted = sum(w for t, w in weights.items() if t in present) / total if total > 0 else 0.0
    return rare_share, weighted


class CorpusGate:
    """The answerers' gate over one indexed corpus: the fitted model, at its operating point."""

    def __init__(self, idf: Idf | None, embedder: SentenceEmbedder | None = None, *,
                 known_pair: KnownPair | None = None, model: JudgementModel | None = None,
                 threshold: float | None = None) -> None:
        self.idf = idf
        self.embedder = embedder
        self.known_pair = known_pair  # the corpus's side-by-side syllables (its diacritic model); None: rule off
        self.model = model or JudgementModel.load()
        self.threshold = threshold  # None: the model's own operating points
        if embedder is None and DENSE_FEATURES & set(self.model.features):
            raise ValueError("this judgement model reads sentence similarities: give the gate the embedder")

    def judge(self, question: str, passages: Sequence[Passage], *, parsed: Question | None = None,
              ranked: Sequence[ScoredSentence] | None = None, measured: Support | None = None) -> Judgement:
        values, measured = answerability_features(question, passages, idf=self.idf, embedder=self.embedder,
                                                  known_pair=self.known_pair, parsed=parsed, ranked=ranked,
                                                  measured=measured)
        probability = self.model.probability(values)
        vetoed = not passages or measured.refuted
        threshold = self.model.threshold_for(measured.kind) if self.threshold is None else self.threshold
        return Judgement(not vetoed and probability >= threshold, probability, values, measured)

    def __call__(self, question: str, passages: Sequence[Passage]) -> bool:
        """`judge(...).supported`, without the model when a hard rule already refuses: its features cost
        a sentence embedding (on the bundled index with XQuAD-vi questions about other articles, 28 of
        100 questions were refused so)."""
        if not passages:
            return False
        measured = support(question, passages, idf=self.idf, known_pair=self.known_pair)
        return not measured.refuted and self.judge(question, passages, measured=measured).supported
