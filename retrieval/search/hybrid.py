"""Hybrid retrieval: BM25 fields plus dense search, fused per kind of question (`DEFAULT_ROUTES`).

Vietnamese questions fuse the syllable-pair BM25 field with dense search; those typed without
diacritics have their accents restored from the corpus first; English questions rest on dense search,
the only bridge to Vietnamese text, with their names and numbers matched in the folded field (the
measurements are beside `DEFAULT_ROUTES`). Chunk hits then become passages: adjacent chunks of one
article merged into one span, near-duplicates dropped, date and source filters applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from index.text import STOPWORDS_EN, QueryKind, detect_query_kind, is_number, normalize, tokenize
from retrieval.search.filters import admits, is_empty
from retrieval.search.lexical import Field, LexicalIndex
from retrieval.types import Passage, SearchFilters

Fusion = Literal["rrf", "score"]
_MERGE_RANK_FACTOR = 2  # chunks ranked within 2k may merge into passages; 2k passages are gathered at most


class StoredArticle(Protocol):
    article_id: str
    title: str
    date: str | None
    source: str | None
    text: str


class StoredChunk(Protocol):
    chunk_id: int
    article_id: str
    ordinal: int
    start: int
    end: int


class ChunkStore(Protocol):
    """The part of `index.store.IndexStore` that retrieval reads."""

    def articles(self) -> Sequence[StoredArticle]: ...

    def article(self, article_id: str) -> StoredArticle: ...

    def chunk(self, chunk_id: int) -> StoredChunk: ...

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]: ...


class QueryEmbedder(Protocol):
    """The part of `index.embedding.Embedder` that retrieval uses."""

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Route:
    """How much each ranked list counts for one kind of question (0 leaves a list out), and how lists
    are fused: `score` (each list's scores min-max normalised, then weighted) or `rrf` (weighted
    reciprocal rank, 1 / (rrf_k + rank))."""

    plain: float
    folded: float
    dense: float
    pairs: float = 0.0  # syllables and adjacent syllable pairs: the word-like field
    fusion: Fusion = "score"
    rrf_k: int = 60
    # Restore the question's accents from the corpus (`LexicalIndex.restore`) before the plain, pair
    # and dense lists: for questions typed without diacritics, which then take the accented path too.
    restore: bool = False


# Chosen by measurement on a realistic set (bench/retrieval_quality.py on the ViNewsQA dev split: 500
# health-news articles, 2,497 questions, also typed without diacritics, and 100-article subsets; figures
# and the command in issue 11). Accented questions: min-max score fusion of the syllable-pair field
# (1.0) and dense search (0.5), R@5 .897, against .882 for the pair field alone, .865 for pyvi words,
# .858 for syllables and .866 for the former three-way fusion; the syllable and folded fields get weight
# 0 in the fit, and neighbouring weights stay within .882-.897. Questions without diacritics: accents
# restored from the corpus first, then the same fusion (fitted apart, the same weights): .884, against
# .799 for the former folded route. English questions rest on dense search (R@5 1.000 on 100 XQuAD
# questions in English, against .660 for the best lexical field), with the folded field over their
# names and numbers at half weight, fused by reciprocal rank.
DEFAULT_ROUTES: dict[QueryKind, Route] = {
    "vi": Route(plain=0.0, folded=0.0, dense=0.5, pairs=1.0, fusion="score"),
    "vi_plain": Route(plain=0.0, folded=0.0, dense=0.5, pairs=1.0, fusion="score", restore=True),
    "en": Route(plain=0.0, folded=0.5, dense=1.0, fusion="rrf", rrf_k=20),
}


@dataclass
class ChunkCandidate:
    """A chunk with its fused score and, when dense search found it, its cosine to the question."""

    chunk_id: int
    score: float
    dense: float | None


@dataclass
class _Group:
    """Chunks of one article that touch each other, becoming one passage."""

    article_id: str
    start: int
    end: int
    first_ordinal: int
    last_ordinal: int
    score: float
    dense: float | None
    chunk_ids: list[int]

    def absorb(self, start: int, end: int, first: int, last: int, chunk_ids: list[int], dense: float | None) -> None:
        """Widen this group to also cover a touching span of the same article."""
        self.start, self.end = min(self.start, start), max(self.end, end)
        self.first_ordinal, self.last_ordinal = min(self.first_ordinal, first), max(self.last_ordinal, last)
        self.chunk_ids.extend(chunk_ids)
        if dense is not None:
            self.dense = dense if self.dense is None else max(self.dense, dense)


class HybridRetriever:
    """Implements `retrieval.types.Retriever` over an index store, an embedder and a lexical index."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: QueryEmbedder | None,
        lexical: LexicalIndex,
        *,
        routes: dict[QueryKind, Route] | None = None,
        depth: int = 50,
        duplicate_jaccard: float = 0.8,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.lexical = lexical
        self.routes = dict(DEFAULT_ROUTES if routes is None else routes)
        self.depth = depth
        self.duplicate_jaccard = duplicate_jaccard
        self._article_meta: dict[str, tuple[str | None, str | None]] | None = None

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        """The `k` best passages for `query`, best first, within `filters`."""
        if k <= 0 or not query.strip():
            return []
        query = normalize(query)  # an edge: a retriever may be called directly (LangChain, evaluation)
        candidates = self.rank_chunks(query, filters)
        return self._passages(candidates, k)

    def rank_chunks(self, query: str, filters: SearchFilters | None = None) -> list[ChunkCandidate]:
        """Fused chunk candidates, best first (the step before merging into passages)."""
        kind = detect_query_kind(query)
        route = self.routes[kind]
        scope = self._scope(filters)
        lists: list[tuple[float, list[tuple[int, float]]]] = []
        accented = self._restore(query) if route.restore else query
        if route.plain > 0:
            lists.append((route.plain, self._lexical(accented, "plain", scope)))
        if route.pairs > 0:
            lists.append((route.pairs, self._lexical(accented, "pairs", scope)))
        if route.folded > 0:
            tokens = _entity_tokens(query) if kind == "en" else None
            lists.append((route.folded, self._lexical(query, "folded", scope, tokens)))
        dense_hits: list[tuple[int, float]] = []
        if route.dense > 0 and self.embedder is not None:
            dense_hits = self._dense(accented, scope)
            lists.append((route.dense, dense_hits))
        fused = _fuse(lists, route)
        dense_of = dict(dense_hits)
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        return [ChunkCandidate(cid, score, dense_of.get(cid)) for cid, score in ranked]

    # The three steps a store-backed retriever (`retrieval.search.sql`) does in its own engine instead.

    def _scope(self, filters: SearchFilters | None) -> set[str] | None:
        """What the filters allow, in the form the searches take: here the allowed article ids."""
        return self._allowed_articles(filters)

    def _restore(self, query: str) -> str:
        return self.lexical.restore(query)

    def _lexical(self, query: str, field: Field, allowed_articles: set[str] | None,
                 tokens: list[str] | None = None) -> list[tuple[int, float]]:
        mask = None if allowed_articles is None else self.lexical.article_mask(allowed_articles)
        return self.lexical.search(query, self.depth, field=field, allowed=mask, tokens=tokens)

    def _dense(self, query: str, allowed_articles: set[str] | None) -> list[tuple[int, float]]:
        vector = self.embedder.embed_queries([query])
        # FAISS cannot filter, so a filtered search looks deeper and drops what the filter refuses.
        depth = self.depth if allowed_articles is None else self.depth * 8
        hits = self.store.search(vector, depth)[0]
        if allowed_articles is None:
            return hits
        article_of = self.lexical.article_of
        return [(cid, s) for cid, s in hits if article_of(cid) in allowed_articles][: self.depth]

    def _allowed_articles(self, filters: SearchFilters | None) -> set[str] | None:
        if filters is None or is_empty(filters):
            return None
        if self._article_meta is None:
            self._article_meta = {a.article_id: (a.date, a.source) for a in self.store.articles()}
        return {article_id for article_id, (date, source) in self._article_meta.items()
                if admits(filters, date, source)}

    def _passages(self, candidates: list[ChunkCandidate], k: int) -> list[Passage]:
        groups: list[_Group] = []
        passages: list[Passage] = []
        for position, candidate in enumerate(candidates):
            chunk = self.store.chunk(candidate.chunk_id)
            # Only the strongest chunks may grow a passage; weaker neighbours would dilute it.
            may_merge = position < _MERGE_RANK_FACTOR * k
            touched = _merge_into(groups, chunk, candidate, merge=may_merge)
            if touched:
                continue
            groups.append(_Group(chunk.article_id, chunk.start, chunk.end, chunk.ordinal, chunk.ordinal,
                                 candidate.score, candidate.dense, [chunk.chunk_id]))
            # Enough groups to fill k after dropping duplicates: stop reading lower-ranked chunks.
            if len(groups) >= _MERGE_RANK_FACTOR * k:
                break
        words: list[set[str]] = []
        for group in _consolidate(groups):
            passage = self._passage(group)
            passage_words = set(tokenize(passage.text, fold=True, number_variants=False))
            duplicate = any(
                _near_duplicate(passage, passage_words, kept, kept_words, self.duplicate_jaccard)
                for kept, kept_words in zip(passages, words)
            )
            if not duplicate:
                passages.append(passage)
                words.append(passage_words)
            if len(passages) == k:
                break
        return passages

    def _passage(self, group: _Group) -> Passage:
        article = self.store.article(group.article_id)
        return Passage(
            article_id=article.article_id,
            title=article.title,
            date=article.date,
            source=article.source,
            text=article.text[group.start : group.end],
            start=group.start,
            end=group.end,
            score=group.score,
            chunk_ids=tuple(sorted(group.chunk_ids)),
            dense_score=group.dense,
            url=article.url,
        )


