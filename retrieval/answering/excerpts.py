"""What a generative answerer's model reads of each retrieved passage: its best sentences.

The local model on two CPU cores reads about 70 prompt tokens a second, so its prompt holds only the
best sentence or two of each passage (`select_excerpts`, ranked by the extractive answerer's sentence
scoring), each still an exact span of its article so that a citation points at text the user can check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from index.text import content_features, is_number
from retrieval.answering.sentences import ScoredSentence, parse_question, score_sentences
from retrieval.types import Passage, Source


@dataclass(frozen=True)
class Excerpt:
    """The part of a retrieved passage shown to the model: an exact span of its article."""

    passage: Passage
    text: str
    start: int
    end: int
    score: float | None = None  # the ranker's score of its best sentence (None: the whole passage)

    def to_source(self, n: int) -> Source:
        """Number this excerpt as source `n`: the span the user sees is the span the model read."""
        return self.passage.to_source(n, text=self.text, start=self.start, end=self.end)


def score_by_overlap(question: str, sentences: list[str]) -> list[float]:
    """Lexical relevance: question words and word pairs (accents ignored) in each sentence; numbers weigh double."""
    wanted = content_features(question)
    return [float(sum(2 if is_number(term) else 1 for term in wanted & content_features(sentence)))
            for sentence in sentences]


ScoredSpan = tuple[int, int, float]
SentenceRanker = Callable[[str, Passage], list[ScoredSpan]]
"""Scores the sentences of a passage for a question: (start, end, score), offsets in the passage text."""


def rank_by_evidence(question: str, passage: Passage) -> list[ScoredSpan]:
    """The extractive answerer's sentence scoring (`retrieval.answering.sentences`), so both answerers read a
    passage alike: coverage of the question, evidence of the value asked for (a count for `bao nhiêu`,
    a name for `ai`). An English question matches only by its names and numbers here;
    `retrieval.answering.crosslingual.MeaningReader.rank` reads it by meaning too."""
    return passage_spans(passage, score_sentences(parse_question(question), [passage]))


def passage_spans(passage: Passage, scored: Sequence[ScoredSentence]) -> list[ScoredSpan]:
    """Scored sentences of one passage as a `SentenceRanker` gives them: offsets in the passage, in order."""
    return sorted((s.start - passage.start, s.end - passage.start, s.score) for s in scored)


_LONG_SENTENCE_FACTOR = 1.5


def _word_count(text: str) -> int:
    return len(text.split())


def _window_around_best(spans: list[ScoredSpan], words: list[int], budget: int) -> tuple[int, int]:
    """Indices [i, j) of the best sentence and, while they fit `budget` words, its useful neighbours
    (the better one first; the one before on a tie, since news names the subject before the figure)."""
    best = max(range(len(spans)), key=lambda k: spans[k][2])
    i, j, used = best, best + 1, words[best]
    while True:
        options = []
        if i > 0 and spans[i - 1][2] > 0 and used + words[i - 1] <= budget:
            options.append((spans[i - 1][2], 1, i - 1))
        if j < len(spans) and spans[j][2] > 0 and used + words[j] <= budget:
            options.append((spans[j][2], 0, j))
        if not options:
            return i, j
        _, _, k = max(options)
        used += words[k]
        i, j = min(i, k), max(j, k + 1)


def _clip_words(text: str, offset: int, question: str, budget: int) -> tuple[int, int]:
    """Within one over-long sentence, the `budget`-word window that best matches the question."""
    words = list(re.finditer(r"\S+", text))
    if len(words) <= budget:
        return offset, offset + len(text)
    windows = [(i, min(i + budget, len(words))) for i in range(0, len(words) - budget + 1, max(1, budget // 4))]
    scores = score_by_overlap(question, [text[words[i].start() : words[j - 1].end()] for i, j in windows])
    i, j = windows[max(range(len(windows)), key=lambda w: scores[w])]
    return offset + words[i].start(), offset + words[j - 1].end()


def select_excerpt(passage: Passage, question: str, budget_words: int, ranker: SentenceRanker = rank_by_evidence) -> Excerpt:
    """The best sentence of `passage` for `question` and its neighbours, within `budget_words`."""
    spans = ranker(question, passage) if _word_count(passage.text) > budget_words else []
    if not spans:
        return Excerpt(passage, passage.text, passage.start, passage.end)
    i, j = _window_around_best(spans, [_word_count(passage.text[a:b]) for a, b, _ in spans], budget_words)
    start, end = spans[i][0], spans[j - 1][1]
    best = max(score for _, _, score in spans[i:j])
    if _word_count(passage.text[start:end]) > budget_words:
        # One sentence longer than the budget: keep up to 1.5 times the budget of it, since a cut
        # tends to drop exactly the part the question does not name (who, how many).
        start, end = _clip_words(passage.text[start:end], start, question, int(budget_words * _LONG_SENTENCE_FACTOR))
    return Excerpt(passage, passage.text[start:end], passage.start + start, passage.start + end, best)


def drop_weak(excerpts: list[Excerpt], floor: float) -> list[Excerpt]:
    """The excerpts whose best sentence scores at least `floor` times the best one's, in order.

    A second passage that answers the question too (another article, another year) scores close to
    the first and stays, so that disagreements can be named; one that merely shares its words costs
    the local model a second of reading for nothing and goes.
    """
    scored = [e.score for e in excerpts if e.score is not None]
    if not scored or max(scored) <= 0:
        return excerpts
    threshold = floor * max(scored)
    return [e for e in excerpts if e.score is None or e.score >= threshold]


def select_excerpts(
    passages: Sequence[Passage],
    question: str,
    budget_words: int | None,
    ranker: SentenceRanker = rank_by_evidence,
) -> list[Excerpt]:
    """One excerpt per passage: the whole passage when `budget_words` is None, else its best sentences."""
    if budget_words is None:
        return [Excerpt(p, p.text, p.start, p.end) for p in passages]
    return [select_excerpt(p, question, budget_words, ranker) for p in passages]
