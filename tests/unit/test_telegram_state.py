"""The bot's state, SQLite and PostgreSQL alike: bounded per-chat history that survives a restart, answers,
votes that land once, refusals once, rate-limit windows that hold across two handles (two replicas).

Every test body runs over both implementations (`store` is "sqlite" or "postgres"); PostgreSQL is the real
server of `tests/postgres.py`, a fresh database per test.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from bot.telegram.access import RateLimiter
from bot.telegram.state import BotState, SqliteState
from bot.telegram.state_postgres import PostgresState
from index.stores.tables import TableVersionError
from retrieval.types import Answer, Source, Turn

SOURCE = Source(n=1, article_id="a1", title="Đoàn công tác Tỉnh ủy", date="2014-10-29", source="THTG",
                text="Sáng ngày 29/10, Đoàn công tác Tỉnh ủy đã có buổi làm việc.", start=10, end=70, score=0.7)

Opener = Callable[[], BotState]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a new handle on one store each call, as a restarted bot or a second replica would."""
    if request.param == "sqlite":
        path = tmp_path / "state.sqlite3"
        return lambda: SqliteState.open(path)
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database(f"s_{uuid.uuid4().hex[:10]}")
    return lambda: PostgresState.open(url)


@pytest.fixture
def state(opener: Opener):
    handle = opener()
    yield handle
    handle.close()


def test_history_is_per_chat_bounded_and_survives_reopening(opener: Opener) -> None:
    state = opener()
    for i in range(5):
        state.add_turn(1, f"hỏi {i}", f"đáp {i}", keep=3)
    state.add_turn(2, "khác", "đáp khác", keep=3)
    state.close()
    state = opener()
    assert state.history(1, 3) == [Turn("hỏi 2", "đáp 2"), Turn("hỏi 3", "đáp 3"), Turn("hỏi 4", "đáp 4")]
    assert state.history(1, 2) == [Turn("hỏi 3", "đáp 3"), Turn("hỏi 4", "đáp 4")]
    assert state.history(2, 3) == [Turn("khác", "đáp khác")]
    assert state.history(1, 0) == []
    state.clear_history(1)
    assert state.history(1, 3) == [] and state.history(2, 3) != []
    state.add_turn(3, "q", "a", keep=0)  # history disabled: nothing kept
    assert state.history(3, 5) == []
    state.close()


def test_answers_round_trip_and_votes_keep_question_and_answer(state: BotState) -> None:
    answer = Answer("Đoàn công tác làm việc với Ban Thường vụ [1].", True, [SOURCE])
    answer_id = state.save_answer(5, 7, 11, "Ai làm việc?", answer)
    stored = state.stored_answer(answer_id)
    assert stored is not None and stored.answer == answer and stored.question == "Ai làm việc?"
    assert stored.chat_id == 5
    assert state.answered_question(5, 11) == "Ai làm việc?" and state.answered_question(5, 12) is None
    first = state.record_vote(answer_id, 7, 1)
    changed = state.record_vote(answer_id, 7, -1)  # a changed mind replaces the vote
    state.record_vote(answer_id, 8, 1)
    assert first is not None and first.previous is None
    assert changed is not None and changed.previous == 1 and changed.vote == -1
    assert [(v.user_id, v.vote, v.question, v.answer) for v in state.votes()] == [
        (7, -1, "Ai làm việc?", answer.text), (8, 1, "Ai làm việc?", answer.text)]
    assert state.vote_of(answer_id, 7) == -1 and state.vote_of(answer_id, 9) is None
    assert state.record_vote(999, 7, 1) is None and state.stored_answer(999) is None
    assert sorted(state.vote_values()) == [-1, 1]


def test_the_same_vote_through_two_handles_lands_once(opener: Opener) -> None:
    one, two = opener(), opener()
    answer_id = one.save_answer(5, 7, 11, "Ai làm việc?", Answer("Ông Ngọc [1].", True, [SOURCE]))
    first, again = one.record_vote(answer_id, 7, 1), two.record_vote(answer_id, 7, 1)
    assert first is not None and again is not None and (first.previous, again.previous) == (None, 1)
    [voted] = two.voted_answers(vote=None)
    assert (voted.up, voted.down) == (1, 0) and one.vote_values() == [1]
    one.close()
    two.close()


def test_corrections_and_voted_answers_by_period_and_vote(state: BotState) -> None:
    up = state.save_answer(1, 2, 3, "Câu một?", Answer("Một [1].", True, [SOURCE]))
    down = state.save_answer(1, 2, 4, "Câu hai?", Answer("Không tìm thấy.", False, []))
    state.record_vote(up, 2, 1)
    state.record_vote(down, 2, -1)
    state.record_vote(down, 3, -1)
    state.expect_correction(1, 10, down, 3)
    prompt = state.correction_prompt(1, 10)
    assert prompt is not None and (prompt.answer_id, prompt.user_id) == (down, 3)
    assert state.save_correction(1, 10, "Câu đúng") and not state.save_correction(1, 10, "lần nữa")
    assert state.correction_prompt(1, 10) is None
    [voted_down] = state.voted_answers(vote=-1)
    assert (voted_down.answer_id, voted_down.up, voted_down.down) == (down, 0, 2)
    assert voted_down.corrections == ["Câu đúng"] and voted_down.answer.found is False
    assert [v.answer_id for v in state.voted_answers(vote=1)] == [up]
    assert [v.answer_id for v in state.voted_answers()] == [up, down]  # oldest vote first
    assert state.voted_answers(until=1.0) == [] and state.vote_values(since=4e9) == []
    assert state.voted_answers(vote=1)[0].answer.sources == [SOURCE]


