"""The generative Answerer: retrieve, prompt a chat model with numbered passages, stream, check citations.

Refusal never rests on the model alone (small models invent answers when the passages hold none):
retrieval judged too weak by the gate, an answer that cites nothing, an answer that only says it found
nothing, one whose new figures or names are not in the passages it cites, and one that only carries out
an order written in a passage (`retrieval.answering.orders`) all become the same "not found in the articles"
reply, in the question's language, listing the nearest passages (or the fallback's answer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from index.errors import LLMError
from retrieval.answering.citations import CitationRewriter, cited_sources, is_grounded
from retrieval.answering.conversation import rewrite_question
from retrieval.answering.llm.runtimes import LLM_FAILURES
from retrieval.answering.orders import relays_an_order
from retrieval.answering.prompts import (
    DEFAULT_TITLE_WORDS,
    NOT_FOUND_TEXT,
    Excerpt,
    Language,
    SentenceRanker,
    build_messages,
    detect_language,
    drop_weak,
    fold,
    prompt_prefix,
    rank_by_evidence,
    select_excerpts,
)
from retrieval.types import Answer, Passage, Retriever, Turn

Gate = Callable[[str, list[Passage]], bool]
"""Whether the passages can support an answer to the question (e.g. `retrieval.answering.grounding.is_supported`)."""

Rewriter = Callable[[str, list[Turn]], str]
"""Turns a follow-up question into a standalone one using the recent turns."""

Fallback = Callable[[str, list[Passage]], Answer]
"""Answers a standalone question from the same passages without the model (the extractive answerer)."""

# The model saying it found nothing, in either language (accents folded).
_REFUSAL_RE = re.compile(
    r"khong (tim thay|co thong tin|chua thong tin|de cap|neu)|khong the tra loi"
    r"|not found|no information|(do|does) not (contain|mention|say|include)|cannot answer|not mentioned"
)
_SENTENCE_BREAK_RE = re.compile(r"[.!?](?:\s|$)")
_CITATION_RE = re.compile(r"\[[\d,\s]*\]")


def _is_refusal(text: str) -> bool:
    """True when the answer says nothing (citations alone) or is one sentence saying it found nothing."""
    folded = fold(_CITATION_RE.sub("", text)).strip()
    if not any(char.isalnum() for char in folded):
        return True
    sentences = [s for s in _SENTENCE_BREAK_RE.split(folded) if s and s.strip()]
    return len(sentences) <= 1 and bool(_REFUSAL_RE.search(folded))


def not_found_answer(excerpts: Sequence[Excerpt], language: Language) -> Answer:
    """The honest "not in the articles" reply, listing the nearest passages as its sources."""
    return Answer(
        text=NOT_FOUND_TEXT[language],
        found=False,
        sources=[excerpt.to_source(n) for n, excerpt in enumerate(excerpts, 1)],
    )


# The compact prompt of a small local model: the best ~40 words (one or two sentences) of the two
# best passages: ~175-250 new prompt tokens, which Qwen2.5-1.5B reads in 2.5-3.5 s on two quiet cores.
COMPACT_EXCERPT_WORDS = 40
COMPACT_PROMPT_PASSAGES = 2
COMPACT_TITLE_WORDS = 0  # headers give date and outlet only: ~20 fewer tokens per passage
COMPACT_RELEVANCE_FLOOR = 0.75  # a second excerpt must score 3/4 of the best one to be read


class GenerativeAnswerer:
    """Answers from the retrieved passages with a chat model (local llama.cpp or OpenAI-compatible).

    `excerpt_words` limits each passage in the prompt to its best sentences (the local model on two
    cores must read a prompt of a few hundred tokens to answer within seconds); None sends whole
    passages. `prompt_passages` caps how many of the `top_k` passages the model reads. `fallback`
    answers instead when the model's answer fails the checks (see `stream`). `compact=True`
    sets both for a small local model, drops a second excerpt that scores far below the first,
    leaves titles out of the passage headers, and rewrites follow-ups by rules rather than by a
    second, slower model call; explicit values win.
    """

    def __init__(
        self,
        retriever: Retriever,
        chat_model: BaseChatModel,
        *,
        top_k: int = 5,
        gate: Gate | None = None,
        rewriter: Rewriter | None = None,
        history_turns: int = 4,
        compact: bool = False,
        excerpt_words: int | None = None,
        prompt_passages: int | None = None,
        nearest: int = 3,
        ranker: SentenceRanker = rank_by_evidence,
        fallback: Fallback | None = None,
    ) -> None:
        self.retriever = retriever
        self.chat_model = chat_model
        self.top_k = top_k
        self.gate = gate
        rewrite_model = None if compact else chat_model
        self.rewriter = rewriter or partial(rewrite_question, chat_model=rewrite_model, history_turns=history_turns)
        self.history_turns = history_turns
        self.excerpt_words = excerpt_words if excerpt_words is not None or not compact else COMPACT_EXCERPT_WORDS
        self.prompt_passages = prompt_passages if prompt_passages is not None or not compact else COMPACT_PROMPT_PASSAGES
        self.title_words = COMPACT_TITLE_WORDS if compact else DEFAULT_TITLE_WORDS
        self.relevance_floor = COMPACT_RELEVANCE_FLOOR if compact else None
        self.nearest = nearest
        self.ranker = ranker
        self.fallback = fallback

    def _excerpts(self, question: str, passages: list[Passage]) -> list[Excerpt]:
        """What the model reads: the best sentences of the first `prompt_passages` passages."""
        excerpts = select_excerpts(passages[: self.prompt_passages], question, self.excerpt_words, self.ranker)
        return excerpts if self.relevance_floor is None else drop_weak(excerpts, self.relevance_floor)

    def prompt(
        self, question: str, passages: list[Passage], language: Language | None = None
    ) -> tuple[list[BaseMessage], list[Excerpt]]:
        """The messages the model gets for a standalone question, its passages and the language to
        answer in (the question's by default), with the excerpts they number [1]..[k]; public so
        that benchmarks and debugging see the exact prompt."""
        excerpts = self._excerpts(question, passages)
        language = language or detect_language(question)
        return build_messages(question, excerpts, language, title_words=self.title_words), excerpts

    def _not_found(self, question: str, passages: list[Passage], language: Language) -> Answer:
        nearest = select_excerpts(passages[: self.nearest], question, self.excerpt_words, self.ranker)
        return not_found_answer(nearest, language)

    def warm_up(self) -> None:
        """Let a local model cache the fixed start of every prompt now, so the first answer is as fast as later ones."""
        warm_up = getattr(self.chat_model, "warm_up", None)
        if warm_up is not None:
            warm_up(prompt_prefix())

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        """The checked answer, without streaming."""
        final = None
        for item in self.stream(question, history):
            if isinstance(item, Answer):
                final = item
        assert final is not None, "stream() always ends with an Answer"
        return final

    def stream(self, question: str, history: list[Turn] | None = None) -> Iterator[str | Answer]:
        """Yield answer fragments as the model writes them (citations already renumbered), then the Answer.

        The fragments are provisional: when the answer turns out unsupported, the final Answer is the
        fallback's answer if it found one, else the "not found" reply, and front-ends should show the
        final Answer's text.
        """
        language = detect_language(question)
        recent = list(history or [])[-self.history_turns :] if self.history_turns else []
        standalone = self.rewriter(question, recent) if recent else question
        passages = self.retriever.retrieve(standalone, self.top_k)
        if not passages or (self.gate is not None and not self.gate(standalone, passages)):
            yield self._not_found(standalone, passages, language)
            return

        messages, excerpts = self.prompt(standalone, passages, language)
        rewriter = CitationRewriter(len(excerpts))
        parts: list[str] = []
        try:
            for chunk in self.chat_model.stream(messages):
                text = rewriter.feed(chunk.content if isinstance(chunk.content, str) else "")
                if not parts:
                    text = text.lstrip()  # so that the fragments spell exactly the final text
                if text:
                    parts.append(text)
                    yield text
        except LLM_FAILURES as error:
            raise LLMError(f"The language model failed: {error}") from error
        if tail := rewriter.finish():
            parts.append(tail)
            yield tail

        text = "".join(parts).strip()
        sources = cited_sources([excerpt.to_source(n) for n, excerpt in enumerate(excerpts, 1)], rewriter.cited)
        supported = bool(sources) and not _is_refusal(text)
        if (not supported or not is_grounded(text, standalone, sources, check_names=language == "vi")
                or relays_an_order(text, standalone, sources)):
            # The passages passed the gate, so the model's refusal or unsupported answer may be the
            # model's failing: a small local model says "not found" to a third of the answerable
            # bundled questions. A quoted sentence that answers is better than a refusal.
            rescued = self.fallback(standalone, passages) if self.fallback is not None else None
            yield rescued if rescued is not None and rescued.found else self._not_found(standalone, passages, language)
            return
        yield Answer(text=text, found=True, sources=sources)
