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
from dataclasses import dataclass

from index.chunking import split_into_sentences
from retrieval.conversation import rewrite_question
from retrieval.grounding import is_supported, question_terms, required_terms
from retrieval.text import QueryKind, detect_query_kind, english_to_vietnamese_terms, fold_diacritics, is_number, tokenize
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
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")
_NEAREST_SOURCES = 3
_AGREEMENT_RATIO = 0.8  # other articles whose best sentence scores this close to the best are compared
_MAX_DISAGREEING = 3


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


@dataclass(frozen=True)
class _Question:
    kind: QueryKind
    terms: list[str]  # content syllables, folded unless the question is accented Vietnamese
    asks_quantity: bool
    asks_time: bool
    unit: tuple[str, ...]  # folded syllables of what is counted, if the question says
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
        if not ranked:
            return not_found(passages, language)
        disagreeing = _disagreeing(parsed, ranked)
        if len(disagreeing) > 1:
            return _cite(disagreeing, language, lead=DISAGREE[language])
        return _cite([ranked[0]], language)

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
    units: list[tuple[int, Passage, int, int, list[str], list[str]]] = []
    for rank, passage in enumerate(passages):
        previous: list[str] = []
        for start, end in split_into_sentences(passage.text):
            tokens = tokenize(passage.text[start:end], fold=fold, number_variants=False)
            units.append((rank, passage, start, end, tokens, previous))
            previous = tokens
    if not units:
        return []
    document_frequency = Counter(t for unit in units for t in set(unit[4]))
    idf = {t: math.log(1 + len(units) / (1 + document_frequency[t])) for t in set(question.terms)}
    scored = [_score(question, idf, len(passages), *unit) for unit in units]
    return sorted(scored, key=lambda s: (-s.score, s.passage_rank, s.start))


def _score(question: _Question, idf: dict[str, float], n_passages: int, rank: int, passage: Passage,
           start: int, end: int, tokens: list[str], previous: list[str]) -> ScoredSentence:
    own = set(tokens)
    context = own | set(previous)
    total = sum(idf.values()) or 1.0
    covered_own = sum(w for t, w in idf.items() if t in own) / total
    covered_context = sum(w for t, w in idf.items() if t in context) / total
    pairs = list(dict.fromkeys(zip(question.terms, question.terms[1:])))
    context_pairs = set(zip(tokens, tokens[1:])) | set(zip(previous, previous[1:]))
    pair_share = sum(1 for p in pairs if p in context_pairs) / len(pairs) if pairs else 0.0
    score = 0.8 * covered_context + 0.2 * covered_own + 0.25 * pair_share
    values = _values(question, tokens)
    if question.asks_quantity and values:
        score += 0.15
        if question.unit and _counts_unit(tokens, question.unit):
            score += 0.35
    if question.asks_time and any(_YEAR.match(v) or "/" in v for v in values):
        score += 0.3
    score += 0.1 * (1 - rank / max(n_passages, 1))  # retrieval's own order breaks near-ties
    absolute_start, absolute_end = passage.start + start, passage.start + end
    return ScoredSentence(rank, passage, absolute_start, absolute_end, passage.text[start:end], score, values)


def _values(question: _Question, tokens: list[str]) -> frozenset[str]:
    """The numbers a sentence states that the question did not already contain (digits only)."""
    numbers = {"".join(c for c in t if c.isdigit()) for t in tokens if is_number(t)}
    return frozenset(n for n in numbers if n and n not in question.own_numbers)


def _counts_unit(tokens: list[str], unit: tuple[str, ...]) -> bool:
    """True when some number in the sentence is followed, within two tokens, by what is counted."""
    folded = [fold_diacritics(t) for t in tokens]
    for i, token in enumerate(folded):
        if is_number(token):
            window = folded[i + 1 : i + 3 + len(unit)]
            if any(tuple(window[j : j + len(unit)]) == unit for j in range(0, 3)):
                return True
    return False


def _parse_question(question: str) -> _Question:
    kind = detect_query_kind(question)
    folded = " ".join(tokenize(question, fold=True, number_variants=False))
    padded = f" {folded} "
    if kind == "en":
        terms = english_to_vietnamese_terms(question) + required_terms(question)
    else:
        terms = question_terms(question, fold=kind != "vi")
    unit: tuple[str, ...] = ()
    match = _UNIT_AFTER.search(folded)
    if match:
        words = match.group(1).split()
        unit = tuple(english_to_vietnamese_terms(" ".join(words))[:2]) if kind == "en" else tuple(words[:2])
    own_numbers = frozenset("".join(c for c in t if c.isdigit()) for t in tokenize(question) if is_number(t))
    return _Question(
        kind=kind,
        terms=terms,
        asks_quantity=any(cue in padded for cue in _QUANTITY_CUES),
        asks_time=any(f" {cue} " in padded for cue in _TIME_CUES),
        unit=unit,
        own_numbers=own_numbers,
    )


def _disagreeing(question: _Question, ranked: list[ScoredSentence]) -> list[ScoredSentence]:
    """Best sentences of different articles that state different figures for the same question."""
    if not (question.asks_quantity or question.asks_time) or not ranked[0].values:
        return []
    best = ranked[0]
    chosen: dict[str, ScoredSentence] = {}
    for sentence in ranked:
        if sentence.score < _AGREEMENT_RATIO * best.score:
            break
        if sentence.values and sentence.passage.article_id not in chosen:
            chosen[sentence.passage.article_id] = sentence
    picked = list(chosen.values())[:_MAX_DISAGREEING]
    if len({s.values for s in picked}) < 2:
        return []
    return picked


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
