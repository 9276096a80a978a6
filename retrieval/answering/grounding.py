"""The measurements that say whether retrieved passages can support an answer at all, and the hand-set gate.

The answerers' gate is `retrieval.answering.judgement.CorpusGate`: a model fitted on the tuning set reads
these measurements (and more) and decides. `is_supported` below, the hand-set thresholds it replaced, is
kept as the baseline `bench/judgement.py` compares the model against, and as the gate of unit tests over
the hashing embedder (the fitted weights are the real embedding model's).

Retrieval always returns *something*; a question about the price of gold, asked of articles about party
building, must still get "not found". The gate measures how much of what the question is about (its
content words, without question words such as `bao nhiêu`/`là gì`/`how many`) one passage covers, by
single syllables and by adjacent pairs (Vietnamese words are mostly two syllables, so `giá vàng` must
not be satisfied by `đánh giá` and `vàng` found apart).

Words do not count alike: each is weighted by its inverse document frequency in the indexed corpus, so
that `tỉnh`, `năm` or `kết quả`, found in almost every chunk, say little, while `xổ số` or `chủ tịch`,
which the corpus never uses, weigh the most (a word unknown to the corpus cannot be supported by it).
Without corpus statistics every word weighs the same.

Four further rules refuse what coverage alone lets through:
- names and numbers of the question must be in the passage that answers (its title, outlet and date
  count as part of it: `Quảng Ngãi` is only in one article's outlet, `2023` only in another's date);
  each one missing costs support, and most of them missing from every passage refutes it;
- the question's *focus*, its rarest content word that the corpus uses, must be in the passage for a
  high dense similarity to make up for a low lexical share;
- a Vietnamese question none of whose word-like pairs (`index.text.content_pairs`, at least
  `MIN_UNHEARD_PAIRS` of them) the corpus ever has side by side is not about these articles, whatever
  single syllables it shares with them: typed in lower case, "thủ đô của nước pháp là gì" names
  nothing, and its syllables are all in party news (thủ trưởng, đô thị, Nhà nước, pháp luật), but
  `thủ đô` and `nước pháp` nowhere. (Without accents, `do` may be the function word `do`, so "thu do
  cua nuoc phap la gi" has one sure pair, too few: one refutes answerable questions naming a single
  unknown name.)
- a question about the reader's present (`hôm nay`, `hiện nay`, `bây giờ`, `today`, `current`) cannot be
  answered by dated articles unless the passage itself speaks of the present.

English questions share no words with Vietnamese articles, so for them only names and numbers are
matched and the dense similarity of the question to the passage decides (a threshold specific to the
embedding model), with the same rules for names and the present. A Vietnamese question that paraphrases its passage may pass on a lower lexical
share when the dense similarity is very high and no name is missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from index.text import (
    QUESTION_WORDS_FOLDED,
    STOPWORDS_EN,
    STOPWORDS_VI,
    QueryKind,
    content_pairs,
    content_tokens,
    detect_query_kind,
    fold_diacritics,
    is_number,
    is_vietnamese_syllable,
    tokenize,
)
from retrieval.types import Passage

Idf = Callable[[str], float]
"""Inverse document frequency of a folded token in the indexed corpus; 0 for a token it never uses."""
KnownPair = Callable[[str, str], bool]
"""Whether the indexed corpus has two (folded) syllables side by side (`DiacriticRestorer.has_pair`)."""

LEXICAL_THRESHOLDS: dict[QueryKind, float] = {"vi": 0.4, "vi_plain": 0.45}
DENSE_THRESHOLD = 0.75
MISSING_NAME_PENALTY = 0.2
PASSAGES_CONSIDERED = 3
CORROBORATED_LEXICAL = 0.3
CORROBORATING_DENSE = 0.86
# A word the corpus never uses weighs as much as the rarest word it does use, plus this.
UNSEEN_BONUS = 0.0
# Below this weight (relative to the heaviest word of the question) a word is not the question's focus.
FOCUS_SHARE = 0.6
# A passage without the focus loses this much support. Measured: 0.15 refuses one more held-out question
# but lets 8 more XQuAD-vi paraphrases fail, so the focus only withholds dense corroboration.
MISSING_FOCUS_PENALTY = 0.0
# A Vietnamese question whose best passage covers less than this (`Support.lexical`) is refuted whatever
# the fitted judgement says: "Mặt trời mọc ở hướng nào?" finds `hướng` and `mặt` scattered over party news.
# Tuning set (`unanswerable/`, held out): 0.25 refuses 0.5 % more answerable questions (0 % without
# diacritics) and 0.3-2 points more off-topic ones; 0.3 costs 1.2 % of the answerable.
MIN_LEXICAL = 0.25
# A question with at least this many word-like pairs, none of which the corpus ever has, is refuted.
# Measured (`eval/README.md`): 2 refutes no answerable question of the tuning set (ViNewsQA dev: 2,497
# accented, 2,488 typed without accents, 409 of `unanswerable/`), 1 of XQuAD-vi's 300 (a paraphrase) and
# 50 of 60 general-knowledge questions over the bundled articles (20, each accented, in lower case and
# without accents); 1 refutes 16 + 9 answerable ones (a lone unknown name: `người Hijras`).
MIN_UNHEARD_PAIRS = 2

# Words that place a question at the reader's present (folded; the English ones as typed).
_PRESENT_VI = ("hom nay", "hien nay", "hien tai", "bay gio", "hom qua", "ngay mai", "tuan nay", "thang nay", "nam nay")
_PRESENT_EN = ("today", "tonight", "tomorrow", "yesterday", "now", "current", "currently", "latest",
               "this week", "this month", "this year")
# What a passage must say to speak of its own present (folded).
_PRESENT_IN_TEXT = ("hom nay", "hien nay", "hien tai", "bay gio", "ngay nay")


@dataclass(frozen=True)
class Support:
    """How well the best passage covers the question, and the verdict."""

    kind: QueryKind
    coverage: float  # weighted share of the question's content syllables found in the best passage
    pair_coverage: float  # weighted share of adjacent content-syllable pairs found in the best passage
    lexical: float  # (coverage + pair coverage) / 2, less a penalty per name missing from that passage
    dense: float | None  # best dense similarity among the passages, when known
    missing_names: tuple[str, ...]  # names and numbers of the question found in none of the passages
    supported: bool
    missing_focus: bool = False  # the best passage lacks the question's rarest content word
    present_time: bool = False  # the question asks about the present and no passage speaks of it
    unheard: bool = False  # none of the question's word-like pairs is ever said in the corpus
    refuted: bool = False  # no passages, most names and numbers found nowhere, the present asked for, or unheard


def question_terms(question: str, *, fold: bool) -> list[str]:
    """The question's content syllables in order (question words and function words left out)."""
    return content_tokens(question, fold=fold)


