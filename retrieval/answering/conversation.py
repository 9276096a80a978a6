"""Follow-up questions (`còn năm 2019 thì sao?`, `what about 2018?`) made standalone from recent turns.

Retrieval needs a question that stands on its own. Without an LLM the rewrite is deterministic: a
follow-up is recognised by its markers (`còn ...`, `... thì sao`, `vậy còn`, `what about`) or by being
a few words with no question word, and its new year, place or topic is substituted into the previous
standalone question. With a chat model, a short rewrite prompt does the same for any phrasing, and
the rules stay as the fallback when the model's rewrite is unusable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from index.text import (
    INTERROGATIVES_FOLDED,
    YEAR_RE,
    Language,
    answer_language,
    fold,
    normalize,
    words,
)
from retrieval.types import Turn

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

# Markers on accent-folded, lower-cased text (so "con nam 2019 thi sao" counts as well).
_LEADING_MARKERS = (
    "and what about", "what about", "how about", "what of", "same for", "and for", "and in", "and",
    "the con", "vay con", "the thi", "vay thi", "con ve", "con", "va",
)
_TRAILING_MARKERS = (
    "thi nhu the nao", "thi the nao", "thi ra sao", "thi sao", "the nao", "ra sao", "nhi", "then", "instead",
)
_MARKER_WINDOW = max(map(len, _LEADING_MARKERS + _TRAILING_MARKERS)) + 1  # a marker and the space before it
_YEAR_FILLER = frozenset("nam in the year for of vao trong".split())
# Words after which a capitalised run is a place or organisation the question is about.
_PLACE_MARKERS = ("tinh uy", "thanh uy", "huyen uy", "thanh pho", "tinh", "tp", "huyen", "quan", "xa", "phuong", "o", "tai", "in", "of", "for")
_SHORT_FOLLOW_UP_WORDS = 4
_LONG_STANDALONE_WORDS = 7


def incoming(question: str, history: Sequence[Turn] | None) -> tuple[str, list[Turn]]:
    """A question and its history as they enter an answerer: in NFC, the one form the text rules compare."""
    return normalize(question), [Turn(normalize(t.question), t.answer) for t in history or ()]


@dataclass(frozen=True)
class FollowUp:
    """What a follow-up question adds: a new year and/or a new place or topic (original spelling)."""

    years: tuple[str, ...]
    rest: str


def _strip_markers(question: str) -> tuple[str, bool]:
    """The question without its follow-up markers, and whether any marker was found.

    Only a window at each end is folded and the text is cut once at the end: folding and slicing the
    whole text for each marker made `còn còn còn ...` (a marker per word) quadratic, 35 s at 30k characters.
    """
    text = question.strip().rstrip("?.!… ").strip()
    start, end = 0, len(text)
    found = False
    changed = True
    while changed and start < end:
        changed = False
        head = fold(text[start : min(end, start + _MARKER_WINDOW)])
        for marker in _LEADING_MARKERS:
            if head == marker or head.startswith(marker + " ") or head.startswith(marker + ","):
                start += len(marker)
                while start < end and text[start] in " ,":
                    start += 1
                found = changed = True
                break
        tail = fold(text[max(start, end - _MARKER_WINDOW) : end])
        for marker in _TRAILING_MARKERS:
            if tail == marker or tail.endswith(" " + marker):
                end -= len(marker)
                while end > start and text[end - 1] in " ,":
                    end -= 1
                found = changed = True
                break
    return text[start:end].strip(), found


def parse_follow_up(question: str, has_history: bool = True) -> FollowUp | None:
    """What the follow-up asks anew, or None when `question` is a question in its own right."""
    if not has_history:
        return None
    rest, marked = _strip_markers(question)
    folded = words(rest)
    asks = any(word in INTERROGATIVES_FOLDED for word in folded) or "khi nao" in fold(rest)
    short = len(folded) <= _SHORT_FOLLOW_UP_WORDS and not asks
    if not (marked or short) or not folded:
        return None
    if len(folded) >= _LONG_STANDALONE_WORDS and asks:
        return None  # "Còn bao nhiêu đảng viên chưa ... ?" is a full question that happens to start with "còn"
    years = tuple(YEAR_RE.findall(rest))
    remainder = YEAR_RE.sub(" ", rest)
    kept = [word for word in remainder.split() if fold(word).strip(",.") not in _YEAR_FILLER]
    return FollowUp(years=years, rest=" ".join(kept).strip(" ,"))


def _capitalised_run(text: str) -> int:
    """Length of the run of capitalised words at the start of `text` (`Tiền Giang năm` -> len("Tiền Giang"))."""
    end = 0
    for match in re.finditer(r"\S+", text):
        if match.start() != end + (1 if end else 0) or not match.group()[0].isupper():
            break
        end = match.end()
    return end


def _capitalised_run_after_marker(text: str) -> tuple[int, int] | None:
    """Span of the first capitalised name that follows a place marker (`tỉnh Tiền Giang`, `in Quang Ngai`)."""
    folded = fold(text)
    for marker in _PLACE_MARKERS:
        for match in re.finditer(rf"\b{marker} ", folded):
            length = _capitalised_run(text[match.end() :])
            if length:
                return match.end(), match.end() + length
    return None


def _insert_before_predicate(question: str, phrase: str, language: Language) -> str:
    """Add `phrase` ahead of the question's predicate (`là bao nhiêu`, `?`) so it still reads naturally."""
    body = question.rstrip().rstrip("?").rstrip()
    if language == "vi":
        match = re.search(r"\s(là|có|được|bao nhiêu|la|co|duoc|bao nhieu)\b", body)
        if match:
            return f"{body[: match.start()]} {phrase}{body[match.start():]}?"
    return f"{body} {phrase}?"


