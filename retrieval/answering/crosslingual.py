"""English questions read against Vietnamese sentences, by meaning: one home for both answerers.

An English question shares no words with a Vietnamese sentence (only its names and numbers can match),
so the lexical sentence scores of `retrieval.answering.sentences` cannot tell which sentence answers it.
A multilingual embedding can: each candidate sentence's dense similarity to the question, times
`SIMILARITY_WEIGHT`, is added to its score. The embedder is the English reader (`index.english_model`,
EmbeddingGemma-300M by default): the index's e5-small tells the topic of a sentence but not which of two
counts of one topic is asked for (a province's party members or its party organisations, stated in
neighbouring sentences), which the reader tells apart more often. When a second sentence of the same
passage states a value of the asked kind and still reads within `TIE_MARGIN` of the best, the extractive
answer quotes both (`runner_up`): the reader sees each figure with what it counts, instead of one
guessed figure under a real citation.

Measured on XQuAD-vi's 100 hand-translated English questions (bench/xquad_en_questions.tsv) and the
bundled English questions; the figures are in eval/README.md ("English questions").
"""

from __future__ import annotations

from collections.abc import Sequence

from retrieval.answering.excerpts import passage_spans
from retrieval.answering.grounding import PASSAGES_CONSIDERED
from retrieval.answering.judgement import SentenceEmbedder
from retrieval.answering.sentences import (
    Question,
    ScoredSentence,
    parse_question,
    score_sentences,
    with_similarity,
)
from retrieval.types import Passage

# The weight of the English reader's similarity (EmbeddingGemma-300M, bf16), by `hoidap eval` correct on
# XQuAD-vi English (100) / bundled English (13), 12 candidates, 2026-12-02: 8 -> .660 / .545,
# 16 -> .660 / .636, 32 -> .670 / .727, 64 -> .670 / .727 (citation precision .788 at 32, .779 at 64).
SIMILARITY_WEIGHT = 32.0
# The weight when the index's own model reads English (HOIDAP_ENGLISH_MODEL=none, multilingual-e5-small:
# its similarities spread less): sentence choice on XQuAD-vi English without the gate 0 -> .39,
# 1 -> .62, 2 -> .68, 4 -> .68, 8 -> .71.
INDEX_MODEL_WEIGHT = 8.0
# The candidates embedded per question (one batch): the best-scoring sentences of the passages the gate
# considers. They bound an English answer's latency (EmbeddingGemma: ~0.1 s a sentence on two cores);
# 8 instead of 12 lost the bundled English questions .727 -> .545 (weight 32).
CANDIDATES = 12
# A second sentence within this much dense similarity of the best one is quoted with it (see above).
TIE_MARGIN = 0.02


class MeaningReader:
    """Rescores candidate sentences of an English question by their dense similarity to it."""

    def __init__(self, embedder: SentenceEmbedder, *, weight: float = SIMILARITY_WEIGHT,
                 candidates: int = CANDIDATES) -> None:
        self.embedder = embedder
        self.weight = weight
        self.candidates = candidates

    def rescore(self, question: str, ranked: list[ScoredSentence]) -> list[ScoredSentence]:
        """`ranked` with its best candidates rescored (the rest keep their score), best first."""
        if not ranked:
            return ranked
        considered = [s for s in ranked if s.passage_rank < PASSAGES_CONSIDERED]
        candidates = considered[: self.candidates]
        chosen = {id(s) for s in candidates}
        others = [s for s in ranked if id(s) not in chosen]
        vector = self.embedder.embed_queries([question])[0]
        similarities = self.embedder.embed_sentences([s.text for s in candidates]) @ vector
        return with_similarity(candidates + others, [float(v) for v in similarities], self.weight)

    def rank(self, question: str, passage: Passage) -> list[tuple[int, int, float]]:
        """A `retrieval.answering.excerpts.SentenceRanker`: the passage's sentences as (start, end, score),
        offsets in the passage text, English questions read by meaning (what the LLM answerer reads)."""
        parsed = parse_question(question)
        scored = score_sentences(parsed, [passage])
        if parsed.kind == "en":
            scored = self.rescore(question, scored)
        return passage_spans(passage, scored)

    def runner_up(self, question: Question, best: ScoredSentence, ranked: Sequence[ScoredSentence],
                  margin: float = TIE_MARGIN) -> ScoredSentence | None:
        """Another sentence of the best one's passage that answers as plainly and reads (nearly) as close
        to the English question, or None: the two are quoted together."""
        if margin <= 0:
            return None
        typed = question.asks_quantity or question.asks_time
        for sentence in ranked:
            if sentence is best or sentence.passage_rank != best.passage_rank:
                continue
            if best.score - sentence.score > self.weight * margin:
                return None  # ranked is best first: no later sentence is closer
            if sentence.answers_type or not typed:
                return sentence
        return None