def question_terms_for(question: str, kind: QueryKind) -> list[str]:
    """The terms coverage is measured on: content syllables (folded unless accented Vietnamese); for an
    English question, which shares no words with Vietnamese articles, only its names and numbers."""
    if kind == "en":
        return required_terms(question)
    return question_terms(question, fold=kind != "vi")


def required_names(question: str, *, fold: bool = True) -> list[tuple[str, ...]]:
    """The names and numbers of a question, each as a token sequence: runs of capitalised words not
    opening the question (`Bình Dương`), and numbers.

    Folded by default; an accented question keeps its accents (`fold=False`) and is matched against
    accented text. A name must appear as a whole: `Bình Dương` is not found in `phê bình ... đường`.
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


def asks_present(question: str) -> bool:
    """True when the question is about the reader's present (`giá vàng hôm nay`, `current secretary`)."""
    folded = " ".join(tokenize(question, fold=True, number_variants=False))
    return any(re.search(rf"\b{phrase}\b", folded) for phrase in _PRESENT_VI + _PRESENT_EN)


def speaks_of_present(text: str) -> bool:
    """True when a passage itself speaks of its present (`hiện nay`, `ngày nay`)."""
    folded = " ".join(tokenize(text, fold=True, number_variants=False))
    return any(re.search(rf"\b{phrase}\b", folded) for phrase in _PRESENT_IN_TEXT)


