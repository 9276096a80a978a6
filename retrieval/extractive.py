"""The extractive answerer: offline, instant, deterministic; quotes the sentence(s) that answer and cites them.

Sentences of the retrieved passages are scored by how much of the question they cover (syllables weighted
by their rarity among the candidate sentences, plus adjacent pairs), with the previous sentence as context
(news often names the subject in one sentence and gives the figure in the next), and with bonuses when the
question asks for a quantity or a time and the sentence holds a new number or date, more when the number
is followed by the thing counted (`3.463 đảng viên` for `bao nhiêu đảng viên`). When the best sentences of
different articles give different figures, the answer names each article. Article text is only quoted,
never obeyed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import takewhile
from dataclasses import dataclass, replace

from index.chunking import split_into_sentences
from retrieval.conversation import rewrite_question
from retrieval.grounding import is_supported, question_terms, required_terms
from retrieval.text import (
    STOPWORDS_VI_FOLDED,
    QueryKind,
    detect_query_kind,
    english_to_vietnamese_terms,
    fold_diacritics,
    is_number,
    tokenize,
)
from retrieval.types import Answer, Passage, Retriever, Source, Turn

NOT_FOUND = {
    "vi": "Không tìm thấy thông tin này trong các bài viết.",
    "en": "I could not find this in the articles.",
}
DISAGREE = {
    "vi": "Các bài viết cho số liệu khác nhau:",
    "en": "The articles give different figures:",
}
ACCORDING_TO = {"vi": "Theo", "en": "According to"}

_QUANTITY_CUES = ("bao nhieu", "may ", "so luong", "ty le", "how many", "how much", "what percentage", "what number",
                  "total number", "number of")
_TIME_CUES = ("khi nao", "nam nao", "bao gio", "luc nao", "ngay nao", "thang nao", "when", "what year", "which year",
              "what date")
_UNIT_AFTER = re.compile(r"(?:bao nhieu|\bmay|how many|how much)\s+([^\s?,.]+(?:\s+[^\s?,.]+)?)")
_VERB_BEFORE = re.compile(r"(\w+) (?:bao nhieu|may)\b")
_APPROXIMATORS = frozenset("gan hon khoang tren duoi chung xap xi toi da".split())
_PERCENT_UNITS = {("phan", "tram"), ("phan",), ("ty", "le")}
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")
_NEAREST_SOURCES = 3
_AGREEMENT_RATIO = 0.8  # other articles whose best sentence scores this close to the best are compared
_MAX_DISAGREEING = 3
_NEIGHBOUR_RATIO = 0.85
_LENGTH_DISCOUNT = 0.005


@dataclass(frozen=True)
class ScoredSentence:
    """A candidate sentence: its span in the article, its score, and the values (numbers) it states."""

    passage_rank: int
    passage: Passage
    start: int  # offsets in the cleaned article
    end: int
    text: str
    score: float
    values: frozenset[str]
    pair_share: float  # share of the question's word pairs found in the sentence or its context
    answers_type: bool  # states a value of the kind asked (a count of the asked unit, a date)
    ordinal: int  # position of the sentence in its passage


@dataclass(frozen=True)
class _Question:
    kind: QueryKind
    terms: list[str]  # content syllables, folded unless the question is accented Vietnamese
    asks_quantity: bool
    asks_time: bool
    unit: tuple[str, ...]  # folded syllables of what is counted, if the question says
    verb: str | None  # folded word before "bao nhiêu" ("co" in "có bao nhiêu"), if any
    own_numbers: frozenset[str]  # numbers already in the question (a year asked about is no answer)


class ExtractiveAnswerer:
    """Implements `retrieval.types.Answerer` without a language model."""

    def __init__(self, retriever: Retriever, *, top_k: int = 5, history_turns: int = 4) -> None:
        self.retriever = retriever
        self.top_k = top_k
        self.history_turns = history_turns

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        """Answer from the best sentence(s) of the retrieved passages, or say it is not in the articles."""
        standalone = rewrite_question(question, history, history_turns=self.history_turns)
        passages = self.retriever.retrieve(standalone, self.top_k)
        parsed = _parse_question(standalone)
        language = "en" if parsed.kind == "en" else "vi"
        if not passages or not is_supported(standalone, passages):
            return not_found(passages, language)
        ranked = score_sentences(parsed, passages)
        if not ranked or not _covers_asked_year(parsed, ranked[0]):
            return not_found(passages, language)
        disagreeing = _disagreeing(parsed, ranked)
        if len(disagreeing) > 1:
            chosen = [_with_neighbour(parsed, s, ranked) for s in disagreeing]
            return _cite(chosen, language, lead=DISAGREE[language])
        return _cite([_with_neighbour(parsed, ranked[0], ranked)], language)

    def stream(self, question: str, history: list[Turn] | None = None) -> Iterator[str | Answer]:
        """The whole answer text at once, then the `Answer` (extraction has nothing to stream)."""
        result = self.answer(question, history)
        yield result.text
        yield result


def not_found(passages: Sequence[Passage], language: str) -> Answer:
    """The "not in the articles" reply, listing the nearest passages as sources."""
    sources = [p.to_source(n) for n, p in enumerate(passages[:_NEAREST_SOURCES], 1)]
    return Answer(text=NOT_FOUND[language], found=False, sources=sources)


def score_sentences(question: _Question, passages: Sequence[Passage]) -> list[ScoredSentence]:
    """Every sentence of the passages with its score, best first (ties: earlier passage, earlier sentence)."""
    fold = question.kind != "vi"
    units: list[_Unit] = []
    for rank, passage in enumerate(passages):
        previous: list[str] = []
        for ordinal, (start, end) in enumerate(split_into_sentences(passage.text)):
            tokens = tokenize(passage.text[start:end], fold=fold, number_variants=False)
            units.append(_Unit(rank, passage, ordinal, start, end, tokens, previous))
            previous = tokens
    if not units:
        return []
    document_frequency = Counter(t for unit in units for t in set(unit.tokens))
    idf = {t: math.log(1 + len(units) / (1 + document_frequency[t])) for t in set(question.terms)}
    scored = [_score(question, idf, len(passages), unit) for unit in units]
    return sorted(scored, key=lambda s: (-s.score, s.passage_rank, s.start))


@dataclass(frozen=True)
class _Unit:
    rank: int
    passage: Passage
    ordinal: int
    start: int  # offsets in the passage text
    end: int
    tokens: list[str]
    previous: list[str]  # the preceding sentence's tokens: news often names the subject there


def _score(question: _Question, idf: dict[str, float], n_passages: int, unit: _Unit) -> ScoredSentence:
    tokens, previous = unit.tokens, unit.previous
    own, context = set(tokens), set(tokens) | set(previous)
    total = sum(idf.values()) or 1.0
    covered_own = sum(w for t, w in idf.items() if t in own) / total
    covered_context = sum(w for t, w in idf.items() if t in context) / total
    pairs = list(dict.fromkeys(zip(question.terms, question.terms[1:])))
    context_pairs = set(zip(tokens, tokens[1:])) | set(zip(previous, previous[1:]))
    pair_share = sum(1 for p in pairs if p in context_pairs) / len(pairs) if pairs else 0.0
    score = 0.8 * covered_context + 0.2 * covered_own + 0.25 * pair_share
    values = _values(question, tokens)
    answers_type = False
    if question.asks_quantity and values:
        score += 0.15
        counts_unit = bool(question.unit) and _counts_unit(tokens, question.unit)
        answers_type = counts_unit or not question.unit
        if counts_unit:
            score += 0.35
        if question.verb and _number_after(tokens, question.verb):
            score += 0.25  # "có bao nhiêu đảng viên" is answered by "có 3.463 đảng viên"
    if question.asks_time and any(_YEAR.match(v) for v in values):
        score += 0.3
        answers_type = True
    score += _year_agreement(question, unit)
    score += 0.1 * (1 - unit.rank / max(n_passages, 1))  # retrieval's own order breaks near-ties
    # A long sentence covers many words by its length alone; past 30 tokens it is discounted.
    score /= 1 + _LENGTH_DISCOUNT * max(0, len(tokens) - 30)
    passage = unit.passage
    return ScoredSentence(unit.rank, passage, passage.start + unit.start, passage.start + unit.end,
                          passage.text[unit.start : unit.end], score, values, pair_share, answers_type, unit.ordinal)


def _year_agreement(question: _Question, unit: _Unit) -> float:
    """A bonus when the sentence, its context or its article's date has the year asked about; a penalty
    when the sentence speaks of other years only (a 2018 figure does not answer a 2023 question)."""
    asked = {n for n in question.own_numbers if _YEAR.match(n)}
    if not asked:
        return 0.0
    years = {t for t in unit.tokens if _YEAR.match(t)}
    around = years | {t for t in unit.previous if _YEAR.match(t)}
    if unit.passage.date:
        around.add(unit.passage.date[:4])
    if asked & around:
        return 0.15
    return -0.2 if years else 0.0


def _covers_asked_year(question: _Question, sentence: ScoredSentence) -> bool:
    """A year the question asks about must appear in the answer's passage or be its article's year:
    a 2018 figure is no answer to a question about 2014."""
    asked = {n for n in question.own_numbers if _YEAR.match(n)}
    if not asked:
        return True
    passage = sentence.passage
    years = {t for t in tokenize(passage.text, number_variants=False) if _YEAR.match(t)}
    if passage.date:
        years.add(passage.date[:4])
    return bool(asked & years)


def _values(question: _Question, tokens: list[str]) -> frozenset[str]:
    """The numbers a sentence states that the question did not already contain (digits only)."""
    numbers = {"".join(c for c in t if c.isdigit()) for t in tokens if is_number(t)}
    return frozenset(n for n in numbers if n and n not in question.own_numbers)


def _counts_unit(tokens: list[str], unit: tuple[str, ...]) -> bool:
    """True when a number in the sentence is near what is counted: just after it (`3.463 đảng viên`)
    or shortly before it (`tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127`)."""
    folded = [fold_diacritics(t) for t in tokens]
    if unit in _PERCENT_UNITS:
        return any(is_number(t) and t.endswith("%") for t in folded)
    width = len(unit)
    for i, token in enumerate(folded):
        if not is_number(token):
            continue
        for j in range(max(0, i - 8), min(len(folded), i + 3)):
            if tuple(folded[j : j + width]) == unit:
                return True
    return False


def _number_after(tokens: list[str], verb: str) -> bool:
    """True when a number follows the question's verb (`có 3.463`), allowing `gần`/`hơn`/`khoảng` between."""
    folded = [fold_diacritics(t) for t in tokens]
    for i, token in enumerate(folded):
        if is_number(token):
            j = i - 1
            while j >= 0 and folded[j] in _APPROXIMATORS:
                j -= 1
            if j >= 0 and folded[j] == verb:
                return True
    return False


