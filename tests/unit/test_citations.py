"""Citation checking: parsing [n], [1, 2], [1][2]; dropping unknown numbers; renumbering; exact spans."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.answering.citations import CitationRewriter, check_citations, is_grounded, renumber_citations
from retrieval.types import Source

CORPUS = Path(__file__).resolve().parents[2] / "index" / "corpus"
ARTICLE_2023 = (CORPUS / "004_8775d9b0c7bf92f4.txt").read_text(encoding="utf-8")
ARTICLE_2018 = (CORPUS / "001_f6c7d3c508b4bd76.txt").read_text(encoding="utf-8")


def _source(n: int, article_id: str, text: str, sentence: str, date: str) -> Source:
    start = text.index(sentence)
    return Source(n, article_id, f"Bài {article_id}", date, None, sentence, start, start + len(sentence), 1.0 / n)


SENTENCE_2023 = "Về phát triển Đảng viên, đã kết nạp mới được 1.513 đồng chí, nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí."
SENTENCE_2018 = "Tính đến tháng 6-2018, toàn Đảng bộ khối có 3.463 đảng viên sinh hoạt tại 69 tổ chức đảng trực thuộc."
CANDIDATES = [
    _source(1, "001", ARTICLE_2018, SENTENCE_2018, "2018-10-08"),
    _source(2, "002", ARTICLE_2018, "Đại biểu tham dự Hội nghị.", "2018-10-08"),
    _source(3, "004", ARTICLE_2023, SENTENCE_2023, "2023-09-29"),
]


@pytest.mark.parametrize(
    ("text", "expected", "cited"),
    [
        ("Có 74.127 đảng viên [3].", "Có 74.127 đảng viên [1].", [3]),
        ("A [1, 2] rồi B [2][1].", "A [1, 2] rồi B [2][1].", [1, 2]),
        ("A [3][1] và B [1].", "A [1][2] và B [2].", [3, 1]),
        ("Đúng [9] và đúng [3].", "Đúng và đúng [1].", [3]),
        ("Sai [0].", "Sai.", []),
        ("Nhóm [2, 7, 2] còn lại.", "Nhóm [1] còn lại.", [2]),
        ("Dải [1-3] và nhãn [Đoạn 2].", "Dải [1, 2, 3] và nhãn [2].", [1, 2, 3]),
        ("Không có nguồn.", "Không có nguồn.", []),
        ("Số [74.127] không phải nguồn.", "Số [74.127] không phải nguồn.", []),
    ],
)
def test_renumber_citations_keeps_valid_numbers_in_order_of_first_use(text: str, expected: str, cited: list[int]) -> None:
    assert renumber_citations(text, available=3) == (expected, cited)


def test_streaming_rewrite_equals_rewrite_of_the_whole_text_for_any_split() -> None:
    text = "Năm 2023 có **74.127** đảng viên [3][9]. Năm 2018 có 3.463 [1, 3][2]; xem [Đoạn 1]."
    whole, cited = renumber_citations(text, available=3)
    for size in (1, 2, 3, 5, 8):
        rewriter = CitationRewriter(3)
        pieces = [rewriter.feed(text[i : i + size]) for i in range(0, len(text), size)] + [rewriter.finish()]
        assert "".join(pieces) == whole
        assert rewriter.cited == cited
    assert whole == "Năm 2023 có 74.127 đảng viên [1]. Năm 2018 có 3.463 [2, 1][3]; xem [2]."


def test_an_unfinished_bracket_is_held_back_until_it_closes() -> None:
    rewriter = CitationRewriter(3)
    assert rewriter.feed("Có 74.127 đồng chí [") == "Có 74.127 đồng chí"
    assert rewriter.feed("3") == ""
    assert rewriter.feed("].") == " [1]."


def test_check_citations_returns_the_cited_sources_renumbered_with_exact_article_spans() -> None:
    checked = check_citations("Năm 2023 có 74.127 đảng viên [3], năm 2018 có 3.463 [1]. Sai [5].", CANDIDATES)
    assert checked.text == "Năm 2023 có 74.127 đảng viên [1], năm 2018 có 3.463 [2]. Sai."
    assert [(s.n, s.article_id) for s in checked.sources] == [(1, "004"), (2, "001")]
    assert checked.sources[0].text == ARTICLE_2023[checked.sources[0].start : checked.sources[0].end]
    assert checked.sources[1].text == ARTICLE_2018[checked.sources[1].start : checked.sources[1].end]


def test_an_answer_without_a_valid_citation_cites_nothing() -> None:
    assert not check_citations("Tổng số đảng viên là 74.127 [7].", CANDIDATES).cited
    assert not check_citations("Tổng số đảng viên là 74.127.", CANDIDATES).cited


QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"


@pytest.mark.parametrize(
    ("answer", "check_names", "grounded"),
    [
        ("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là 74.127 đồng chí [1].", True, True),
        ("Theo bài ngày 29/9/2023, tỉnh có 74.127 đảng viên [1].", True, True),
        ("In 2023 the provincial Party had 74,127 members [1].", False, True),  # English names are translated
        ("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu [1].", True, False),  # echoes the question
        ("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là 950 [1].", True, False),  # a figure from elsewhere
        ("In 2023 the provincial Party had 950 members [1].", False, False),
        ("Người ký là đồng chí Vương Đảng [1].", True, False),  # a name the passage does not hold
    ],
)
def test_is_grounded_needs_new_figures_and_names_to_be_in_the_cited_passage(answer: str, check_names: bool, grounded: bool) -> None:
    cited = [CANDIDATES[2]]
    assert is_grounded(answer, QUESTION, cited, check_names=check_names) is grounded


def test_a_year_or_place_taken_from_the_question_must_also_be_in_the_cited_passage() -> None:
    cited = [CANDIDATES[2]]  # the 2023 article
    question_2018 = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2018 là bao nhiêu?"
    assert not is_grounded("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2018 là 74.127 đồng chí [1].", question_2018, cited)
    assert not is_grounded("In 2018 the province had 74,127 party members [1].", question_2018, cited, check_names=False)
    question_place = "Tổng số đảng viên toàn Đảng bộ tỉnh Quảng Ngãi năm 2023 là bao nhiêu?"
    assert not is_grounded("Đảng bộ tỉnh Quảng Ngãi có 74.127 đảng viên [1].", question_place, cited)


def test_an_answer_that_only_restates_the_question_is_not_grounded_in_either_language() -> None:
    cited = [CANDIDATES[2]]
    question = "What was the total number of party members in the province in 2023?"
    assert not is_grounded("The total number of party members in the province in 2023 is [1].", question, cited, check_names=False)
    assert not is_grounded("Giá vàng hôm nay là [1].", "Giá vàng hôm nay là bao nhiêu?", cited)
