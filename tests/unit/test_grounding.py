"""The grounding gate's rules on real sentences of the bundled articles, with the corpus's own IDF."""

from __future__ import annotations

import pytest

from retrieval.answering.grounding import (
    asks_present,
    is_supported,
    speaks_of_present,
    support,
    term_weights,
)
from index.text import content_pairs
from retrieval.search.lexical import LexicalIndex
from retrieval.search.restore import DiacriticRestorer
from retrieval.types import Passage
from tests.unit.retrieval_fakes import FakeStore, HashingEmbedder, bundled_articles

MEMBERS_2023 = (
    "Về phát triển Đảng viên, đã kết nạp mới được 1.513 đồng chí, nâng tổng số đảng viên toàn Đảng bộ "
    "tỉnh lên 74.127 đồng chí."
)
RESULTS_2014 = (
    "chỉ đạo các đơn vị rà soát kết quả thực hiện các chỉ tiêu nghị quyết năm 2014 làm cơ sở đánh giá "
    "kết quả hoàn thành nhiệm vụ"
)
SECRETARY_2014 = (
    "Ông Trần Thế Ngọc, Ủy viên Ban Chấp hành Trung ương Đảng, Bí thư Tỉnh ủy yêu cầu Đảng ủy Khối "
    "Các cơ quan tỉnh cần tập trung lãnh đạo khắc phục những hạn chế, yếu kém"
)
ORGANISER_2023 = (
    "Sáng ngày 29/9, Ban Tổ chức Tỉnh ủy đã tổ chức Hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu "
    "năm, triển khai nhiệm vụ 3 tháng cuối năm 2023."
)
QUANG_NGAI_2016 = (
    "Đảng ủy Khối các cơ quan tỉnh là cấp ủy cấp trên trực tiếp của 70 cơ sở đảng. Số lượng đảng viên "
    "đông (gần 3.500 đảng viên) với nhiều loại hình tổ chức cơ sở đảng khác nhau."
)


@pytest.fixture(scope="module")
def idf():
    store = FakeStore(bundled_articles(), HashingEmbedder())
    return LexicalIndex.from_store(store).idf


def _passage(text: str, *, date: str | None = None, source: str | None = None, title: str = "Bài viết",
             dense: float | None = None) -> Passage:
    return Passage(article_id="a", title=title, date=date, source=source, text=text, start=0,
                   end=len(text), score=1.0, dense_score=dense)


def test_common_words_weigh_less_than_rare_ones(idf) -> None:
    weights = term_weights(["tỉnh", "năm", "khiển", "xổ"], idf)
    # `tỉnh` and `năm` are in nearly every chunk; `khiển` (khiển trách) in one; `xổ` in none.
    assert weights["tỉnh"] < weights["khiển"] and weights["năm"] < weights["khiển"]
    assert weights["xổ"] >= weights["khiển"]


def test_without_corpus_statistics_every_word_weighs_the_same() -> None:
    assert set(term_weights(["tỉnh", "xổ"], None).values()) == {1.0}


def test_lottery_results_without_diacritics_are_refused_though_ket_qua_is_in_the_article(idf) -> None:
    passage = _passage(RESULTS_2014, date="2014-10-29")
    question = "ket qua xo so hom nay"
    # Word by word, "ket qua" covers half the question; by weight, the rare "xo so" dominates.
    assert support(question, [passage], idf=idf).coverage < support(question, [passage]).coverage
    assert not is_supported(question, [passage], idf=idf)


def test_a_role_the_articles_never_name_is_refused(idf) -> None:
    passage = _passage(SECRETARY_2014, title="Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối Các cơ quan tỉnh")
    assert not is_supported("Chủ tịch UBND tỉnh Tiền Giang là ai?", [passage], idf=idf)
    assert is_supported("Bí thư Tỉnh ủy Tiền Giang yêu cầu Đảng ủy Khối khắc phục gì?",
                        [_passage(SECRETARY_2014 + " Tiền Giang")], idf=idf)


def test_a_year_missing_from_the_passage_that_names_the_role_costs_support(idf) -> None:
    # The 2014 article names the Bí thư Tỉnh ủy; the 2023 article has the year but no Bí thư.
    secretary = _passage(SECRETARY_2014, date="2014-10-29")
    organiser = _passage(ORGANISER_2023, date="2023-09-29", dense=0.9)
    measured = support("Ai là Bí thư Tỉnh ủy năm 2023?", [organiser, secretary], idf=idf)
    assert not measured.supported
    assert support("Ai là Bí thư Tỉnh ủy năm 2014?", [secretary], idf=idf).supported


def test_the_outlet_counts_as_part_of_the_passage(idf) -> None:
    question = "Đảng ủy Khối các cơ quan tỉnh Quảng Ngãi có bao nhiêu đảng viên?"
    with_outlet = _passage(QUANG_NGAI_2016, source="Báo Quảng Ngãi", date="2016-06-11")
    without = _passage(QUANG_NGAI_2016, date="2016-06-11")
    assert is_supported(question, [with_outlet], idf=idf)
    assert support(question, [without], idf=idf).missing_names == ("quảng ngãi",)
    assert not is_supported(question, [without], idf=idf)


def test_present_time_questions_need_a_passage_about_the_present(idf) -> None:
    assert asks_present("Giá vàng hôm nay là bao nhiêu?")
    assert asks_present("bi thu tinh uy bay gio la ai")
    assert asks_present("Who is the current Secretary of the Provincial Party Committee?")
    assert not asks_present("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")
    # "đến nay" is the article's own present, not the reader's.
    assert not speaks_of_present("Từ đầu nhiệm kỳ đến nay, Đảng ủy Khối đã kết nạp 527/600 đảng viên")
    passage = _passage(MEMBERS_2023, date="2023-09-29")
    measured = support("Tổng số đảng viên toàn Đảng bộ tỉnh hiện nay là bao nhiêu?", [passage], idf=idf)
    assert measured.present_time and not measured.supported
    assert is_supported("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", [passage], idf=idf)