def _parse_question(question: str) -> _Question:
    kind = detect_query_kind(question)
    folded = " ".join(tokenize(question, fold=True, number_variants=False))
    # Punctuation kept, so that "..., bao nhiêu người" does not make the word before the comma a verb.
    folded_raw = fold_diacritics(question.lower())
    padded = f" {folded} "
    if kind == "en":
        terms = english_to_vietnamese_terms(question) + required_terms(question)
    else:
        terms = question_terms(question, fold=kind != "vi")
    unit: tuple[str, ...] = ()
    verb_match = _VERB_BEFORE.search(folded_raw)
    match = _UNIT_AFTER.search(folded)
    if match:
        words = match.group(1).split()
        if kind == "en":
            unit = tuple(english_to_vietnamese_terms(" ".join(words))[:2])
        else:
            # "bao nhiêu người bị khai trừ": the unit is "người", not "người bị".
            unit = tuple(takewhile(lambda w: w not in STOPWORDS_VI_FOLDED and w != "bi", words[:2]))
    own_numbers = frozenset("".join(c for c in t if c.isdigit()) for t in tokenize(question) if is_number(t))
    return _Question(
        kind=kind,
        terms=terms,
        asks_quantity=any(cue in padded for cue in _QUANTITY_CUES),
        asks_time=any(f" {cue} " in padded for cue in _TIME_CUES),
        unit=unit,
        # "là" (is) before "bao nhiêu" names no action: "X là bao nhiêu" says nothing about "Y là 301".
        verb=verb_match.group(1) if verb_match and kind != "en" and verb_match.group(1) != "la" else None,
        own_numbers=own_numbers,
    )


