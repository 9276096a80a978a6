"""The gate that says whether retrieved passages can support an answer at all.

Retrieval always returns *something*; a question about the price of gold, asked of articles about party
building, must still get "not found". The gate looks at how much of what the question is about (its content
words, without question words such as `bao nhiêu`/`là gì`/`how many`) the best passage covers, by
single syllables and by adjacent pairs (Vietnamese words are mostly two syllables, so `giá vàng` must
not be satisfied by `đánh giá` and `vàng` found apart). Names and numbers of the question should be in
the passages: each one missing costs support, and most of them missing refutes it. English questions
share few words with Vietnamese articles, so for them the dense similarity of the question to the
passage decides (a threshold specific to the embedding model), with the same rule for names. A
Vietnamese question that paraphrases its passage may pass on a lower lexical share when the dense
similarity is very high and no name is missing.
Thresholds were calibrated with `bench/retrieval_quality.py --grounding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.text import (
    QUESTION_WORDS_FOLDED,
    STOPWORDS_EN,
    STOPWORDS_VI,
    QueryKind,
    content_tokens,
    detect_query_kind,
    english_to_vietnamese_terms,
    fold_diacritics,
    is_number,
    tokenize,
)
from retrieval.types import Passage

# Calibrated on XQuAD-vi (answerable questions against their own corpus, versus the same questions
# against the bundled party-news articles) and on eval/bundled/questions.jsonl. At these values, with
# multilingual-e5-small: 89% / 84% / 78% of answerable XQuAD questions pass (vi / vi_plain / en) and
# 2% / 4% / 2% of the foreign ones do.
LEXICAL_THRESHOLDS: dict[QueryKind, float] = {"vi": 0.4, "vi_plain": 0.45}
DENSE_THRESHOLD = 0.75
MISSING_NAME_PENALTY = 0.2
PASSAGES_CONSIDERED = 3
# A Vietnamese question that paraphrases its passage ("Điều gì khiến Priestley được công nhận...") shares
# few word pairs with it; when the dense model finds the passage very close and no name is missing, a
# lower lexical floor is enough. Measured with multilingual-e5-small: XQuAD-vi questions pass 89% -> 92%,
# while the foreign ones (XQuAD against the party news and back) and the bundled unanswerable and
# near-miss questions pass exactly as before (3% / 5% / 0%); their dense similarity stays below 0.85.
CORROBORATED_LEXICAL = 0.3
CORROBORATING_DENSE = 0.86


@dataclass(frozen=True)
class Support:
    """How well the best passage covers the question, and the verdict."""

    kind: QueryKind
    coverage: float  # share of the question's content syllables found in the passage
    pair_coverage: float  # share of adjacent content-syllable pairs found in the passage
    lexical: float  # (coverage + pair coverage) / 2, less a penalty per missing name: what the threshold sees
    dense: float | None  # best dense similarity among the passages, when known
    missing_names: tuple[str, ...]  # names and numbers of the question found in none of the passages
    supported: bool


def question_terms(question: str, *, fold: bool) -> list[str]:
    """The question's content syllables in order (question words and function words left out)."""
    return content_tokens(question, fold=fold)


def required_names(question: str, *, fold: bool = True) -> list[tuple[str, ...]]:
    """The names and numbers of a question, each as a token sequence: runs of capitalised words not
    opening the question (`Bình Dương`), and numbers.

    Folded by default; an accented question keeps its accents (`fold=False`) and is matched against
    accented text. A name must appear as a whole: `Bình Dương` is not found in `phê bình ... đường`.
    English words the glossary knows (`Party`, `Committee`) are common nouns written with a capital,
    not names.
    """
    names: list[tuple[str, ...]] = []
    run: list[str] = []
    for position, word in enumerate(question.split()):
        stripped = word.strip("\"'“”‘’«»()[]{}.,;:!?")
        tokens = tokenize(stripped, number_variants=False) if stripped else []
        capitalised = position > 0 and bool(stripped) and stripped[0].isupper()
        name_tokens = [t for t in tokens if not is_number(t) and not _common_word(t)] if capitalised else []
        if name_tokens:
            run.extend(fold_diacritics(t) if fold else t for t in name_tokens)
        elif run:
            names.append(tuple(run))
            run = []
        names.extend((t,) for t in tokens if is_number(t))
        if run and stripped != word.rstrip("\"'“”‘’«»()[]{}.;:!?"):
            names.append(tuple(run))  # a comma or a full stop ends the name
            run = []
    if run:
        names.append(tuple(run))
    return list(dict.fromkeys(names))


