"""Hostile questions to the real extractive Answerer (real model, real index) and to `hoidap ask --json`.

Whatever the question (empty, blank, 100k characters, only emoji, HTML and Markdown debris, NUL bytes,
NFD, right-to-left, only punctuation, a bare number, mixed scripts, one endless word), and whatever the
previous turn of the conversation held, `answer()` returns an `Answer`: not found, or found with
citations `[n]` that each name a source whose text is exactly `article.text[start:end]`. A blank question
is "not found" without sources: there is nothing to search for. Pathological cases (the 100k question)
run once each, untimed: a regex that backtracks would hang them, not slow them.
"""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.types import Answer, Turn
from tests.conftest import run_cli
from tests.hostile import fuzz_settings, hostile_text

pytestmark = pytest.mark.e2e

LONG_QUESTION = ("Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang đến làm việc với Đảng ủy Khối? " * 1300)[:100_000]
# Linux caps one command-line argument at 128 KiB, so the CLI gets 100k characters typed without accents.
LONG_PLAIN_QUESTION = ("Ai dan dau doan cong tac Tinh uy Tien Giang den lam viec voi Dang uy Khoi? " * 1400)[:100_000]
EXPLICIT = {
    "empty": "",
    "spaces": "   ",
    "tab and newline": "\n\t",
    "100k characters": LONG_QUESTION,
    "only emoji": "👍🇻🇳👨‍👩‍👧❤️",
    "bold tag": "<b>",
    "closing anchor": "</a>",
    "markdown debris": "*_[",
    "script": "<script>alert(1)</script>",
    "NUL bytes": "Ai\x00 dẫn đầu\x00 đoàn công tác?\x00",
    "NFD": unicodedata.normalize("NFD", "Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?"),
    "RTL": "\u202eمن قاد الوفد؟ \u200fخبر",
    "only punctuation": "?!…;:,.“”«»()[]{}",
    "a number alone": "3463",
    "mixed scripts": "Đảng ủy 中文 خبر Привет 👍 bao nhiêu đảng viên?",
    "one long word": "Đảngủy" * 5000,
    "zero-width": "\u200b\u200c\u200d\ufeff",
    "control characters": "\x1b[31m\x07\x7f Đảng viên?",
}


def check_answer(answer: object, store) -> Answer:
    """An Answer whose citations are numbered sources quoting their article exactly."""
    assert isinstance(answer, Answer)
    assert answer.text.strip()
    assert [s.n for s in answer.sources] == list(range(1, len(answer.sources) + 1))
    for source in answer.sources:
        article = store.article(source.article_id)
        assert article.text[source.start:source.end] == source.text
        assert source.title == article.title
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    if answer.found:
        assert answer.sources and cited and cited <= {s.n for s in answer.sources}
    return answer


@pytest.mark.parametrize("name", sorted(EXPLICIT))
def test_hostile_question(components, name: str) -> None:
    question = EXPLICIT[name]
    answer = check_answer(components.answerer.answer(question), components.store)
    if not question.strip():
        assert not answer.found and answer.sources == []  # nothing was asked, so nothing is "nearest"


@pytest.mark.parametrize("name", ["100k characters", "NUL bytes", "script", "only emoji", "RTL", "NFD"])
def test_hostile_previous_turn(components, name: str) -> None:
    """A follow-up resolved against a hostile previous question (and answer) still gets a checked Answer."""
    hostile = EXPLICIT[name]
    history = [Turn(question=hostile, answer=hostile)]
    for follow_up in ("còn năm 2019 thì sao?", "what about 2018?", "vậy còn tỉnh Quảng Ngãi?", hostile, ""):
        check_answer(components.answerer.answer(follow_up, history), components.store)


def test_a_follow_up_made_of_nothing_but_markers(components) -> None:
    """`còn còn ... thì sao thì sao`: every word a follow-up marker (stripping them took 35 s at 30k characters)."""
    history = [Turn(question="Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", answer="x")]
    question = "còn " * 12_500 + "thì sao " * 6_250
    check_answer(components.answerer.answer(question, history), components.store)


def test_a_real_question_still_answers_after_a_hostile_turn(components) -> None:
    history = [Turn(question="<b>*_[\x00", answer="</a>")]
    answer = check_answer(components.answerer.answer(
        "Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang đến làm việc với Đảng ủy Khối Các cơ quan tỉnh?", history),
        components.store)
    assert answer.found and "Trần Thế Ngọc" in answer.text


@fuzz_settings(60)
@given(question=hostile_text(25), previous=st.none() | hostile_text(10))
def test_generated_questions(components, question: str, previous: str | None) -> None:
    history = [Turn(question=previous, answer="Theo «x»: y [1]")] if previous is not None else None
    check_answer(components.answerer.answer(question, history), components.store)


# --- through the real CLI -------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_cli_refuses_an_empty_question_in_one_line(built_index_settings, question: str) -> None:
    result = run_cli(["ask", "--json", question], built_index_settings)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Câu hỏi trống." in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("question", [LONG_PLAIN_QUESTION, EXPLICIT["script"], EXPLICIT["RTL"]],
                         ids=["100k", "script", "rtl"])
def test_cli_answers_a_hostile_question_with_one_json_object(built_index_settings, components, question: str) -> None:
    result = run_cli(["ask", "--json", question], built_index_settings)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    reply = json.loads(lines[0])
    assert set(reply) == {"answer", "found", "sources"} and reply["answer"].strip()
    for source in reply["sources"]:
        assert components.store.article(source["article_id"]).text[source["start"]:source["end"]] == source["text"]