def _fuse(lists: list[tuple[float, list[tuple[int, float]]]], route: Route) -> dict[int, float]:
    """Weighted fusion of ranked (chunk_id, score) lists into one score per chunk."""
    fused: dict[int, float] = {}
    for weight, hits in lists:
        if not hits:
            continue
        if route.fusion == "rrf":
            contributions = [(cid, weight / (route.rrf_k + rank)) for rank, (cid, _) in enumerate(hits, 1)]
        else:
            low, high = min(s for _, s in hits), max(s for _, s in hits)
            span = high - low if high > low else 1.0
            contributions = [(cid, weight * (s - low) / span) for cid, s in hits]
        for cid, value in contributions:
            fused[cid] = fused.get(cid, 0.0) + value
    return fused


def _merge_into(groups: list[_Group], chunk: StoredChunk, candidate: ChunkCandidate, *, merge: bool = True) -> bool:
    """Merge a chunk into a group of the same article that it overlaps or follows; False if none.

    With `merge=False` a touching chunk is only reported (True), not added: it is left out.
    """
    for group in groups:
        if group.article_id != chunk.article_id:
            continue
        adjacent = chunk.ordinal in (group.first_ordinal - 1, group.last_ordinal + 1)
        overlapping = chunk.start <= group.end and chunk.end >= group.start
        if adjacent or overlapping:
            if not merge:
                return True
            group.absorb(chunk.start, chunk.end, chunk.ordinal, chunk.ordinal, [chunk.chunk_id], candidate.dense)
            return True
    return False


