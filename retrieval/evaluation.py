"""Measure retrieval and answers against gold questions: pure metric functions and one evaluation loop.

Definitions (the numbers in every report mean exactly this):

- **Article-level retrieval.** The retriever returns passages best first; a question's *hit rank* is the
  1-based position of the first passage whose article is one of the gold articles. Recall@k is the
  share of answerable questions with a hit rank <= k; MRR@10 averages 1/rank (0 beyond rank 10).
- **Answer correctness.** The answer text, with `[n]` citation markers removed, *contains* a gold
  answer after normalisation: Unicode NFC, lower case, punctuation and symbols replaced by spaces,
  spaces collapsed, and matched on whole tokens. Numbers also compare with their separators removed
  (`74.127` = `74,127` = `74127`), so an English answer that writes numbers the English way still counts.
  Token F1 is the SQuAD-style overlap of answer and gold tokens (best over the gold answers).
- **Citations.** The cited sources of an answer are those whose number appears as `[n]` in its text
  (all of its sources when the text has no marker). A cited source *supports* the gold answer when its
  passage text contains a gold answer (as above), or when it comes from a gold article AND contains
  every *key token* of a gold answer: its numbers when it has any (`gần 3.500` -> `3500`), otherwise
  all of its words. Citation precision = supporting cited sources / all cited sources, over the found
  answers to answerable questions; citation recall = share of answerable questions whose found answer
  cites at least one supporting source. A "not found" reply lists nearest sources, not citations.
- **Unanswerable questions.** The share answered with `found = False`.
- **Conflicting questions** (tag `conflicting`, several gold answers from different articles): besides
  correctness (any gold), *complete* is the share whose answer names every gold answer.
- **Latency.** Wall time of `Answerer.answer` (the full answer, retrieval included) and, separately,
  of `Retriever.retrieve`; p50 and p95 by linear interpolation.
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from index.errors import HoidapError
from index.text import normalize
from retrieval.types import Answer, Answerer, Retriever, Source

K_MAX = 20
RECALL_KS = (1, 5, 10)
GROUP_TAGS = ("no-diacritics", "english", "conflicting", "unanswerable")

_CITATION = re.compile(r"\[\s*\d+(?:\s*[,;–-]\s*\d+)*\s*\]")
_NUMBER_SEPARATOR = re.compile(r"(?<=\d)[.,](?=\d)")


# ---------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class EvalQuestion:
    """One gold question: the answers that count as correct and the articles that hold them."""

    id: str
    question: str
    answers: tuple[str, ...]
    passage_ids: tuple[str, ...]
    answerable: bool = True
    tags: tuple[str, ...] = ()


class QuestionFormatError(HoidapError, ValueError):
    """A question line that is not in the `hoidap eval` format; the message says which field is wrong."""


def parse_question(record: dict) -> EvalQuestion:
    """Read one question line (`id`, `question`, `answers`, `passage_id` or `passage_ids`, `answerable`, `tags`).

    Raises QuestionFormatError (a ValueError) with what is wrong, so the caller can name the file and line.
    """
    if not isinstance(record, dict):
        raise QuestionFormatError("a question line must be a JSON object", vi="mỗi dòng câu hỏi phải là một đối tượng JSON")
    for key in ("id", "question"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise QuestionFormatError(f"missing or empty {key!r}", vi=f"thiếu hoặc trống {key!r}")
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise QuestionFormatError("'answers' must be a list of non-empty strings",
                                  vi="'answers' phải là một danh sách chuỗi không rỗng")
    passage_ids = record.get("passage_ids")
    if passage_ids is None:
        single = record.get("passage_id")
        passage_ids = [single] if single else []
    if not isinstance(passage_ids, list) or not all(isinstance(p, str) and p for p in passage_ids):
        raise QuestionFormatError("'passage_ids' must be a list of article ids", vi="'passage_ids' phải là một danh sách mã bài")
    answerable = record.get("answerable", True)
    if not isinstance(answerable, bool):
        raise QuestionFormatError("'answerable' must be true or false", vi="'answerable' phải là true hoặc false")
    if answerable and (not answers or not passage_ids):
        raise QuestionFormatError("an answerable question needs 'answers' and 'passage_id' (or 'passage_ids')",
                                  vi="câu hỏi trả lời được cần 'answers' và 'passage_id' (hoặc 'passage_ids')")
    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise QuestionFormatError("'tags' must be a list of strings", vi="'tags' phải là một danh sách chuỗi")
    return EvalQuestion(
        id=record["id"], question=record["question"], answers=tuple(answers), passage_ids=tuple(passage_ids),
        answerable=answerable, tags=tuple(tags),
    )


# ---------------------------------------------------------------------------- answer text


def strip_citations(text: str) -> str:
    """Remove `[1]`, `[1, 2]` markers so their digits never count as answer tokens."""
    return _CITATION.sub(" ", text)


def normalize_answer(text: str, *, join_numbers: bool = False) -> str:
    """NFC, lower case, punctuation and symbols to spaces, spaces collapsed; optionally `74.127` -> `74127`."""
    text = normalize(text).lower()
    if join_numbers:
        text = _NUMBER_SEPARATOR.sub("", text)
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(text.split())


def contains_answer(text: str, gold: str) -> bool:
    """Whether `text` holds `gold` as whole tokens after normalisation (numbers also without separators)."""
    for join in (False, True):
        needle = normalize_answer(gold, join_numbers=join)
        if needle and f" {needle} " in f" {normalize_answer(text, join_numbers=join)} ":
            return True
    return False


def is_correct(answer_text: str, golds: Iterable[str]) -> bool:
    """An answer is correct when, citations removed, it contains any gold answer."""
    text = strip_citations(answer_text)
    return any(contains_answer(text, gold) for gold in golds)


def names_all(answer_text: str, golds: Sequence[str]) -> bool:
    """Whether the answer names every gold answer (for questions whose answer differs between articles)."""
    text = strip_citations(answer_text)
    return bool(golds) and all(contains_answer(text, gold) for gold in golds)


def _tokens(text: str) -> list[str]:
    return normalize_answer(strip_citations(text), join_numbers=True).split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token F1 between a prediction and one gold answer."""
    predicted, expected = _tokens(prediction), _tokens(gold)
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, golds: Iterable[str]) -> float:
    """The best token F1 over the gold answers (0 when there is none)."""
    return max((token_f1(prediction, gold) for gold in golds), default=0.0)