def term_weights(terms: Sequence[str], idf: Idf | None) -> dict[str, float]:
    """Each term's weight: its corpus IDF, the highest weight for a term the corpus never uses, or 1
    for every term when there are no corpus statistics. Numbers always weigh as a rare word."""
    distinct = list(dict.fromkeys(terms))
    if idf is None:
        return {t: 1.0 for t in distinct}
    known = {t: idf(fold_diacritics(t)) for t in distinct}
    ceiling = max([v for v in known.values() if v > 0], default=1.0) + UNSEEN_BONUS
    return {t: (v if v > 0 else ceiling) for t, v in known.items()}


def _common_word(token: str) -> bool:
    return (
        token in STOPWORDS_VI
        or token in STOPWORDS_EN
        or token in QUESTION_WORDS_FOLDED
    )


def support(question: str, passages: Sequence[Passage], *, idf: Idf | None = None, known_pair: KnownPair | None = None,
            dense_threshold: float = DENSE_THRESHOLD, corroborating_dense: float = CORROBORATING_DENSE) -> Support:
    """Measure the support the first few passages give the question, and decide.

    Lexical coverage is that of the best single passage, weighted by `idf` when given, less a penalty
    for each name or number of the question that passage lacks; the names of a question comparing two
    years may still be spread over two passages, but most of them missing from all refutes it.
    `known_pair` (the corpus's side-by-side syllables) refutes a question none of whose pairs it has;
    without it that rule is off. `dense_threshold` and `corroborating_dense` are specific to the embedding model (the defaults are
    multilingual-e5-small's).
    """
    kind = detect_query_kind(question)
    fold = kind != "vi"  # accented questions match accented text: `giá` is not `gia`
    terms = question_terms_for(question, kind)
    weights = term_weights(terms, idf)
    pairs = list(dict.fromkeys(zip(terms, terms[1:])))
    focus = _focus(weights, idf)
    required = required_names(question, fold=fold)
    if kind == "en":
        required = _matchable(required)
    considered = passages[:PASSAGES_CONSIDERED]
    best: tuple[float, float, float, bool, int] = (-math.inf, 0.0, 0.0, True, 0)
    passage_tokens: list[list[str]] = []
    for passage in considered:
        # The date and the outlet count as part of the passage: "năm 2016" is answered by a 2016 article.
        tokens = tokenize(_context(passage), fold=fold)
        present = set(tokens)
        names = _name_tokens(_context(passage), fold=fold)
        coverage = _weighted_share(weights, present)
        pair_weights = {pair: (weights[pair[0]] + weights[pair[1]]) / 2 for pair in pairs}
        pair_coverage = _weighted_share(pair_weights, set(zip(tokens, tokens[1:]))) if pairs else coverage
        absent = sum(1 for name in required if not _contains(names, name))
        unfocused = any(t not in present for t in focus)
        lexical = 0.5 * coverage + 0.5 * pair_coverage - MISSING_NAME_PENALTY * absent - MISSING_FOCUS_PENALTY * unfocused
        best = max(best, (lexical, coverage, pair_coverage, unfocused, absent))
        passage_tokens.append(names)
    lexical, coverage, pair_coverage, missing_focus, absent_from_best = best
    missing = tuple(" ".join(name) for name in required if not any(_contains(t, name) for t in passage_tokens))
    if kind == "en":
        required, missing = _english_names_vouched(required, missing)
    dense_values = [p.dense_score for p in considered if p.dense_score is not None]
    dense = max(dense_values) if dense_values else None
    present_time = asks_present(question) and not any(speaks_of_present(p.text) for p in considered)
    scattered = kind != "en" and max(lexical, 0.0) < MIN_LEXICAL
    unheard = kind != "en" and known_pair is not None and _unheard(question, known_pair, fold=fold)
    refuted = not passages or 2 * len(missing) > len(required) or present_time or scattered or unheard
    if refuted:
        supported = False
    elif kind == "en":
        supported = dense is not None and dense >= dense_threshold
    else:
        corroborated = not absent_from_best and not missing_focus and dense is not None and dense >= corroborating_dense
        supported = lexical >= LEXICAL_THRESHOLDS[kind] or (corroborated and lexical >= CORROBORATED_LEXICAL)
    return Support(kind, coverage, pair_coverage, max(lexical, 0.0), dense, missing, supported,
                   missing_focus, present_time, unheard, refuted)


