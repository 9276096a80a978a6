"""The Answerer's structured result, shared by the CLI and Telegram front-ends (never markup)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Source:
    """One numbered passage an answer cites: where it comes from and the exact span quoted."""

    n: int
    article_id: str
    title: str
    date: str | None
    source: str | None
    text: str
    start: int
    end: int
    score: float
    url: str | None = None  # the article's page, for articles from the web

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """An answer text with `[n]` citations into `sources`; `found` is False for "not in the articles"."""

    text: str
    found: bool
    sources: list[Source] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"answer": self.text, "found": self.found, "sources": [s.to_dict() for s in self.sources]}


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation, used to rewrite follow-up questions."""

    question: str
    answer: str


class AnswerStream:
    """An answer as it is produced: iterate for its text fragments, then `final()` gives the checked `Answer`.

    The fragments are provisional: when the checks turn the answer down, the final `Answer` says
    something else ("not found", or the extractive fallback's quote), and front-ends show its text.
    """

    def __init__(self, produce: Generator[str, None, Answer]) -> None:
        self._produce = produce
        self._final: Answer | None = None

    @classmethod
    def of(cls, answer: Answer) -> AnswerStream:
        """A stream of an answer made all at once: its whole text is the only fragment."""

        def produce() -> Generator[str, None, Answer]:
            yield answer.text
            return answer

        return cls(produce())

    def __iter__(self) -> Iterator[str]:
        while self._final is None:
            try:
                fragment = next(self._produce)
            except StopIteration as done:
                self._final = done.value
                return
            yield fragment

    def close(self) -> None:
        """Stop producing the answer: the generator is closed, and an LLM stream it reads from with it."""
        self._produce.close()

    def final(self) -> Answer:
        """The checked answer; reads whatever fragments were not read yet."""
        for _ in self:
            pass
        assert self._final is not None, "an answer stream always ends with an Answer"
        return self._final


class Answerer(Protocol):
    """Answers a question from the indexed articles; one instance serves the CLI and Telegram.

    Implementations subclass this Protocol, so they inherit the default `warm_up`.
    """

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        """The checked answer to `question` (a follow-up is read against `history`)."""
        ...

    def stream(self, question: str, history: list[Turn] | None = None) -> AnswerStream:
        """The answer's fragments as they are produced, and the checked `Answer` at the end."""
        ...

    def warm_up(self) -> None:
        """Load now what the first answer would otherwise wait for (a local model); nothing by default."""
        return None


@dataclass(frozen=True)
class Passage:
    """A retrieved span of one article (adjacent chunks already merged), ready to cite."""

    article_id: str
    title: str
    date: str | None
    source: str | None
    text: str
    start: int
    end: int
    score: float
    chunk_ids: tuple[int, ...] = ()
    # Best cosine of the question to the passage's chunks when dense search found them (None otherwise);
    # the grounding gate needs it for English questions, which share few words with Vietnamese articles.
    dense_score: float | None = None
    url: str | None = None

    def to_source(self, n: int, *, text: str | None = None, start: int | None = None, end: int | None = None) -> Source:
        """Number this passage (or a narrower span of it) as source `n` of an answer."""
        return Source(
            n=n,
            article_id=self.article_id,
            title=self.title,
            date=self.date,
            source=self.source,
            text=self.text if text is None else text,
            start=self.start if start is None else start,
            end=self.end if end is None else end,
            score=self.score,
            url=self.url,
        )


@dataclass(frozen=True)
class SearchFilters:
    """Optional limits on what may be retrieved: ISO dates (inclusive) and source outlets."""

    date_from: str | None = None
    date_to: str | None = None
    sources: tuple[str, ...] = ()


class Retriever(Protocol):
    """Finds the passages most likely to answer a question, best first."""

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]: ...
