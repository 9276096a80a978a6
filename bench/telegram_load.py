"""Load on the Telegram bot: N simulated users ask questions at once through a local Bot API server.

The real bot (python-telegram-bot over HTTP on loopback, its worker pool, rate limiter and SQLite
state) answers; each user asks its questions one after another, waiting for each answer, as a person
would. Prints how many questions were answered, lost (no reply in time) or got another reply (an
error or a refusal), and the reply latency (question sent -> finished answer accepted by the server)
p50/p95.

It also checks what a user would notice: every question gets exactly one reply (a streamed answer is
one message), no apology from the bot's error handler and no log record at ERROR or above; and what an
operator would see: the bot runs in webhook mode, and its `/metrics` totals (questions, answers) must
equal the questions sent, with nothing left in the worker queue.
And memory: every user's first question is a warm-up round; the RSS of this process (which holds the
bot, the answerer, the model and the index) after it is compared with the RSS at the end.

    .venv/bin/python bench/telegram_load.py                      # 50 users x 10 questions, extractive answerer
    .venv/bin/python bench/telegram_load.py --answerer fake      # the bot edge alone, no model or index
    .venv/bin/python bench/telegram_load.py --users 20 --questions 5 --workers 2

With the extractive answerer it builds an index of the bundled articles in a temporary data dir
(the embedding model must be provisioned: `hoidap models fetch`). Exit status 1 if a question was lost
or answered other than once, on any error, if the /metrics totals differ from the questions sent, or if
memory grew by more than --max-growth percent.

The local Bot API server runs in this process too and keeps every message it accepted, so its own
(small) growth counts against the bot: the memory check errs on the strict side.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the local Bot API server lives in tests/, which is not an installed package
    sys.path.insert(0, str(REPO))

from bot.ops import BotMetrics
from bot.settings import BUNDLED_CORPUS, Settings
from bot.telegram import texts
from bot.telegram.app import build_application
from bot.telegram.formatting import ArticleListing
from retrieval.types import Answer, Answerer, AnswerStream, Source, Turn
from tests.e2e.botapi_server import BotApiServer, BotThread, TestUser

TOKEN = "7000000001:AAE-loadBenchToken_0123456789abcdef"
QUESTIONS_FILE = REPO / "eval" / "bundled" / "questions.jsonl"


class FakeAnswerer:
    """An instant, deterministic Answerer: measures the bot edge without a model."""

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        text = f"Về «{question}»: Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối [1]."
        source = Source(1, "a1", "Đoàn công tác Tỉnh ủy", "2014-10-29", "THTG",
                        "Sáng ngày 29/10, Đoàn công tác Tỉnh ủy đã có buổi làm việc.", 0, 60, 0.9)
        return Answer(text, True, [source])

    def stream(self, question: str, history: list[Turn] | None = None) -> AnswerStream:
        return AnswerStream.of(self.answer(question, history))

    def warm_up(self) -> None:
        return None


def questions() -> list[str]:
    """The bundled evaluation questions (Vietnamese, about the bundled articles)."""
    if QUESTIONS_FILE.exists():
        rows = [json.loads(line) for line in QUESTIONS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
        found = [row["question"] for row in rows if row.get("question")]
        if found:
            return found
    return ["Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?", "Buổi làm việc diễn ra vào ngày nào?"]


def extractive(settings: Settings, metrics: BotMetrics) -> tuple[Answerer, list[ArticleListing]]:
    """The real extractive answerer over a fresh index of the bundled articles, timed as `hoidap telegram` is."""
    from bot.wiring import build_components, sync

    started = time.monotonic()
    sync(settings, [BUNDLED_CORPUS])
    components = build_components(settings, answerer="extractive", wrap_retriever=metrics.timed)
    articles = [ArticleListing(a.title, a.date, a.source, a.n_chunks) for a in components.store.articles()]
    print(f"index of {len(articles)} articles built and loaded in {time.monotonic() - started:.1f} s", flush=True)
    return components.answerer, articles


@dataclass(frozen=True)
class Asked:
    """One question as sent, and what its user saw: answered, other (error, refusal) or lost."""

    chat_id: int
    message_id: int
    kind: str
    latency: float


class ErrorRecords(logging.Handler):
    """Collects the log records at ERROR and above: an unhandled failure anywhere in the bot logs one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def simulate(user: TestUser, asks: list[str], timeout: float, results: list[Asked]) -> None:
    """One person: ask, wait for the whole answer, ask the next question."""
    for question in asks:
        started = time.monotonic()
        message = user.say(question)
        try:  # a draft of a slow answer is not the answer: wait for the finished message
            reply = user.wait_reply(message, timeout=timeout, where=lambda m: not m.text.endswith("▌"))
        except AssertionError:
            results.append(Asked(user.id, message["message_id"], "lost", timeout))
            continue
        answered = any(b.get("callback_data", "").startswith("vote:") for b in reply.buttons())
        results.append(Asked(user.id, message["message_id"], "answered" if answered else "other",
                             reply.updated_at - started))


