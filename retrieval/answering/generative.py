"""The generative Answerer: retrieve, prompt a chat model with numbered passages, stream, check citations.

Refusal never rests on the model alone (small models invent answers when the passages hold none):
retrieval judged too weak by the gate, an answer that cites nothing, an answer that only says it found
nothing, one whose new figures or names are not in the passages it cites, and one that only carries out
an order written in a passage (`retrieval.answering.orders`) all become the same "not found in the articles"
reply, in the question's language, listing the nearest passages (or the fallback's answer). With the
extractive fallback, an answer must also say what the extractive answer quotes, read from one cited
sentence (the value for how many and when, the person for who; `retrieval.answering.claims`), else
that answer replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from index.text import Language, answer_language, fold, strip_citations
from retrieval.answering.citations import CitationRewriter, cited_sources, is_grounded
from retrieval.answering.claims import claim_holds, claim_sentence, with_evidence
from retrieval.answering.conversation import incoming, rewrite_question
from retrieval.answering.excerpts import (
    Excerpt,
    SentenceRanker,
    drop_weak,
    rank_by_evidence,
    select_excerpts,
)
from retrieval.answering.llm.errors import LLM_FAILURES, LLMError
from retrieval.answering.orders import relays_an_order
from retrieval.answering.prompts import (
    DEFAULT_TITLE_WORDS,
    build_messages,
    prompt_prefix,
)
from retrieval.answering.replies import not_found
from retrieval.answering.sentences import parse_question
from retrieval.answering.untrusted import (
    restore_excerpts,
    screen_passages,
    screen_sources,
)
from retrieval.types import Answer, Answerer, AnswerStream, Passage, Retriever, Turn

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

Gate = Callable[[str, list[Passage]], bool]
"""Whether the passages can support an answer to the question (e.g. `retrieval.answering.grounding.CorpusGate`)."""

Rewriter = Callable[[str, list[Turn]], str]
"""Turns a follow-up question into a standalone one using the recent turns."""

Fallback = Callable[[str, list[Passage], Language], Answer]
"""Answers a standalone question from the same passages, in the given language, without the model
(the extractive answerer's `answer_from`)."""

# The model saying it found nothing, in either language (accents folded).
_REFUSAL_RE = re.compile(
    r"khong (tim thay|co thong tin|chua thong tin|de cap|neu)|khong the tra loi"
    r"|not found|no information|(do|does) not (contain|mention|say|include)|cannot answer|not mentioned"
)
_SENTENCE_BREAK_RE = re.compile(r"[.!?](?:\s|$)")


def _is_refusal(text: str) -> bool:
    """True when the answer says nothing (citations alone) or is one sentence saying it found nothing."""
    folded = fold(strip_citations(text)).strip()
    if not any(char.isalnum() for char in folded):
        return True
    sentences = [s for s in _SENTENCE_BREAK_RE.split(folded) if s and s.strip()]
    return len(sentences) <= 1 and bool(_REFUSAL_RE.search(folded))


@dataclass(frozen=True)
class PromptShape:
    """How much of the retrieved passages the model reads, and whether it also rewrites follow-ups.

    `excerpt_words` limits each passage to its best sentences (None: whole passages);
    `prompt_passages` caps how many of the `top_k` passages are read (None: all); `relevance_floor`
    drops an excerpt scoring below that share of the best one's (None: keep all); `title_words` cuts
    titles in the passage headers; without `model_rewrites`, follow-ups are rewritten by rules.
    """

    excerpt_words: int | None = None
    prompt_passages: int | None = None
    title_words: int = DEFAULT_TITLE_WORDS
    relevance_floor: float | None = None
    model_rewrites: bool = True


FULL_PROMPT = PromptShape()
"""For a capable remote model: whole passages, titles, follow-ups rewritten by the model."""
# For a small local model: the best ~40 words (one or two sentences) of the two best passages, ~175-250
# new prompt tokens, which Qwen2.5-1.5B reads in 2.5-3.5 s on two quiet cores; headers give date and
# outlet only (~20 fewer tokens per passage); a second excerpt must score 3/4 of the best one to be
# read; follow-ups rewritten by rules rather than by a second, slower model call.
COMPACT_PROMPT = PromptShape(excerpt_words=40, prompt_passages=2, title_words=0, relevance_floor=0.75,
                             model_rewrites=False)


class GenerativeAnswerer(Answerer):
    """Answers from the retrieved passages with a chat model (local llama.cpp or OpenAI-compatible).

    `shape` says what the model reads (`COMPACT_PROMPT` for a small local model). `fallback` answers
    instead when the model's answer fails the checks (see `stream`).
    """

    def __init__(
        self,
        retriever: Retriever,
        chat_model: BaseChatModel,
        *,
        top_k: int = 5,
        gate: Gate | None = None,
        shape: PromptShape = FULL_PROMPT,
        rewriter: Rewriter | None = None,
        history_turns: int = 4,
        nearest: int = 3,
        ranker: SentenceRanker = rank_by_evidence,
        fallback: Fallback | None = None,
    ) -> None:
        self.retriever = retriever
        self.chat_model = chat_model
        self.top_k = top_k
        self.gate = gate
        self.shape = shape
        rewrite_model = chat_model if shape.model_rewrites else None
        self.rewriter = rewriter or partial(rewrite_question, chat_model=rewrite_model, history_turns=history_turns)
        self.history_turns = history_turns
        self.nearest = nearest
        self.ranker = ranker
        self.fallback = fallback

    def _excerpts(self, question: str, passages: list[Passage]) -> list[Excerpt]:
        """What the model reads: the best sentences of the first `prompt_passages` passages."""
        shape = self.shape
        screened = screen_passages(passages[: shape.prompt_passages], question)
        excerpts = select_excerpts(screened, question, shape.excerpt_words, self.ranker)
        excerpts = excerpts if shape.relevance_floor is None else drop_weak(excerpts, shape.relevance_floor)
        return restore_excerpts(excerpts, passages)

    def prompt(self, question: str, passages: list[Passage], language: Language) -> tuple[list[BaseMessage], list[Excerpt]]:
        """The messages the model gets for a standalone question, its passages and the language to
        answer in, with the excerpts they number [1]..[k]; public so that benchmarks and debugging
        see the exact prompt."""
        excerpts = self._excerpts(question, passages)
        return build_messages(question, excerpts, language, title_words=self.shape.title_words), excerpts

    def _not_found(self, question: str, passages: list[Passage], language: Language) -> Answer:
        nearest = select_excerpts(passages[: self.nearest], question, self.shape.excerpt_words, self.ranker)
        return not_found([excerpt.to_source(n) for n, excerpt in enumerate(nearest, 1)], language)

    def warm_up(self) -> None:
        """Let a local model cache the fixed start of every prompt now, so the first answer is as fast as later ones."""
        warm_up = getattr(self.chat_model, "warm_up", None)  # a LangChain chat model of ours, or anyone's
        if warm_up is not None:
            warm_up(prompt_prefix())

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        """The checked answer, without streaming."""
        return self.stream(question, history).final()

    def stream(self, question: str, history: list[Turn] | None = None) -> AnswerStream:
        """Answer fragments as the model writes them (citations already renumbered), then the checked Answer.

        When the answer turns out unsupported, or says another thing than the fallback's quote
        (`retrieval.answering.claims.claim_holds`), the final Answer is the fallback's answer if it
        found one, else the "not found" reply.
        """
        question, turns = incoming(question, history)
        return AnswerStream(self._produce(question, turns, answer_language(question)))

    def _produce(self, question: str, history: list[Turn], language: Language) -> Generator[str, None, Answer]:
        recent = history[-self.history_turns :] if self.history_turns else []
        standalone = self.rewriter(question, recent) if recent else question
        passages = self.retriever.retrieve(standalone, self.top_k)
        if not passages or (self.gate is not None and not self.gate(standalone, screen_passages(passages, standalone))):
            return self._not_found(standalone, passages, language)

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
        # Claims are checked against the cited text without its orders: a claim only an order makes is unsupported.
        checked = screen_sources(sources, standalone)
        if (not supported or not is_grounded(text, standalone, checked, check_names=language == "vi")
                or relays_an_order(text, standalone, sources)):
            # The passages passed the gate, so the model's refusal or unsupported answer may be the
            # model's failing: a small local model says "not found" to a third of the answerable
            # bundled questions. A quoted sentence that answers is better than a refusal.
            rescued = self.fallback(standalone, passages, language) if self.fallback is not None else None
            return rescued if rescued is not None and rescued.found else self._not_found(standalone, passages, language)
        if self.fallback is not None:
            # A figure, a date or a name of the cited passage may still answer something else (`claims`).
            extractive = self.fallback(standalone, passages, language)
            evidence = claim_sentence(text, standalone, checked)
            if evidence is None or not claim_holds(text, parse_question(standalone), extractive):
                return extractive if extractive.found else self._not_found(standalone, passages, language)
            if quoted := with_evidence(text, evidence):
                yield quoted
                text += quoted
        return Answer(text=text, found=True, sources=sources)
