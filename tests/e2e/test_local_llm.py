"""The real local LLM (GGUF through llama.cpp) answering from the real index of the bundled articles."""

from __future__ import annotations

import json
import secrets

import pytest
from langchain_core.messages import HumanMessage

from bot.wiring import build_answerer
from retrieval.answering.generative import GenerativeAnswerer, PromptShape
from retrieval.answering.judgement import CorpusGate
from retrieval.answering.llm.errors import LLMError
from retrieval.answering.llm.runtimes import LlamaCppChatModel, openai_chat_model
from retrieval.types import Answer

pytestmark = [pytest.mark.e2e, pytest.mark.llm]

QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"


@pytest.fixture(scope="module")
def retriever(components):
    """The real hybrid retriever over a real index of the bundled articles."""
    return components.retriever


@pytest.fixture(scope="module")
def answerer(built_index_settings, components) -> GenerativeAnswerer:
    """The local answerer exactly as the CLI and Telegram build it: the gate, the prompt shape, the fallback."""
    settings = built_index_settings.model_copy(update={"llm_context": 2048, "llm_max_tokens": 96})
    answerer = build_answerer(settings, components.retriever, CorpusGate(components.lexical.idf, components.embedder), "local")
    assert isinstance(answerer, GenerativeAnswerer) and answerer.fallback is not None
    answerer.warm_up()
    return answerer


@pytest.fixture(scope="module")
def model(answerer: GenerativeAnswerer) -> LlamaCppChatModel:
    return answerer.chat_model


def test_the_local_llm_answers_74127_citing_the_2023_article(answerer: GenerativeAnswerer, components) -> None:
    stream = answerer.stream(QUESTION)
    fragments = list(stream)
    answer = stream.final()
    assert isinstance(answer, Answer)
    assert answer.found, answer.text
    assert "74.127" in answer.text
    assert "[1]" in answer.text
    # Streamed, and the stream is the answer (unless the checks gave way to the extractive quote).
    assert fragments and ("".join(fragments) == answer.text or answer.text.startswith("Theo «"))
    first = answer.sources[0]
    assert first.n == 1 and first.date is not None and first.date.startswith("2023")
    assert "74.127" in first.text
    assert first.text == components.store.article(first.article_id).text[first.start : first.end]


def test_the_local_llm_does_not_answer_what_the_articles_do_not_say(answerer: GenerativeAnswerer) -> None:
    answer = answerer.answer("Giá vàng hôm nay là bao nhiêu?")
    assert not answer.found
    assert answer.text.startswith("Không tìm thấy")
    assert answer.sources  # the nearest passages are still listed


def test_the_openai_adapter_answers_through_a_real_openai_compatible_server(retriever, model: LlamaCppChatModel) -> None:
    """llama.cpp's own HTTP server speaks the OpenAI API: the same answerer runs over HTTP with a key."""
    import xllamacpp

    key = secrets.token_hex(16)
    params = xllamacpp.CommonParams()
    params.model.path = model.model_path
    params.n_ctx = 2048
    params.cpuparams.n_threads = model.n_threads
    params.cpuparams_batch.n_threads = model.n_threads
    params.verbosity = 0
    params.api_keys = [key]
    server = xllamacpp.Server(params)
    chat_model = openai_chat_model(model="local", base_url=f"{server.listening_address}/v1", api_key=key, max_tokens=96, temperature=0.0)
    assert key not in repr(chat_model)
    answer = GenerativeAnswerer(retriever, chat_model, shape=PromptShape(excerpt_words=40, prompt_passages=2)).answer(QUESTION)
    assert answer.found and "74.127" in answer.text
    assert answer.sources[0].date is not None and answer.sources[0].date.startswith("2023")

    wrong_key = openai_chat_model(model="local", base_url=f"{server.listening_address}/v1", api_key="wrong")
    with pytest.raises(LLMError, match="language model failed"):
        GenerativeAnswerer(retriever, wrong_key, shape=PromptShape(excerpt_words=40, prompt_passages=2)).answer(QUESTION)


def test_hoidap_ask_with_the_local_llm_through_the_cli(built_index_settings) -> None:
    from tests.conftest import run_cli

    result = run_cli(["ask", "--json", "--answerer", "local", QUESTION], built_index_settings)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["found"] and "74.127" in reply["answer"]
    assert reply["sources"][0]["date"].startswith("2023")


def test_leaving_a_stream_early_stops_generation_and_frees_the_model(model: LlamaCppChatModel) -> None:
    messages = [HumanMessage(content="Kể tên 20 tỉnh của Việt Nam, mỗi tỉnh một dòng.")]
    stream = model.stream(messages)
    pieces = [next(stream).content for _ in range(3)]
    stream.close()  # the reader went away: llama.cpp is told to stop at its next token
    assert all(isinstance(piece, str) for piece in pieces)
    reply = model.invoke([HumanMessage(content="Trả lời đúng một chữ: có")], max_tokens=4)
    assert reply.content.strip()