def _unheard(question: str, known_pair: KnownPair, *, fold: bool) -> bool:
    pairs = list(dict.fromkeys(content_pairs(question, fold=fold)))
    return len(pairs) >= MIN_UNHEARD_PAIRS and not any(known_pair(a, b) for a, b in pairs)


def is_supported(question: str, passages: Sequence[Passage], *, idf: Idf | None = None,
                 known_pair: KnownPair | None = None, dense_threshold: float = DENSE_THRESHOLD,
                 corroborating_dense: float = CORROBORATING_DENSE) -> bool:
    """True when the passages are strong enough to answer `question` from (the answerers' gate)."""
    return support(question, passages, idf=idf, known_pair=known_pair, dense_threshold=dense_threshold,
                   corroborating_dense=corroborating_dense).supported


def _matchable(names: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The names of an English question as the Vietnamese articles could write them: in a run that mixes
    a Vietnamese name with English words (`Tien Giang Provincial Party Committee`) only the Vietnamese
    part (`tien giang`) can be found; a run of English words alone (`France`, `Party`) stays whole, and
    missing, it counts against the passages as any name does."""
    kept: list[tuple[str, ...]] = []
    for name in names:
        vietnamese = tuple(t for t in name if is_number(t) or is_vietnamese_syllable(t))
        kept.append(vietnamese if vietnamese else name)
    return list(dict.fromkeys(kept))


def _english_names_vouched(required: list[tuple[str, ...]], missing: tuple[str, ...]
                           ) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """English capitalises more than names (`Party members`, `the Provincial Committee`), and a run of
    English words alone can never be found in Vietnamese articles. When the question also has names or
    numbers the articles could write (`Quang Ngai`, `2023`) and the passages hold every one of them, those
    vouch for the question: its English-only runs are left to the fitted model instead of refuting it.
    Without such a name (`the capital of France`, `Mount Everest`) an English-only run still counts."""
    english_only = [name for name in required if not any(is_number(t) or is_vietnamese_syllable(t) for t in name)]
    writable = [name for name in required if name not in english_only]
    if not english_only or not writable or any(" ".join(name) in missing for name in writable):
        return required, missing
    dropped = {" ".join(name) for name in english_only}
    return writable, tuple(name for name in missing if name not in dropped)


def _focus(weights: dict[str, float], idf: Idf | None) -> tuple[str, ...]:
    """The question's focus: its rarest non-number content word(s) that the corpus uses, when clearly
    rarer than the rest.

    Words the corpus never uses are left to coverage: they are as often the question's own phrasing
    (`tên`, `phần trăm`) as its topic. Numbers are left to the name rule.
    """
    if idf is None:
        return ()
    words = {t: w for t, w in weights.items() if not is_number(t) and idf(fold_diacritics(t)) > 0}
    if len(words) < 2:
        return ()
    heaviest = max(words.values())
    lightest = min(words.values())
    if heaviest <= lightest:
        return ()  # uniform weights (no corpus statistics) single out nothing
    return tuple(t for t, w in words.items() if w >= heaviest and w > lightest / FOCUS_SHARE)


def _context(passage: Passage) -> str:
    return "\n".join(filter(None, (passage.title, passage.source, passage.date, passage.text)))


def _name_tokens(text: str, *, fold: bool) -> list[str | None]:
    """The tokens of `text` (numbers whole), each word kept only where the text capitalises it (else None):
    a name of the question must be a name in the passage, so `Pháp` (France) is not found in `pháp luật`."""
    return [token if token[0].isdigit() or _capitalised(word) else None
            for word in text.split()
            for token in tokenize(word, fold=fold, number_variants=False)]


def _capitalised(word: str) -> bool:
    """`Lạt-ma`, `(Pháp)`: the word's first letter is upper case (a hyphenated word counts whole)."""
    letter = next((c for c in word if c.isalpha()), "")
    return letter.isupper()


def _contains(tokens: Sequence[str | None], name: tuple[str, ...]) -> bool:
    width = len(name)
    return any(tuple(tokens[i : i + width]) == name for i in range(len(tokens) - width + 1))


def _weighted_share(weights: dict, present: set) -> float:
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(w for item, w in weights.items() if item in present) / total
