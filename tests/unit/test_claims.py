"""The claim check: the values, persons and names an answer states against the ones the extractive quote
gives as the answer, and the one sentence each answer must be read from."""

from __future__ import annotations

import pytest

from retrieval.answering.claims import (
    Evidence,
    claim_holds,
    claim_sentence,
    is_checked,
    names_extractive_answer,
    singles_out_value,
    states_extractive_value,
    with_evidence,
)
from retrieval.answering.sentences import answer_values, parse_question, stated_values
from retrieval.types import Answer, Source

MEMBERS = parse_question("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")
ADMISSIONS = "Về phát triển Đảng viên, đã kết nạp mới được 1.513 đồng chí, nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí."
BLOC = "Tính đến tháng 6-2018, toàn Đảng bộ khối có 3.463 đảng viên, sinh hoạt trong 69 tổ chức cơ sở đảng."


def _quote(text: str) -> Answer:
    return Answer(f"Theo «Bài» (29/09/2023): {text} [1]", True, [Source(1, "a", "Bài", "2023-09-29", None, text, 0, len(text), 1.0)])


def test_of_several_counts_the_answer_is_the_one_in_the_clause_of_the_question() -> None:
    assert stated_values(MEMBERS, ADMISSIONS) == {"1513", "74127"}
    assert answer_values(MEMBERS, ADMISSIONS) == {"74127"}


def test_a_count_of_the_asked_unit_wins_over_the_clause() -> None:
    question = parse_question("Đảng bộ khối có bao nhiêu đảng viên?")
    assert answer_values(question, BLOC) == {"3463"}
    assert answer_values(parse_question("Đảng bộ khối có bao nhiêu tổ chức cơ sở đảng?"), BLOC) == {"69"}


def test_the_parts_of_a_date_stay_together_and_the_question_year_is_no_answer() -> None:
    question = parse_question("Hội nghị năm 2023 diễn ra khi nào?")
    assert answer_values(question, "Hội nghị diễn ra ngày 29/9/2023 tại Mỹ Tho.") == {"29", "9"}
    assert stated_values(question, "Ngày 29/9, năm 2023.") == {"29", "9"}


@pytest.mark.parametrize(
    ("reply", "agrees"),
    [
        ("Có 74.127 đồng chí [1].", True),
        ("Năm 2023 tỉnh có 74,127 đảng viên [1].", True),  # written either way; the question's year is no claim
        ("817 [1].", False),
        ("Đã kết nạp mới 1.513 đồng chí [1].", False),
        ("74.127 đảng viên, kết nạp mới 1.513 [1].", False),  # every stated figure must be the quote's answer
        ("Số đảng viên tăng mạnh [1].", True),  # no figure: no claim to compare
    ],
)
def test_an_answer_agrees_when_it_states_only_the_quoted_answer(reply: str, agrees: bool) -> None:
    assert states_extractive_value(reply, MEMBERS, _quote(ADMISSIONS)) is agrees


def test_nothing_agrees_with_an_extractive_not_found() -> None:
    assert not states_extractive_value("Có 74.127 đồng chí [1].", MEMBERS, Answer("Không tìm thấy.", False, []))


def test_only_questions_asking_how_many_or_when_are_checked() -> None:
    assert is_checked(MEMBERS) and is_checked(parse_question("Hội nghị diễn ra khi nào?"))
    assert not is_checked(parse_question("Ai phát biểu kết luận hội nghị?"))
    assert not is_checked(parse_question("Vì sao bệnh nhân bị đau bụng?"))


def test_a_qualifier_is_part_of_the_claim() -> None:
    quoted = _quote("Một trái sầu riêng chứa đến hơn 350 calo và 13 g chất béo.")
    question = parse_question("Hàm lượng calo trong một trái sầu riêng là bao nhiêu?")
    assert states_extractive_value("Một trái sầu riêng có hơn 350 calo [1].", question, quoted)
    assert not states_extractive_value("Một trái sầu riêng có 350 calo [1].", question, quoted)


def test_a_count_followed_by_another_noun_counts_something_else() -> None:
    question = parse_question("Năm 2023 tỉnh có bao nhiêu đảng bộ cơ sở?")
    sentence = "Đến tháng 9 năm 2023, toàn Đảng bộ tỉnh có 817 tổ chức cơ sở Đảng, trong đó, Đảng bộ cơ sở là 301, chi bộ cơ sở là 516."
    assert answer_values(question, sentence) == {"301"}
    assert not states_extractive_value("Năm 2023 tỉnh có 817 tổ chức cơ sở Đảng [1].", question, _quote(sentence))


