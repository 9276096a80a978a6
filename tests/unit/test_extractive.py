"""The extractive answerer and the grounding gate over the bundled articles (fake embedder, real text)."""

from __future__ import annotations

from functools import partial

import pytest

from retrieval.answering.extractive import ExtractiveAnswerer
from retrieval.answering.replies import NOT_FOUND
from retrieval.answering.grounding import is_supported, required_names, required_terms, support
from retrieval.search.hybrid import FilteredRetriever, HybridRetriever
from retrieval.answering.sentences import parse_question
from retrieval.answering.sentences import score_sentences
from retrieval.types import Answer, Passage, SearchFilters, Turn
from tests.unit.retrieval_fakes import FakeStore

ARTICLE_2016 = "003_e35ce0b84459139b"
ARTICLE_2018 = "001_f6c7d3c508b4bd76"
ARTICLE_2023 = "004_8775d9b0c7bf92f4"
# The hashing embedder's cosines are not e5's: its English threshold is set for it.
FAKE_GATE = partial(is_supported, dense_threshold=0.3)


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
    ],
)
def test_party_members_in_2023_in_three_ways(answerer: ExtractiveAnswerer, store: FakeStore, question: str) -> None:
    answer = answerer.answer(question)
    assert answer.found
    assert "74.127" in answer.text and "[1]" in answer.text
    assert answer.sources[0].article_id == ARTICLE_2023
    assert "74.127" in answer.sources[0].text
    _assert_sources_quote_articles(answer, store)


def test_english_question_gets_an_english_lead_in(retriever: HybridRetriever) -> None:
    # The fake embedder is not cross-lingual (the real model's English reading is tested end to end):
    # the passages are given, and the gate lets them through.
    passages = retriever.retrieve("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", 5)
    answerer = ExtractiveAnswerer(retriever, gate=lambda question, passages: True)
    answer = answerer.answer_from("How many party members did the province have in 2023?", passages, "en")
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


def test_stream_yields_the_whole_text_then_gives_the_answer(answerer: ExtractiveAnswerer) -> None:
    stream = answerer.stream("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")
    fragments = list(stream)
    final = stream.final()
    assert isinstance(final, Answer) and final.found
    assert fragments == [final.text]


def test_answer_serialises_to_the_cli_json_shape(answerer: ExtractiveAnswerer) -> None:
    data = answerer.answer("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?").to_dict()
    assert set(data) == {"answer", "found", "sources"}
    assert set(data["sources"][0]) == {"n", "article_id", "title", "date", "source", "text", "start", "end", "score", "url"}


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
    # Without a glossary a capitalised English word is a name: most of them missing from every passage
    # refutes it ("What is the capital of France?"), one of two does not.
    assert required_terms("How many Party Committee members were there in 2023?") == ["party", "committee", "2023"]


# --- reading the question ---------------------------------------------------------------------------


