"""Vietnamese-aware sentence splitting and packing of sentences into overlapping passages.

Every span is a pair of character offsets into the cleaned article text, so a chunk's text is
always `article.text[start:end]` and a citation can quote the exact passage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from index.documents import Article, Chunk

# Sentence-final punctuation, with any closing quotes or brackets that belong to the sentence.
_TERMINAL = re.compile(r"[.!?…]+[\"'”’»)\]]*")
_WORD = re.compile(r"\S+")
_LEADING_PUNCT = re.compile(r"^[\"'“‘«(\[]+")
# Initials written with periods ("U.S", "T.Ư"): each piece one letter.
_DOTTED_INITIALS = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]$")

# Abbreviations that end in a period without ending the sentence (compared case-insensitively).
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "tp", "tx", "tt",  # thành phố, thị xã, thị trấn (single initials like "Q." are handled apart)
        "ths", "th.s", "ts", "pgs", "gs", "bs", "ks", "cn", "ls", "ns", "nsnd", "nsưt", "ctv", "pv",
        "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "tr", "kt", "tm", "tl", "btv",
    }
)


def split_into_sentences(text: str) -> list[tuple[int, int]]:
    """Return `(start, end)` spans of the sentences of `text`, stripped of surrounding whitespace.

    Lines always end a sentence (captions and headings have no final period). Inside a line a
    `.`, `!`, `?` or `…` ends a sentence only when followed by whitespace and then not a lowercase
    letter, and a period after a known abbreviation (`TP.`, `PGS.`) or an initial (`P. MAI`) does
    not; numbers such as `3.463`, `87,8%` or `15-5-2009` contain no whitespace and are never split.
    """
    spans: list[tuple[int, int]] = []
    line_start = 0
    while line_start <= len(text):
        line_end = text.find("\n", line_start)
        if line_end == -1:
            line_end = len(text)
        for start, end in _split_line(text, line_start, line_end):
            stripped = _strip_span(text, start, end)
            if stripped is not None:
                spans.append(stripped)
        line_start = line_end + 1
    return spans


def _split_line(text: str, start: int, end: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    piece_start = start
    for match in _TERMINAL.finditer(text, start, end):
        stop = match.end()
        if stop < end and not text[stop].isspace():
            continue  # "3.463", "X.THIÊN", "TP.HCM": the period is inside a token
        following = _next_visible(text, stop, end)
        if following is not None and following.islower():
            continue  # "… và", "TP. hồ": the sentence goes on
        if match.group() == "." and _ends_with_abbreviation(text, piece_start, match.start()):
            continue
        pieces.append((piece_start, stop))
        piece_start = stop
    pieces.append((piece_start, end))
    return pieces


def _next_visible(text: str, position: int, end: int) -> str | None:
    """The first character after whitespace and opening quotes, or None at the end of the line."""
    while position < end and (text[position].isspace() or text[position] in "\"'“‘«(["):
        position += 1
    return text[position] if position < end else None


def _ends_with_abbreviation(text: str, start: int, period: int) -> bool:
    # The word before the period, found by walking back: searching the whole piece for it would make
    # a long line of initials (`A. B. C. ...`, whose piece never ends) quadratic.
    word_start = period
    while word_start > start and not text[word_start - 1].isspace():
        word_start -= 1
    if word_start == period:
        return False
    token = _LEADING_PUNCT.sub("", text[word_start:period])
    if len(token) == 1 and token.isalpha() and token.isupper():
        return True  # an initial: "P. MAI", "Nguyễn V. An"
    return token.casefold() in ABBREVIATIONS or bool(_DOTTED_INITIALS.match(token))


def _strip_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


@dataclass(frozen=True)
class _Unit:
    """A sentence, or a piece of one too long to fit a chunk, with its paragraph number."""

    start: int
    end: int
    words: int
    paragraph: int


def split_into_chunks(article: Article, *, size_words: int, overlap_sentences: int) -> list[Chunk]:
    """All chunks of `article` (see `iter_chunks`)."""
    return list(iter_chunks(article, size_words=size_words, overlap_sentences=overlap_sentences))


def iter_chunks(article: Article, *, size_words: int, overlap_sentences: int) -> Iterator[Chunk]:
    """Pack whole sentences of `article.text` into chunks of about `size_words` words (never more).

    Consecutive chunks share `overlap_sentences` sentences, fewer when they would leave no room for
    a new one. A chunk ends early at a paragraph break when it is at least half full and the next
    paragraph would not fit whole, so passages stay on one topic. A sentence longer than
    `size_words` is cut into pieces (at a clause if it can) that count as sentences here.
    """
    if size_words < 1:
        raise ValueError(f"size_words must be at least 1, got {size_words}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be 0 or more, got {overlap_sentences}")
    units = _units(article.text, size_words)
    paragraph_words = Counter[int]()
    for unit in units:
        paragraph_words[unit.paragraph] += unit.words
    # A generator: a huge article's chunk texts are never all in memory at once.
    ordinal = first = newest = 0  # `newest`: the first unit no chunk holds yet
    while first < len(units):
        last = _last_unit_of_chunk(units, first, newest, size_words, paragraph_words)
        start, end = units[first].start, units[last].end
        yield Chunk(article.article_id, ordinal, start, end, article.text[start:end])
        ordinal += 1
        if last == len(units) - 1:
            break
        newest = last + 1
        first = _first_unit_of_next_chunk(units, first, newest, size_words, overlap_sentences)


def _first_unit_of_next_chunk(units: list[_Unit], first: int, newest: int, size_words: int, overlap: int) -> int:
    """Step back up to `overlap` units from `newest`, only as far as `newest` still fits after them.

    Otherwise the next chunk could hold nothing but the overlap, a copy of the previous chunk's end.
    """
    start, words = newest, units[newest].words
    while start - 1 > first and newest - (start - 1) <= overlap and words + units[start - 1].words <= size_words:
        start -= 1
        words += units[start].words
    return start


def _last_unit_of_chunk(
    units: list[_Unit], first: int, newest: int, size_words: int, paragraph_words: Counter[int]
) -> int:
    """The overlap units and `newest` (sized to fit together), then as many more as fit."""
    last = newest
    words = sum(unit.words for unit in units[first : last + 1])
    while last + 1 < len(units):
        candidate = units[last + 1]
        if words + candidate.words > size_words:
            break
        starts_paragraph = candidate.paragraph != units[last].paragraph
        if starts_paragraph and words * 2 >= size_words and words + paragraph_words[candidate.paragraph] > size_words:
            break  # keep the next paragraph whole in the next chunk
        words += candidate.words
        last += 1
    return last


def _units(text: str, size_words: int) -> list[_Unit]:
    paragraph_starts = [m.end() for m in re.finditer(r"\n\s*\n", text)]
    units: list[_Unit] = []
    paragraph = 0
    for start, end in split_into_sentences(text):
        while paragraph < len(paragraph_starts) and paragraph_starts[paragraph] <= start:
            paragraph += 1
        words = [m.span() for m in _WORD.finditer(text, start, end)]
        for piece in _cut_long_sentence(text, words, size_words):
            units.append(_Unit(piece[0][0], piece[-1][1], len(piece), paragraph))
    return units


def _cut_long_sentence(text: str, words: list[tuple[int, int]], size_words: int) -> list[list[tuple[int, int]]]:
    """Cut a sentence longer than `size_words` after a `;`, else a `,`, else anywhere between words.

    News sentences in the sample articles run to 200 words of `;`-separated clauses; cutting at a
    clause keeps each piece readable. A clause end is used only past a third of the window, so
    pieces do not get tiny.
    """
    pieces: list[list[tuple[int, int]]] = []
    first = 0  # an index, not `words = words[cut:]`: re-slicing a 300k-word sentence per piece is quadratic
    while len(words) - first > size_words:
        window = words[first : first + size_words]
        cut = size_words
        for marks in (";:", ","):
            ends = [i + 1 for i, (_, end) in enumerate(window) if text[end - 1] in marks and (i + 1) * 3 >= size_words]
            if ends:
                cut = ends[-1]
                break
        pieces.append(window[:cut])
        first += cut
    if first < len(words):
        pieces.append(words[first:])
    return pieces