def test_english_questions_rely_on_dense_similarity_and_names(idf) -> None:
    close = _passage(MEMBERS_2023, date="2023-09-29", dense=0.85)
    question = "What was the total number of party members in the province in 2023?"
    assert is_supported(question, [close], idf=idf)
    assert not is_supported(question, [_passage(MEMBERS_2023, date="2023-09-29", dense=0.6)], idf=idf)
    assert not is_supported("How many party members did the province have in 2010?", [close], idf=idf)


def test_high_dense_similarity_does_not_make_up_for_a_missing_focus(idf) -> None:
    # Near miss: the 2023 passage talks about party members but says nothing about discipline.
    passage = _passage(MEMBERS_2023, date="2023-09-29", dense=0.9)
    measured = support("Năm 2023 có bao nhiêu đảng viên bị kỷ luật?", [passage], idf=idf)
    assert measured.missing_focus and not measured.supported
    discipline = _passage("Từ đầu nhiệm kỳ đến nay, đã thi hành kỷ luật 22 đảng viên trong Khối.", dense=0.9)
    assert not support("Có bao nhiêu đảng viên bị kỷ luật?", [discipline], idf=idf).missing_focus


def test_the_hard_rules_refute_whatever_the_model_would_say(idf) -> None:
    """`refuted` is what the fitted gate (`retrieval.answering.judgement.CorpusGate`) never overrides."""
    passage = _passage(RESULTS_2014, date="2014-10-29")
    assert support("ket qua xo so hom nay", [passage], idf=idf).refuted
    assert support("Tổng số đảng viên là bao nhiêu?", [], idf=idf).refuted
    assert not support("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?",
                       [_passage(MEMBERS_2023, date="2023-09-29")], idf=idf).refuted


def test_a_name_of_the_question_must_be_a_name_in_the_passage() -> None:
    """`Pháp` (France) is not found in `pháp luật` (law): a planted or scattered syllable supports no name."""
    law = ("Công tác tuyên truyền chủ trương của Đảng, chính sách, pháp luật của Nhà nước được thủ trưởng "
           "các cơ quan quan tâm thường xuyên.")
    france = "Thủ đô của nước Pháp là Paris, thành phố lớn nhất nước Pháp."
    question = "Thủ đô của nước Pháp là gì?"
    assert support(question, [_passage(law)]).missing_names == ("pháp",)
    assert not is_supported(question, [_passage(law)])
    assert is_supported(question, [_passage(france)])
    assert is_supported("Lạt-ma được gọi là gì?", [_passage("Các thầy ở Tây Tạng thường được gọi là Lạt-ma.")])


def test_english_capitals_beside_a_found_number_do_not_refute_but_alone_they_do():
    from retrieval.answering.grounding import _english_names_vouched

    required = [("party",), ("2023",), ("party", "committee")]
    assert _english_names_vouched(required, ("party", "party committee")) == ([("2023",)], ())
    assert _english_names_vouched(required, ("party", "2023", "party committee")) == (required, ("party", "2023", "party committee"))
    assert _english_names_vouched([("france",)], ("france",)) == ([("france",)], ("france",))


def test_a_question_none_of_whose_word_pairs_the_corpus_says_is_refuted(idf) -> None:
    """Every syllable of these is in the party news, but no article says `thủ đô` or `nước pháp`, `tổng
    thống mỹ` or `giá xăng`: their pairs are unheard (`MIN_UNHEARD_PAIRS` of them at least)."""
    restorer = DiacriticRestorer.build(f"{a.title}\n{a.text}" for a in bundled_articles())
    law = _passage("Công tác tuyên truyền chính sách, pháp luật của Nhà nước được thủ trưởng các cơ quan quan tâm.")
    for question in ("thủ đô của nước pháp là gì?", "tổng thống mỹ là ai", "giá xăng dầu tháng này tăng bao nhiêu?"):
        measured = support(question, [law], idf=idf, known_pair=restorer.has_pair)
        assert measured.unheard and measured.refuted, question
        assert not support(question, [law], idf=idf).unheard  # without the corpus's pairs, the rule is off
    # One pair of the articles' own words is enough to be heard, accented or not.
    for question in ("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?",
                     "tong so dang vien toan dang bo tinh nam 2023 la bao nhieu"):
        measured = support(question, [_passage(MEMBERS_2023, date="2023-09-29")], idf=idf, known_pair=restorer.has_pair)
        assert not measured.unheard and not measured.refuted, question
    # A single unknown pair is too little to go by (a name the question alone spells out, `người Hijras`).
    assert not support("Ông Brandt là ai?", [law], idf=idf, known_pair=restorer.has_pair).unheard


def test_content_pairs_leave_out_function_words_numbers_and_punctuation() -> None:
    assert content_pairs("Thủ đô của nước Pháp là gì?", fold=False) == [("thu", "do"), ("nuoc", "phap")]
    # Without accents `do` is read as the function word (do = because), as `content_tokens` reads it.
    assert content_pairs("thu do cua nuoc phap la gi", fold=True) == [("nuoc", "phap")]
    # `năm 2023` is a number's pair, the comma breaks the run, `mới` (new, also "only just") is a function word.
    assert content_pairs("Năm 2023, tỉnh kết nạp đảng viên mới", fold=False) == [
        ("tinh", "ket"), ("ket", "nap"), ("nap", "dang"), ("dang", "vien")]
