"""Reading a question (what it asks for) and scoring the sentences of retrieved passages as its answer.

A sentence scores by how much of the question it covers (syllables weighted by their rarity among the
candidate sentences, plus adjacent pairs: Vietnamese words are mostly two syllables), with the previous
sentence as context (news often names the subject in one sentence and gives the figure in the next).
Bonuses go to evidence of what the question asks for (found by `retrieval.answering.answer_types`): a count for
`bao nhiêu`/`how many`, more when it stands just before the thing counted (`gần 3.500 đảng viên`) or
beside an asked word (`khai trừ 2`), never a label (`Chỉ thị 17`) or a date; a year or a date for
`khi nào`/`năm nào`; a person's name for `ai`/`who`; a place for `ở đâu`/`where`; `Chỉ thị 05` for
`chỉ thị nào`; more when the evidence stands near the question's rarer words. A sentence about another
year than the asked one loses. A sentence that shares with the question mostly what the sentence
before it says is marked as needing it. Everything here is deterministic and pure.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import takewhile

from index.chunking import split_into_sentences
from index.text import (
    STOPWORDS_EN,
    STOPWORDS_VI,
    STOPWORDS_VI_FOLDED,
    QueryKind,
    detect_query_kind,
    fold_diacritics,
    is_number,
    normalize_tone_marks,
    tokenize,
)
from retrieval.answering.answer_types import (
    Words,
    count_positions,
    counted_unit,
    date_positions,
    digits,
    labelled_positions,
    new_name_positions,
    person_positions,
    place_positions,
    time_positions,
)
from retrieval.answering.grounding import question_terms_for
from retrieval.types import Passage

_QUANTITY_CUES = ("bao nhieu", "how many", "how much", "what percentage", "what number")
# "số lượng", "tỷ lệ", "number of" ask for a figure only when nothing else is asked: "số lượng học sinh
# thuộc sắc tộc nào" asks which ethnic group.
_QUANTITY_NOUNS = ("so luong", "ty le", "total number", "number of")
# `\b` first: a match starts at a word anyway, and without it every position inside one long word is tried,
# rescanning the rest of the word each time (quadratic: a 30k-character word took 28 s).
_LABEL_ASKED = re.compile(r"\b(\w+(?: \w+)?) (?:so|thu) (?:may|bao nhieu)\b")
_OTHER_QUESTION_WORDS = re.compile(r"\b(?:nao|gi|ai|which|who|where|when)\b")
# "mấy" (how many) folds to "may", which is also "máy" (machine): typed without accents it only counts
# after the words that introduce a count.
_MAY = re.compile(r"\bmấy\b|\b(?:co|la|duoc|so|trong) may\b")
_TIME_CUES = ("khi nao", "nam nao", "bao gio", "luc nao", "ngay nao", "thang nao", "hom nao", "thoi gian nao",
              "when", "what year", "which year", "what date")
_UNIT_AFTER = re.compile(r"(?:bao nhiêu|bao nhieu|mấy|how many|how much)\s+([^\s?,.]+(?:\s+[^\s?,.]+){0,2})")
_VERB_BEFORE = re.compile(r"\b(\w+) (?:bao nhieu|may)\b")
_APPROXIMATORS = frozenset("gan hon khoang tren duoi chung xap xi toi da".split())
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")  # a year a question asks about (not any 4-digit number)
_LENGTH_DISCOUNT = 0.005
_CONTEXT_WEIGHT = 0.45  # how much the previous sentence's words count towards covering the question
_PAIR_WEIGHT = 0.5  # word pairs: Vietnamese words are mostly two syllables, so pairs are the real match
_TIME_WORDS = frozenset("nam thang ngay quy tuan gio".split())
# "sự kiện nào", "loại nào": the noun is the word after these.
_QUESTION_FILLERS = frozenset("sự việc cái con loại".split())
_QUESTION_FILLERS_FOLDED = frozenset("su viec cai con loai".split())
_STANDALONE = 0.5  # a sentence covering less than this share of what it and its predecessor cover needs it
_NEAR = 6  # words between a typed value and a question word for it to count as "near"
# The words beside "ai" (who) say what the person did ("Ai *điều hành thảo luận* tại hội nghị ...?"); the
# rest place it (which meeting, which year), and the article's title or other sentences often say those,
# so a sentence covering only them (the opening one) beat the caption naming who did it. Their weight
# among the question's words is multiplied by 1 + this. Measured on the tuning set (409 answerable
# questions of `unanswerable/`, sentence choice without the gate, containment): 0 -> .570, 1 -> .570,
# 2 -> .572; beside every question word (gì, nào, bao nhiêu, mấy, sao) 1 -> .560, so only "ai".
PREDICATE_WEIGHT = 1.0
_PREDICATE_SPAN = 4  # content words taken on each side of the question word
_WH_FOLDED = frozenset({"ai"})


@dataclass(frozen=True)
class Question:
    """What a question asks for, as far as picking the answering sentence needs."""

    text: str
    kind: QueryKind
    terms: list[str]  # content syllables, folded unless the question is accented Vietnamese
    asks_quantity: bool
    asks_time: bool
    asks_year: bool  # "năm nào", "what year": a year is the answer, not a day
    unit: tuple[str, ...]  # folded syllables of what is counted, if the question says
    verb: str | None  # folded word before "bao nhiêu" ("co" in "có bao nhiêu"), if any
    which: tuple[str, ...]  # folded syllables of the noun in "chỉ thị nào" / "which directive", if any
    asks_who: bool  # "ai", "người nào", "who": a person's name is the answer
    asks_where: bool  # "ở đâu", "nơi nào", "where": a place is the answer
    words: frozenset[str]  # every folded syllable of the question: a name it already holds is no answer
    own_numbers: frozenset[str]  # numbers already in the question (a year asked about is no answer)
    predicate: tuple[str, ...] = ()  # the content words beside the question word: what is asked of the topic
    asks_day: bool = False  # "ngày nào", "what date": a day is the answer, not a year


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
    needs_context: bool = False  # most of what it shares with the question is in the sentence before


def score_sentences(question: Question, passages: Sequence[Passage]) -> list[ScoredSentence]:
    """Every sentence of the passages with its score, best first (ties: earlier passage, earlier sentence)."""
    fold = question.kind != "vi"
    units: list[_Unit] = []
    for rank, passage in enumerate(passages):
        previous: list[str] = []
        for ordinal, (start, end) in enumerate(split_into_sentences(passage.text)):
            words = Words.of(passage.text[start:end])
            tokens = words.folded if fold else [normalize_tone_marks(w) for w in words.lower]
            units.append(_Unit(rank, passage, ordinal, start, end, tokens, previous, words))
            previous = tokens
    if not units:
        return []
    document_frequency = Counter(t for unit in units for t in set(unit.tokens))
    idf = {t: math.log(1 + len(units) / (1 + document_frequency[t])) for t in set(question.terms)}
    for t in question.predicate:
        if t in idf:
            idf[t] *= 1 + PREDICATE_WEIGHT
    qualifiers = _qualifiers(question, idf)
    scored = [_score(question, idf, qualifiers, len(passages), unit) for unit in units]
    return sorted(scored, key=lambda s: (-s.score, s.passage_rank, s.start))


@dataclass(frozen=True)
class _Unit:
    rank: int
    passage: Passage
    ordinal: int
    start: int  # offsets in the passage text
    end: int
    tokens: list[str]  # matched against the question's terms (folded unless it is accented Vietnamese)
    previous: list[str]  # the preceding sentence's tokens: news often names the subject there
    words: Words


def _score(question: Question, idf: dict[str, float], qualifiers: set[str], n_passages: int,
           unit: _Unit) -> ScoredSentence:
    tokens, previous = unit.tokens, unit.previous
    own, context = set(tokens), set(tokens) | set(previous)
    total = sum(idf.values()) or 1.0
    covered_own = sum(w for t, w in idf.items() if t in own) / total
    covered_context = sum(w for t, w in idf.items() if t in context) / total
    pairs = list(dict.fromkeys(zip(question.terms, question.terms[1:])))
    context_pairs = set(zip(tokens, tokens[1:])) | set(zip(previous, previous[1:]))
    pair_share = sum(1 for p in pairs if p in context_pairs) / len(pairs) if pairs else 0.0
    score = _CONTEXT_WEIGHT * covered_context + (1 - _CONTEXT_WEIGHT) * covered_own + _PAIR_WEIGHT * pair_share
    text = unit.passage.text[unit.start : unit.end]
    anchors = [i for i, t in enumerate(tokens) if t in qualifiers]
    evidence = _evidence(question, unit.words, text, anchors)
    score += evidence.bonus + _year_agreement(question, unit)
    score += 0.1 * (1 - unit.rank / max(n_passages, 1))  # retrieval's own order breaks near-ties
    # A long sentence covers many words by its length alone; past 30 tokens it is discounted.
    score /= 1 + _LENGTH_DISCOUNT * max(0, len(tokens) - 30)
    passage = unit.passage
    return ScoredSentence(unit.rank, passage, passage.start + unit.start, passage.start + unit.end, text, score,
                          evidence.values, pair_share, evidence.answers_type, unit.ordinal,
                          needs_context=covered_own < _STANDALONE * covered_context)


@dataclass(frozen=True)
class _Evidence:
    bonus: float
    values: frozenset[str]  # the asked values the sentence states (counts, times), digits only
    answers_type: bool


def _evidence(question: Question, words: Words, text: str, anchors: list[int]) -> _Evidence:
    """What the sentence offers of the kind of answer asked for, and how plainly.

    A count of the asked unit (`gần 3.500 đảng viên`) or beside an asked word (`khai trừ 2`) for
    `bao nhiêu`; a year or a date for `khi nào`; a person's name for `ai`; a place for `ở đâu`; a label
    after the noun of `chỉ thị nào`. Evidence standing near the question's rarer words counts more:
    a sentence often holds several numbers and names, and the asked one is the one beside its subject.
    """
    bonus = 0.0
    answers_type = False
    values = frozenset(digits(w) or w for w in words.lower if is_number(w) and digits(w) not in question.own_numbers)
    if question.asks_quantity:
        counts = count_positions(words, text, question.own_numbers)
        values = frozenset(digits(words.lower[i]) or words.lower[i] for i in counts)
        if counts:
            counted = counted_unit(words, counts, question.unit) if question.unit else 0
            beside = _near(counts, anchors, 2)
            answers_type = counted > 0 or beside or not question.unit
            bonus += 0.15 + (0.35 if counted == 2 else 0.2 if counted == 1 else 0.0) + 0.2 * beside
            if question.verb and _number_after(words.folded, counts, question.verb):
                bonus += 0.25  # "có bao nhiêu đảng viên" is answered by "có 3.463 đảng viên"
    elif question.asks_time:
        times = time_positions(words, text, question.own_numbers, years_only=question.asks_year)
        if times:
            values = frozenset(digits(words.lower[i]) for i in times)
            answers_type = True
            bonus += 0.3 + 0.1 * _near(times, anchors, _NEAR)
        elif values and not question.asks_year:
            answers_type = True  # "trong 100 năm qua", "thế kỷ 19": a number may still tell when
            bonus += 0.1
    if question.asks_who:
        persons = person_positions(words, question.words)
        names = persons or new_name_positions(words, question.words)
        if names:
            bonus += (0.35 if persons else 0.1) + 0.1 * _near(names, anchors, _NEAR)
    if question.asks_where:
        places = place_positions(words, question.words)
        names = places or new_name_positions(words, question.words)
        if names:
            bonus += (0.25 if places else 0.1) + 0.1 * _near(names, anchors, _NEAR)
    if question.which and labelled_positions(words, question.which, question.words):
        bonus += 0.3  # "chỉ thị nào" is answered by "Chỉ thị 05"
    return _Evidence(bonus, values, answers_type)


def stated_values(question: Question, text: str) -> frozenset[str]:
    """The values of the asked kind that `text` states, other than the question's own numbers: its
    counts for `bao nhiêu`, its times for `khi nào` (any number when none reads as a time and a year is
    not asked), digits only (`74.127` -> `74127`); empty for other questions."""
    words = Words.of(text)
    return frozenset(_value(words, i) for i in _value_positions(question, words, text))


def answer_values(question: Question, text: str) -> frozenset[str]:
    """Of the asked values a quoted sentence states, the ones it gives as the answer.

    A sentence often states several counts (`đã kết nạp mới được 1.513 đồng chí, nâng tổng số đảng
    viên toàn Đảng bộ tỉnh lên 74.127 đồng chí`). For how many, the answer is the count of the asked
    unit stated most plainly (`counted_unit`), then one not followed by another noun (in `Đảng bộ tỉnh
    có 817 tổ chức cơ sở Đảng, trong đó, Đảng bộ cơ sở là 301`, 817 counts organisations), then the
    one following the question's verb (`có 3.463`), then the one whose clause (the words between
    commas, semicolons, brackets) holds most of the question's words. For when, a day for `ngày nào`
    (`Sáng ngày 29/10`, not `năm 2014` later in the sentence), then the clause. Ties are all kept, so
    that the parts of a date (`ngày 29/9/2023`) stay together.
    """
    words = Words.of(text)
    positions = _value_positions(question, words, text)
    if not positions:
        return frozenset()
    fold = question.kind != "vi"
    tokens = words.folded if fold else [normalize_tone_marks(w) for w in words.lower]
    clauses = _clauses(words, text)
    terms = set(question.terms)
    days = date_positions(words, text) | {i for i in positions if i and words.folded[i - 1] == "ngay"}

    def strength(i: int) -> tuple[int, bool, bool, int]:
        start, end = clauses[i]
        coverage = len(terms & set(tokens[start:end]))
        if not question.asks_quantity:
            return int(question.asks_day and i in days), False, False, coverage
        counted = counted_unit(words, [i], question.unit) if question.unit else 0
        other = bool(question.unit) and _counts_another_noun(words, i, question.unit)
        after_verb = bool(question.verb and _number_after(words.folded, [i], question.verb))
        return counted, not other, after_verb, coverage

    strengths = {i: strength(i) for i in positions}
    best = max(strengths.values())
    return frozenset(_value(words, i) for i, s in strengths.items() if s == best)


def _counts_another_noun(words: Words, i: int, unit: tuple[str, ...]) -> bool:
    """True when the count stands just before a noun other than the asked unit (`817 tổ chức` when
    `đảng bộ` is asked), not before a function word (`250 đến 300`) or a break."""
    j = i + 1
    if j >= len(words) or words.break_before[j] or is_number(words.lower[j]):
        return False
    if tuple(words.folded[j : j + len(unit)]) == unit:
        return False
    word = normalize_tone_marks(words.lower[j])
    return word not in STOPWORDS_VI and words.folded[j] not in STOPWORDS_VI_FOLDED and words.folded[j] not in _APPROXIMATORS


_CLAUSE_BREAK = re.compile(r"[.,;:!?…](?=\s|$)|[()\[\]{}\"“”‘’\n\t|–—]|\s-\s")


def _clauses(words: Words, text: str) -> list[tuple[int, int]]:
    """For each word, the [start, end) word range of its clause: words not parted by clause punctuation
    (a comma or a period before a space, a bracket, a dash; not the `/` or `-` inside a date)."""
    breaks = [i > 0 and bool(_CLAUSE_BREAK.search(text[words.spans[i - 1][1] : start]))
              for i, (start, _) in enumerate(words.spans)]
    starts = [i for i, broken in enumerate(breaks) if i == 0 or broken] + [len(words)]
    return [(a, b) for a, b in zip(starts, starts[1:]) for _ in range(a, b)]


def _value_positions(question: Question, words: Words, text: str) -> list[int]:
    """Positions of the values of the asked kind (as `_evidence` finds them), the question's own left
    out (its numbers, and numbers it spells: `ba cơ sở`)."""
    if question.asks_quantity:
        positions = count_positions(words, text, question.own_numbers)
    elif not question.asks_time:
        return []
    else:
        positions = time_positions(words, text, question.own_numbers, years_only=question.asks_year)
        if not positions and not question.asks_year:
            positions = [i for i, w in enumerate(words.lower) if is_number(w) and digits(w) not in question.own_numbers]
    return [i for i in positions if is_number(words.lower[i]) or words.folded[i] not in question.words]


# Words that change what a figure claims (`hơn 350 calo` is not `350 calo`): kept with the value.
VALUE_QUALIFIERS = frozenset("gan hon khoang tren duoi chung".split())


def _value(words: Words, i: int) -> str:
    """`74.127` -> `74127`, `hơn 1.500` -> `hon 1500`, `tám` -> `tám`."""
    value = digits(words.lower[i]) or words.lower[i]
    qualified = i > 0 and not words.break_before[i] and words.folded[i - 1] in VALUE_QUALIFIERS
    return f"{words.folded[i - 1]} {value}" if qualified else value


def _near(positions: list[int], anchors: list[int], window: int) -> bool:
    """True when one of the positions lies within `window` words of an anchor (a question word)."""
    return any(abs(p - a) <= window for p in positions for a in anchors)


def _asked_years(question: Question) -> tuple[int, int] | None:
    """The year, or the span of years ("nhiệm kỳ 2015-2020"), the question asks about."""
    years = [int(n) for n in question.own_numbers if _YEAR.match(n)]
    return (min(years), max(years)) if years else None


def _year_agreement(question: Question, unit: _Unit) -> float:
    """A bonus when the sentence, its context or its article's date has the year asked about; a penalty
    when they speak of other years only (a 2018 figure does not answer a 2023 question)."""
    asked = _asked_years(question)
    if asked is None:
        return 0.0
    years = {int(t) for t in unit.tokens if _YEAR.match(t)}
    around = years | {int(t) for t in unit.previous if _YEAR.match(t)}
    if unit.passage.date and unit.passage.date[:4].isdigit():
        around.add(int(unit.passage.date[:4]))
    if any(asked[0] <= y <= asked[1] for y in around):
        return 0.15
    return -0.2 if around else 0.0


def with_similarity(ranked: Sequence[ScoredSentence], similarities: Sequence[float],
                    weight: float) -> list[ScoredSentence]:
    """The first `len(similarities)` sentences rescored with `weight` times their dense similarity to the
    question (the rest keep their score), best first: an English question shares no words with a
    Vietnamese sentence, but the multilingual embedding tells which sentence it is about."""
    rescored = [replace(s, score=s.score + weight * similarity) for s, similarity in zip(ranked, similarities)]
    rescored += list(ranked[len(similarities):])
    return sorted(rescored, key=lambda s: (-s.score, s.passage_rank, s.start))


def covers_asked_year(question: Question, sentence: ScoredSentence) -> bool:
    """The year the question asks about must appear in the answer's passage or be its article's year
    (within the span for "2015-2020"): a 2018 figure is no answer to a question about 2014."""
    asked = _asked_years(question)
    if asked is None:
        return True
    passage = sentence.passage
    years = {int(t) for t in tokenize(passage.text, number_variants=False) if _YEAR.match(t)}
    if passage.date and passage.date[:4].isdigit():
        years.add(int(passage.date[:4]))
    return any(asked[0] <= y <= asked[1] for y in years)


def _qualifiers(question: Question, idf: dict[str, float]) -> set[str]:
    """The question's rarer words (by rarity among the candidate sentences), other than the unit,
    numbers and time words: what distinguishes the asked figure from the others nearby."""
    unit = set(question.unit)
    mean_idf = sum(idf.values()) / len(idf) if idf else 0.0
    return {
        t for t in question.terms
        if idf.get(t, 0.0) >= mean_idf and not is_number(t)
        and fold_diacritics(t) not in _TIME_WORDS and fold_diacritics(t) not in unit
    }


def _number_after(folded: list[str], counts: list[int], verb: str) -> bool:
    """True when a count follows the question's verb (`có 3.463`), allowing `gần`/`hơn`/`khoảng` between."""
    for i in counts:
        j = i - 1
        while j >= 0 and folded[j] in _APPROXIMATORS:
            j -= 1
        if j >= 0 and folded[j] == verb:
            return True
    return False


