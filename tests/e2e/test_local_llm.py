"""The real local LLM (GGUF through llama.cpp) answering from real passages of the bundled articles.

Passages come from an in-memory BM25 index built with the project's own cleaning and chunking, so
the test needs only the provisioned GGUF (`hoidap models fetch --llm`), not a built index.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from bot.settings import BUNDLED_CORPUS, Settings
from index.chunking import split_into_chunks
from index.cleaning import clean_article
from index.documents import Article
from index.errors import LLMError
from index.loading import load_documents
from index.models import resolve_llm_path
from retrieval.generative import GenerativeAnswerer
from retrieval.lexical import LexicalIndex
from retrieval.llm import LlamaCppChatModel, load_local_chat_model, openai_chat_model
from retrieval.types import Answer, Passage, SearchFilters

pytestmark = [pytest.mark.e2e, pytest.mark.llm]

QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"


class CorpusRetriever:
    """BM25 over the accent-folded chunks of the bundled articles."""

    def __init__(self, corpus: Path) -> None:
        documents, _ = load_documents([corpus])
        self.articles: dict[str, Article] = {a.article_id: a for a in map(clean_article, documents)}
        self.chunks = [c for a in self.articles.values() for c in split_into_chunks(a, size_words=160, overlap_sentences=1)]
        texts = [f"{self.articles[c.article_id].title}\n{c.text}" for c in self.chunks]
        self.index = LexicalIndex.build(list(range(len(self.chunks))), texts, [c.article_id for c in self.chunks])

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        passages = []
        for chunk_id, score in self.index.search(query, k, field="folded"):
            chunk = self.chunks[chunk_id]
            article = self.articles[chunk.article_id]
            passages.append(
                Passage(article.article_id, article.title, article.date, article.source, chunk.text, chunk.start, chunk.end, score, (chunk_id,))
            )
        return passages


@pytest.fixture(scope="module")
def retriever() -> CorpusRetriever:
    return CorpusRetriever(BUNDLED_CORPUS)


@pytest.fixture(scope="module")
def model() -> LlamaCppChatModel:
    settings = Settings()
    path = resolve_llm_path(settings.models_dir, settings.llm_model)  # fails clearly if not provisioned
    return load_local_chat_model(path, threads=settings.llm_threads, context=2048, max_tokens=96)


@pytest.fixture(scope="module")
def answerer(retriever: CorpusRetriever, model: LlamaCppChatModel) -> GenerativeAnswerer:
    answerer = GenerativeAnswerer(retriever, model, top_k=5, compact=True)  # as the local answerer is wired
    answerer.warm_up()
    return answerer


def test_the_local_llm_answers_74127_citing_the_2023_article(answerer: GenerativeAnswerer, retriever: CorpusRetriever) -> None:
    items = list(answerer.stream(QUESTION))
    fragments, answer = items[:-1], items[-1]
    assert isinstance(answer, Answer)
    assert answer.found, answer.text
    assert "74.127" in answer.text
    assert "[1]" in answer.text
    assert fragments and "".join(fragments) == answer.text  # streamed, and the stream is the answer
    first = answer.sources[0]
    assert first.n == 1 and first.date is not None and first.date.startswith("2023")
    assert "74.127" in first.text
    assert first.text == retriever.articles[first.article_id].text[first.start : first.end]


def test_the_local_llm_does_not_answer_what_the_articles_do_not_say(answerer: GenerativeAnswerer) -> None:
    answer = answerer.answer("Giá vàng hôm nay là bao nhiêu?")
    assert not answer.found
    assert answer.text.startswith("Không tìm thấy")
    assert answer.sources  # the nearest passages are still listed


def test_the_openai_adapter_answers_through_a_real_openai_compatible_server(retriever: CorpusRetriever, model: LlamaCppChatModel) -> None:
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
    answer = GenerativeAnswerer(retriever, chat_model, excerpt_words=40, prompt_passages=2).answer(QUESTION)
    assert answer.found and "74.127" in answer.text
    assert answer.sources[0].date is not None and answer.sources[0].date.startswith("2023")

    wrong_key = openai_chat_model(model="local", base_url=f"{server.listening_address}/v1", api_key="wrong")
    with pytest.raises(LLMError, match="language model failed"):
        GenerativeAnswerer(retriever, wrong_key, excerpt_words=40, prompt_passages=2).answer(QUESTION)


def test_leaving_a_stream_early_stops_generation_and_frees_the_model(model: LlamaCppChatModel) -> None:
    messages = [HumanMessage(content="Kể tên 20 tỉnh của Việt Nam, mỗi tỉnh một dòng.")]
    stream = model.stream(messages)
    pieces = [next(stream).content for _ in range(3)]
    stream.close()  # the reader went away: llama.cpp is told to stop at its next token
    assert all(isinstance(piece, str) for piece in pieces)
    reply = model.invoke([HumanMessage(content="Trả lời đúng một chữ: có")], max_tokens=4)
    assert reply.content.strip()
