"""Where an index lives: the embedded FAISS + SQLite directory (`index.store`) or PostgreSQL with pgvector
(`index.stores.postgres`), both read through one `Store` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from index.sources import Source
from index.store import ArticleRecord, ChunkRecord


class Store(Protocol):
    """What front-ends and retrieval read from an index, whichever engine holds it."""

    def describe(self) -> str:
        """One line for people: how many articles and chunks, which model, where."""
        ...

    def articles(self) -> Sequence[ArticleRecord]: ...

    def article(self, article_id: str) -> ArticleRecord: ...

    def chunks(self) -> Sequence[ChunkRecord]: ...

    def chunk(self, chunk_id: int) -> ChunkRecord: ...

    def chunk_count(self) -> int: ...

    def sources(self) -> Sequence[Source]:
        """The sources the index syncs."""
        ...

    def claims(self) -> dict[str, set[Source]]:
        """For each article, the sources that yielded it."""
        ...

    def close(self) -> None: ...