def test_question_log_keeps_outcomes_in_order(state: BotState) -> None:
    first = state.start_question("chat", 1, 2)
    second = state.start_question("inline", None, 2)
    third = state.start_question("chat", 1, 2)
    state.finish_question(first, "found", answer_seconds=0.5, retrieval_seconds=0.1)
    state.finish_question(second, "error", error_kind="DatabaseError")
    assert len({first, second, third}) == 3
    assert state.question_log() == [("chat", "found", 0.5, 0.1, None), ("inline", "error", None, None, "DatabaseError"),
                                    ("chat", "pending", None, None, None)]
    assert state.question_log(until=1.0) == []


def test_refusal_is_recorded_once_per_chat(opener: Opener) -> None:
    one, two = opener(), opener()
    assert one.first_refusal(9) is True
    assert two.first_refusal(9) is False  # another replica: still refused once
    assert one.first_refusal(10) is True
    one.close()
    two.close()


def test_rate_limit_slides_and_tells_once_per_wait(state: BotState) -> None:
    now = [1000.0]
    limiter = RateLimiter(3, 60, windows=state, clock=lambda: now[0])
    allowed = []
    for t in (1000, 1005, 1008):
        now[0] = t
        allowed.append(limiter.check(7).allowed)
    assert allowed == [True, True, True]
    now[0] = 1010
    refused = limiter.check(7)
    assert (refused.allowed, refused.retry_in, refused.notify) == (False, 50, True)
    now[0] = 1020
    assert limiter.check(7).notify is False  # same wait: no second notice
    assert limiter.check(8).allowed  # per user
    now[0] = 1060.5
    assert limiter.check(7).allowed  # the first question left the window
    again = limiter.check(7)
    assert (again.allowed, again.retry_in, again.notify) == (False, 5, True)  # free at 1065 s: a new wait


def test_rate_limit_holds_across_handles_asking_at_once(opener: Opener) -> None:
    """Two replicas, eight threads each, one user: exactly `limit` questions get through."""
    handles = [opener(), opener()]
    limiters = [RateLimiter(5, 60, windows=handle) for handle in handles]
    start = threading.Barrier(16)
    decisions = []

    def ask(limiter: RateLimiter) -> None:
        start.wait()
        decisions.append(limiter.check(42).allowed)

    threads = [threading.Thread(target=ask, args=(limiters[i % 2],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for handle in handles:
        handle.close()
    assert len(decisions) == 16 and decisions.count(True) == 5


def test_each_turn_is_stored_at_once_without_a_clean_close(opener: Opener) -> None:
    """A killed bot never closes its connection: what it wrote must already be readable by the next one."""
    running = opener()
    running.add_turn(7, "Tổng số đảng viên năm 2023?", "74.127 đồng chí [1].", keep=4)
    restarted = opener()  # the first connection is still open, as after kill -9
    assert restarted.history(7, 4) == [Turn("Tổng số đảng viên năm 2023?", "74.127 đồng chí [1].")]
    restarted.close()
    running.close()


# --- PostgreSQL only: what a network and a shared server add ---


def test_a_sqlite_state_leaves_a_chat_s_turn_to_the_process(tmp_path: Path) -> None:
    state = SqliteState.open(tmp_path / "state.sqlite3")
    assert state.claim_chat(5) and state.claim_chat(5)  # one process per file: the handlers' own lock serialises
    state.close()


def test_a_chat_s_turn_is_held_by_one_replica_until_released_or_its_session_dies(database: str) -> None:
    one, two = PostgresState.open(database), PostgresState.open(database)
    assert one.claim_chat(-1001234567890)
    assert not two.claim_chat(-1001234567890)  # the group's next question waits on the other replica
    assert two.claim_chat(5)  # another chat is not held up
    one.release_chat(-1001234567890)
    assert two.claim_chat(-1001234567890)
    assert not one.claim_chat(-1001234567890)
    with psycopg.connect(database, autocommit=True) as admin:  # the holder's replica dies: its session ends
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()")
    assert one.claim_chat(-1001234567890)  # one's own connection is opened again, and the turn is free
    two.release_chat(-1001234567890)  # a release after the session died is no error
    one.close()
    two.close()


@pytest.fixture
def database(postgres_cluster) -> str:
    return postgres_cluster.create_database(f"s_{uuid.uuid4().hex[:10]}")


def test_a_dropped_connection_is_opened_again_with_one_log_line(database: str, caplog) -> None:
    state = PostgresState.open(database)
    state.add_turn(1, "Trước khi mất kết nối?", "Có [1].", keep=4)
    with psycopg.connect(database, autocommit=True) as admin:  # what a server restart or failover does
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()")
    with caplog.at_level(logging.WARNING, logger="bot.telegram.state_postgres"):
        assert state.history(1, 4) == [Turn("Trước khi mất kết nối?", "Có [1].")]  # nothing committed was lost
        state.add_turn(1, "Sau đó?", "Vẫn nhớ [1].", keep=4)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("Lost the connection to the bot's database at 127.0.0.1:")
    assert len(state.history(1, 4)) == 2
    state.close()


def test_tables_are_created_once_and_a_newer_layout_is_refused(database: str) -> None:
    assert PostgresState.open_existing(database) is None  # no bot has run with this database yet
    handles = []
    threads = [threading.Thread(target=lambda: handles.append(PostgresState.open(database))) for _ in range(3)]
    for thread in threads:  # replicas starting at the same moment
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(handles) == 3
    for handle in handles:
        handle.close()
    reader = PostgresState.open_existing(database)
    assert reader is not None
    reader.close()
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("UPDATE hoidap_bot_schema SET version = version + 1")
    with pytest.raises(TableVersionError, match="newer hoidap") as refused:
        PostgresState.open(database)
    assert "phiên bản hoidap mới hơn" in refused.value.vi