def required_terms(question: str, *, fold: bool = True) -> list[str]:
    """The tokens of `required_names`, flat."""
    return list(dict.fromkeys(t for name in required_names(question, fold=fold) for t in name))


def _common_word(token: str) -> bool:
    return (
        token in STOPWORDS_VI
        or token in STOPWORDS_EN
        or token in QUESTION_WORDS_FOLDED
        or bool(english_to_vietnamese_terms(token))
    )


def support(question: str, passages: Sequence[Passage], *, dense_threshold: float = DENSE_THRESHOLD,
            corroborating_dense: float = CORROBORATING_DENSE) -> Support:
    """Measure the support the first few passages give the question, and decide.

    Lexical coverage is that of the best single passage; the names and numbers of the question may be
    spread over the passages (a question about 2018 and 2019 is answered by two articles).
    `dense_threshold` and `corroborating_dense` are specific to the embedding model (the defaults are
    multilingual-e5-small's).
    """
    kind = detect_query_kind(question)
    fold = kind != "vi"  # accented questions match accented text: `giá` is not `gia`
    if kind == "en":
        # English words never occur in the articles; their Vietnamese glossary equivalents may.
        terms = english_to_vietnamese_terms(question) + required_terms(question)
    else:
        terms = question_terms(question, fold=fold)
    pairs = list(zip(terms, terms[1:]))
    considered = passages[:PASSAGES_CONSIDERED]
    best = (0.0, 0.0, 0.0)
    passage_tokens: list[list[str]] = []
    for passage in considered:
        # The date and the outlet count as part of the passage: "năm 2016" is answered by a 2016 article.
        text = "\n".join(filter(None, (passage.title, passage.source, passage.date, passage.text)))
        tokens = tokenize(text, fold=fold)
        coverage = _share(terms, set(tokens))
        pair_coverage = _share(pairs, set(zip(tokens, tokens[1:]))) if pairs else coverage
        best = max(best, (0.5 * coverage + 0.5 * pair_coverage, coverage, pair_coverage))
        passage_tokens.append(tokens)
    lexical, coverage, pair_coverage = best
    required = required_names(question, fold=fold)
    missing = tuple(" ".join(name) for name in required if not any(_contains(t, name) for t in passage_tokens))
    # A name spelt differently ("Clipper" for "Clippers") costs support; most names missing refute it.
    lexical -= MISSING_NAME_PENALTY * len(missing)
    dense_values = [p.dense_score for p in considered if p.dense_score is not None]
    dense = max(dense_values) if dense_values else None
    if not passages or 2 * len(missing) > len(required):
        supported = False
    elif kind == "en":
        supported = dense is not None and dense >= dense_threshold
    else:
        corroborated = not missing and dense is not None and dense >= corroborating_dense
        supported = lexical >= LEXICAL_THRESHOLDS[kind] or (corroborated and lexical >= CORROBORATED_LEXICAL)
    return Support(kind, coverage, pair_coverage, lexical, dense, missing, supported)


def is_supported(question: str, passages: Sequence[Passage], *, dense_threshold: float = DENSE_THRESHOLD,
                 corroborating_dense: float = CORROBORATING_DENSE) -> bool:
    """True when the passages are strong enough to answer `question` from (the answerers' gate)."""
    return support(question, passages, dense_threshold=dense_threshold,
                   corroborating_dense=corroborating_dense).supported


def _contains(tokens: list[str], name: tuple[str, ...]) -> bool:
    width = len(name)
    return any(tuple(tokens[i : i + width]) == name for i in range(len(tokens) - width + 1))


def _share(items: Sequence, present: set) -> float:
    if not items:
        return 0.0
    distinct = list(dict.fromkeys(items))
    return sum(1 for item in distinct if item in present) / len(distinct)