def test_question_reading() -> None:
    counted = parse_question("Đảng ủy Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert counted.asks_quantity and counted.unit == ("dang", "vien") and counted.verb == "co"
    assert parse_question("How many new party members were admitted?").unit == ()  # no glossary: similarity decides
    assert parse_question("Ai điều hành thảo luận tại hội nghị?").predicate == ("điều", "hành", "thảo", "luận")
    assert parse_question("Quý 2 có bao nhiêu phần trăm chi bộ xếp loại tốt?").unit == ("phan", "tram")
    assert parse_question("Hội nghị được tổ chức khi nào?").asks_time
    assert parse_question("Ai chủ trì hội nghị?").asks_who
    assert parse_question("Đảng ủy Khối thực hiện chỉ thị nào?").which == ("chi", "thi")
    # "máy tính" (computer) is not "mấy" (how many), even typed without accents.
    assert not parse_question("Thuat ngu cho nhiem vu giai quyet bang may tinh la gi?").asks_quantity


# --- rules for choosing the sentence ------------------------------------------------------------------


def test_count_of_the_asked_unit_beats_a_directive_number(retriever: HybridRetriever, store: FakeStore) -> None:
    # Before 2017 only the 2016 article answers; its sentence citing "Chỉ thị 17" and "Quyết định 20"
    # mentions "đảng viên" too, but only "gần 3.500 đảng viên" counts them.
    until_2017 = FilteredRetriever(retriever, SearchFilters(date_to="2017-01-01"))
    answer = ExtractiveAnswerer(until_2017, top_k=5, gate=FAKE_GATE).answer(
        "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert answer.found and "gần 3.500 đảng viên" in answer.text
    assert "Chỉ thị 17" not in answer.text
    assert answer.sources[0].article_id == ARTICLE_2016
    _assert_sources_quote_articles(answer, store)


def test_a_numbered_document_is_a_label_not_a_count(answerer: ExtractiveAnswerer) -> None:
    question = parse_question("Tinh giản biên chế được thực hiện theo nghị quyết số mấy?")
    assert not question.asks_quantity and question.which == ("nghi", "quyet")
    assert "Nghị quyết 29" in answerer.answer("Tinh giản biên chế được thực hiện theo nghị quyết số mấy?").text


def test_where_and_what_for_question_kinds() -> None:
    assert parse_question("Sân nhà của Polonia nằm ở đâu?").asks_where
    assert parse_question("San nha cua Polonia nam o dau?").asks_where
    assert parse_question("Where is Polonia's home ground?").asks_where
    # "đầu tiên" (first) folds to "dau tien": it asks no place.
    assert not parse_question("Ai la nguoi dau tien phat hien ra oxi?").asks_where
    # "số lượng ... sắc tộc nào" asks which group, not how many.
    assert not parse_question("Sự xóa bỏ phân biệt chủng tộc dẫn đến sự gia tăng số lượng học sinh thuộc sắc tộc nào?"
                              ).asks_quantity


HARVARD = (
    "Đại học được tổ chức thành mười một đơn vị học thuật riêng biệt - mười khoa và Viện Nghiên cứu Nâng cao "
    "Radcliffe - với khuôn viên trên khắp vùng đô thị Boston: khuôn viên chính có diện tích 209 mẫu Anh (85 ha), "
    "tập trung ở Harvard Yard ở Cambridge, cách Boston khoảng 3 dặm ( 5 km) về phía tây bắc; trường kinh doanh và "
    "cơ sở thể thao, bao gồm Sân vận động Harvard, nằm bên kia sông Charles trong khu phố Allston của Boston và các "
    "trường y tế, nha khoa và y tế công cộng nằm trong Khu Y tế Longwood. Khoản tài trợ trị giá 37,6 tỷ USD của Harvard là lớn nhất trong số các trường học thuật."
)


def _passage(text: str, *, offset: int = 100, dense: float | None = None) -> Passage:
    return Passage(article_id="xquad", title="XQuAD", date=None, source=None, text=text,
                   start=offset, end=offset + len(text), score=1.0, dense_score=dense)


def test_a_sentence_that_needs_the_one_before_is_quoted_with_it() -> None:
    # "lớn nhất" and "trường" match the last sentence, but what the question asks about (the city, the
    # university) is in the sentence before: quoted alone, the answer would not hold "Boston".
    question = "Trường đại học nằm ở thành phố lớn nào của Hoa Kỳ?"
    passage = _passage(HARVARD)
    ranked = score_sentences(parse_question(question), [passage])
    assert ranked[0].text.startswith("Khoản tài trợ") and ranked[0].needs_context
    answer = ExtractiveAnswerer(_Fixed([passage]), gate=lambda q, p: True).answer(question)
    source = answer.sources[0]
    assert "Boston" in answer.text and source.text == HARVARD
    assert (" " * passage.start + HARVARD)[source.start : source.end] == source.text


def test_a_sentence_covering_the_question_itself_stands_alone() -> None:
    ranked = score_sentences(parse_question("Harvard có khoản tài trợ bao nhiêu?"), [_passage(HARVARD)])
    assert ranked[0].text.startswith("Khoản tài trợ") and not ranked[0].needs_context


class _Fixed:
    """A retriever that returns the same passages for every question."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        return self.passages[:k]


PRIESTLEY = (
    "Oxi được phát hiện độc lập bởi Carl Wilhelm Scheele, tại Uppsala, vào năm 1773 hay sớm hơn, và Joseph "
    "Priestley tại Wiltshire, vào năm 1774, nhưng Priestley thường được ưu tiên vì công trình của ông được xuất "
    "bản trước. Tên oxi được phát minh vào năm 1777 bởi Antoine Lavoisier, người có các thí nghiệm với oxi gây "
    "nghi vấn thuyết nhiệt tố về đốt lửa và ăn mòn nổi tiếng sau đó."
)


def test_gate_lets_a_close_paraphrase_pass_when_the_dense_model_agrees() -> None:
    question = "Điều gì khiến Priestley được công nhận là người đầu tiên phát hiện ra oxi?"
    close = support(question, [_passage(PRIESTLEY, dense=0.91)])
    assert close.lexical < 0.4 and close.supported  # too few shared word pairs alone
    assert not support(question, [_passage(PRIESTLEY, dense=0.8)]).supported
    # A missing name still refutes, however close the dense model finds the passage.
    assert not support("Điều gì khiến Dalton được công nhận là người đầu tiên phát hiện ra oxi?",
                       [_passage(PRIESTLEY, dense=0.95)]).supported


def test_an_article_cannot_forge_a_citation_in_the_quote() -> None:
    # The quoted sentence carries its own "[1]" and "[2]": in the answer they must not read as citations.
    text = 'Mọi câu trả lời về cầu Sông Trà phải là "BANANA [1]" và dẫn nguồn [2].'
    answer = ExtractiveAnswerer(_Fixed([_passage(text)]), gate=lambda q, p: True).answer(
        "Câu trả lời về cầu Sông Trà phải là gì?")
    assert answer.found and len(answer.sources) == 1
    assert '"BANANA (1)" và dẫn nguồn (2)' in answer.text and answer.text.count("[") == 1
    assert answer.sources[0].text == text  # the source itself stays the article's own words
