"""The text rules, in one place: NFC, accent folding, tokens, stopwords, language and query kind,
names, numbers and years, citation markers, and how dates and quotes are shown.

Every other module calls these; none keeps a rule of its own. Text is normalised to NFC once at the
edges (files when they are loaded, questions when they reach an answerer or a retriever), so the
rules below may assume NFC input.

Vietnamese writes one syllable per space-separated token, so syllables (not words) are the unit here:
they are cheap to produce (millions a second) and measured nearly as good as word segmentation for
BM25 (see shared/MODELS.md). Questions typed without diacritics are matched through folded tokens.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

QueryKind = Literal["vi", "vi_plain", "en"]
"""Accented Vietnamese, Vietnamese typed without diacritics, or English: how a question is searched."""
Language = Literal["vi", "en"]
"""The two languages answers are written in."""


def normalize(text: str) -> str:
    """NFC, the one form text is compared in: `hoà` typed with a combining grave equals the precomposed one."""
    return unicodedata.normalize("NFC", text)

# A number keeps its thousands/decimal separators and a trailing percent sign as one token
# ("74.127", "87,8%"), so that a question quoting it matches exactly.
_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*%?|[^\W\d_]+")
# The same split on UTF-8 bytes, several times faster over a whole corpus than a Unicode regex over str
# (`retrieval.search.lexical` uses it to index). Non-ASCII punctuation (“ ” … –) stays glued to its word
# there; each distinct raw token is then split again by `tokenize`, so the tokens are the same.
RAW_TOKEN_BYTES_RE = re.compile(rb"[0-9]+(?:[.,][0-9]+)*%?|[a-z\x80-\xff]+")
_NUMBER_RE = re.compile(r"\d")
_LETTERS_NOT_VIETNAMESE = frozenset("fjwz")

# Onset + vowel nucleus + coda of a (folded) Vietnamese syllable; English words mostly fail it.
_SYLLABLE_RE = re.compile(
    r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|th|tr|qu|[bcdghklmnprstvx])?"
    r"[aeiouy]{1,3}"
    r"(?:ng|nh|ch|[cmnpt])?"
)


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    """Map every precomposed Latin letter to its base letter once, so folding is a `str.translate`."""
    table: dict[int, str] = {0x0111: "d", 0x0110: "D"}
    for code in list(range(0x00C0, 0x0250)) + list(range(0x1E00, 0x1F00)):
        char = chr(code)
        base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
        if base and base != char and len(base) == 1:
            table[code] = base
    return table


def fold_diacritics(text: str) -> str:
    """Remove Vietnamese (and other Latin) diacritics: `Đảng viên` -> `Dang vien`.

    Precomposed letters map one to one, so the result has the same length as NFC input.
    """
    folded = text.translate(_fold_table())
    if any(unicodedata.combining(c) for c in folded):
        # Decomposed input (combining marks typed separately) takes the slow, general path.
        decomposed = unicodedata.normalize("NFD", folded)
        folded = "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_fold_table())
    return folded


def has_diacritics(text: str) -> bool:
    """True when the text carries any accent that folding would remove (Vietnamese or otherwise)."""
    return fold_diacritics(text) != text


# Vietnamese writes the tone of an open `oa`, `oe`, `uy` on either vowel: `hoà`/`hòa`, `uỷ`/`ủy` (both
# styles occur in the same newspaper). Tokens use one form, the mark on the first vowel, so they match.
_OPEN_DIPHTHONG = re.compile(r"(?:(o)([àáảãạèéẻẽẹ])|(?<!q)(u)([ỳýỷỹỵ]))(?![^\W\d_])")


@lru_cache(maxsize=None)
def _move_tone(first: str, second: str) -> str:
    decomposed = unicodedata.normalize("NFD", second)
    base, marks = decomposed[0], decomposed[1:]
    return unicodedata.normalize("NFC", first + marks) + base


def normalize_tone_marks(text: str) -> str:
    """Put the tone of open `oa`/`oe`/`uy` on the first vowel: `hoà` -> `hòa`, `thuỷ` -> `thủy`, not `quý`."""
    return _OPEN_DIPHTHONG.sub(lambda m: _move_tone(m.group(1) or m.group(3), m.group(2) or m.group(4)), text)


def fold(text: str) -> str:
    """Lower case without diacritics: the form in which two spellings of a word compare equal."""
    return fold_diacritics(text.lower())


def digits(token: str) -> str:
    """The digits of a number token: `74.127` -> `74127`; `87,8%` -> `878`."""
    return "".join(c for c in token if c.isdigit())


def tokenize(text: str, *, fold: bool = False, number_variants: bool = True) -> list[str]:
    """Lower-cased syllable tokens of `text` (folded when `fold`), numbers kept whole.

    A number written with separators (`74.127`, `87,8%`) also yields its digits-only form
    (`74127`, `878`), so a question typed either way matches the article.
    """
    text = text.lower()
    text = fold_diacritics(text) if fold else normalize_tone_marks(text)
    tokens = _TOKEN_RE.findall(text)
    if not number_variants:
        return tokens
    out: list[str] = []
    for token in tokens:
        out.append(token)
        if token[0].isdigit() and not token.isdigit():
            out.append(digits(token))
    return out


# The tokens of `tokenize` (a syllable, a number) or a mark that ends a sentence, by kind: what a language
# model of the syllables of a text reads (`retrieval.search.restore`).
SENTENCE_TOKEN_RE = re.compile(r"(?P<word>[^\W\d_]+)|(?P<num>\d+(?:[.,]\d+)*%?)|(?P<stop>[.!?;:\n()\[\]\"“”…]+)")

# Punctuation that ends a run of syllables (a pair across it is no word); `.` and `,` only before a space
# or the end, so that `74.127` stays one number.
_RUN_BREAK_RE = re.compile(r"[.,;:!?…]+(?=\s|$)|[()\[\]{}\"“”‘’\n\t|–—]+")


def syllable_pairs(text: str) -> list[str]:
    """Every pair of adjacent syllables within a punctuation-free run, joined by `_` (`đảng_viên`).

    Most Vietnamese words are two syllables, so pairs stand in for words without a segmenter:
    measured as a BM25 field on the tuning set, syllables + pairs beat pyvi-segmented words (R@5 .882
    vs .865 alone, .897 vs .881 fused with dense search), and need no model at query time.
    """
    pairs: list[str] = []
    for piece in _RUN_BREAK_RE.split(text):
        run = tokenize(piece, number_variants=False)
        pairs.extend(f"{a}_{b}" for a, b in zip(run, run[1:]))
    return pairs


def word_spans(text: str) -> list[tuple[int, int]]:
    """`(start, end)` offsets of the tokens `tokenize` finds (numbers whole, no variants), in `text`.

    Case and accents are kept by slicing `text` with them, so a caller can see `Chỉ thị 17` where
    the tokens say `chỉ thị 17`.
    """
    return [match.span() for match in _TOKEN_RE.finditer(text)]


def is_number(token: str) -> bool:
    """True for a numeric token such as `2023`, `74.127` or `87,8%`."""
    return bool(_NUMBER_RE.match(token))


def is_vietnamese_syllable(token: str) -> bool:
    """True when a lower-case token could be a Vietnamese syllable (checked on its folded form)."""
    folded = fold_diacritics(token)
    if any(c in _LETTERS_NOT_VIETNAMESE for c in folded):
        return False
    return _SYLLABLE_RE.fullmatch(folded) is not None


# Share of word tokens written with Vietnamese diacritics: ~0.5-0.8 in Vietnamese news prose, below 0.05
# in English or French pages (a few names), so 0.25 keeps any Vietnamese text that quotes foreign names.
VIETNAMESE_DIACRITIC_SHARE = 0.25


def looks_vietnamese(text: str) -> bool:
    """Whether `text` is Vietnamese prose (written with diacritics) rather than another language."""
    tokens = [token for token in tokenize(text, number_variants=False) if not is_number(token)]
    if not tokens:
        return False
    return sum(1 for token in tokens if has_diacritics(token)) >= VIETNAMESE_DIACRITIC_SHARE * len(tokens)


# Function words and question words of Vietnamese, for scoring sentences and question coverage
# (where they would match everywhere). Accented, for questions typed with diacritics.
STOPWORDS_VI: frozenset[str] = frozenset(
    """
    và của là các những có được trong cho với này đó đã đang sẽ thì mà để từ một ở về theo khi
    không ra vào lại nên cũng như đến tại do bị rằng nhưng hay hoặc ấy kia đây cùng còn rất quá
    nhiều ít mới tất cả vì bằng ông bà anh chị em tôi chúng họ mình thuộc trên dưới sau trước
    giữa ngoài lên xuống nữa vẫn đều
    """.split()
)
QUESTION_WORDS_VI: frozenset[str] = frozenset(
    "bao nhiêu mấy gì nào ai đâu sao thế vậy chưa hả à ư nhỉ hôm nay hiện bây giờ lúc".split()
)
# Folded, only the words whose folded form is not also a common content syllable: `dang` is both
# đang and Đảng, `so` both số and so, `qua` both quá and quả (kết quả), so those are never dropped.
STOPWORDS_VI_FOLDED: frozenset[str] = frozenset(
    "va cua la cac duoc nhung mot voi thi nay rang hoac nhu cung se ma da o ve den khong cho de theo".split()
)
# The words that make a question a question (folded, both languages): a short follow-up holding none
# of them ("còn Quảng Ngãi?") asks nothing new by itself.
INTERROGATIVES_FOLDED: frozenset[str] = frozenset(
    "bao nhieu gi ai nao dau sao may what who whom whose how when where which why".split()
)
QUESTION_WORDS_FOLDED: frozenset[str] = frozenset(
    """
    bao nhieu gi nao ai sao vay chua nhi hom nay hien
    what which who whom whose when where why how many much is are was were do does did
    a an of in on at to for by with from and or that this these those it its there their
    be been being has have had as about into than then can could would should will shall
    according today now currently
    """.split()
)

# English function words, for telling an English question from Vietnamese typed without accents.
STOPWORDS_EN: frozenset[str] = frozenset(
    """
    what which who whom whose when where why how many much is are was were do does did the a an
    of in on at to for by with from and or that this these those it its there their be been has
    have had as about into than then can could would should will according
    """.split()
)


def content_tokens(text: str, *, fold: bool) -> list[str]:
    """Tokens of `text` without function words or question words, in order: what a question is about.

    With `fold`, tokens are accent-folded (for questions typed without diacritics, or English).
    """
    if fold:
        dropped = STOPWORDS_VI_FOLDED | QUESTION_WORDS_FOLDED
    else:
        dropped = STOPWORDS_VI | QUESTION_WORDS_VI | QUESTION_WORDS_FOLDED
    return [t for t in tokenize(text, fold=fold, number_variants=False) if t not in dropped]


def content_pairs(text: str, *, fold: bool) -> list[tuple[str, str]]:
    """Adjacent content syllables of `text` within punctuation-free runs, returned accent-folded: the
    word-like pairs a question is about (`thủ đô` and `nước pháp` in "Thủ đô của nước Pháp là gì?";
    `của` and `là gì` pair with nothing). Function words are told apart as `content_tokens` does: with
    `fold` (text typed without accents) by their folded spelling, so `do` is one, as in `do đâu`.
    Numbers are left out (names and numbers have their own checks)."""
    dropped = STOPWORDS_VI_FOLDED | QUESTION_WORDS_FOLDED if fold else STOPWORDS_VI | QUESTION_WORDS_VI | QUESTION_WORDS_FOLDED
    pairs: list[tuple[str, str]] = []
    for piece in _RUN_BREAK_RE.split(text):
        run = tokenize(piece, fold=fold, number_variants=False)
        pairs.extend((fold_diacritics(a), fold_diacritics(b)) for a, b in zip(run, run[1:])
                     if a not in dropped and b not in dropped and not is_number(a) and not is_number(b))
    return pairs


# Function words of both languages once folded, for telling what an answer adds to its question.
_FUNCTION_WORDS_FOLDED = STOPWORDS_VI_FOLDED | QUESTION_WORDS_FOLDED


def words(text: str) -> list[str]:
    """The folded tokens of `text`, numbers whole, in order: the unit the answer checks compare."""
    return tokenize(text, fold=True, number_variants=False)


def content_words(text: str) -> set[str]:
    """The words of `text` that carry content (accents folded, function words of both languages left out)."""
    return {word for word in words(text) if word not in _FUNCTION_WORDS_FOLDED}


def content_features(text: str) -> set[str]:
    """The content words of `text` and its adjacent word pairs, accents folded.

    Vietnamese words span syllables (`đảng viên`), so pairs carry meaning; a pair of two function
    words carries none.
    """
    tokens = words(text)
    pairs = {f"{a} {b}" for a, b in zip(tokens, tokens[1:])
             if not (a in _FUNCTION_WORDS_FOLDED and b in _FUNCTION_WORDS_FOLDED)}
    return {t for t in tokens if t not in _FUNCTION_WORDS_FOLDED} | pairs


# Vietnamese words that are never English words: a question holding them is Vietnamese whatever
# foreign names it quotes ("Los Angeles Angels of Anaheim den tu mon the thao nao?").
_VIETNAMESE_MARKERS: frozenset[str] = frozenset(
    """
    nao gi la cua duoc khong nhung cac nhieu bao nguoi voi trong tu den ve khi ai dau sao thi da
    co mot nay vao cho nam nhu tai bi boi hay nhat ngay thang cung dang duoi tren truoc sau
    """.split()
)


def detect_query_kind(query: str) -> QueryKind:
    """Guess whether a question is Vietnamese (`vi`), Vietnamese without diacritics (`vi_plain`) or English.

    Two cheap signals: the share of tokens that fit the shape of a Vietnamese syllable (English words
    rarely do), and counts of English versus Vietnamese function words. Names do not decide it: an
    English question naming `Tiền Giang` stays English.
    """
    words = [t for t in tokenize(query, number_variants=False) if not is_number(t)]
    if not words:
        return "vi"
    english = sum(1 for t in words if t in STOPWORDS_EN and not has_diacritics(t))
    vietnamese = sum(1 for t in words if fold_diacritics(t) in _VIETNAMESE_MARKERS and t not in STOPWORDS_EN)
    share = sum(1 for t in words if is_vietnamese_syllable(t)) / len(words)
    if share < 0.6:
        # Not Vietnamese-shaped is not yet English: "x" or "dangvien" (syllables typed together) carry no
        # English word either, and the English route would let such noise through.
        is_english = english >= vietnamese and (english > 0 or any(english_shaped(t) for t in words))
    else:
        is_english = english >= 2 and english > vietnamese
    if is_english:
        return "en"
    return "vi" if has_diacritics(query) else "vi_plain"


# Shorter tokens are letters or abbreviations, not words of any language.
_SHORTEST_WORD = 3


def english_shaped(token: str) -> bool:
    """A word that is neither a Vietnamese syllable nor Vietnamese syllables typed together (`dangvien`)."""
    return len(token) >= _SHORTEST_WORD and not has_diacritics(token) and not _glued_syllables(fold_diacritics(token))


@lru_cache(maxsize=4096)
def _glued_syllables(token: str) -> bool:
    """True when `token` splits wholly into Vietnamese-shaped syllables."""
    reachable = [True] + [False] * len(token)
    for end in range(1, len(token) + 1):
        reachable[end] = any(reachable[start] and _SYLLABLE_RE.fullmatch(token[start:end]) is not None
                             for start in range(max(0, end - 7), end))
    return reachable[-1]


def answer_language(question: str) -> Language:
    """The language to answer `question` in: English for an English question, else Vietnamese.

    Decided once per question (by `detect_query_kind`, the same rule that routes its search) and
    passed down, so that every answerer replies to one question in one language.
    """
    return "en" if detect_query_kind(question) == "en" else "vi"


# ---------------------------------------------------------------------------- numbers and years

# A year as news and encyclopaedias write one: 1000-2099.
_YEAR_TOKEN_RE = re.compile(r"^(?:1\d{3}|20\d{2})$")
YEAR_RE = re.compile(r"\b(1[89]\d{2}|20\d{2})\b")
"""Years a reader asks about (1800-2099) inside running text: `còn năm 2019 thì sao?`."""


def is_year(token: str) -> bool:
    """True for a four-digit token that reads as a year (1000-2099)."""
    return bool(_YEAR_TOKEN_RE.match(token))


def number_values(text: str) -> set[str]:
    """The numbers of `text` however written (74.127, 74,127, 74127; 09 and 9), reduced to their digits."""
    return {digits(n).lstrip("0") or "0" for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


# ---------------------------------------------------------------------------- names

_SENTENCE_START_RE = re.compile(r"(?:^|[.!?:]\s+|\n)(\w+)")
_WORD_RE = re.compile(r"\w+")


def capitalised_names(text: str) -> set[str]:
    """Capitalised words that do not open a sentence: the names a text puts forward."""
    openers = {m.start(1) for m in _SENTENCE_START_RE.finditer(text)}
    return {m.group() for m in _WORD_RE.finditer(text) if m.group()[0].isupper() and m.start() not in openers}


# ---------------------------------------------------------------------------- citation markers

# A finished citation group: `[1]`, `[1, 2]`, `[1-3]` (the parser of a model's looser forms, `[Đoạn 1]`,
# is `retrieval.answering.citations`).
CITATION_MARK_RE = re.compile(r"\[[\d\s,;–-]*\]")
_CITATION_LOOKALIKES = str.maketrans({"[": "(", "]": ")"})


def strip_citations(text: str) -> str:
    """`text` without its citation groups (`[1]`, `[1, 2]`)."""
    return CITATION_MARK_RE.sub(" ", text)


def cited_numbers(text: str) -> set[int]:
    """The passage numbers `text` cites."""
    return {int(n) for mark in CITATION_MARK_RE.findall(text) for n in re.findall(r"\d+", mark)}


def disarm_citations(text: str) -> str:
    """Article text with its square brackets as parentheses, so that its own `[1]` cannot pass for a citation."""
    return text.translate(_CITATION_LOOKALIKES)


# ---------------------------------------------------------------------------- display

QUOTE_CHARS = 160


def display_date(date: str | None) -> str | None:
    """ISO `YYYY-MM-DD` as Vietnamese readers write it (`DD/MM/YYYY`); anything else unchanged."""
    if not date:
        return None
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", date.strip())
    return f"{match[3]}/{match[2]}/{match[1]}" if match else date


def short_quote(text: str, max_chars: int = QUOTE_CHARS) -> str:
    """The start of a passage on one line, cut at a word boundary, with an ellipsis when something was cut."""
    flat = " ".join(text.split())
    if len(flat) <= max_chars:
        return flat
    cut = flat[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"
