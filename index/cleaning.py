"""Turn a raw document into a clean article: page debris removed, metadata pulled out, body kept whole.

The rules come from what the sample articles really contain (see `index/corpus/`): stray lines
that are only a number or punctuation, page chrome such as `TIN LIÊN QUAN`, photo captions printed
twice, captions ending in ` |`, no-break spaces, a date stamp above or below the headline, an outlet
marker such as `(THTG)` at the start of the body, and a byline on the last line. Everything else in
the text ends up in the body, one paragraph per line, paragraphs separated by a blank line.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date

from index.chunking import split_into_sentences
from index.documents import Article, RawDocument
from index.text import normalize

# --- line level -----------------------------------------------------------------------------------

# Any whitespace inside a line (NBSP first of all, tabs, U+2000..U+200A) is a plain space, so runs of it
# collapse and no pattern below ever scans a long whitespace run; invisible characters go.
_SPACES = re.compile(r"\s")
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200d\u2060\ufeff]")
_SPACE_RUN = re.compile(r" {2,}")
_CAPTION_BAR = re.compile(r"\s+\|$")
_HAS_LETTER = re.compile(r"[^\W\d_]")

# Page chrome, matched against a whole line (casefolded, without a trailing colon).
CHROME_LINES: frozenset[str] = frozenset(
    {
        "ý kiến bạn đọc", "ý kiến của bạn", "gửi ý kiến", "tin liên quan", "bài liên quan",
        "bài viết liên quan", "tin cùng chuyên mục", "tin khác", "các tin khác", "tin mới",
        "tin mới nhất", "xem thêm", "đọc thêm", "đọc nhiều", "chia sẻ", "chia sẻ bài viết",
        "bình luận", "gửi bình luận", "viết bình luận", "in bài", "in bài viết", "bản in", "gửi bài",
        "gửi email", "gửi cho bạn bè", "lưu bài", "quay lại", "trở về", "về đầu trang",
        "lên đầu trang", "facebook", "twitter", "zalo", "email", "print", "share", "tweet",
    }
)
_CHROME_PREFIX = re.compile(r"^(?:tags?|từ khóa|từ khoá|chủ đề)\s*:", re.IGNORECASE)
_CHROME_COUNTED = re.compile(r"^(?:bình luận|ý kiến|chia sẻ)\s*\(\d+\)$", re.IGNORECASE)


@dataclass(frozen=True)
class _Line:
    text: str
    caption: bool = False  # the page marked it as a photo caption (trailing " |")


def _normalise_line(line: str) -> _Line:
    # Deleting an invisible character (or Markdown `**`) can join a letter to a combining mark: NFC again.
    line = normalize(_INVISIBLE.sub("", _SPACES.sub(" ", line)))
    line = _SPACE_RUN.sub(" ", line).strip()
    caption = bool(_CAPTION_BAR.search(line))
    if caption:
        line = _CAPTION_BAR.sub("", line)
    return _Line(line, caption)


def is_stray(line: str) -> bool:
    """A line with no letter at all: a lone page number, `.`, `,` or separator left by the scraper."""
    return not _HAS_LETTER.search(line)


def is_chrome(line: str) -> bool:
    """A whole line of page furniture (`TIN LIÊN QUAN`, `Ý kiến bạn đọc`, `Tags: ...`)."""
    folded = line.casefold().rstrip(" :")
    return folded in CHROME_LINES or bool(_CHROME_PREFIX.match(line) or _CHROME_COUNTED.match(line))


# --- markdown -------------------------------------------------------------------------------------

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
_MD_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
# No bracket or parenthesis inside the parts, so a failed match stops at the next one: `[[[[` or
# `[a](` repeated over a long line stays linear instead of rescanning the rest of the line each time.
_MD_IMAGE = re.compile(r"!\[([^\[\]]*)\]\([^()]*\)")
_MD_LINK = re.compile(r"\[([^\[\]]+)\]\([^()]*\)")
_MD_STRONG = re.compile(r"(\*\*|__)(.+?)\1")


def _markdown_to_lines(text: str) -> list[str]:
    """Headings lose their `#`, links and images keep their text, soft-wrapped lines are joined."""
    lines: list[list[str]] = []  # each line as its soft-wrapped pieces, joined once at the end
    joinable = False  # the previous line is running paragraph text a soft wrap may continue
    for raw in text.split("\n"):
        line = _MD_STRONG.sub(r"\2", _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", raw)))
        heading = _MD_HEADING.match(line)
        if heading:
            lines.append([_without_closing_hashes(heading.group(1))])
            joinable = False
        elif not line.strip():
            lines.append([""])
            joinable = False
        elif joinable and not _MD_LIST.match(line):
            lines[-1].append(line.strip())
        else:
            lines.append([line])
            joinable = True
    return [pieces[0] if len(pieces) == 1 else " ".join([pieces[0].rstrip(), *pieces[1:]]) for pieces in lines]


def _without_closing_hashes(heading: str) -> str:
    """`Title ##` -> `Title`: the optional closing `#`s of an ATX heading (done by hand: a regex
    for them backtracks quadratically over a long run of trailing spaces)."""
    heading = heading.rstrip()
    bare = heading.rstrip("#")
    return bare.rstrip() if bare != heading and bare[-1:].isspace() else heading


# --- dates ----------------------------------------------------------------------------------------

_DMY = re.compile(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?!\d)")
_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
# What may surround the date in a stamp line; anything else means the line is text, not a stamp.
_STAMP_NOISE = re.compile(
    r"\d{1,2}[:h]\d{2}(?::\d{2})?|[(\[]?\s*GMT\s*[+-]?\s*\d{0,2}\s*[)\]]?"
    r"|thứ\s+(?:hai|ba|tư|năm|sáu|bảy|[2-7])|chủ\s+nhật"
    r"|cập\s+nhật|ngày\s+đăng|đăng\s+ngày|đăng\s+lúc|xuất\s+bản|lúc|ngày|giờ|updated|published",
    re.IGNORECASE,
)
# "Sáng ngày 29/10", "chiều 8-10", "ngày 2/8/2019" at the start of the body.
_LEAD_DATE = re.compile(
    r"(?:sáng|chiều|tối|trưa|đêm|ngày|hôm)\s+(?:qua\s+|nay\s+)?\(?(?:ngày\s+)?"
    r"(\d{1,2})\s*[/-]\s*(\d{1,2})(?:\s*[/-]\s*(\d{4}))?(?![\d/-])",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?<!\d)(19[5-9]\d|20\d\d)(?!\d)")


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_date_stamp(line: str) -> date | None:
    """The date of a stamp line such as `Thứ Hai, 08/10/2018, 19:46 (GMT+7)`, else None.

    The line must hold nothing but the date, a time, a weekday, `GMT+7` and words like
    `Cập nhật lúc`, so a sentence that merely mentions a date is never taken for a stamp.
    """
    match = _DMY.search(line)
    found = _safe_date(int(match.group(3)), int(match.group(2)), int(match.group(1))) if match else None
    if found is None:
        match = _ISO.search(line)
        found = _safe_date(int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None
    if found is None or match is None:
        return None
    rest = _STAMP_NOISE.sub(" ", line[: match.start()] + " " + line[match.end() :])
    return None if re.search(r"\w", rest) else found


def parse_date_hint(value: str | None) -> date | None:
    """A date given by a jsonl record or an HTML `<meta>` (`2019-08-02`, `2019-08-02T10:00+07:00`, `02/08/2019`)."""
    if not value:
        return None
    iso = _ISO.search(value)
    if iso:
        return _safe_date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
    dmy = _DMY.search(value)
    return _safe_date(int(dmy.group(3)), int(dmy.group(2)), int(dmy.group(1))) if dmy else None


def infer_year(text: str) -> int | None:
    """The year a text is most about: the most frequent year mentioned, the latest on a tie."""
    counts = Counter(int(y) for y in _YEAR.findall(text))
    if not counts:
        return None
    return max(counts, key=lambda year: (counts[year], year))


def _lead_date(paragraph: str, whole_text: str) -> tuple[date | None, bool]:
    """The event date at the start of the body; the year is inferred from the text when missing."""
    match = _LEAD_DATE.search(paragraph[:200])
    if match is None:
        return None, False
    day, month = int(match.group(1)), int(match.group(2))
    if match.group(3):
        return _safe_date(int(match.group(3)), month, day), False
    year = infer_year(whole_text)
    return (_safe_date(year, month, day), True) if year else (None, False)


# --- title, outlet, byline ------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?…;:,]$")
_OUTLET = re.compile(r"^\((?P<name>[^()]{2,40})\)\s*[-–—:]?\s*")
_OUTLET_NAME = re.compile(
    r"^(?:[A-ZĐ][A-ZĐ0-9.&]{1,11}|\w+\.(?:vn|com|net)|(?:Báo|Đài|Tạp chí|Cổng|Trang|Thông tấn|Truyền hình)\b.*)$"
)
_CREDIT = re.compile(
    r"^(?:bài|tin|ảnh|video|clip|thực hiện)(?:\s*(?:,|và|\+|&|/)\s*(?:bài|tin|ảnh|video|clip))*\s*:\s*",
    re.IGNORECASE,
)
_NAME_SEPARATORS = re.compile(r"\s*(?:[–—,&/]|\s-\s|\bvà\b)\s*")
_LEAD_CLAUSE = re.compile(r"^[^,]{0,30}?\d{1,2}\s*[/-]\s*\d{1,2}(?:\s*[/-]\s*\d{2,4})?\s*,\s*")
_TITLE_MAX_CHARS = 100


def _is_headline(line: _Line) -> bool:
    words = line.text.split()
    return (
        not line.caption
        and 2 <= len(words) <= 30
        and not _SENTENCE_END.search(line.text)
        and (line.text[0].isupper() or line.text[0].isdigit())
    )


def is_byline(line: str) -> bool:
    """A short line of names: `Khánh Hồng`, `P. MAI`, `Bài, ảnh: X.THIÊN`, `Thanh Giang – Văn Hương`.

    No sentence-final punctuation, no digits, at most six words of names, every one capitalised,
    so a real closing sentence or a section heading (`Hướng về cơ sở`) is never taken for one.
    """
    if _SENTENCE_END.search(line) or re.search(r"\d", line) or len(line.split()) > 8:
        return False
    names = [part for part in _NAME_SEPARATORS.split(_CREDIT.sub("", line)) if part]
    words = [word for part in names for word in part.split()]
    return 1 <= len(words) <= 6 and all(word[0].isupper() for word in words)


def _outlet(paragraph: str) -> tuple[str | None, str]:
    """Split a leading outlet marker `(THTG) ` / `(Báo Quảng Ngãi)- ` off the first paragraph."""
    match = _OUTLET.match(paragraph)
    if match is None or not _OUTLET_NAME.match(match.group("name").strip()):
        return None, paragraph
    return match.group("name").strip(), paragraph[match.end() :]


def derive_title(text: str) -> str:
    """A headline for an article that has none: its first sentence, shortened at a clause or word.

    A leading time clause (`Sáng ngày 29/9, `) is dropped because it says when, not what.
    """
    spans = split_into_sentences(text)
    if not spans:
        return ""
    sentence = text[spans[0][0] : spans[0][1]]
    sentence = _LEAD_CLAUSE.sub("", sentence) or sentence
    sentence = sentence[0].upper() + sentence[1:]
    sentence = re.sub(r"[.!?…]+$", "", sentence)
    if len(sentence) <= _TITLE_MAX_CHARS:
        return sentence
    head = sentence[: _TITLE_MAX_CHARS + 1]
    clause_end = max(head.rfind(","), head.rfind(";"))
    if clause_end >= 40:
        return head[:clause_end]
    return head[: head.rfind(" ")].rstrip(" ,;:") + "…"


# --- duplicates -----------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    remaining = iter(long)
    return all(word in remaining for word in short)


def near_duplicate(first: str, second: str) -> bool:
    """Two lines saying the same thing: equal words, or one's words in order inside the other.

    The shorter must have at least half the words of the longer, so a heading is not swallowed by
    the paragraph that follows it.
    """
    a, b = _words(first), _words(second)
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return bool(short) and len(short) * 2 >= len(long) and _is_subsequence(short, long)


def _drop_repeats(lines: list[_Line]) -> list[_Line]:
    """Keep one of each run of near-identical consecutive lines (a caption printed twice), the fuller."""
    kept: list[_Line] = []
    for line in lines:
        if kept and near_duplicate(kept[-1].text, line.text):
            previous = kept[-1]
            # More words wins; with the same words, the longer one (it has the final period).
            fuller = max(previous, line, key=lambda candidate: (len(_words(candidate.text)), len(candidate.text)))
            kept[-1] = _Line(fuller.text, previous.caption or line.caption)
        else:
            kept.append(line)
    return kept


# --- the article ----------------------------------------------------------------------------------


def clean_article(doc: RawDocument) -> Article:
    """Clean a raw document into an article with title, date, outlet, byline and a whole body.

    Given metadata (jsonl, HTML) wins over what the text says. When nothing but debris was there,
    `text` is empty (and so is the chunk list); the indexer skips such an article with a reason.
    """
    # Every line break Python knows (\r\n, \r, U+2028, U+2029, \v, \f, \x1c-\x1e, \x85) ends a line.
    text = "\n".join(doc.text.splitlines())
    raw_lines = _markdown_to_lines(text) if doc.kind == "markdown" else text.split("\n")
    lines = [line for line in map(_normalise_line, raw_lines) if not (is_stray(line.text) or is_chrome(line.text))]
    lines = _drop_repeats(lines)

    given_title = (doc.title or "").strip() or None
    head_stamp, headline, lines = _take_head(lines, given_title)
    tail_stamp, byline, lines = _take_tail(lines)

    outlet, first = _outlet(lines[0].text) if lines else (None, "")
    paragraphs = [p for p in [first] + [line.text for line in lines[1:]] if p]
    body = "\n\n".join(paragraphs)

    published, date_inferred = parse_date_hint(doc.date) or head_stamp or tail_stamp, False
    if published is None and paragraphs:
        published, date_inferred = _lead_date(paragraphs[0], body)

    title = given_title or headline
    return Article(
        article_id=doc.doc_id,
        title=title or derive_title(body),
        title_inferred=title is None and bool(body),
        date=published.isoformat() if published else None,
        date_inferred=date_inferred,
        source=doc.source or outlet,
        byline=byline,
        url=doc.url,
        path=doc.path,
        text=body,
    )


def _take_head(lines: list[_Line], given_title: str | None) -> tuple[date | None, str | None, list[_Line]]:
    """Take the date stamp and the headline off the top, in either order; the body always keeps a line."""
    stamp: date | None = None
    headline: str | None = None
    while len(lines) > 1:
        top = lines[0]
        if stamp is None and (found := parse_date_stamp(top.text)) is not None:
            stamp = found
        elif given_title is not None and _words(top.text) == _words(given_title):
            pass  # the page repeats its <title>/<h1> as the first line
        elif given_title is None and headline is None and _is_headline(top):
            headline = top.text
        else:
            break
        lines = lines[1:]
    return stamp, headline, lines


def _take_tail(lines: list[_Line]) -> tuple[date | None, str | None, list[_Line]]:
    """Take a byline (and a date stamp some sites print last) off the bottom."""
    stamp: date | None = None
    byline: str | None = None
    while len(lines) > 1:
        bottom = lines[-1].text
        if stamp is None and (found := parse_date_stamp(bottom)) is not None:
            stamp = found
        elif byline is None and is_byline(bottom):
            byline = bottom
        else:
            break
        lines = lines[:-1]
    return stamp, byline, lines