def _disagreeing(question: _Question, ranked: list[ScoredSentence]) -> list[ScoredSentence]:
    """Best sentences of different articles that state different figures for the same question.

    Only sentences that answer the same thing are compared: close to the best score, stating a value
    of the asked type (counting the asked unit when the question names one), and matching the
    question's wording about as well as the best does.
    """
    if not (question.asks_quantity or question.asks_time) or not ranked[0].answers_type:
        return []
    best = ranked[0]
    chosen: dict[str, ScoredSentence] = {}
    for sentence in ranked:
        if sentence.score < _AGREEMENT_RATIO * best.score:
            break
        comparable = sentence.answers_type and sentence.pair_share >= 0.5 * best.pair_share
        if comparable and sentence.passage.article_id not in chosen:
            chosen[sentence.passage.article_id] = sentence
    picked = list(chosen.values())[:_MAX_DISAGREEING]
    if len({s.values for s in picked}) < 2:
        return []
    return picked


def _with_neighbour(question: _Question, sentence: ScoredSentence, ranked: list[ScoredSentence]) -> ScoredSentence:
    """Join the next or previous sentence when it also counts the asked unit and scores nearly as well:
    the two together answer (`... kết nạp 527/600 đảng viên. ... toàn Đảng bộ khối có 3.463 đảng viên ...`)."""
    if not (question.unit and sentence.answers_type):
        return sentence
    neighbours = [
        s for s in ranked
        if s.passage_rank == sentence.passage_rank and abs(s.ordinal - sentence.ordinal) == 1
        and s.answers_type and s.score >= _NEIGHBOUR_RATIO * sentence.score
    ]
    if not neighbours:
        return sentence
    other = neighbours[0]
    passage = sentence.passage
    start, end = min(sentence.start, other.start), max(sentence.end, other.end)
    text = passage.text[start - passage.start : end - passage.start]
    return replace(sentence, start=start, end=end, text=text, values=sentence.values | other.values)