def parse_question(question: str) -> Question:
    """Read what the question asks for: its content words, a quantity (and of what), a time, a name."""
    kind = detect_query_kind(question)
    folded = " ".join(tokenize(question, fold=True, number_variants=False))
    # Punctuation kept, so that "..., bao nhiêu người" does not make the word before the comma a verb.
    folded_raw = fold_diacritics(question.lower())
    padded = f" {folded} "
    terms = question_terms_for(question, kind)
    unit: tuple[str, ...] = ()
    verb_match = _VERB_BEFORE.search(folded_raw)
    lowered = " ".join(tokenize(question, number_variants=False))  # accents kept, punctuation gone
    match = _UNIT_AFTER.search(lowered)
    if re.search(r"(?:bao nhi[eê]u|how many|how much)\s*(?:%|phần trăm|phan tram|percent)", question.lower()):
        unit = ("phan", "tram")
        match = None
    if match:
        words = match.group(1).split()
        if kind != "en":  # an English unit names no Vietnamese word: the sentences' similarity decides
            # "bao nhiêu người bị khai trừ": the unit is "người", not "người bị".
            kept = takewhile(lambda w: w not in STOPWORDS_VI and w not in STOPWORDS_VI_FOLDED, words[:2])
            unit = tuple(fold_diacritics(w) for w in kept)
    which = _which_noun(kind, question)
    # "nghị quyết số mấy", "lần thứ bao nhiêu": a label is asked for, not a count.
    label = _LABEL_ASKED.search(folded_raw)
    if label:
        which = tuple(w for w in label.group(1).split() if w not in STOPWORDS_VI_FOLDED)[-2:]
    own_numbers = frozenset("".join(c for c in t if c.isdigit()) for t in tokenize(question) if is_number(t))
    return Question(
        text=question,
        kind=kind,
        terms=terms,
        asks_quantity=not label and (
            any(cue in padded for cue in _QUANTITY_CUES) or bool(_MAY.search(question.lower()))
            or bool(_MAY.search(folded))
            or (any(cue in padded for cue in _QUANTITY_NOUNS) and not _OTHER_QUESTION_WORDS.search(folded))
        ),
        asks_time=any(f" {cue} " in padded for cue in _TIME_CUES),
        asks_year=any(f" {cue} " in padded for cue in ("nam nao", "what year", "which year")),
        unit=unit,
        which=which,
        asks_who=kind != "en" and bool(re.search(r"\bai\b|nguoi nao", folded_raw)) or "who" in folded_raw.split(),
        asks_where=_asks_where(kind, question),
        words=frozenset(tokenize(question, fold=True, number_variants=False)),
        # "là" (is) before "bao nhiêu" names no action: "X là bao nhiêu" says nothing about "Y là 301".
        verb=verb_match.group(1) if verb_match and kind != "en" and verb_match.group(1) != "la" else None,
        own_numbers=own_numbers,
        predicate=_predicate(question, kind),
        asks_day=any(f" {cue} " in padded for cue in ("ngay nao", "hom nao", "what date", "which day")),
    )


