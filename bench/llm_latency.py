"""Local LLM latency, warm: time to first token and total for the 74.127 question, p50/p95.

    .venv/bin/python bench/llm_latency.py [--models qwen2.5-0.5b-instruct qwen2.5-1.5b-instruct] [--rounds 5]

The answerer is built as the local answerer is (`COMPACT_PROMPT`). Each model is loaded once and its
fixed prompt prefix cached (`warm_up`, as the CLI and bot should), then the 74.127 question is
asked `--rounds` times, each time after two other questions, so that llama.cpp can reuse only the
cached prefix and never the whole previous prompt (which would flatter it).
Passages come from an in-memory BM25 index of the bundled articles (real cleaning and chunking),
so the figures isolate the LLM. Prints load time, prompt sizes in tokens, llama.cpp's prompt and
generation speeds, and the latencies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.settings import BUNDLED_CORPUS, Settings  # noqa: E402
from index.chunking import split_into_chunks  # noqa: E402
from index.cleaning import clean_article  # noqa: E402
from index.loading import load_documents  # noqa: E402
from retrieval.answering.llm.provisioning import resolve_llm_path  # noqa: E402
from retrieval.answering.generative import COMPACT_EXCERPT_WORDS, COMPACT_PROMPT_PASSAGES, GenerativeAnswerer  # noqa: E402
from retrieval.search.lexical import LexicalIndex  # noqa: E402
from retrieval.answering.llm.runtimes import load_local_chat_model  # noqa: E402
from retrieval.answering.generative import COMPACT_PROMPT  # noqa: E402
from retrieval.answering.prompts import prompt_prefix  # noqa: E402
from retrieval.types import Answer, Passage, SearchFilters  # noqa: E402

QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
OTHERS = ("Tính đến tháng 6-2018, Đảng bộ khối có bao nhiêu đảng viên?", "Ai là Bí thư Tỉnh ủy Tiền Giang năm 2014?")


class CorpusRetriever:
    """BM25 over the accent-folded text of the bundled articles, chunked as the index chunks them."""

    def __init__(self, corpus: Path, chunk_words: int = 160) -> None:
        documents, _ = load_documents([corpus])
        self.articles = {a.article_id: a for a in map(clean_article, documents)}
        self.chunks = [c for a in self.articles.values() for c in split_into_chunks(a, size_words=chunk_words, overlap_sentences=1)]
        texts = [f"{self.articles[c.article_id].title}\n{c.text}" for c in self.chunks]
        self.index = LexicalIndex.build(list(range(len(self.chunks))), texts, [c.article_id for c in self.chunks])

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        passages = []
        for chunk_id, score in self.index.search(query, k, field="folded"):
            chunk, article = self.chunks[chunk_id], self.articles[self.chunks[chunk_id].article_id]
            passages.append(Passage(article.article_id, article.title, article.date, article.source, chunk.text, chunk.start, chunk.end, score, (chunk_id,)))
        return passages


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_answer(answerer: GenerativeAnswerer, question: str) -> tuple[float, float, Answer]:
    start = time.perf_counter()
    first = None
    stream = answerer.stream(question)
    for _ in stream:
        if first is None:
            first = time.perf_counter() - start
    final = stream.final()
    total = time.perf_counter() - start
    return (first if first is not None else total), total, final


def bench_model(name: str, args: argparse.Namespace, retriever: CorpusRetriever) -> None:
    path = resolve_llm_path(args.models_dir, name)
    start = time.perf_counter()
    model = load_local_chat_model(path, threads=args.threads, context=args.context, max_tokens=args.max_tokens)
    load_s = time.perf_counter() - start
    answerer = GenerativeAnswerer(
        retriever, model, top_k=args.top_k,
        shape=replace(COMPACT_PROMPT, excerpt_words=args.excerpt_words, prompt_passages=args.prompt_passages),
    )
    system_tokens = model.invoke(prompt_prefix()[:1], max_tokens=1).usage_metadata  # the system text alone, for scale
    start = time.perf_counter()
    answerer.warm_up()
    warm_s = time.perf_counter() - start

    messages, excerpts = answerer.prompt(QUESTION, retriever.retrieve(QUESTION, args.top_k))
    full = model.invoke(messages).response_metadata["timings"]
    timed_answer(answerer, OTHERS[0])  # so that the first timed run does not find its whole prompt cached

    ttft, total = [], []
    last: Answer | None = None
    for _ in range(args.rounds):
        for other in OTHERS:
            timed_answer(answerer, other)
        first, whole, last = timed_answer(answerer, QUESTION)
        ttft.append(first)
        total.append(whole)

    print(f"\n== {name} ({path.stat().st_size / 1e6:.0f} MB), {args.threads} threads, load avg {os.getloadavg()[0]:.1f}")
    print(f"load {load_s:.2f} s; prefix warm-up {warm_s:.2f} s")
    print(
        f"prompt: {full['cache_n'] + full['prompt_n']} tokens ({full['cache_n']} cached prefix, "
        f"{full['prompt_n']} new, {len(excerpts)} excerpt(s); system text alone {system_tokens['input_tokens'] if system_tokens else '?'})"
    )
    print(f"llama.cpp: prompt {full['prompt_per_second']:.0f} tokens/s, generation {full['predicted_per_second']:.1f} tokens/s")
    # The minimum is the figure least disturbed by other work on shared cores.
    print(f"first token  p50 {percentile(ttft, .5):.2f} s  p95 {percentile(ttft, .95):.2f} s  min {min(ttft):.2f} s  ({args.rounds} runs)")
    print(f"total        p50 {percentile(total, .5):.2f} s  p95 {percentile(total, .95):.2f} s  min {min(total):.2f} s  (mean {statistics.mean(total):.2f})")
    if last is not None:
        cited = ", ".join(f"[{s.n}] {s.article_id} {s.date}" for s in last.sources)
        print(f"answer (found={last.found}): {last.text}\n  sources: {cited}")


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct"])
    parser.add_argument("--models-dir", type=Path, default=settings.models_dir)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=settings.llm_threads)
    parser.add_argument("--context", type=int, default=settings.llm_context)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=settings.top_k)
    parser.add_argument("--excerpt-words", type=int, default=COMPACT_EXCERPT_WORDS, help="words of each passage in the prompt")
    parser.add_argument("--prompt-passages", type=int, default=COMPACT_PROMPT_PASSAGES)
    args = parser.parse_args()
    retriever = CorpusRetriever(BUNDLED_CORPUS)
    for name in args.models:
        bench_model(name, args, retriever)


if __name__ == "__main__":
    main()