def _substitute_years(previous: str, years: Sequence[str], language: Language) -> str:
    old = YEAR_RE.findall(previous)
    if not old:
        return _insert_before_predicate(previous, ("năm " if language == "vi" else "in ") + " và ".join(years), language)
    replaced = previous
    for index, year in enumerate(old):
        replaced = replaced.replace(year, years[min(index, len(years) - 1)], 1)
    return replaced


def _looks_like_name(text: str) -> bool:
    words = text.split()
    return bool(words) and all(word[:1].isupper() or word[:1].isdigit() for word in words if fold(word) not in _PLACE_MARKERS)


def _substitute_rest(previous: str, rest: str, language: Language) -> str:
    """Put a new place into the previous question, or ask the new topic under the previous constraints."""
    name = rest
    for marker in _PLACE_MARKERS:
        if fold(name).startswith(marker + " ") and _looks_like_name(name[len(marker) + 1 :]):
            name = name[len(marker) + 1 :]
            break
    if _looks_like_name(name):
        span = _capitalised_run_after_marker(previous)
        if span:
            return previous[: span[0]] + name + previous[span[1] :]
        province = re.search(r"\b(tỉnh|thành phố|tinh|thanh pho)\b", previous)
        if province and not _capitalised_run(previous[province.end() :].lstrip()):
            return previous[: province.end()] + " " + name + previous[province.end() :]
        english_province = re.search(r"\bthe province\b", previous)
        if english_province:
            return previous[: english_province.start()] + f"{name} province" + previous[english_province.end() :]
        return _insert_before_predicate(previous, ("ở " if language == "vi" else "in ") + name, language)
    # A new topic ("còn số tổ chức cơ sở đảng?"): keep the previous question's year and place.
    constraints = []
    years = [year for year in YEAR_RE.findall(previous) if year not in rest]
    if years:
        constraints.append(("năm " if language == "vi" else "in ") + ", ".join(years))
    span = _capitalised_run_after_marker(previous)
    if span and previous[span[0] : span[1]] not in rest:
        constraints.append(previous[span[0] : span[1]])
    return " ".join([rest, *constraints]).strip() + "?"


