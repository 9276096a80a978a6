"""Hybrid retrieval over the bundled articles with a deterministic fake embedder: routing, merging, filters."""

from __future__ import annotations

import pytest

from retrieval.search.hybrid import HybridRetriever, Route, _entity_tokens, _fuse
from retrieval.search.lexical import LexicalIndex
from retrieval.search.langchain_retriever import LangChainRetriever
from retrieval.types import SearchFilters
from tests.unit.retrieval_fakes import FakeStore, HashingEmbedder, bundled_articles, with_copy

ARTICLE_2023 = "004_8775d9b0c7bf92f4"
ARTICLE_2016 = "003_e35ce0b84459139b"


@pytest.mark.parametrize(
    "question",
    [
        "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?",
        "Tong so dang vien toan Dang bo tinh nam 2023 la bao nhieu?",
        "What was the total number of party members in the whole provincial Party Committee in 2023?",
    ],
)
def test_every_kind_of_question_finds_the_2023_article(retriever: HybridRetriever, question: str) -> None:
    passages = retriever.retrieve(question, 5)
    assert passages[0].article_id == ARTICLE_2023
    assert "74.127" in passages[0].text


def test_passages_quote_the_article_and_carry_its_metadata(retriever: HybridRetriever, store: FakeStore) -> None:
    for passage in retriever.retrieve("Đảng ủy Khối các cơ quan tỉnh có bao nhiêu đảng viên?", 5):
        article = store.article(passage.article_id)
        assert article.text[passage.start : passage.end] == passage.text
        assert (passage.title, passage.date, passage.source) == (article.title, article.date, article.source)
        assert passage.chunk_ids


def test_adjacent_chunks_merge_and_passages_never_overlap(retriever: HybridRetriever, store: FakeStore) -> None:
    passages = retriever.retrieve("công tác xây dựng Đảng của Đảng ủy Khối các cơ quan tỉnh", 10)
    merged = [p for p in passages if len(p.chunk_ids) > 1]
    assert merged, "some neighbouring chunks should have been merged"
    for passage in merged:
        ordinals = sorted(store.chunk(c).ordinal for c in passage.chunk_ids)
        assert ordinals == list(range(ordinals[0], ordinals[0] + len(ordinals)))
        first, last = store.chunk(passage.chunk_ids[0]), store.chunk(passage.chunk_ids[-1])
        assert (passage.start, passage.end) == (first.start, last.end)
    for a in passages:
        for b in passages:
            if a is not b and a.article_id == b.article_id:
                assert a.end <= b.start or b.end <= a.start


def test_a_republished_article_appears_once() -> None:
    articles = with_copy(bundled_articles(), ARTICLE_2023, "copy_of_2023")
    store = FakeStore(articles, HashingEmbedder())
    retriever = HybridRetriever(store, HashingEmbedder(), LexicalIndex.from_store(store))
    passages = retriever.retrieve("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", 5)
    texts_with_answer = [p for p in passages if "74.127" in p.text]
    assert len(texts_with_answer) == 1


def test_date_filter(retriever: HybridRetriever) -> None:
    question = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    before = retriever.retrieve(question, 5, SearchFilters(date_to="2019-12-31"))
    assert before and all(p.date is not None and p.date <= "2019-12-31" for p in before)
    assert ARTICLE_2023 not in {p.article_id for p in before}
    window = retriever.retrieve(question, 5, SearchFilters(date_from="2016-01-01", date_to="2016-12-31"))
    assert {p.article_id for p in window} == {ARTICLE_2016}


def test_source_filter_is_case_insensitive(retriever: HybridRetriever) -> None:
    passages = retriever.retrieve("đảng viên", 5, SearchFilters(sources=("báo quảng ngãi",)))
    assert passages and {p.source for p in passages} == {"Báo Quảng Ngãi"}


def test_nothing_to_retrieve(retriever: HybridRetriever) -> None:
    assert retriever.retrieve("   ", 5) == []
    assert retriever.retrieve("đảng viên", 0) == []
    assert retriever.retrieve("đảng viên", 5, SearchFilters(date_from="2030-01-01")) == []


def test_lexical_only_without_embedder(store: FakeStore) -> None:
    retriever = HybridRetriever(store, None, LexicalIndex.from_store(store))
    passages = retriever.retrieve("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", 3)
    assert passages[0].article_id == ARTICLE_2023
    assert passages[0].dense_score is None


def test_dense_scores_are_reported(retriever: HybridRetriever) -> None:
    passages = retriever.retrieve("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", 3)
    assert passages[0].dense_score is not None and 0 < passages[0].dense_score <= 1.0001


def test_results_are_deterministic(retriever: HybridRetriever) -> None:
    question = "Ai chủ trì hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu năm 2023?"
    assert retriever.retrieve(question, 5) == retriever.retrieve(question, 5)


def test_score_fusion_weights_lists() -> None:
    lexical_hits, dense_hits = [(1, 10.0), (2, 5.0), (3, 0.0)], [(3, 0.9), (2, 0.8), (1, 0.7)]
    fused = _fuse([(1.0, lexical_hits), (0.5, dense_hits)], Route(1.0, 0.0, 0.5, fusion="score"))
    assert fused == pytest.approx({1: 1.0, 2: 0.5 + 0.25, 3: 0.5})
    rrf = _fuse([(1.0, lexical_hits), (1.0, dense_hits)], Route(1.0, 0.0, 1.0, fusion="rrf", rrf_k=10))
    assert rrf[1] == pytest.approx(1 / 11 + 1 / 13)


def test_english_questions_match_only_names_and_numbers_lexically() -> None:
    assert _entity_tokens("How many party members did Tiền Giang have in 2023?") == ["tien", "giang", "2023"]


def test_langchain_retriever_returns_documents(retriever: HybridRetriever) -> None:
    documents = LangChainRetriever(retriever=retriever, k=3).invoke("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023?")
    assert len(documents) == 3
    first = documents[0]
    assert "74.127" in first.page_content
    assert first.metadata["article_id"] == ARTICLE_2023
    assert set(first.metadata) >= {"article_id", "title", "date", "source", "start", "end", "score"}
