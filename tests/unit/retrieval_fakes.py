"""Deterministic fakes of the index store and the embedder, built on the real bundled articles.

The store holds the real cleaned articles and chunks (`clean_article`, `split_into_chunks`); the
embedder is a hashed bag of accent-folded syllables: "dense" search without any model files. It is not
cross-lingual (English questions share only names and numbers with the articles); the real model's
English reading is tested end to end.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from index.chunking import split_into_chunks
from index.cleaning import clean_article
from index.documents import Article, RawDocument
from index.text import tokenize

CORPUS = Path(__file__).resolve().parents[2] / "index" / "corpus"
DIM = 512


def bundled_articles() -> list[Article]:
    """The five bundled articles, cleaned as the indexer cleans them."""
    return [
        clean_article(RawDocument(doc_id=p.stem, text=p.read_text(encoding="utf-8"), path=str(p)))
        for p in sorted(CORPUS.glob("*.txt"))
    ]


@dataclass(frozen=True)
class FakeChunk:
    chunk_id: int
    article_id: str
    ordinal: int
    start: int
    end: int
    text: str


class HashingEmbedder:
    """Bag of folded syllables hashed into DIM buckets, L2-normalised."""

    def _vector(self, text: str) -> np.ndarray:
        tokens = tokenize(text, fold=True)
        vector = np.zeros(DIM, dtype=np.float32)
        for token in tokens:
            vector[zlib.crc32(token.encode("utf-8")) % DIM] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)

    def embed_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.embed_queries(texts)

    def embed_sentences(self, texts: list[str]) -> np.ndarray:
        return self.embed_queries(texts)


class FakeStore:
    """Implements the part of `IndexStore` retrieval reads, over in-memory articles and exact search."""

    def __init__(self, articles: list[Article], embedder: HashingEmbedder, *, size_words: int = 160,
                 overlap_sentences: int = 1) -> None:
        self._articles = {a.article_id: a for a in articles}
        self._chunks: list[FakeChunk] = []
        for article in articles:
            for piece in split_into_chunks(article, size_words=size_words, overlap_sentences=overlap_sentences):
                self._chunks.append(FakeChunk(len(self._chunks), piece.article_id, piece.ordinal, piece.start,
                                              piece.end, piece.text))
        texts = [f"{self._articles[c.article_id].title}\n{c.text}" for c in self._chunks]
        self._vectors = embedder.embed_passages(texts)

    def articles(self) -> list[Article]:
        return sorted(self._articles.values(), key=lambda a: a.article_id)

    def article(self, article_id: str) -> Article:
        return self._articles[article_id]

    def chunks(self) -> list[FakeChunk]:
        return list(self._chunks)

    def chunk(self, chunk_id: int) -> FakeChunk:
        return self._chunks[chunk_id]

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        scores = query_vectors @ self._vectors.T
        results = []
        for row in scores:
            order = np.lexsort((np.arange(len(row)), -row))[:k]
            results.append([(int(i), float(row[i])) for i in order])
        return results


def with_copy(articles: list[Article], article_id: str, new_id: str) -> list[Article]:
    """The articles plus a republished copy of one of them under another id."""
    original = next(a for a in articles if a.article_id == article_id)
    return [*articles, replace(original, article_id=new_id, source="Báo khác")]
