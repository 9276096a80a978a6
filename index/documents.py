"""The plain data that flows from files on disk to the index: raw documents, cleaned articles, chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DocumentKind = Literal["text", "markdown", "html", "jsonl"]


@dataclass(frozen=True)
class RawDocument:
    """One document as read from disk, NFC-normalised but otherwise untouched.

    `title`, `date`, `url` and `source` are hints given by the container (a jsonl record, HTML
    `<title>`/`<meta>`); cleaning prefers them over what it can extract from the text.
    """

    doc_id: str
    text: str
    path: str | None
    title: str | None = None
    date: str | None = None
    url: str | None = None
    source: str | None = None
    kind: DocumentKind = "text"


@dataclass(frozen=True)
class Article:
    """A cleaned article with its metadata; `text` is the body every chunk offset points into.

    `date` is ISO `yyyy-mm-dd`. `title_inferred` / `date_inferred` say the value was derived
    (title from the first sentence, year from the text) rather than read from the page.
    """

    article_id: str
    title: str
    title_inferred: bool
    date: str | None
    date_inferred: bool
    source: str | None
    byline: str | None
    url: str | None
    path: str | None
    text: str


@dataclass(frozen=True)
class Chunk:
    """A passage of an article; `text == article.text[start:end]` so a citation can quote it exactly."""

    article_id: str
    ordinal: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Skipped:
    """An input that was not used, with a reason a person can act on."""

    path: str
    reason: str
    vi: str | None = None  # the reason in Vietnamese, which the CLI shows by default

    def in_language(self, language: str) -> str:
        return self.vi if language == "vi" and self.vi else self.reason
