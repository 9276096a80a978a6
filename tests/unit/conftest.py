"""Unit fixtures: a fake store of the real bundled articles with a hashing embedder (no model, no disk)."""

from __future__ import annotations

import pytest

from retrieval.search.hybrid import HybridRetriever
from retrieval.search.lexical import LexicalIndex
from tests.unit.retrieval_fakes import FakeStore, HashingEmbedder, bundled_articles


@pytest.fixture(scope="module")
def store() -> FakeStore:
    return FakeStore(bundled_articles(), HashingEmbedder())


@pytest.fixture(scope="module")
def retriever(store: FakeStore) -> HybridRetriever:
    return HybridRetriever(store, HashingEmbedder(), LexicalIndex.from_store(store))