def _cite(sentences: list[ScoredSentence], language: str, *, lead: str | None = None) -> Answer:
    """The answer text with `[n]` after each quoted sentence, and the matching numbered sources."""
    sources: list[Source] = []
    parts: list[str] = [lead] if lead else []
    for n, sentence in enumerate(sentences, 1):
        sources.append(sentence.passage.to_source(n, text=sentence.text, start=sentence.start, end=sentence.end))
        sources[-1] = _with_score(sources[-1], sentence.score)
        quoted = sentence.text.rstrip(" .;:") if lead else sentence.text
        ending = "." if lead else ""
        parts.append(f"{_attribution(sentence.passage, language)} {quoted} [{n}]{ending}")
    return Answer(text=" ".join(parts), found=True, sources=sources)


def _with_score(source: Source, score: float) -> Source:
    return Source(**{**source.to_dict(), "score": round(score, 4)})


def _attribution(passage: Passage, language: str) -> str:
    """`Theo «title» (08/10/2018):` / `According to «title» (08/10/2018):`."""
    date = _display_date(passage.date)
    when = f" ({date})" if date else ""
    return f"{ACCORDING_TO[language]} «{passage.title}»{when}:"


def _display_date(iso: str | None) -> str | None:
    """`2018-10-08` -> `08/10/2018`; other forms are shown as they are."""
    if not iso:
        return None
    match = re.match(r"^(\d{4})-(\d{2})-(\d{2})", iso)
    return f"{match.group(3)}/{match.group(2)}/{match.group(1)}" if match else iso
