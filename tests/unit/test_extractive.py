"""The extractive answerer and the grounding gate over the bundled articles (fake embedder, real text)."""

from __future__ import annotations

from functools import partial

import pytest

from retrieval.extractive import NOT_FOUND, ExtractiveAnswerer
from retrieval.grounding import is_supported, required_names, required_terms, support
from retrieval.hybrid import HybridRetriever
from retrieval.lexical import LexicalIndex
from retrieval.sentences import parse_question
from retrieval.types import Answer, Turn
from tests.unit.retrieval_fakes import FakeStore, HashingEmbedder, bundled_articles

ARTICLE_2016 = "003_e35ce0b84459139b"
ARTICLE_2018 = "001_f6c7d3c508b4bd76"
ARTICLE_2023 = "004_8775d9b0c7bf92f4"
# The hashing embedder's cosines are not e5's: its English threshold is set for it.
FAKE_GATE = partial(is_supported, dense_threshold=0.3)


@pytest.fixture(scope="module")
def store() -> FakeStore:
    return FakeStore(bundled_articles(), HashingEmbedder())


@pytest.fixture(scope="module")
def retriever(store: FakeStore) -> HybridRetriever:
    return HybridRetriever(store, HashingEmbedder(), LexicalIndex.from_store(store))


@pytest.fixture(scope="module")
def answerer(retriever: HybridRetriever) -> ExtractiveAnswerer:
    return ExtractiveAnswerer(retriever, top_k=5, gate=FAKE_GATE)


def _assert_sources_quote_articles(answer: Answer, store: FakeStore) -> None:
    for number, source in enumerate(answer.sources, 1):
        assert source.n == number
        assert store.article(source.article_id).text[source.start : source.end] == source.text


@pytest.mark.parametrize(
    "question",
    [
        "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?",
        "Tong so dang vien toan Dang bo tinh nam 2023 la bao nhieu?",
        "What was the total number of party members in the whole provincial Party Committee in 2023?",
    ],
)
def test_party_members_in_2023_in_three_ways(answerer: ExtractiveAnswerer, store: FakeStore, question: str) -> None:
    answer = answerer.answer(question)
    assert answer.found
    assert "74.127" in answer.text and "[1]" in answer.text
    assert answer.sources[0].article_id == ARTICLE_2023
    assert "74.127" in answer.sources[0].text
    _assert_sources_quote_articles(answer, store)


def test_english_question_gets_an_english_lead_in(answerer: ExtractiveAnswerer) -> None:
    answer = answerer.answer("How many party members did the province have in 2023?")
    assert answer.text.startswith("According to «")
    assert "(29/09/2023)" in answer.text


def test_vietnamese_answer_names_its_source(answerer: ExtractiveAnswerer) -> None:
    answer = answerer.answer("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")
    assert answer.text.startswith("Theo «") and "(29/09/2023)" in answer.text
    assert answer.text.endswith("74.127 đồng chí. [1]")


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("Giá vàng hôm nay là bao nhiêu?", NOT_FOUND["vi"]),
        ("gia vang hom nay la bao nhieu", NOT_FOUND["vi"]),
        ("What is the price of gold today?", NOT_FOUND["en"]),
        ("Năm 2014 tỉnh Tiền Giang có tổng cộng bao nhiêu đảng viên?", NOT_FOUND["vi"]),
    ],
)
def test_not_in_the_articles(answerer: ExtractiveAnswerer, store: FakeStore, question: str, message: str) -> None:
    answer = answerer.answer(question)
    assert not answer.found
    assert answer.text == message
    assert 0 < len(answer.sources) <= 3  # the nearest passages, for the reader to check
    _assert_sources_quote_articles(answer, store)


