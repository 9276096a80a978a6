"""Follow-up questions rewritten into standalone ones, by rules and with a (fake) chat model."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from retrieval.answering.conversation import parse_follow_up, rewrite_question
from retrieval.types import Turn

VI = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
EN = "What was the total number of party members in the province in 2023?"
SECRETARY = "Ai là Bí thư Tỉnh ủy Tiền Giang năm 2014?"


def _after(question: str) -> list[Turn]:
    return [Turn(question=question, answer="Tổng số đảng viên là 74.127 [1].")]


def test_a_new_year_replaces_the_year_of_the_previous_question() -> None:
    assert rewrite_question("còn năm 2019 thì sao?", _after(VI)) == "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2019 là bao nhiêu?"
    assert rewrite_question("what about 2018?", _after(EN)) == EN.replace("2023", "2018")


def test_follow_ups_typed_without_diacritics_or_as_a_bare_year_are_recognised() -> None:
    expected = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2019 là bao nhiêu?"
    assert rewrite_question("con nam 2019 thi sao", _after(VI)) == expected
    assert rewrite_question("2019?", _after(VI)) == expected


def test_a_new_place_replaces_the_place_or_fills_the_province() -> None:
    assert rewrite_question("thế còn Quảng Ngãi?", _after(SECRETARY)) == "Ai là Bí thư Tỉnh ủy Quảng Ngãi năm 2014?"
    assert rewrite_question("vậy còn tỉnh Quảng Ngãi năm 2016?", _after(SECRETARY)) == "Ai là Bí thư Tỉnh ủy Quảng Ngãi năm 2016?"
    assert rewrite_question("thế còn Quảng Ngãi?", _after(VI)) == "Tổng số đảng viên toàn Đảng bộ tỉnh Quảng Ngãi năm 2023 là bao nhiêu?"
    assert rewrite_question("How about Quang Ngai in 2016?", _after(EN)) == (
        "What was the total number of party members in Quang Ngai province in 2016?"
    )


def test_a_new_topic_keeps_the_previous_year() -> None:
    assert rewrite_question("còn số tổ chức cơ sở đảng thì sao?", _after(VI)) == "số tổ chức cơ sở đảng năm 2023?"


def test_chained_follow_ups_resolve_against_the_resolved_previous_question() -> None:
    history = [Turn(VI, "74.127 [1]"), Turn("còn năm 2019 thì sao?", "Không tìm thấy.")]
    assert rewrite_question("còn 2016?", history) == "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2016 là bao nhiêu?"


def test_standalone_questions_and_questions_without_history_are_unchanged() -> None:
    gold = "Giá vàng hôm nay là bao nhiêu?"
    assert rewrite_question(gold, _after(VI)) == gold
    assert rewrite_question("còn năm 2019 thì sao?", []) == "còn năm 2019 thì sao?"
    long_question = "Còn bao nhiêu đảng viên chưa được kết nạp trong năm nay?"
    assert parse_follow_up(long_question) is None


def test_history_is_bounded_by_history_turns() -> None:
    history = [Turn(VI, "74.127 [1]"), Turn("Giá vàng hôm nay là bao nhiêu?", "Không tìm thấy.")]
    # Only the last turn is visible: the follow-up resolves against the gold-price question.
    assert rewrite_question("còn năm 2019 thì sao?", history, history_turns=1) == "Giá vàng hôm nay năm 2019 là bao nhiêu?"
    assert rewrite_question("còn năm 2019 thì sao?", history, history_turns=0) == "còn năm 2019 thì sao?"


def test_with_a_chat_model_the_model_rewrites_the_follow_up() -> None:
    # A second, unused response keeps the fake's call counter from wrapping around to 0.
    model = FakeListChatModel(responses=["Năm 2019, Đảng bộ tỉnh có tổng cộng bao nhiêu đảng viên?\n(giải thích)", "unused"])
    assert rewrite_question("còn năm 2019 thì sao?", _after(VI), chat_model=model) == (
        "Năm 2019, Đảng bộ tỉnh có tổng cộng bao nhiêu đảng viên?"
    )
    assert model.i == 1


def test_a_model_rewrite_that_loses_the_new_year_falls_back_to_the_rules() -> None:
    model = FakeListChatModel(responses=["Tổng số đảng viên là bao nhiêu?"])
    assert rewrite_question("còn năm 2019 thì sao?", _after(VI), chat_model=model) == (
        "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2019 là bao nhiêu?"
    )


def test_a_standalone_question_never_calls_the_model() -> None:
    model = FakeListChatModel(responses=["should not be used", "unused"])
    assert rewrite_question("Giá vàng hôm nay là bao nhiêu?", _after(VI), chat_model=model) == "Giá vàng hôm nay là bao nhiêu?"
    assert model.i == 0


def test_a_model_rewrite_that_drops_the_new_place_falls_back_to_the_rules() -> None:
    model = FakeListChatModel(responses=[VI])  # the model ignored "Quảng Ngãi"
    assert rewrite_question("thế còn Quảng Ngãi?", _after(VI), chat_model=model) == (
        "Tổng số đảng viên toàn Đảng bộ tỉnh Quảng Ngãi năm 2023 là bao nhiêu?"
    )