# ---------------------------------------------------------------------------- citations


def cited_sources(answer: Answer) -> list[Source]:
    """The sources the answer text refers to with `[n]`; all of them when it carries no marker."""
    numbers = {int(n) for marker in _CITATION.findall(answer.text) for n in re.findall(r"\d+", marker)}
    if not numbers:
        return list(answer.sources)
    return [source for source in answer.sources if source.n in numbers]


def key_tokens(gold: str) -> set[str]:
    """The tokens a passage must share with a gold answer to support it: its numbers, else all its words."""
    tokens = normalize_answer(gold, join_numbers=True).split()
    numbers = {t for t in tokens if any(ch.isdigit() for ch in t)}
    return numbers or set(tokens)


def supports(source: Source, golds: Sequence[str], gold_article_ids: Iterable[str]) -> bool:
    """Whether a cited passage contains a gold answer, or comes from a gold article and holds its key tokens."""
    if any(contains_answer(source.text, gold) for gold in golds):
        return True
    if source.article_id not in set(gold_article_ids):
        return False
    passage = set(normalize_answer(source.text, join_numbers=True).split())
    return any(key_tokens(gold) and key_tokens(gold) <= passage for gold in golds)


# ---------------------------------------------------------------------------- retrieval


def hit_rank(article_ids: Sequence[str], gold_article_ids: Iterable[str]) -> int | None:
    """1-based rank of the first retrieved passage from a gold article, or None."""
    gold = set(gold_article_ids)
    return next((rank for rank, article_id in enumerate(article_ids, 1) if article_id in gold), None)


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose hit rank is at most k."""
    if not ranks:
        return math.nan
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mrr_at(ranks: Sequence[int | None], k: int = 10) -> float:
    """Mean reciprocal rank, counting only hits within the first k."""
    if not ranks:
        return math.nan
    return sum(1 / r for r in ranks if r is not None and r <= k) / len(ranks)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# ---------------------------------------------------------------------------- results


@dataclass
class QuestionResult:
    """Everything measured for one question."""

    id: str
    question: str
    tags: list[str]
    answerable: bool
    gold_answers: list[str]
    gold_articles: list[str]
    retrieved_articles: list[str]
    hit_rank: int | None
    answer: str
    found: bool
    correct: bool
    complete: bool
    f1: float
    cited: list[str]
    supporting: list[str]
    latency_ms: float
    retrieval_ms: float

    @property
    def citation_ok(self) -> bool:
        return self.found and bool(self.supporting)


@dataclass
class Summary:
    """Aggregate figures over a set of question results (NaN where a figure has no question to stand on)."""

    questions: int
    answerable: int
    unanswerable: int
    recall_curve: list[float]  # Recall@k for k = 1..K_MAX
    mrr_at_10: float
    correct: float
    token_f1: float
    citation_precision: float
    citation_recall: float
    not_found_when_unanswerable: float
    complete_when_conflicting: float
    latency_p50_ms: float
    latency_p95_ms: float
    retrieval_p50_ms: float
    retrieval_p95_ms: float

    def recall_at(self, k: int) -> float:
        return self.recall_curve[k - 1] if 0 < k <= len(self.recall_curve) else math.nan

    def to_dict(self) -> dict:
        data = asdict(self)
        for k in RECALL_KS:
            data[f"recall_at_{k}"] = self.recall_at(k)
        return {key: _json_number(value) for key, value in data.items()}


@dataclass
class Report:
    """The outcome of one evaluation run: overall, per tag group and per question."""

    overall: Summary
    groups: dict[str, Summary]
    results: list[QuestionResult]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "meta": self.meta,
            "overall": self.overall.to_dict(),
            "groups": {name: summary.to_dict() for name, summary in self.groups.items()},
            "questions": [{**asdict(r), "citation_ok": r.citation_ok} for r in self.results],
        }


def _json_number(value: object) -> object:
    """NaN is not JSON: figures without data become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value


