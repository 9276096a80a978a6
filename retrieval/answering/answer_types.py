"""Evidence, in one sentence, of the kind of value a question asks for: a count, a time, a name, a place.

A sentence is read as words with their case and the punctuation between them, because in Vietnamese
news the case and the commas say what a number or a name is: `Chỉ thị 17` and `Quyết định 20` are
labels, not counts; `gần 3.500 đảng viên` counts party members, while in `cán bộ, đảng viên và Quyết
định 20` the 20 counts nothing; `Nguyễn Minh Tiến` is a person and `tại Mỹ Tho` a place. Each finder
returns the positions of its evidence, so that the scorer can ask how close it stands to the words of
the question. Everything here is deterministic and pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from index.text import fold_diacritics, is_number, word_spans

# Numbers written as words: only accented text tells them apart from other syllables ("ba" is also a
# name, "tư" is mostly "tư tưởng", "đầu tư", so it is left out).
NUMBER_WORDS = frozenset("hai ba bốn năm sáu bảy tám chín mười mươi trăm nghìn ngàn triệu tỷ tỉ".split())
_SPELLED_COUNTS = NUMBER_WORDS - {"năm"}  # "năm" is far more often "year" than "five"
# A number right after these is a time (`ngày 29`, `tháng 6`, `năm 2016`), not a count.
_TIME_NOUNS = frozenset("ngay thang nam quy tuan gio".split())
# A number right after these is a label (`số 05`, `thứ 3`, `khóa XII`, `Điều 4`), not a count.
_LABEL_NOUNS = frozenset("so thu khoa dieu khoan muc lan".split())
_YEAR = re.compile(r"^(1\d\d\d|20\d\d)$")
# "66 triệu năm trước", "5 năm sau": a time measured from another.
_RELATIVE = frozenset("truoc sau qua nay".split())
_PERSON_TITLES = frozenset("ong ba anh chi ngai mr mrs ms dr".split())  # folded: ông, bà, anh, chị, ngài; "đồng chí" ends in "chí"
_DATE = re.compile(r"\b\d{1,2}[/-]\d{1,2}(?:[/-]\d{2,4})?\b(?![%,.]?\d|%)")
_DOCUMENT_NOUNS = frozenset(
    ["chi thi", "nghi quyet", "quyet dinh", "nghi dinh", "thong tu", "ket luan", "quy dinh", "cong van",
     "ke hoach", "thong bao", "huong dan", "chuong trinh", "dieu le"]
)
# Words before a capitalised name that make it a place (`tại Mỹ Tho`, `tỉnh Tiền Giang`, `ở Kraków`).
_PLACE_CUES = frozenset(
    """
    o tai tu den toi tren khap quanh gan ve
    tinh huyen xa quan phuong thanh pho thi tran thon ap lang nuoc quoc gia vung mien khu bang chau
    song nui dao bien duong pho cang
    """.split()
)
FAMILY_NAMES = frozenset(
    "nguyen tran le pham hoang huynh phan vu vo dang bui do ho ngo duong ly thai truong dinh lam mai doan "
    "luong to trinh dao cao ha la chu quach kieu ta tong".split()
)


@dataclass(frozen=True)
class Words:
    """The words of a sentence: lower-case, folded and as written, with a flag for a punctuation
    mark (a comma, a bracket, a dash) standing before each word."""

    lower: list[str]
    folded: list[str]
    cased: list[str]
    break_before: list[bool]
    spans: list[tuple[int, int]]  # offsets of each word in the (NFC) sentence

    @classmethod
    def of(cls, text: str) -> Words:
        spans = word_spans(text)
        cased = [text[start:end] for start, end in spans]
        gaps = [text[spans[i - 1][1] : start] if i else "" for i, (start, _) in enumerate(spans)]
        lower = [w.lower() for w in cased]
        return cls(lower, [fold_diacritics(w) for w in lower], cased, [bool(g.strip()) for g in gaps], spans)

    def __len__(self) -> int:
        return len(self.lower)


def date_positions(words: Words, text: str) -> set[int]:
    """Positions of the words that make up dates (`29/9`, `15-5-2009`): they count nothing."""
    ranges = [match.span() for match in _DATE.finditer(text)]
    return {i for i, (start, end) in enumerate(words.spans) if any(a <= start and end <= b for a, b in ranges)}


def digits(token: str) -> str:
    """`74.127` -> `74127`; `87,8%` -> `878`."""
    return "".join(c for c in token if c.isdigit())


def count_positions(words: Words, text: str, excluded: Iterable[str]) -> list[int]:
    """Positions of numbers that count something: not part of a date, not a time (`năm 2016`,
    `tháng 6`), not a label (`Chỉ thị 17`, `số 05`, `Apollo 11`: a number after a capitalised word
    inside the sentence), and not one of `excluded` (the question's own numbers)."""
    excluded = set(excluded)
    in_dates = date_positions(words, text)
    positions = []
    for i, word in enumerate(words.lower):
        if is_number(word):
            if digits(word) in excluded or i in in_dates:
                continue
        elif word not in _SPELLED_COUNTS:
            continue
        if not _is_label_or_time(words, i):
            positions.append(i)
    return positions


def _is_label_or_time(words: Words, i: int) -> bool:
    """True for a number that names or dates rather than counts: after `ngày`/`tháng`/`năm`, after
    `số`/`thứ`/`khóa`, after a document noun (`Quyết định 20`, `chỉ thị 05`), or after a capitalised
    word inside the sentence (`Chỉ thị 17`, `Apollo 11`)."""
    if i == 0 or words.break_before[i]:
        return False
    before = words.folded[i - 1]
    pair = " ".join(words.folded[i - 2 : i]) if i > 1 and not words.break_before[i - 1] else ""
    capitalised = i > 1 and words.cased[i - 1][:1].isupper()
    return before in _TIME_NOUNS or before in _LABEL_NOUNS or pair in _DOCUMENT_NOUNS or capitalised


def time_positions(words: Words, text: str, excluded: Iterable[str], *, years_only: bool) -> list[int]:
    """Positions of times not given in the question: years (`1964`), numbers after `ngày`/`tháng`/
    `năm`/`quý`, the parts of dates (`29/10`) and spans back (`66 triệu năm trước`). With
    `years_only`, only years."""
    excluded = set(excluded)
    in_dates = date_positions(words, text)
    positions = []
    for i, word in enumerate(words.lower):
        if not is_number(word) or digits(word) in excluded:
            continue
        after_time_noun = i > 0 and words.folded[i - 1] in _TIME_NOUNS
        is_year = bool(_YEAR.match(word)) or (after_time_noun and words.folded[i - 1] == "nam")
        ago = any(
            words.folded[j] in _TIME_NOUNS and j + 1 < len(words) and words.folded[j + 1] in _RELATIVE
            for j in range(i + 1, min(len(words), i + 3))
        )
        if is_year or (not years_only and (after_time_noun or ago or i in in_dates)):
            positions.append(i)
    return positions


def name_runs(words: Words) -> list[tuple[int, int]]:
    """`(start, end)` word ranges of capitalised runs (`Nguyễn Minh Tiến`, `Lowry Digital`).

    A sentence opens with a capital whatever its first word is, so that word belongs to a name only
    when it is a family name followed by more capitalised syllables (`Trương Quang Tưởng cho biết`);
    otherwise a run that starts the sentence begins at its second word (`Theo Bộ Y tế` -> `Bộ`).
    """
    runs = []
    i = 0
    while i < len(words):
        if not words.cased[i][:1].isupper():
            i += 1
            continue
        j = i + 1
        while j < len(words) and words.cased[j][:1].isupper() and not words.break_before[j]:
            j += 1
        start = i
        if i == 0 and not (j > 1 and words.folded[0] in FAMILY_NAMES):
            start = 1
        if start < j:
            runs.append((start, j))
        i = j
    return runs


def person_positions(words: Words, question_words: set[str]) -> list[int]:
    """Positions of personal names absent from the question: a Vietnamese family name followed by
    one to three capitalised syllables (`Trương Quang Tưởng`), or any name after a title (`ông`,
    `bà`, `đồng chí`: `ông Trần Thế Ngọc`, `ông Hobson`)."""
    return [start for start, _ in person_spans(words, question_words)]


def person_spans(words: Words, question_words: set[str]) -> list[tuple[int, int]]:
    """`(start, end)` word ranges of the personal names of `person_positions`."""
    spans = []
    for start, end in name_runs(words):
        titled = start > 0 and words.folded[start - 1] in _PERSON_TITLES
        if titled and _is_new(words, start, end, question_words):
            spans.append((start, end))
            continue
        for i in range(start, end - 1):
            if words.folded[i] in FAMILY_NAMES and _is_new(words, i, min(end, i + 4), question_words):
                spans.append((i, min(end, i + 4)))
                break
    return spans


def new_name_positions(words: Words, question_words: set[str]) -> list[int]:
    """Positions of capitalised names (of any language) that the question does not contain."""
    return [start for start, end in name_runs(words) if _is_new(words, start, end, question_words)]


def place_positions(words: Words, question_words: set[str]) -> list[int]:
    """Positions of new names introduced as places: after `ở`, `tại`, `tỉnh`, `thành phố`, ..."""
    positions = []
    for start, end in name_runs(words):
        cue = words.folded[start - 1] if start and not words.break_before[start] else ""
        if cue in _PLACE_CUES and _is_new(words, start, end, question_words):
            positions.append(start)
    return positions


def labelled_positions(words: Words, noun: tuple[str, ...], question_words: set[str]) -> list[int]:
    """Positions where the noun a "which" question asks about is followed, within two words, by a
    number or a new capitalised name: `chỉ thị nào` is answered by `Chỉ thị 05`, `công ty nào` by
    `công ty Lowry Digital`."""
    width = len(noun)
    positions = []
    for i in range(len(words) - width + 1):
        if tuple(words.folded[i : i + width]) != noun:
            continue
        for j in range(i + width, min(len(words), i + width + 3)):
            if is_number(words.lower[j]) or (
                words.cased[j][:1].isupper() and words.folded[j] not in question_words
            ):
                positions.append(j)
                break
    return positions


def _is_new(words: Words, start: int, end: int, question_words: set[str]) -> bool:
    """True when most of the name's syllables are not words of the question."""
    syllables = words.folded[start:end]
    return sum(1 for s in syllables if s not in question_words) * 2 > len(syllables)


def unit_positions(words: Words, unit: tuple[str, ...]) -> list[int]:
    """Start positions of the counted unit (`đảng viên`) in the sentence."""
    width = len(unit)
    return [i for i in range(len(words) - width + 1) if tuple(words.folded[i : i + width]) == unit]


def counted_unit(words: Words, counts: list[int], unit: tuple[str, ...]) -> int:
    """How plainly a count of the unit is stated: 2 when the number stands just before the unit
    (`gần 3.500 đảng viên`, `3.463 đảng viên`); 1 when the unit comes shortly before the number in
    the same clause (`tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127`); 0 otherwise."""
    if unit in (("phan", "tram"), ("phan",), ("ty", "le")):
        return 2 if any(words.lower[i].endswith("%") for i in counts) else 0
    starts = unit_positions(words, unit)
    best = 0
    for i in counts:
        for start in starts:
            if 0 < start - i <= 2 and not any(words.break_before[i + 1 : start + 1]):
                return 2
            if 0 < i - start <= 8 and not any(words.break_before[start + 1 : i + 1]):
                best = 1
    return best