def _predicate(question: str, kind: QueryKind) -> tuple[str, ...]:
    """The content words beside "ai", up to a function word (`tại`, `của`, `là`) on each side:
    `Ai điều hành thảo luận tại hội nghị ...?` -> (điều, hành, thảo, luận)."""
    if kind == "en":
        return ()
    fold = kind != "vi"
    tokens = tokenize(question, fold=fold, number_variants=False)
    folded = [fold_diacritics(t) for t in tokens]
    # Accented questions stop at accented function words (`thì`, not `thị` of `chỉ thị`).
    stops = STOPWORDS_VI_FOLDED if fold else STOPWORDS_VI
    asked: list[str] = []
    for i, word in enumerate(folded):
        if word not in _WH_FOLDED:
            continue
        for step in (1, -1):
            j, taken = i + step, 0
            while (0 <= j < len(tokens) and taken < _PREDICATE_SPAN and tokens[j] not in stops
                   and folded[j] not in _WH_FOLDED and not is_number(tokens[j])):
                asked.append(tokens[j])
                taken += 1
                j += step
    return tuple(dict.fromkeys(asked))


def _asks_where(kind: QueryKind, question: str) -> bool:
    """`ở đâu`, `tại đâu`, `nơi nào`, `where`. Without accents `đâu` (where) and `đầu` (head, first) are
    both `dau`, so only the phrases that introduce a place count there."""
    lowered = question.lower()
    if kind == "en":
        return bool(re.search(r"\bwhere\b", lowered))
    if kind == "vi":
        return bool(re.search(r"\bđâu\b|\b(?:nơi|chỗ|địa điểm|địa phương|tỉnh|nước|thành phố) nào\b", lowered))
    return bool(re.search(r"\b(?:o|tai|den|tu|nam o) dau\b|\b(?:noi|cho|dia diem|dia phuong) nao\b", lowered))


def _which_noun(kind: QueryKind, question: str) -> tuple[str, ...]:
    """The noun a "which" question asks to name: `chỉ thị nào` -> (chi, thi); `which directive` -> (chi, thi)."""
    lowered = question.lower()
    if kind == "en":
        return ()  # an English noun names no Vietnamese label
    # Accents tell "thị" (in chỉ thị) from "thì" (then); without them only the folded lists can.
    match = re.search(r"\b(\w+)\s+(\w+)\s+(?:nào|nao)\b", lowered)
    if not match:
        return ()
    dropped = STOPWORDS_VI | _QUESTION_FILLERS if kind == "vi" else STOPWORDS_VI_FOLDED | _QUESTION_FILLERS_FOLDED
    return tuple(fold_diacritics(w) for w in match.groups() if w not in dropped)[-2:]
