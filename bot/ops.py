"""The operator's view of a running bot: Prometheus metrics, health checks and structured logs.

`BotMetrics` holds one registry per bot (never the process-wide default, so two bots in one process,
as in the tests, count apart). The same metrics can be rebuilt from a data directory's state
(`metrics_from_records`), which is what `hoidap stats` prints. Health checks are small named callables
given by whoever owns the pieces (the index, the model, the Bot API), so this module knows none of them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from index.store import DATABASE, MANIFEST, VECTORS
from retrieval.types import Passage, Retriever, SearchFilters

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Buckets in seconds. Retrieval is tens of milliseconds on 2 cores; a whole answer is ~0.1 s extractive and
# several seconds with a local LLM (bench/llm_latency.py), so the answer buckets reach a minute.
RETRIEVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

QUESTION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("hoidap_question_id", default=None)
"""The id of the question being handled, for every log line written while it is answered."""
_RETRIEVAL_TIMES: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("hoidap_retrieval_times",
                                                                                      default=None)


class BotMetrics:
    """Every figure `/metrics` shows: questions, answers found / not found, latencies, queue, errors, votes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.questions = Counter("hoidap_questions", "Questions admitted (past the allowlist and rate limit).",
                                 ["via"], registry=self.registry)
        self.answers = Counter("hoidap_answers", "Answers given, by whether the articles held the answer.",
                               ["outcome"], registry=self.registry)
        self.retrieval_seconds = Histogram("hoidap_retrieval_seconds", "Time of one retrieval (search) call.",
                                           buckets=RETRIEVAL_BUCKETS, registry=self.registry)
        self.answer_seconds = Histogram("hoidap_answer_seconds", "Time from an admitted question to its answer.",
                                        ["via"], buckets=ANSWER_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("hoidap_worker_queue_depth",
                                 "Answers waiting for or running in the worker pool.", registry=self.registry)
        self.errors = Counter("hoidap_errors", "Failures, by kind (exception class, or what went wrong).",
                              ["kind"], registry=self.registry)
        self.votes = Counter("hoidap_votes", "Votes under answers.", ["vote"], registry=self.registry)
        self.inline_cache = Counter("hoidap_inline_cache", "Inline queries by where their answer came from: the "
                                    "cache (hit), a computation already running (shared), or a new one (miss).",
                                    ["result"], registry=self.registry)
        self.refusals = Counter("hoidap_refusals", "Questions not answered: not on the allowlist, or too fast.",
                                ["reason"], registry=self.registry)
        for via in ("chat", "inline"):
            self.questions.labels(via=via)
        for outcome in ("found", "not_found"):
            self.answers.labels(outcome=outcome)
        for vote in ("up", "down"):
            self.votes.labels(vote=vote)
        for result in ("hit", "shared", "miss"):
            self.inline_cache.labels(result=result)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)

    def timed(self, retriever: Retriever) -> Retriever:
        """`retriever`, with each call's time recorded here (and for the question being answered)."""
        return TimedRetriever(retriever, self.retrieval_seconds.observe)

    @contextmanager
    def in_queue(self) -> Iterator[None]:
        """Count one job in the worker pool while the block runs."""
        self.queue_depth.inc()
        try:
            yield
        finally:
            self.queue_depth.dec()


class TimedRetriever:
    """A Retriever that reports how long each search took (to `observe`, and to the current question)."""

    def __init__(self, inner: Retriever, observe: Callable[[float], None]) -> None:
        self._inner = inner
        self._observe = observe

    def retrieve(self, query: str, k: int, filters: SearchFilters | None = None) -> list[Passage]:
        started = time.perf_counter()
        try:
            return self._inner.retrieve(query, k, filters)
        finally:
            elapsed = time.perf_counter() - started
            self._observe(elapsed)
            times = _RETRIEVAL_TIMES.get()
            if times is not None:
                times.append(elapsed)


def run_timed(work: Callable[[], object]) -> tuple[object, float | None]:
    """Run `work` (in a worker thread), returning its result and the seconds its retrievals took (if any)."""
    times: list[float] = []
    _RETRIEVAL_TIMES.set(times)
    result = work()
    return result, (sum(times) if times else None)


@dataclass(frozen=True)
class QuestionRecord:
    """One question as the bot's state keeps it, enough to rebuild the metrics of a data directory."""

    via: str
    outcome: str  # found, not_found, error, pending (still being answered, or the bot died)
    answer_seconds: float | None
    retrieval_seconds: float | None
    error_kind: str | None


def metrics_from_records(questions: Iterable[QuestionRecord], votes: Iterable[int]) -> BotMetrics:
    """The metrics a bot would show had it answered these questions and received these votes (+1 / -1)."""
    metrics = BotMetrics()
    for record in questions:
        metrics.questions.labels(via=record.via).inc()
        if record.outcome in ("found", "not_found"):
            metrics.answers.labels(outcome=record.outcome).inc()
            if record.answer_seconds is not None:
                metrics.answer_seconds.labels(via=record.via).observe(record.answer_seconds)
        if record.retrieval_seconds is not None:
            metrics.retrieval_seconds.observe(record.retrieval_seconds)
        if record.outcome == "error":
            metrics.errors.labels(kind=record.error_kind or "unknown").inc()
    for vote in votes:
        metrics.votes.labels(vote="up" if vote > 0 else "down").inc()
    return metrics


# ---------------------------------------------------------------------------- health

Check = Callable[[], Awaitable[str | None]]
"""One health check: None when healthy, else what is wrong (one line, no secret)."""


async def run_checks(checks: dict[str, Check]) -> tuple[bool, dict[str, str]]:
    """Run every check; (all healthy, name -> "ok" or the problem). A check that raises is a failed check."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            problem = await check()
        except Exception as error:  # the edge of a health probe: report, never crash the server
            logging.getLogger(__name__).warning("Health check %s failed", name, exc_info=True)
            problem = f"{type(error).__name__}: {error}"
        results[name] = "ok" if problem is None else problem
    return all(value == "ok" for value in results.values()), results


MODEL_CHECK_TIMEOUT = 10.0


def index_check(index_dir: Path) -> Check:
    """Healthy while the index directory still holds the files the loaded index came from: a bot whose
    index was deleted or moved would answer from memory now and fail at its next restart."""

    async def check() -> str | None:
        missing = [name for name in (MANIFEST, VECTORS, DATABASE) if not (index_dir / name).is_file()]
        return f"index files missing in {index_dir}: {', '.join(missing)}" if missing else None

    return check


def model_check(embed: Callable[[list[str]], object]) -> Check:
    """Healthy while the loaded embedding model still embeds a question (off the event loop)."""

    async def check() -> str | None:
        await asyncio.wait_for(asyncio.to_thread(embed, ["kiểm tra"]), MODEL_CHECK_TIMEOUT)
        return None

    return check


# ---------------------------------------------------------------------------- logs


class QuestionIdFilter(logging.Filter):
    """Puts the id of the question being answered (if any) on every record, as `question_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "question_id"):
            record.question_id = QUESTION_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, question id, thread, traceback if any.

    Applied after the secret redaction filters, so the message and traceback it writes are redacted.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        question_id = getattr(record, "question_id", None)
        if question_id is not None:
            entry["question_id"] = question_id
        if record.exc_info:
            entry["exception"] = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        entry["thread"] = threading.current_thread().name
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, log_format: str) -> None:
    """Root logging for a command: text lines or JSON lines (`HOIDAP_LOG_FORMAT=json`), with question ids."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(QuestionIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler])
