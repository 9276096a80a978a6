"""Text is normalised once at the edges, and one question gets one answer language, whichever answerer.

Properties over the real index of the bundled articles, with the answerers built by `bot.wiring` as
the CLI and Telegram build them:
- a question (and its follow-up) typed in decomposed Unicode (NFD, as some keyboards and macOS file
  names produce), or in any mix of composed and decomposed letters, gets exactly the answer of its
  composed (NFC) form;
- the extractive and the generative answerer reply to the same question in the same language.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from bot.wiring import build_generative
from index.text import Language
from retrieval.answering.generative import COMPACT_PROMPT
from retrieval.answering.judgement import CorpusGate
from retrieval.answering.replies import ACCORDING_TO, DISAGREE, NOT_FOUND
from retrieval.types import Answer, Turn
from tests.hostile import fuzz_settings

pytestmark = pytest.mark.e2e

QUESTIONS = Path(__file__).resolve().parents[2] / "eval" / "bundled" / "questions.jsonl"


def _bundled_questions() -> list[str]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["question"] for row in rows]


BUNDLED = _bundled_questions()


def _mixed(text: str, decompose: list[bool]) -> str:
    """`text` with the letters whose flag is set decomposed (NFD) and the others composed (NFC)."""
    return "".join(unicodedata.normalize("NFD" if flag else "NFC", char)
                   for char, flag in zip(text, decompose + [False] * len(text)))


def test_every_bundled_question_typed_in_nfd_gets_its_nfc_answer(components) -> None:
    answerer = components.answerer
    for question in BUNDLED:
        decomposed = unicodedata.normalize("NFD", question)
        assert answerer.answer(decomposed) == answerer.answer(question), question


@settings(fuzz_settings(40), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(question=st.sampled_from(BUNDLED), decompose=st.lists(st.booleans(), max_size=200))
def test_any_mix_of_composed_and_decomposed_letters_gets_the_same_answer(components, question: str,
                                                                       decompose: list[bool]) -> None:
    answerer = components.answerer
    assert answerer.answer(_mixed(question, decompose)) == answerer.answer(question)


def test_a_follow_up_typed_in_nfd_is_recognised(components) -> None:
    first = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    history = [Turn(unicodedata.normalize("NFD", first), components.answerer.answer(first).text)]
    follow_up = unicodedata.normalize("NFD", "Còn năm 2018 thì sao?")
    composed = components.answerer.answer("Còn năm 2018 thì sao?", [Turn(first, history[0].answer)])
    answer = components.answerer.answer(follow_up, history)
    assert answer == composed
    assert answer.found and "3.463" in answer.text  # rewritten from the history: the 2018 figure


class RefusingChatModel(BaseChatModel):
    """A chat model that always says it found nothing, in Vietnamese (as small models often do)."""

    @property
    def _llm_type(self) -> str:
        return "refusing"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="Không tìm thấy thông tin."))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content="Không tìm thấy thông tin."))


def _language(answer: Answer) -> Language:
    """The language the answerer's own wording is in (its quotes are the articles' Vietnamese)."""
    for language in ("vi", "en"):
        if answer.text == NOT_FOUND[language] or answer.text.startswith((ACCORDING_TO[language] + " ", DISAGREE[language])):
            return language
    raise AssertionError(f"not an answerer's wording: {answer.text[:80]!r}")


WORDS = {
    "vi": "tổng số đảng viên năm tỉnh bao nhiêu là ai chủ trì hội nghị ở đâu khi nào kết nạp mới".split(),
    "vi_plain": "tong so dang vien nam tinh bao nhieu la ai chu tri hoi nghi o dau khi nao ket nap moi".split(),
    "en": "how many party members province what who when where new total the in of".split(),
    "other": ["2023", "2018", "74.127", "Tiền", "Giang", "Quảng", "Ngãi", "x", "?"],
}


@st.composite
def mixed_questions(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.sampled_from([w for pool in WORDS.values() for w in pool]), min_size=1, max_size=9))
    return " ".join(words)


@pytest.fixture(scope="module")
def both_answerers(built_index_settings, components):
    """The extractive answerer, and a generative one built by the same wiring with a refusing model
    (no extractive fallback, so its reply is its own "not found" wording)."""
    settings = built_index_settings.model_copy(update={"extractive_fallback": False})
    gate = CorpusGate(components.lexical.idf, components.embedder)
    generative = build_generative(settings, components.retriever, gate, RefusingChatModel(), COMPACT_PROMPT)
    return components.answerer, generative


@pytest.mark.parametrize("question", ["party members 2023", "Tổng số đảng viên năm 2023?", "tong so dang vien nam 2023",
                                      "How many party members did the province have in 2023?", "what about Quảng Ngãi?"])
def test_both_answerers_reply_to_a_named_question_in_one_language(both_answerers, question: str) -> None:
    extractive, generative = both_answerers
    assert _language(extractive.answer(question)) == _language(generative.answer(question))


@settings(fuzz_settings(60), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(question=mixed_questions())
def test_both_answerers_reply_in_the_same_language(both_answerers, question: str) -> None:
    extractive, generative = both_answerers
    assert _language(extractive.answer(question)) == _language(generative.answer(question))
