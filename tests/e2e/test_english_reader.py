"""English questions over Vietnamese articles, read by the real English reader (EmbeddingGemma-300M) as
the CLI and the bot wire it: which sentence answers, for the extractive quote and the LLM's excerpts."""

from __future__ import annotations

from bot.wiring import english_reader
from index.english_model import ENGLISH_MODEL
from retrieval.answering.excerpts import select_excerpts

MEMBERS = "nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí."
ORGANISATIONS = "toàn Đảng bộ tỉnh có 817 tổ chức cơ sở Đảng"


def _passage_2023(components):
    question = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
    return next(p for p in components.retriever.retrieve(question, 5) if MEMBERS in p.text)


def test_the_reader_is_the_english_model_not_the_index_model(components) -> None:
    reader = english_reader(components.settings, components.embedder)
    assert reader.embedder.identity.name == ENGLISH_MODEL
    assert reader.embedder is not components.embedder
    assert english_reader(components.settings, components.embedder).embedder is reader.embedder  # loaded once


def test_the_llm_reads_the_members_sentence_for_an_english_members_question(components) -> None:
    passage = _passage_2023(components)
    reader = english_reader(components.settings, components.embedder)
    question = "How many party members did the whole provincial Party have in 2023?"
    excerpt = select_excerpts([passage], question, 40, reader.rank)[0]
    assert MEMBERS in excerpt.text
    assert excerpt.text == passage.text[excerpt.start - passage.start : excerpt.end - passage.start]


def test_organisations_and_members_are_told_apart(components) -> None:
    """The same passage, two English questions: each gets the sentence with its own figure."""
    members = components.answerer.answer("How many party members did the whole provincial Party have in 2023?")
    organisations = components.answerer.answer("How many grassroots party organizations did the province have in September 2023?")
    assert members.found and "74.127" in members.text
    assert organisations.found and "817" in organisations.text and "74.127" not in organisations.text