def _consolidate(groups: list[_Group]) -> list[_Group]:
    """Join groups of one article that a later chunk made touch (chunks 3 and 5, then 4), keeping rank order."""
    kept: list[_Group] = []
    for group in groups:
        for earlier in kept:
            touching = (
                earlier.article_id == group.article_id
                and group.first_ordinal <= earlier.last_ordinal + 1
                and earlier.first_ordinal <= group.last_ordinal + 1
            )
            if touching:
                earlier.absorb(group.start, group.end, group.first_ordinal, group.last_ordinal, group.chunk_ids, group.dense)
                break
        else:
            kept.append(group)
    return kept


def _near_duplicate(passage: Passage, words: set[str], kept: Passage, kept_words: set[str], threshold: float) -> bool:
    """Same article and overlapping span, or nearly the same words (a republished story)."""
    if passage.article_id == kept.article_id:
        return passage.start < kept.end and kept.start < passage.end
    if not words or not kept_words:
        return False
    return len(words & kept_words) / len(words | kept_words) >= threshold


def _entity_tokens(query: str) -> list[str]:
    """For an English question: the folded tokens worth matching in Vietnamese text (names, numbers).

    English function words would match unrelated Vietnamese syllables once folded (`the` ~ `thế`),
    so only numbers and capitalised words (names) are kept.
    """
    words = query.split()
    kept: list[str] = []
    for position, word in enumerate(words):
        tokens = tokenize(word, fold=True)
        stripped = word.strip("\"'“”‘’«»()[]{}.,;:!?")
        capitalised = bool(stripped) and stripped[0].isupper() and (position > 0 or stripped.lower() not in STOPWORDS_EN)
        for token in tokens:
            if is_number(token) or (capitalised and token not in STOPWORDS_EN):
                kept.append(token)
    return kept


class FilteredRetriever:
    """A Retriever that always applies the same filters (a date range or outlets chosen by the user)."""

    def __init__(self, inner: HybridRetriever, filters: SearchFilters) -> None:
        self.inner = inner
        self.filters = filters

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        return self.inner.retrieve(query, k, filters or self.filters)
