"""Checking the citations of a generated answer, while it streams.

The model cites the passages of its prompt as `[n]`, `[1, 2]`, `[1][2]` (small models also write
`[1-3]` or `[Đoạn 1]`). Numbers with no passage behind them are removed, and the passages actually
cited are renumbered 1..m in order of first use, so the answer lists only what it relies on. The same
rewriter runs on the stream token by token and on a finished text, so what the user watched appear is
what the final answer says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from index.text import (
    capitalised_names,
    content_words,
    fold,
    number_values,
    strip_citations,
    words,
)
from retrieval.types import Source

# One bracketed group of citation numbers, optionally labelled ("[Đoạn 1]", "[source 2]").
_LABEL = r"(?:đoạn|doan|nguồn|nguon|source|passage)?\s*"
_GROUP_RE = re.compile(rf"\[\s*{_LABEL}(\d{{1,3}}(?:\s*(?:[,;]|-|–|và|and)\s*{_LABEL}\d{{1,3}})*)\s*\]", re.IGNORECASE)
# What an unfinished group may look like while it streams in: held back until it closes or fails.
_PARTIAL_RE = re.compile(r"\[[\w\s,;\-–]{0,30}$", re.UNICODE)
_NUMBER_OR_RANGE_RE = re.compile(r"(\d{1,3})\s*(?:[-–]\s*(\d{1,3}))?")
_PUNCTUATION_AFTER = ".,;:!?)…"
_MAX_RANGE = 20


def _numbers(group: str) -> list[int]:
    """The numbers of one citation group, ranges expanded, in the order written."""
    numbers: list[int] = []
    for match in _NUMBER_OR_RANGE_RE.finditer(group):
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        numbers.extend(range(first, last + 1) if 0 <= last - first <= _MAX_RANGE else [first])
    return numbers


class CitationRewriter:
    """Rewrites citations of a streamed answer: drops numbers outside 1..`available`, renumbers the rest.

    Feed text fragments in order; each call returns the text that is safe to show now (an unfinished
    `[..`, trailing spaces and a lone `*` are held back until the next fragment decides them).
    Markdown bold (`**`) is removed: answers are plain text.
    """

    def __init__(self, available: int) -> None:
        self.available = available
        self.cited: list[int] = []  # original passage numbers, in order of first use
        self._pending = ""
        self._held_space = ""
        self._dropped = False

    def feed(self, fragment: str) -> str:
        """Take the next fragment of the answer; return the text that can be shown now."""
        self._pending += fragment
        return self._drain(final=False)

    def finish(self) -> str:
        """Flush whatever was held back at the end of the answer."""
        return self._drain(final=True)

    @property
    def mapping(self) -> dict[int, int]:
        """Original passage number -> number in the rewritten answer."""
        return {old: new for new, old in enumerate(self.cited, 1)}

    def _renumber(self, group: str) -> str:
        kept: list[int] = []
        for number in _numbers(group):
            if 1 <= number <= self.available:
                if number not in self.cited:
                    self.cited.append(number)
                new = self.mapping[number]
                if new not in kept:
                    kept.append(new)
        return f"[{', '.join(map(str, kept))}]" if kept else ""

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        text = self._pending.replace("**", "")
        self._pending = ""
        if not final:
            # Hold back what might still become a citation or a "**".
            partial = _PARTIAL_RE.search(text)
            cut = partial.start() if partial else len(text)
            if cut == len(text) and text.endswith("*"):
                cut -= 1
            text, self._pending = text[:cut], text[cut:]
        cursor = 0
        for match in _GROUP_RE.finditer(text):
            self._emit(text[cursor : match.start()], out)
            replacement = self._renumber(match.group(1))
            if replacement:
                self._emit(replacement, out)
            else:
                self._dropped = True
            cursor = match.end()
        self._emit(text[cursor:], out)
        if final:
            self._emit_trailing(out)
        return "".join(out)

    def _emit(self, text: str, out: list[str]) -> None:
        """Append `text`, holding trailing spaces; after a dropped citation, drop a doubled space."""
        if not text:
            return
        if self._dropped and (text[0].isspace() or text[0] in _PUNCTUATION_AFTER):
            self._held_space = ""
        self._dropped = False
        body = text.rstrip()
        if body:
            out.append(self._held_space + body)
            self._held_space = ""
        self._held_space += text[len(body) :]

    def _emit_trailing(self, out: list[str]) -> None:
        self._held_space = ""
        self._dropped = False


@dataclass(frozen=True)
class CheckedText:
    """An answer text after its citations were checked, with the sources it cites numbered 1..m."""

    text: str
    sources: list[Source]

    @property
    def cited(self) -> bool:
        return bool(self.sources)


def renumber_citations(text: str, available: int) -> tuple[str, list[int]]:
    """Rewrite the citations of a finished `text`; return it and the original numbers in citing order."""
    rewriter = CitationRewriter(available)
    rewritten = rewriter.feed(text) + rewriter.finish()
    return rewritten, rewriter.cited


def cited_sources(candidates: Sequence[Source], cited: Sequence[int]) -> list[Source]:
    """The candidates (the prompt's passages [1]..[k], in order) that were cited, renumbered in citing order."""
    return [replace(candidates[old - 1], n=new) for new, old in enumerate(cited, 1)]


def check_citations(text: str, candidates: Sequence[Source]) -> CheckedText:
    """Remove citations with no candidate behind them and renumber the rest with their sources."""
    rewritten, cited = renumber_citations(text, len(candidates))
    return CheckedText(rewritten.strip(), cited_sources(candidates, cited))


def is_grounded(answer: str, question: str, cited: Sequence[Source], *, check_names: bool = True) -> bool:
    """Whether the answer says something the question did not, backed by the passages it cites.

    Small models echo the question with a citation ("Giá vàng hôm nay là [1]."), bring figures and
    names from elsewhere (even from the prompt's worked example), or pin the question's year or
    province on a passage about another ("năm 2018 là 74.127" citing the 2023 article). So an answer
    must add a word to the question, and every number in it, and every name when `check_names`
    (Vietnamese answers; an English answer translates names), must appear in a cited passage, its
    title or its date, whether or not the question said it.
    """
    body = strip_citations(answer)
    support_text = " ".join(f"{s.title} {s.date or ''} {s.text}" for s in cited)
    if content_words(body) <= content_words(question):
        return False
    if not number_values(body) <= number_values(support_text.replace("-", " ").replace("/", " ")):
        return False
    if check_names:
        support_words = set(words(support_text))
        return all(fold(name) in support_words for name in capitalised_names(body))
    return True