def rewrite_by_rules(question: str, previous: str) -> str:
    """Deterministic rewrite of a follow-up against the previous standalone question."""
    follow_up = parse_follow_up(question)
    if follow_up is None:
        return question
    language = answer_language(previous)
    rewritten = previous.strip()
    if follow_up.years:
        rewritten = _substitute_years(rewritten, follow_up.years, language)
    if follow_up.rest:
        rewritten = _substitute_rest(rewritten, follow_up.rest, language)
    return rewritten


def standalone_history(history: Sequence[Turn]) -> list[str]:
    """Each past question made standalone in turn, so chained follow-ups resolve (2023 -> 2019 -> 2016)."""
    resolved: list[str] = []
    for turn in history:
        previous = resolved[-1] if resolved else None
        resolved.append(rewrite_by_rules(turn.question, previous) if previous else turn.question)
    return resolved


_REWRITE_SYSTEM = """Viết lại câu hỏi cuối thành một câu hỏi đầy đủ, hiểu được mà không cần đọc hội thoại. Giữ ngôn ngữ của câu hỏi cuối. Chỉ trả về câu hỏi.
Rewrite the last question as a standalone question in its own language. Output only the question.
Ví dụ: Hỏi: Dân số tỉnh A năm 2020 là bao nhiêu? / Câu hỏi cuối: còn năm 2021 thì sao? -> Dân số tỉnh A năm 2021 là bao nhiêu?"""
_REWRITE_ANSWER_WORDS = 30
_REWRITE_MAX_WORDS = 60


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def rewrite_with_model(question: str, history: Sequence[Turn], chat_model: BaseChatModel) -> str:
    """Ask the chat model for the standalone question; the raw model output, first line only."""
    lines = [f"Hỏi: {turn.question}\nĐáp: {_clip(turn.answer, _REWRITE_ANSWER_WORDS)}" for turn in history]
    user = "\n".join(lines) + f"\nCâu hỏi cuối: {question}\nCâu hỏi đầy đủ:"
    # (role, text) pairs: LangChain turns them into messages, so this module never imports it.
    reply = chat_model.invoke([("system", _REWRITE_SYSTEM), ("human", user)])
    text = reply.content if isinstance(reply.content, str) else str(reply.content)
    return text.strip().splitlines()[0].strip().strip('"“”') if text.strip() else ""


def _usable(rewrite: str, follow_up: FollowUp) -> bool:
    """A model rewrite is kept only if it is one short question carrying the follow-up's new year and name."""
    words = rewrite.split()
    if not 0 < len(words) <= _REWRITE_MAX_WORDS or not all(year in rewrite for year in follow_up.years):
        return False
    return not _looks_like_name(follow_up.rest) or fold(follow_up.rest) in fold(rewrite)


def rewrite_question(
    question: str,
    history: Sequence[Turn] | None,
    chat_model: BaseChatModel | None = None,
    *,
    history_turns: int = 4,
) -> str:
    """The standalone form of `question` given the last `history_turns` turns; unchanged if not a follow-up.

    Only a question recognised as a follow-up is rewritten, so a standalone question never costs an
    LLM call. With `chat_model` the model rewrites it (rules as the fallback); without, the rules do.
    """
    recent = list(history or [])[-history_turns:] if history_turns > 0 else []
    follow_up = parse_follow_up(question, has_history=bool(recent))
    if follow_up is None:
        return question
    previous = standalone_history(recent)[-1]
    by_rules = rewrite_by_rules(question, previous)
    if chat_model is None:
        return by_rules
    resolved = [Turn(question=q, answer=turn.answer) for q, turn in zip(standalone_history(recent), recent)]
    rewrite = rewrite_with_model(question, resolved, chat_model)
    return rewrite if _usable(rewrite, follow_up) else by_rules
