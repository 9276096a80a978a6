"""Answers as Telegram HTML: escaping, citations and sources, splitting at 4096 characters, plain fallback.

Pure functions only (no Telegram I/O), so every rule Telegram enforces can be tested on plain strings.
Telegram's HTML mode accepts a handful of tags and only `&lt; &gt; &amp; &quot;` (and numeric entities);
everything coming from articles or answers is escaped before it is put between our own tags.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from index.text import QUOTE_CHARS, Language, display_date, short_quote
from retrieval.answering.replies import NEAREST_HEADING, SOURCES_HEADING
from retrieval.types import Answer, Source

MESSAGE_LIMIT = 4096
"""Telegram's limit for one message, counted on the text after entity parsing, in UTF-16 code units."""

EMPTY_ANSWER = "(Câu trả lời trống.)"


class ArticleListing(NamedTuple):
    """One indexed article as `/sources` shows it (the front-end never sees index internals)."""

    title: str
    date: str | None
    source: str | None
    n_chunks: int


def escape(text: str) -> str:
    """Escape text for Telegram's HTML parse mode (quotes too, so it is also safe inside attributes)."""
    return html.escape(text, quote=True)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _source_heading(source: Source) -> str:
    """`[n] Title · 01/05/2024 · Outlet`, escaped, with the number in bold."""
    title = f"<b>{escape(source.title)}</b>"
    if source.url and source.url.lower().startswith(("https://", "http://")):
        title = f'<a href="{escape(source.url)}">{title}</a>'
    parts = [title]
    date = display_date(source.date)
    if date:
        parts.append(escape(date))
    if source.source:
        parts.append(escape(source.source))
    return f"<b>[{source.n}]</b> " + " · ".join(parts)


def to_telegram_html(answer: Answer, *, notice: str | None = None, quote_chars: int = QUOTE_CHARS,
                     language: Language = "vi") -> str:
    """The answer text with its `[n]` citations, then each source as title, date and a short quote.

    `notice` (already plain text, e.g. "your question was cut") is shown in italics above the answer.
    """
    blocks: list[str] = []
    if notice:
        blocks.append(f"<i>{escape(notice)}</i>")
    # Telegram refuses an empty message, and an LLM may well answer with nothing.
    blocks.append(escape(answer.text.strip()) or EMPTY_ANSWER)
    if answer.sources:
        # A "not found" answer may still list the closest passages; say they are only that.
        lines = [_sources_heading(answer, language)]
        for source in answer.sources:
            lines.append(_source_heading(source))
            lines.append(f"<i>“{escape(short_quote(source.text, quote_chars))}”</i>")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _sources_heading(answer: Answer, language: Language) -> str:
    """The heading above an answer's sources, in the answer's language; "nearest" for a "not found"."""
    return f"<b>{escape((SOURCES_HEADING if answer.found else NEAREST_HEADING)[language])}:</b>"


def _source_link(source: Source) -> str:
    """A source's heading for a shared answer: its title linked to the article when it has a web address."""
    link = next((value for value in (source.url, source.source) if value and re.match(r"https?://", value)), None)
    if link is None:
        return _source_heading(source)
    parts = [f'<a href="{escape(link)}">{escape(source.title)}</a>']
    date = display_date(source.date)
    if date:
        parts.append(escape(date))
    return f"<b>[{source.n}]</b> " + " · ".join(parts)


def shared_answer_html(answer: Answer, limit: int = MESSAGE_LIMIT, language: Language = "vi") -> str:
    """An answer to be shared into another chat (inline mode): its text and citations, then one line per
    source (title, date, outlet, a link when there is one), as one message of at most `limit` characters."""
    sources = ""
    if answer.sources:
        sources = "\n\n" + "\n".join([_sources_heading(answer, language), *(_source_link(s) for s in answer.sources)])
    text = answer.text.strip() or EMPTY_ANSWER
    room = limit - utf16_len(to_plain_text(sources)) - 2
    if utf16_len(text) > room:  # rare: the sources are short, so the answer text is what gives way
        text = text[: max(room - 1, 0)].rstrip() + "…"
    return escape(text) + sources


def passages_html(sources: Sequence[Source]) -> str:
    """The full cited passages of an answer, each under its numbered heading (the "sources" button)."""
    if not sources:
        return "Câu trả lời này không trích dẫn đoạn nào."
    blocks = ["<b>Các đoạn được trích dẫn</b>"]
    for source in sources:
        blocks.append(f"{_source_heading(source)}\n<blockquote>{escape(source.text.strip())}</blockquote>")
    return "\n\n".join(blocks)


