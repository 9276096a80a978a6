"""Load on the Telegram bot: N simulated users ask questions at once through a local Bot API server.

The real bot (python-telegram-bot over HTTP on loopback, its worker pool, rate limiter and SQLite
state) answers; each user asks its questions one after another, waiting for each answer, as a person
would. Prints how many questions were answered, lost (no reply in time) or got another reply (an
error or a refusal), and the reply latency (question sent -> finished answer accepted by the server)
p50/p95.

    .venv/bin/python bench/telegram_load.py                      # 50 users x 10 questions, extractive answerer
    .venv/bin/python bench/telegram_load.py --answerer fake      # the bot edge alone, no model or index
    .venv/bin/python bench/telegram_load.py --users 20 --questions 5 --workers 2

With the extractive answerer it builds an index of the bundled articles in a temporary data dir
(the embedding model must be provisioned: `hoidap models fetch`). Exit status 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the local Bot API server lives in tests/, which is not an installed package
    sys.path.insert(0, str(REPO))

from bot.settings import BUNDLED_CORPUS, Settings  # noqa: E402
from bot.telegram.app import build_application  # noqa: E402
from bot.telegram.formatting import ArticleListing  # noqa: E402
from retrieval.types import Answer, Answerer, Source, Turn  # noqa: E402
from tests.e2e.botapi_server import BotApiServer, BotThread, SentMessage, TestUser  # noqa: E402

TOKEN = "7000000001:AAE-loadBenchToken_0123456789abcdef"
QUESTIONS_FILE = REPO / "eval" / "bundled" / "questions.jsonl"


class FakeAnswerer:
    """An instant, deterministic Answerer: measures the bot edge without a model."""

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        text = f"Về «{question}»: Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối [1]."
        source = Source(1, "a1", "Đoàn công tác Tỉnh ủy", "2014-10-29", "THTG",
                        "Sáng ngày 29/10, Đoàn công tác Tỉnh ủy đã có buổi làm việc.", 0, 60, 0.9)
        return Answer(text, True, [source])

    def stream(self, question: str, history: list[Turn] | None = None) -> Iterator[str | Answer]:
        answer = self.answer(question, history)
        yield answer.text
        yield answer


def questions() -> list[str]:
    """The bundled evaluation questions (Vietnamese, about the bundled articles)."""
    if QUESTIONS_FILE.exists():
        rows = [json.loads(line) for line in QUESTIONS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
        found = [row["question"] for row in rows if row.get("question")]
        if found:
            return found
    return ["Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?", "Buổi làm việc diễn ra vào ngày nào?"]


def extractive(settings: Settings) -> tuple[Answerer, list[ArticleListing]]:
    """The real extractive answerer over a fresh index of the bundled articles."""
    from bot.wiring import build_components, sync

    started = time.monotonic()
    sync(settings, [BUNDLED_CORPUS])
    components = build_components(settings, answerer="extractive")
    articles = [ArticleListing(a.title, a.date, a.source, a.n_chunks) for a in components.store.articles()]
    print(f"index of {len(articles)} articles built and loaded in {time.monotonic() - started:.1f} s", flush=True)
    return components.answerer, articles


def simulate(user: TestUser, asks: list[str], timeout: float, results: list[tuple[str, float]]) -> None:
    """One person: ask, wait for the whole answer, ask the next question."""
    for question in asks:
        started = time.monotonic()
        message = user.say(question)
        try:  # a draft of a slow answer is not the answer: wait for the finished message
            reply: SentMessage = user.wait_reply(message, timeout=timeout, where=lambda m: not m.text.endswith("▌"))
        except AssertionError:
            results.append(("lost", timeout))
            continue
        answered = any(b.get("callback_data", "").startswith("vote:") for b in reply.buttons())
        results.append(("answered" if answered else "other", reply.updated_at - started))


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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    pool = questions()
    with tempfile.TemporaryDirectory(prefix="hoidap-load-") as tmp, BotApiServer(TOKEN) as server:
        overrides: dict[str, object] = {
            "data_dir": Path(tmp) / "data", "telegram_token": TOKEN, "telegram_api_url": server.base_url,
            # Each user asks back to back; the per-minute limit must not turn the bench into a refusal count.
            "telegram_rate_limit": max(args.questions, Settings.model_fields["telegram_rate_limit"].default),
        }
        if args.workers:
            overrides["telegram_workers"] = args.workers
        if args.models_dir:
            overrides["models_dir"] = args.models_dir
        settings = Settings(_env_file=None, answerer="extractive", **overrides)
        if args.answerer == "extractive":
            answerer, articles = extractive(settings)
        else:
            answerer, articles = FakeAnswerer(), [ArticleListing("Đoàn công tác Tỉnh ủy", "2014-10-29", "THTG", 3)]
        application = build_application(settings, answerer, lambda: articles)
        results: list[tuple[str, float]] = []
        with BotThread(application, settings):
            users = [server.user(10_000 + i, f"Người {i}") for i in range(args.users)]
            asks = [[pool[(i + k) % len(pool)] for k in range(args.questions)] for i in range(args.users)]
            threads = [threading.Thread(target=simulate, args=(user, asks[i], args.timeout, results))
                       for i, user in enumerate(users)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started

    counts = {kind: sum(1 for k, _ in results if k == kind) for kind in ("answered", "other", "lost")}
    latencies = [latency for kind, latency in results if kind == "answered"]
    total = args.users * args.questions
    print(f"answerer: {args.answerer}; workers: {settings.telegram_workers}; "
          f"{args.users} users x {args.questions} questions = {total}")
    print(f"answered: {counts['answered']}  other replies (errors, refusals): {counts['other']}  "
          f"lost: {counts['lost']}")
    print(f"reply latency p50: {percentile(latencies, 0.5):.2f} s  p95: {percentile(latencies, 0.95):.2f} s  "
          f"max: {max(latencies, default=float('nan')):.2f} s  mean: "
          f"{statistics.fmean(latencies) if latencies else float('nan'):.2f} s")
    print(f"wall time: {elapsed:.1f} s  throughput: {counts['answered'] / elapsed:.1f} answers/s")
    return 1 if counts["lost"] or counts["answered"] != total else 0


if __name__ == "__main__":
    sys.exit(main())