def run_users(users: list[TestUser], asks: list[list[str]], timeout: float, results: list[Asked]) -> float:
    """All users at once, each with its own questions; the wall time until the last one is answered."""
    threads = [threading.Thread(target=simulate, args=(user, asks[i], timeout, results))
               for i, user in enumerate(users)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_totals(url: str) -> dict[str, float]:
    """Each metric's samples summed over their labels (`name`), and each labelled one (`name{k=v}`),
    as read from the bot's /metrics."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=30).text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            if labels:
                key = f"{sample.name}{{{labels}}}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def rss_mb() -> float:
    """This process's resident memory after a full collection, so garbage awaiting collection is not counted."""
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--questions", type=int, default=10, help="questions per user")
    parser.add_argument("--answerer", choices=["extractive", "fake"], default="extractive")
    parser.add_argument("--workers", type=int, default=None, help="answer worker threads (default: the setting)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a user waits for one reply")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--max-growth", type=float, default=10.0,
                        help="allowed RSS growth from the warm-up to the end, in percent")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)

    pool = questions()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hoidap-load-") as tmp, BotApiServer(TOKEN) as server:
        overrides: dict[str, object] = {
            "data_dir": Path(tmp) / "data", "telegram_token": TOKEN, "telegram_api_url": server.base_url,
            "telegram_webhook_url": f"http://127.0.0.1:{port}/telegram", "telegram_webhook_port": port,
            # Each user asks back to back; the per-minute limit must not turn the bench into a refusal count.
            "telegram_rate_limit": max(args.questions, Settings.model_fields["telegram_rate_limit"].default),
        }
        if args.workers:
            overrides["telegram_workers"] = args.workers
        if args.models_dir:
            overrides["models_dir"] = args.models_dir
        settings = Settings(_env_file=None, answerer="extractive", **overrides)
        metrics = BotMetrics()
        if args.answerer == "extractive":
            answerer, articles = extractive(settings, metrics)
        else:
            answerer, articles = FakeAnswerer(), [ArticleListing("Đoàn công tác Tỉnh ủy", "2014-10-29", "THTG", 3)]
        application = build_application(settings, answerer, lambda: articles, metrics=metrics)
        results: list[Asked] = []
        with BotThread(application, settings) as bot:
            users = [server.user(10_000 + i, f"Người {i}") for i in range(args.users)]
            asks = [[pool[(i + k) % len(pool)] for k in range(args.questions)] for i in range(args.users)]
            warm_up = run_users(users, [a[:1] for a in asks], args.timeout, results)
            rss_warm = rss_mb()
            elapsed = warm_up + run_users(users, [a[1:] for a in asks], args.timeout, results)
            rss_end = rss_mb()
            totals = metric_totals(f"http://127.0.0.1:{port}/metrics")
            bot.stop()  # finishes every update in hand: a late second reply would now be in the server
        replies = {(r.chat_id, r.message_id): len(server.replies_to(r.chat_id, r.message_id)) for r in results}
        apologies = sum(1 for m in server.sent if m.text.startswith(texts.ERROR))
    logging.getLogger().removeHandler(errors)

    counts = {kind: sum(1 for r in results if r.kind == kind) for kind in ("answered", "other", "lost")}
    latencies = [r.latency for r in results if r.kind == "answered"]
    total = args.users * args.questions
    not_once = sum(1 for n in replies.values() if n != 1)
    growth = 100 * (rss_end - rss_warm) / rss_warm
    print(f"answerer: {args.answerer}; workers: {settings.telegram_workers}; "
          f"{args.users} users x {args.questions} questions = {total}")
    print(f"answered: {counts['answered']}  other replies (errors, refusals): {counts['other']}  "
          f"lost: {counts['lost']}")
    print(f"questions not replied to exactly once: {not_once}  error apologies sent: {apologies}  "
          f"log records at ERROR or above: {len(errors.records)}")
    for record in errors.records[:5]:
        print(f"  {record.levelname} {record.name}: {record.getMessage()}")
    print(f"reply latency p50: {percentile(latencies, 0.5):.2f} s  p95: {percentile(latencies, 0.95):.2f} s  "
          f"max: {max(latencies, default=float('nan')):.2f} s  mean: "
          f"{statistics.fmean(latencies) if latencies else float('nan'):.2f} s")
    print(f"wall time: {elapsed:.1f} s  throughput: {counts['answered'] / elapsed:.1f} answers/s")
    asked = totals.get("hoidap_questions_total", 0.0)
    given = totals.get("hoidap_answers_total", 0.0)
    queued = totals.get("hoidap_worker_queue_depth", 0.0)
    timed = totals.get("hoidap_answer_seconds_count", 0.0)
    metrics_ok = asked == given == timed == total and queued == 0
    print(f"/metrics: questions {asked:.0f}  answers {given:.0f} (found "
          f"{totals.get('hoidap_answers_total{outcome=found}', 0.0):.0f})  timed answers {timed:.0f}  "
          f"retrievals {totals.get('hoidap_retrieval_seconds_count', 0.0):.0f}  queue depth {queued:.0f}  "
          f"errors {totals.get('hoidap_errors_total', 0.0):.0f}  -> "
          f"{'equal to' if metrics_ok else 'NOT equal to'} the {total} questions sent")
    print(f"RSS after warm-up ({args.users} questions): {rss_warm:.1f} MB  at the end: {rss_end:.1f} MB  "
          f"growth: {growth:+.1f} % (limit {args.max_growth:.0f} %)")
    failed = (counts["answered"] != total or not_once or apologies or errors.records or not metrics_ok
              or growth > args.max_growth)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
