"""Reading a question (what it asks for) and scoring the sentences of retrieved passages as its answer.

A sentence scores by how much of the question it covers (syllables weighted by their rarity among the
candidate sentences, plus adjacent pairs: Vietnamese words are mostly two syllables), with the previous
sentence as context (news often names the subject in one sentence and gives the figure in the next).
Bonuses go to what the question asks for: a number for `bao nhiêu`/`how many`, more when it is next to
the thing counted (`3.463 đảng viên`) or to an asked word (`khai trừ 2`); a date for `khi nào`; a
person's name for `ai`/`who`; `Chỉ thị 05` for `chỉ thị nào`. A sentence about another year than the
asked one loses. Everything here is deterministic and pure.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile

from index.chunking import split_into_sentences
from retrieval.grounding import question_terms, required_terms
from retrieval.text import (
    STOPWORDS_EN,
    STOPWORDS_VI,
    STOPWORDS_VI_FOLDED,
    QueryKind,
    detect_query_kind,
    english_to_vietnamese_terms,
    fold_diacritics,
    is_number,
    tokenize,
)
from retrieval.types import Passage

_QUANTITY_CUES = ("bao nhieu", "so luong", "ty le", "how many", "how much", "what percentage", "what number",
                  "total number", "number of")
# "mấy" (how many) folds to "may", which is also "máy" (machine): typed without accents it only counts
# after the words that introduce a count.
_MAY = re.compile(r"\bmấy\b|\b(?:co|la|duoc|so|trong) may\b")
_TIME_CUES = ("khi nao", "nam nao", "bao gio", "luc nao", "ngay nao", "thang nao", "hom nao", "thoi gian nao",
              "when", "what year", "which year", "what date")
_UNIT_AFTER = re.compile(r"(?:bao nhiêu|bao nhieu|mấy|how many|how much)\s+([^\s?,.]+(?:\s+[^\s?,.]+){0,2})")
_VERB_BEFORE = re.compile(r"(\w+) (?:bao nhieu|may)\b")
_NUMBER_WORDS = frozenset("hai ba bốn tư sáu bảy tám chín mười mươi trăm nghìn ngàn triệu tỷ tỉ".split())
_APPROXIMATORS = frozenset("gan hon khoang tren duoi chung xap xi toi da".split())
_PERCENT_UNITS = {("phan", "tram"), ("phan",), ("ty", "le")}
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")
_LENGTH_DISCOUNT = 0.005
_CONTEXT_WEIGHT = 0.45  # how much the previous sentence's words count towards covering the question
_PAIR_WEIGHT = 0.5  # word pairs: Vietnamese words are mostly two syllables, so pairs are the real match
_TIME_WORDS = frozenset("nam thang ngay quy tuan gio".split())
# "sự kiện nào", "loại nào": the noun is the word after these.
_QUESTION_FILLERS = frozenset("sự việc cái con loại".split())
_QUESTION_FILLERS_FOLDED = frozenset("su viec cai con loai".split())
_FAMILY_NAMES = frozenset(
    "nguyen tran le pham hoang huynh phan vu vo dang bui do ho ngo duong ly thai truong dinh lam mai doan "
    "luong to trinh dao cao ha la chu quach kieu ta tong".split()
)
_DATE = re.compile(r"\b\d{1,2}[/-]\d{1,2}(?:[/-]\d{2,4})?\b(?![%,.]?\d|%)")


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
    own_numbers: frozenset[str]  # numbers already in the question (a year asked about is no answer)


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


def score_sentences(question: Question, passages: Sequence[Passage]) -> list[ScoredSentence]:
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


def _score(question: Question, idf: dict[str, float], n_passages: int, unit: _Unit) -> ScoredSentence:
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
    values = _values(question, tokens)
    if question.asks_quantity:
        # "ngày 29/9" is a date, not a count.
        values = values - {_digits(n) for date in _DATE.findall(text) for n in re.split(r"[/-]", date)}
    if question.which and _names_after(tokens, question.which):
        score += 0.3  # "chỉ thị nào" is answered by "Chỉ thị 05"
    if question.asks_who and _person_names(text) - _person_names(question.text):
        score += 0.3
    answers_type = False
    if question.asks_quantity and values:
        score += 0.15
        counts_unit = bool(question.unit) and _counts_unit(tokens, question.unit)
        # "bao nhiêu người bị khai trừ" is answered by "khai trừ 2": a number next to an asked word.
        beside_term = _number_beside(question, tokens, values, idf)
        answers_type = counts_unit or beside_term or not question.unit
        score += 0.35 * counts_unit + 0.2 * beside_term
        if question.verb and _number_after(tokens, question.verb):
            score += 0.25  # "có bao nhiêu đảng viên" is answered by "có 3.463 đảng viên"
    if question.asks_time and values:
        answers_type = True
        score += 0.3 if any(_YEAR.match(v) for v in values) or not question.asks_year else 0.1
    score += _year_agreement(question, unit)
    score += 0.1 * (1 - unit.rank / max(n_passages, 1))  # retrieval's own order breaks near-ties
    # A long sentence covers many words by its length alone; past 30 tokens it is discounted.
    score /= 1 + _LENGTH_DISCOUNT * max(0, len(tokens) - 30)
    passage = unit.passage
    return ScoredSentence(unit.rank, passage, passage.start + unit.start, passage.start + unit.end,
                          passage.text[unit.start : unit.end], score, values, pair_share, answers_type, unit.ordinal)


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


def _number_beside(question: Question, tokens: list[str], values: frozenset[str], idf: dict[str, float]) -> bool:
    """True when a stated value (a number the question does not contain, not a date) stands within two
    tokens of one of the question's rarer words, other than the unit, numbers and time words
    (`khai trừ 2`, `kỷ luật 22 đảng viên`)."""
    wanted = _qualifiers(question, idf)
    for i, token in enumerate(tokens):
        if (_digits(token) or token) in values:
            window = tokens[max(0, i - 2) : i] + tokens[i + 1 : i + 3]
            if any(w in wanted for w in window):
                return True
    return False


def _names_after(tokens: list[str], noun: tuple[str, ...]) -> bool:
    """True when the noun is followed, within two tokens, by a number (`chỉ thị số 05`)."""
    folded = [fold_diacritics(t) for t in tokens]
    width = len(noun)
    for i in range(len(folded) - width + 1):
        if tuple(folded[i : i + width]) == noun:
            if any(is_number(t) for t in folded[i + width : i + width + 3]):
                return True
    return False


def _person_names(text: str) -> set[str]:
    """Vietnamese personal names in `text`: a family name and one to three more capitalised syllables."""
    names = set()
    words = re.findall(r"[^\W\d_]+", text)
    for i, word in enumerate(words):
        if word[0].isupper() and fold_diacritics(word.lower()) in _FAMILY_NAMES:
            rest = list(takewhile(lambda w: w[0].isupper(), words[i + 1 : i + 4]))
            if rest:
                names.add(fold_diacritics(" ".join([word, *rest]).lower()))
    return names


def _digits(token: str) -> str:
    return "".join(c for c in token if c.isdigit())


def _values(question: Question, tokens: list[str]) -> frozenset[str]:
    """The numbers a sentence states that the question did not already contain (digits only), and
    numbers written as words (`hai đội`), which only accented text tells apart from other words."""
    numbers = {_digits(t) for t in tokens if is_number(t)}
    if question.kind == "vi":
        numbers |= {t for t in tokens if t in _NUMBER_WORDS}
    return frozenset(n for n in numbers if n and n not in question.own_numbers)


def _counts_unit(tokens: list[str], unit: tuple[str, ...]) -> bool:
    """True when a number in the sentence is near what is counted: just after it (`3.463 đảng viên`)
    or shortly before it (`tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127`)."""
    folded = [fold_diacritics(t) for t in tokens]
    if unit in _PERCENT_UNITS:
        return any(is_number(t) and t.endswith("%") for t in folded)
    width = len(unit)
    for i, token in enumerate(folded):
        if not (is_number(token) or tokens[i] in _NUMBER_WORDS):
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


def parse_question(question: str) -> Question:
    """Read what the question asks for: its content words, a quantity (and of what), a time, a name."""
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
    lowered = " ".join(tokenize(question, number_variants=False))  # accents kept, punctuation gone
    match = _UNIT_AFTER.search(lowered)
    if re.search(r"(?:bao nhi[eê]u|how many|how much)\s*(?:%|phần trăm|phan tram|percent)", question.lower()):
        unit = ("phan", "tram")
        match = None
    if match:
        words = match.group(1).split()
        if kind == "en":
            # The English head noun closes the phrase ("new party members", "grassroots party
            # organizations"); its Vietnamese equivalent opens it ("đảng viên", "tổ chức cơ sở đảng").
            phrase = list(takewhile(lambda w: w not in STOPWORDS_EN, words))
            head = english_to_vietnamese_terms(" ".join(phrase[-2:])) or english_to_vietnamese_terms(" ".join(phrase[-1:]))
            unit = tuple(head[:2])
        else:
            # "bao nhiêu người bị khai trừ": the unit is "người", not "người bị".
            kept = takewhile(lambda w: w not in STOPWORDS_VI and w not in STOPWORDS_VI_FOLDED, words[:2])
            unit = tuple(fold_diacritics(w) for w in kept)
    which = _which_noun(kind, question)
    own_numbers = frozenset("".join(c for c in t if c.isdigit()) for t in tokenize(question) if is_number(t))
    return Question(
        text=question,
        kind=kind,
        terms=terms,
        asks_quantity=any(cue in padded for cue in _QUANTITY_CUES) or bool(_MAY.search(question.lower()))
        or bool(_MAY.search(folded)),
        asks_time=any(f" {cue} " in padded for cue in _TIME_CUES),
        asks_year=any(f" {cue} " in padded for cue in ("nam nao", "what year", "which year")),
        unit=unit,
        which=which,
        asks_who=kind != "en" and bool(re.search(r"\bai\b|nguoi nao", folded_raw)) or "who" in folded_raw.split(),
        # "là" (is) before "bao nhiêu" names no action: "X là bao nhiêu" says nothing about "Y là 301".
        verb=verb_match.group(1) if verb_match and kind != "en" and verb_match.group(1) != "la" else None,
        own_numbers=own_numbers,
    )


def _which_noun(kind: QueryKind, question: str) -> tuple[str, ...]:
    """The noun a "which" question asks to name: `chỉ thị nào` -> (chi, thi); `which directive` -> (chi, thi)."""
    lowered = question.lower()
    if kind == "en":
        match = re.search(r"\b(?:which|what)\s+([a-z']+(?:\s+[a-z']+)?)", lowered)
        return tuple(english_to_vietnamese_terms(match.group(1))[-2:]) if match else ()
    # Accents tell "thị" (in chỉ thị) from "thì" (then); without them only the folded lists can.
    match = re.search(r"(\w+)\s+(\w+)\s+(?:nào|nao)\b", lowered)
    if not match:
        return ()
    dropped = STOPWORDS_VI | _QUESTION_FILLERS if kind == "vi" else STOPWORDS_VI_FOLDED | _QUESTION_FILLERS_FOLDED
    return tuple(fold_diacritics(w) for w in match.groups() if w not in dropped)[-2:]
