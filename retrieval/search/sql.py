"""Hybrid retrieval whose searches run in the database (`index.stores.postgres.PostgresStore`).

The routes, the fusion and the merging of chunks into passages are `HybridRetriever`'s; only the
three steps that touch the index differ: BM25 and HNSW search are SQL queries with the date and outlet
filters in their WHERE clause (pgvector's iterative scan keeps filling the HNSW results), and the
diacritic model comes from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from index.stores.postgres import ArticleLimits
from index.text import QueryKind
from retrieval.search.hybrid import ChunkStore, HybridRetriever, QueryEmbedder, Route
from retrieval.search.lexical import Field, query_tokens
from retrieval.search.restore import DiacriticRestorer
from retrieval.types import SearchFilters


class SearchingStore(ChunkStore, Protocol):
    """A store that searches itself: the part of `PostgresStore` this retriever uses."""

    restorer_json: str | None

    def dense_search(self, vector, depth: int, limits: ArticleLimits | None = None) -> list[tuple[int, float]]: ...

    def lexical_search(self, tokens: Sequence[str], field: Field, depth: int,
                       limits: ArticleLimits | None = None) -> list[tuple[int, float]]: ...


class SqlHybridRetriever(HybridRetriever):
    """Implements `retrieval.types.Retriever` over a store that runs BM25 and vector search itself."""

    def __init__(self, store: SearchingStore, embedder: QueryEmbedder | None, *,
                 routes: dict[QueryKind, Route] | None = None, depth: int = 50, duplicate_jaccard: float = 0.8) -> None:
        super().__init__(store, embedder, None, routes=routes, depth=depth, duplicate_jaccard=duplicate_jaccard)
        self.store: SearchingStore = store
        self.restorer = DiacriticRestorer.from_json(store.restorer_json) if store.restorer_json else None

    def _scope(self, filters: SearchFilters | None) -> ArticleLimits | None:
        if filters is None:
            return None
        return ArticleLimits(filters.date_from, filters.date_to, tuple(filters.sources))

    def _restore(self, query: str) -> str:
        return query if self.restorer is None else self.restorer.restore(query)

    def _lexical(self, query: str, field: Field, limits: ArticleLimits | None,
                 tokens: list[str] | None = None) -> list[tuple[int, float]]:
        chosen = tokens if tokens is not None else query_tokens(query, field)
        return self.store.lexical_search(chosen, field, self.depth, limits)

    def _dense(self, query: str, limits: ArticleLimits | None) -> list[tuple[int, float]]:
        vector = self.embedder.embed_queries([query])[0]
        return self.store.dense_search(vector, self.depth, limits)