def summarize(results: Sequence[QuestionResult], k_max: int = K_MAX) -> Summary:
    """Aggregate per-question results into the report's figures."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    ranks = [r.hit_rank for r in answerable]
    answered = [r for r in answerable if r.found]
    n_cited = sum(len(r.cited) for r in answered)
    conflicting = [r for r in answerable if "conflicting" in r.tags]
    latencies = [r.latency_ms for r in results]
    retrievals = [r.retrieval_ms for r in results]
    return Summary(
        questions=len(results),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        recall_curve=[recall_at(ranks, k) for k in range(1, k_max + 1)],
        mrr_at_10=mrr_at(ranks, 10),
        correct=_mean([float(r.correct) for r in answerable]),
        token_f1=_mean([r.f1 for r in answerable]),
        citation_precision=sum(len(r.supporting) for r in answered) / n_cited if n_cited else math.nan,
        citation_recall=_mean([float(r.citation_ok) for r in answerable]),
        not_found_when_unanswerable=_mean([float(not r.found) for r in unanswerable]),
        complete_when_conflicting=_mean([float(r.complete) for r in conflicting]),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        retrieval_p50_ms=percentile(retrievals, 50),
        retrieval_p95_ms=percentile(retrievals, 95),
    )


def score_question(question: EvalQuestion, retrieved_articles: Sequence[str], answer: Answer,
                   latency_ms: float, retrieval_ms: float) -> QuestionResult:
    """Score one question from what the retriever returned and what the answerer said."""
    gold = question.answers
    cited = cited_sources(answer) if answer.found else []
    supporting = [s for s in cited if question.answerable and supports(s, gold, question.passage_ids)]
    answered = question.answerable and answer.found
    return QuestionResult(
        id=question.id,
        question=question.question,
        tags=list(question.tags),
        answerable=question.answerable,
        gold_answers=list(gold),
        gold_articles=list(question.passage_ids),
        retrieved_articles=list(retrieved_articles),
        hit_rank=hit_rank(retrieved_articles, question.passage_ids) if question.answerable else None,
        answer=answer.text,
        found=answer.found,
        correct=answered and is_correct(answer.text, gold),
        complete=answered and names_all(answer.text, gold),
        f1=best_f1(answer.text, gold) if answered else 0.0,
        cited=[f"[{s.n}] {s.article_id}" for s in cited],
        supporting=[f"[{s.n}] {s.article_id}" for s in supporting],
        latency_ms=latency_ms,
        retrieval_ms=retrieval_ms,
    )


def group_summaries(results: Sequence[QuestionResult], k_max: int = K_MAX) -> dict[str, Summary]:
    """One summary per tag found on the questions (the four standard groups first)."""
    tags = {tag for r in results for tag in r.tags}
    ordered = [t for t in GROUP_TAGS if t in tags] + sorted(tags - set(GROUP_TAGS))
    return {tag: summarize([r for r in results if tag in r.tags], k_max) for tag in ordered}


def evaluate(questions: Sequence[EvalQuestion], *, retriever: Retriever, answerer: Answerer, k_max: int = K_MAX,
             clock: Callable[[], float] = time.perf_counter,
             on_result: Callable[[QuestionResult], None] | None = None) -> Report:
    """Run every question through the retriever (top `k_max` passages) and the answerer, and score them."""
    results = []
    for question in questions:
        started = clock()
        passages = retriever.retrieve(question.question, k_max)
        retrieval_ms = (clock() - started) * 1000
        started = clock()
        answer = answerer.answer(question.question)
        latency_ms = (clock() - started) * 1000
        result = score_question(question, [p.article_id for p in passages], answer, latency_ms, retrieval_ms)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return Report(overall=summarize(results, k_max), groups=group_summaries(results, k_max), results=results)
