"""The extractive answerer: offline, instant, deterministic; quotes the sentence(s) that answer and cites them.

The passages come from the retriever and pass the same grounding gate as the generative answerer's;
`retrieval.answering.sentences` scores their sentences. The best one is quoted with its article's title and date,
joined with its neighbour when both state the asked figure. When the best sentences of different
articles give different figures (other years, other provinces), the answer names each article. Article
text is only quoted, never obeyed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from index.text import Language, answer_language, disarm_citations, display_date
from retrieval.answering.conversation import incoming, rewrite_question
from retrieval.answering.crosslingual import MeaningReader
from retrieval.answering.grounding import is_supported
from retrieval.answering.replies import ACCORDING_TO, DISAGREE, not_found
from retrieval.answering.sentences import (
    Question,
    ScoredSentence,
    covers_asked_year,
    parse_question,
    score_sentences,
)
from retrieval.answering.untrusted import BLANK_RUN, screen_passages
from retrieval.types import (
    Answer,
    Answerer,
    AnswerStream,
    Passage,
    Retriever,
    Source,
    Turn,
)

_NEAREST_SOURCES = 3
_AGREEMENT_RATIO = 0.8  # other articles whose best sentence scores this close to the best are compared
_MAX_DISAGREEING = 3
_NEIGHBOUR_RATIO = 0.85
_TYPED_ANSWER_RATIO = 0.5
_OTHER_YEAR_RATIO = 0.9


class ExtractiveAnswerer(Answerer):
    """Implements `retrieval.types.Answerer` without a language model."""

    def __init__(self, retriever: Retriever, *, top_k: int = 5, history_turns: int = 4,
                 gate: Callable[[str, Sequence[Passage]], bool] = is_supported,
                 reader: MeaningReader | None = None) -> None:
        self.retriever = retriever
        self.reader = reader  # reads English questions by meaning; None: by their names and numbers only
        self.top_k = top_k
        self.history_turns = history_turns
        self.gate = gate  # the same gate as the generative answerer's; injectable for other embedders

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        """Answer from the best sentence(s) of the retrieved passages, or say it is not in the articles."""
        question, history = incoming(question, history)
        standalone = rewrite_question(question, history, history_turns=self.history_turns)
        passages = self.retriever.retrieve(standalone, self.top_k)
        return self.answer_from(standalone, passages, answer_language(question))

    def answer_from(self, standalone: str, passages: list[Passage], language: Language) -> Answer:
        """Answer a standalone question from passages already retrieved, in `language` (also the LLM
        answerer's fallback)."""
        parsed = parse_question(standalone)
        screened = screen_passages(passages, standalone)  # orders in the articles are no answer
        if not passages or not self.gate(standalone, screened):
            return _not_found(passages, language)
        ranked = score_sentences(parsed, screened)
        english = parsed.kind == "en" and self.reader is not None
        if english:
            ranked = self.reader.rescore(standalone, ranked)
        best = _best_answer(parsed, ranked)
        if best is None:
            return _not_found(passages, language)
        second = self.reader.runner_up(parsed, best, ranked) if english else None
        if second is not None:  # meaning alone cannot tell which of the two: both are quoted
            return _cite(sorted([best, second], key=lambda s: s.start), language)
        disagreeing = _disagreeing(parsed, [s for s in ranked if s.score <= best.score])
        if len(disagreeing) > 1:
            chosen = [_with_neighbour(parsed, s, ranked) for s in disagreeing]
            return _cite(chosen, language, lead=DISAGREE[language])
        return _cite([_with_neighbour(parsed, best, ranked)], language)

    def stream(self, question: str, history: list[Turn] | None = None) -> AnswerStream:
        """The whole answer text as one fragment (extraction has nothing to stream)."""
        return AnswerStream.of(self.answer(question, history))


def _best_answer(question: Question, ranked: list[ScoredSentence]) -> ScoredSentence | None:
    """The sentence to answer with, or None.

    For a question asking how many or when, the best sentence stating such a value, scoring at least
    half as well as the best sentence overall. A sentence from a passage of another year than the
    asked one is passed over, but then the answer must score nearly as well as it did: a weaker
    sentence of the right year is more often about something else.
    """
    floor = _TYPED_ANSWER_RATIO * ranked[0].score if ranked else 0.0
    for sentence in ranked:
        if sentence.score < floor:
            return None
        if not (sentence.answers_type or not (question.asks_quantity or question.asks_time)):
            continue
        if covers_asked_year(question, sentence):
            return sentence
        floor = max(floor, _OTHER_YEAR_RATIO * sentence.score)
    return None


def _not_found(passages: Sequence[Passage], language: Language) -> Answer:
    """The "not in the articles" reply, listing the nearest passages as sources."""
    return not_found([p.to_source(n) for n, p in enumerate(passages[:_NEAREST_SOURCES], 1)], language)


def _disagreeing(question: Question, ranked: list[ScoredSentence]) -> list[ScoredSentence]:
    """Best sentences of different articles that state different figures for the same question.

    Only sentences that answer the same thing are compared: close to the best score, stating a value
    of the asked type (counting the asked unit when the question names one), and matching the
    question's wording about as well as the best does.
    """
    if not (question.asks_quantity or question.asks_time) or not ranked[0].answers_type:
        return []
    best = ranked[0]
    chosen: dict[str, ScoredSentence] = {}
    for sentence in ranked:
        if sentence.score < _AGREEMENT_RATIO * best.score:
            break
        comparable = (
            sentence.answers_type
            and sentence.pair_share >= 0.5 * best.pair_share
            and covers_asked_year(question, sentence)
        )
        if comparable and sentence.passage.article_id not in chosen:
            chosen[sentence.passage.article_id] = sentence
    picked = list(chosen.values())[:_MAX_DISAGREEING]
    if len({s.values for s in picked}) < 2:
        return []
    return picked


def _with_neighbour(question: Question, sentence: ScoredSentence, ranked: list[ScoredSentence]) -> ScoredSentence:
    """Join the sentence before when the answer needs it, or the one next to it when both count.

    The sentence before is joined when it holds most of what the answer shares with the question
    (`Bên cạnh những thuận lợi, Đảng ủy Khối các cơ quan tỉnh có những khó khăn...` then `Số lượng
    đảng viên đông (gần 3.500 đảng viên)...`): alone, the figure would not say whose it is. A neighbour
    is also joined when it too counts the asked unit and scores nearly as well: the two together
    answer (`... kết nạp 527/600 đảng viên. ... toàn Đảng bộ khối có 3.463 đảng viên ...`).
    """
    same_passage = [s for s in ranked if s.passage_rank == sentence.passage_rank]
    if sentence.needs_context:
        before = [s for s in same_passage if s.ordinal == sentence.ordinal - 1]
        if before:
            return _joined(sentence, before[0])
    if not (question.unit and sentence.answers_type):
        return sentence
    neighbours = [
        s for s in same_passage
        if abs(s.ordinal - sentence.ordinal) == 1 and s.answers_type and s.score >= _NEIGHBOUR_RATIO * sentence.score
    ]
    return _joined(sentence, neighbours[0]) if neighbours else sentence


def _joined(sentence: ScoredSentence, other: ScoredSentence) -> ScoredSentence:
    """The two adjacent sentences as one quotation (their exact span in the article), scored as `sentence`."""
    passage = sentence.passage
    start, end = min(sentence.start, other.start), max(sentence.end, other.end)
    text = passage.text[start - passage.start : end - passage.start]
    if BLANK_RUN in text:
        return sentence  # a screened-out order lies between them: the join would not quote the article
    return replace(sentence, start=start, end=end, text=text, values=sentence.values | other.values)


def _cite(sentences: list[ScoredSentence], language: Language, *, lead: str | None = None) -> Answer:
    """The answer text with `[n]` after each quoted sentence, and the matching numbered sources."""
    sources: list[Source] = []
    parts: list[str] = [lead] if lead else []
    for n, sentence in enumerate(sentences, 1):
        source = sentence.passage.to_source(n, text=sentence.text, start=sentence.start, end=sentence.end)
        sources.append(replace(source, score=round(sentence.score, 4)))
        quoted = sentence.text.rstrip(" .;:") if lead else sentence.text
        quoted = disarm_citations(quoted)
        ending = "." if lead else ""
        same_article = n > 1 and sentences[n - 2].passage.article_id == sentence.passage.article_id
        attribution = "…" if same_article else _attribution(sentence.passage, language)
        parts.append(f"{attribution} {quoted} [{n}]{ending}")
    return Answer(text=" ".join(parts), found=True, sources=sources)


def _attribution(passage: Passage, language: Language) -> str:
    """`Theo «title» (08/10/2018):` / `According to «title» (08/10/2018):`."""
    date = display_date(passage.date)
    when = f" ({date})" if date else ""
    return f"{ACCORDING_TO[language]} «{passage.title}»{when}:"