def sources_list_html(articles: Iterable[ArticleListing | tuple[str, str | None, str | None, int]]) -> str:
    """The `/sources` listing: one numbered line per indexed article."""
    rows = [ArticleListing(*article) for article in articles]
    if not rows:
        return "Chưa có bài báo nào được lập chỉ mục. Hãy chạy <code>hoidap index</code> trước."
    lines = [f"<b>Các bài báo đã lập chỉ mục ({len(rows)}):</b>"]
    for i, row in enumerate(rows, start=1):
        details = [part for part in (display_date(row.date), row.source) if part]
        details.append(f"{row.n_chunks} đoạn")
        lines.append(f"{i}. <b>{escape(row.title)}</b> — {escape(' · '.join(details))}")
    return "\n".join(lines)


# --- splitting ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"<[^<>]*>|&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]+);|[^<&]|[<&]", re.DOTALL)
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][\w-]*)")
_SENTENCE_END = ".!?…;:"

# Break priorities: the higher the better; a hard cut (priority -1) only when nothing else fits.
_PARAGRAPH, _LINE, _SENTENCE, _WORD = 3, 2, 1, 0


class _Unit(NamedTuple):
    raw: str
    width: int  # UTF-16 units of visible text (0 for tags)
    tag: str | None  # tag name for tags
    closing: bool


def _units(markup: str) -> list[_Unit]:
    units: list[_Unit] = []
    for match in _TOKEN.finditer(markup):
        raw = match.group(0)
        if raw.startswith("<") and len(raw) > 1 and raw.endswith(">"):
            tag = _TAG.match(raw)
            if tag:
                units.append(_Unit(raw, 0, tag[2].lower(), tag[1] == "/"))
                continue
        if raw.startswith("&") and len(raw) > 1:
            units.append(_Unit(raw, utf16_len(html.unescape(raw)), None, False))
        else:
            units.append(_Unit(raw, utf16_len(raw), None, False))
    return units


def _visible(unit: _Unit) -> str:
    return html.unescape(unit.raw) if unit.tag is None else ""


def _break_priority(units: list[_Unit], i: int) -> int | None:
    """How good a place it is to end a message just before whitespace unit `i` (None: not whitespace)."""
    char = _visible(units[i])
    if char not in (" ", "\n", "\t"):
        return None
    if char == "\n":
        return _PARAGRAPH if i + 1 < len(units) and _visible(units[i + 1]) == "\n" else _LINE
    j = i - 1
    while j >= 0 and units[j].tag is not None:
        j -= 1
    if j >= 0 and _visible(units[j])[-1:] in _SENTENCE_END:
        return _SENTENCE
    return _WORD


def _stack_after(units: list[_Unit], start: int, end: int, stack: list[_Unit]) -> list[_Unit]:
    stack = list(stack)
    for unit in units[start:end]:
        if unit.tag is None:
            continue
        if unit.closing:
            for k in range(len(stack) - 1, -1, -1):
                if stack[k].tag == unit.tag:
                    del stack[k]
                    break
        else:
            stack.append(unit)
    return stack


def _choose_end(units: list[_Unit], start: int, limit: int) -> int:
    """The unit index to end a message at: the best break in the second half of what fits, else a hard cut."""
    width = 0
    late: dict[int, int] = {}  # priority -> last such break past half the limit
    early: dict[int, int] = {}  # priority -> last such break before that
    i = start
    while i < len(units):
        if width + units[i].width > limit:
            break
        priority = _break_priority(units, i)
        if priority is not None and i > start:
            (late if width >= limit // 2 else early)[priority] = i
        width += units[i].width
        i += 1
    else:
        return len(units)
    for priority in (_PARAGRAPH, _LINE, _SENTENCE, _WORD):
        if priority in late:
            return late[priority]
    if early:  # the second half is one unbroken word: end at the last break before it
        return max(early.values())
    return max(i, start + 1)


def _is_blank(units: Sequence[_Unit]) -> bool:
    return all(unit.tag is not None or not _visible(unit).strip() for unit in units)


def split_message(markup: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split Telegram HTML into messages of at most `limit` visible UTF-16 units each.

    Splits prefer paragraph, then line, then sentence, then word boundaries; a tag open at a split is
    closed at the end of one message and reopened at the start of the next, so each part parses alone.
    """
    units = _units(markup)
    parts: list[str] = []
    stack: list[_Unit] = []
    start = 0
    while start < len(units):
        # Whitespace at a boundary would be trimmed by Telegram anyway; drop it so widths stay exact.
        while start < len(units) and units[start].tag is None and not _visible(units[start]).strip():
            start += 1
        if start >= len(units):
            break
        end = _choose_end(units, start, limit)
        body = units[start:end]
        closing_stack = _stack_after(units, start, end, stack)
        if not _is_blank(body):
            text = "".join(u.raw for u in stack) + "".join(u.raw for u in body)
            text = text.rstrip() + "".join(f"</{u.tag}>" for u in reversed(closing_stack))
            parts.append(text)
        stack = closing_stack
        start = end
    return parts or [markup]


def to_plain_text(markup: str) -> str:
    """The same message without markup: tags dropped, entities decoded (the fallback Telegram cannot reject)."""
    return "".join(_visible(unit) for unit in _units(markup))