def test_disagreeing_articles_are_each_named(answerer: ExtractiveAnswerer, store: FakeStore) -> None:
    answer = answerer.answer("Đảng ủy Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert answer.found
    assert answer.text.startswith("Các bài viết cho số liệu khác nhau:")
    assert "3.463" in answer.text and "gần 3.500" in answer.text
    assert "(08/10/2018)" in answer.text and "(11/06/2016)" in answer.text
    assert "[1]" in answer.text and "[2]" in answer.text
    assert {s.article_id for s in answer.sources} == {ARTICLE_2016, ARTICLE_2018}
    _assert_sources_quote_articles(answer, store)


def test_follow_up_question_uses_the_history(answerer: ExtractiveAnswerer) -> None:
    history = [Turn("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", "74.127 đồng chí [1]")]
    answer = answerer.answer("còn năm 2018 thì sao?", history)
    assert answer.found and "3.463" in answer.text
    assert answer.sources[0].article_id == ARTICLE_2018


def test_answers_are_deterministic(answerer: ExtractiveAnswerer) -> None:
    question = "Ai chủ trì hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu năm 2023?"
    first = answerer.answer(question)
    assert first == answerer.answer(question)
    assert "Nguyễn Minh Tiến" in first.text


def test_stream_yields_the_text_then_the_answer(answerer: ExtractiveAnswerer) -> None:
    parts = list(answerer.stream("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"))
    assert len(parts) == 2
    assert isinstance(parts[0], str) and isinstance(parts[1], Answer)
    assert parts[0] == parts[1].text


def test_answer_serialises_to_the_cli_json_shape(answerer: ExtractiveAnswerer) -> None:
    data = answerer.answer("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?").to_dict()
    assert set(data) == {"answer", "found", "sources"}
    assert set(data["sources"][0]) == {"n", "article_id", "title", "date", "source", "text", "start", "end", "score"}


# --- the grounding gate -----------------------------------------------------------------------------


def test_gate_passes_a_covered_question_and_refuses_gold_prices(retriever: HybridRetriever) -> None:
    covered = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    assert is_supported(covered, retriever.retrieve(covered, 5))
    gold = "Giá vàng hôm nay là bao nhiêu?"
    measured = support(gold, retriever.retrieve(gold, 5))
    assert not measured.supported
    assert measured.pair_coverage == 0.0  # "giá vàng" is nowhere, though "giá" (đánh giá) is


def test_gate_refuses_when_names_are_missing(retriever: HybridRetriever) -> None:
    question = "Đảng ủy Khối các cơ quan tỉnh Bình Dương có bao nhiêu đảng viên năm 2030?"
    measured = support(question, retriever.retrieve(question, 5))
    assert set(measured.missing_names) == {"bình dương", "2030"}
    assert not measured.supported


def test_gate_refuses_without_passages() -> None:
    assert not is_supported("Tổng số đảng viên là bao nhiêu?", [])


def test_required_names_are_names_and_numbers() -> None:
    assert required_names("Dân số Warsaw năm 1901 là bao nhiêu?") == [("warsaw",), ("1901",)]
    assert required_names("Đảng bộ tỉnh Bình Dương, Tiền Giang có bao nhiêu?", fold=False) == [
        ("bình", "dương"), ("tiền", "giang")]
    assert required_terms("Dân số Warsaw năm 1901 là bao nhiêu?") == ["warsaw", "1901"]
    # Capitalised common English words are not names.
    assert required_terms("How many Party Committee members were there in 2023?") == ["2023"]


# --- reading the question ---------------------------------------------------------------------------


def test_question_reading() -> None:
    counted = parse_question("Đảng ủy Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert counted.asks_quantity and counted.unit == ("dang", "vien") and counted.verb == "co"
    assert parse_question("How many new party members were admitted?").unit == ("dang", "vien")
    assert parse_question("Quý 2 có bao nhiêu phần trăm chi bộ xếp loại tốt?").unit == ("phan", "tram")
    assert parse_question("Hội nghị được tổ chức khi nào?").asks_time
    assert parse_question("Ai chủ trì hội nghị?").asks_who
    assert parse_question("Đảng ủy Khối thực hiện chỉ thị nào?").which == ("chi", "thi")
    # "máy tính" (computer) is not "mấy" (how many), even typed without accents.
    assert not parse_question("Thuat ngu cho nhiem vu giai quyet bang may tinh la gi?").asks_quantity
