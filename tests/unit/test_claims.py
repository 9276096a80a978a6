"""The claim check: the values an answer states against the ones the extractive quote gives as the answer."""

from __future__ import annotations

import pytest

from retrieval.answering.claims import is_checked, states_extractive_value
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