def test_asked_which_day_the_day_is_the_answer_not_a_later_year() -> None:
    question = parse_question("Đoàn công tác làm việc với Ban Thường vụ Đảng ủy Khối vào ngày nào?")
    assert question.asks_day and not parse_question("Hội nghị diễn ra khi nào?").asks_day
    sentence = "Sáng ngày 29/10, Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối về nhiệm vụ 9 tháng đầu năm 2014."
    assert answer_values(question, sentence) == {"29", "10"}
    assert not states_extractive_value("Đoàn công tác làm việc trong 9 tháng đầu năm 2014 [1].", question, _quote(sentence))


# Sentences written for these tests: a district's citizen reception day and a school merger.
RECEPTION = ("Sáng 15/5, ông Lê Văn Hòa, Chủ tịch UBND huyện, chủ trì buổi tiếp công dân định kỳ. "
             "Phó Chủ tịch Trần Thị Mai báo cáo kết quả giải quyết 12 đơn kiến nghị của người dân.")
MERGER = "Theo đề án, Trường Tiểu học Tân Phú sẽ sáp nhập với Trường Tiểu học Phú Mỹ từ năm học tới."
WHO = parse_question("Ai chủ trì buổi tiếp công dân tháng 5?")


def _source(text: str, n: int = 1) -> Source:
    return Source(n, "a", "Bài", "2024-05-15", None, text, 0, len(text), 1.0)


def test_an_answer_is_read_from_the_one_sentence_holding_its_words() -> None:
    evidence = claim_sentence("Ông Lê Văn Hòa chủ trì [2].", WHO.text, [_source(MERGER), _source(RECEPTION, 2)])
    assert evidence == Evidence(2, RECEPTION.split(". ")[0] + ".")
    # The chair of one sentence with the report of the other: a statement neither makes.
    assert claim_sentence("Ông Lê Văn Hòa báo cáo 12 đơn kiến nghị [1].", WHO.text, [_source(RECEPTION)]) is None
    # "có" is a function word when the answer is accented (folded, it would be "cỏ" or "cô" as well).
    assert claim_sentence("Có ông Lê Văn Hòa [1].", WHO.text, [_source(RECEPTION)]) is not None


def test_the_evidence_line_quotes_the_sentence_unless_the_answer_says_it_all() -> None:
    sentence = "Ông Hòa [chủ tịch] chủ trì buổi tiếp công dân."
    assert with_evidence("Ông Hòa [1].", Evidence(1, sentence)) == "\n«Ông Hòa (chủ tịch) chủ trì buổi tiếp công dân.» [1]"
    assert with_evidence("Ông Hòa, chủ tịch, chủ trì buổi tiếp công dân [1].", Evidence(1, sentence)) == ""


@pytest.mark.parametrize(
    ("reply", "agrees"),
    [
        ("Ông Lê Văn Hòa [1].", True),
        ("Chủ tịch UBND huyện Lê Văn Hòa chủ trì [1].", True),
        ("Phó Chủ tịch Trần Thị Mai chủ trì [1].", False),  # another person of the same passage
        ("Chủ tịch UBND huyện chủ trì [1].", False),  # a title where the quote names the person
    ],
)
def test_asked_who_the_answer_names_the_person_the_quote_names(reply: str, agrees: bool) -> None:
    quote = _quote(RECEPTION.split(". ")[0] + ".")
    assert names_extractive_answer(reply, WHO, quote) is agrees
    assert claim_holds(reply, WHO, quote) is agrees


def test_asked_which_the_words_after_the_noun_follow_it_in_the_quote() -> None:
    which = parse_question("Trường Tiểu học Tân Phú sẽ sáp nhập với trường nào?")
    quote = _quote(MERGER)
    assert names_extractive_answer("Trường Tiểu học Tân Phú sáp nhập với Trường Tiểu học Phú Mỹ [1].", which, quote)
    # A name cut short, and one from elsewhere; the question's own "Trường Tiểu học Tân Phú" is an echo.
    assert not names_extractive_answer("Trường Tân Phú sáp nhập với Trường Phú Mỹ [1].", which, quote)
    assert not names_extractive_answer("Trường Tiểu học Tân Phú sáp nhập với Trường THCS Phú Mỹ [1].", which, quote)
    assert names_extractive_answer("Sáp nhập với Trường Tiểu học Phú Mỹ [1].", which, Answer("", False, []))


def test_an_english_question_needs_a_quote_that_singles_out_one_value() -> None:
    question = parse_question("How many petitions were settled at the May reception?")
    one = _quote("Đã giải quyết 12 đơn kiến nghị.")
    assert singles_out_value(question, one) and claim_holds("12 petitions [1].", question, one)
    two = _quote("Huyện nhận 30 đơn, đã giải quyết 12 đơn kiến nghị.")
    assert not singles_out_value(question, two) and not claim_holds("12 petitions [1].", question, two)
