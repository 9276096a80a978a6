"""The bot's state in PostgreSQL (`HOIDAP_DATABASE_URL`): what lets N `hoidap telegram` replicas be one bot.

The tables sit beside the index's, prefixed `hoidap_bot_`, and are created idempotently by the first
replica to start (under an advisory lock, so two starting at once do not race); `hoidap_bot_schema`
holds the version of their layout, and a newer layout than this code knows is refused, not guessed at.

Across replicas: a conversation's history is rows per chat (whichever replica answers reads them); a
vote is one row per (answer, voter), so pressing the button twice, through two replicas, changes one
row; a refusal is sent once per chat (`ON CONFLICT DO NOTHING`); a rate-limit window is one row per
user, read `FOR UPDATE` and written in one transaction, so two replicas counting the same user wait
for each other instead of both letting a question through. A chat's turn (one question answered and
its exchange written at a time) is a session advisory lock keyed by the chat, so a follow-up that reaches
another replica while the question before it is being answered waits for its turn in the history; the
lock goes with the session, so a replica that dies frees its chats at once.

One connection in autocommit mode, used by one call at a time (a lock); the handlers call it from a
worker thread. A connection the server dropped (restart, failover, idle timeout) is opened again by
the next call, once, with one log line; a call that still fails raises `DatabaseError`, and the
update after it connects again. What a committed statement wrote is never lost; a statement whose
commit was under way when the connection broke may be applied twice (a question logged twice), never
a vote (an upsert).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from bot.telegram.access import RateDecision, RateWindow
from bot.telegram.state import (
    FOREVER,
    CorrectionPrompt,
    QuestionRow,
    StoredAnswer,
    Vote,
    VotedAnswer,
    answer_from_row,
    sources_json,
)
from index.stores.postgres import DatabaseError, connect, describe_url
from index.stores.tables import TableSet, check_version, create_tables, tables_exist
from retrieval.types import Answer, Turn

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hoidap_bot_schema (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_history (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, chat_id BIGINT NOT NULL,
        question TEXT NOT NULL, answer TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hoidap_bot_history_chat ON hoidap_bot_history (chat_id, id)",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_answers (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, chat_id BIGINT NOT NULL, user_id BIGINT,
        question_message_id BIGINT, question TEXT NOT NULL, answer TEXT NOT NULL, found BOOLEAN NOT NULL,
        sources JSONB NOT NULL, created DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hoidap_bot_answers_question ON hoidap_bot_answers (chat_id, question_message_id)",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_votes (
        answer_id BIGINT NOT NULL REFERENCES hoidap_bot_answers (id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL, chat_id BIGINT NOT NULL, vote SMALLINT NOT NULL CHECK (vote IN (-1, 1)),
        question TEXT NOT NULL, answer TEXT NOT NULL, correction TEXT, created DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (answer_id, user_id))""",
    "CREATE INDEX IF NOT EXISTS hoidap_bot_votes_created ON hoidap_bot_votes (created)",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_refusals (
        chat_id BIGINT PRIMARY KEY, created DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_questions (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, via TEXT NOT NULL, chat_id BIGINT, user_id BIGINT,
        outcome TEXT NOT NULL DEFAULT 'pending', answer_seconds DOUBLE PRECISION,
        retrieval_seconds DOUBLE PRECISION, error_kind TEXT, created DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hoidap_bot_questions_created ON hoidap_bot_questions (created)",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_correction_prompts (
        chat_id BIGINT NOT NULL, prompt_message_id BIGINT NOT NULL,
        answer_id BIGINT NOT NULL REFERENCES hoidap_bot_answers (id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (chat_id, prompt_message_id))""",
    """CREATE TABLE IF NOT EXISTS hoidap_bot_rate_windows (
        user_id BIGINT PRIMARY KEY, asked DOUBLE PRECISION[] NOT NULL, notified_until DOUBLE PRECISION NOT NULL)""",
)
CHAT_LOCKS = 0x686F6963
"""The first key of every chat's advisory lock ("hoic"); the second is the chat id hashed to 32 bits (two
chats sharing a hash only wait for each other across replicas, and within one replica the lock stacks)."""
TABLES = TableSet(_SCHEMA, "hoidap_bot_schema", SCHEMA_VERSION,
                  lock=0x686F6962,  # "hoib": taken while a replica creates or checks the tables
                  what="The bot's tables", what_vi="Các bảng của bot")


def _period(since: float | None, until: float | None) -> tuple[float, float]:
    return (since if since is not None else 0.0, until if until is not None else FOREVER)


class PostgresState:
    """The `BotState` in the database at `url`; one instance per running bot, shared by its threads."""

    def __init__(self, url: str, connection) -> None:
        self._url = url
        self._connection = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> PostgresState:
        """Connect and create the tables if they are not there yet (any replica may be the first)."""
        connection = _connect(url)
        try:
            create_tables(connection, TABLES, url)
        except Exception:
            connection.close()
            raise
        return cls(url, connection)

    @classmethod
    def open_existing(cls, url: str) -> PostgresState | None:
        """The state for reading, or None when no bot has run with this database yet."""
        connection = _connect(url)
        try:
            if not tables_exist(connection, TABLES):
                connection.close()
                return None
            check_version(connection, TABLES, url)
        except Exception:
            connection.close()
            raise
        return cls(url, connection)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _run(self, work: Callable[..., T]) -> T:
        """`work(connection)` under the lock; a dropped connection is opened again once, with one log line."""
        import psycopg
        import psycopg.errors

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._connection.closed:
                        self._connection = _connect(self._url)
                    return work(self._connection)
                except psycopg.errors.TransactionRollback:
                    raise  # a deadlock or serialisation failure: the connection is fine, the statement is not
                except psycopg.OperationalError as error:
                    self._connection.close()
                    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                    where = describe_url(self._url)
                    if attempt == 2:
                        raise DatabaseError(
                            f"The bot's database at {where} stopped answering ({reason}); the next update will "
                            "connect again.",
                            vi=f"Cơ sở dữ liệu của bot tại {where} ngừng trả lời ({reason}); lần cập nhật sau sẽ "
                               "kết nối lại.") from None
                    log.warning("Lost the connection to the bot's database at %s (%s); connecting again", where, reason)
        raise AssertionError("unreachable")

    def _rows(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        return self._run(lambda connection: connection.execute(sql, params).fetchall())

    def _execute(self, sql: str, params: tuple | dict = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return self._run(lambda connection: connection.execute(sql, params).rowcount)

    # --- conversation history ---

    def history(self, chat_id: int, turns: int) -> list[Turn]:
        if turns <= 0:
            return []
        rows = self._rows("SELECT question, answer FROM hoidap_bot_history WHERE chat_id = %s ORDER BY id DESC LIMIT %s",
                          (chat_id, turns))
        return [Turn(question, answer) for question, answer in reversed(rows)]

    def add_turn(self, chat_id: int, question: str, answer: str, keep: int) -> None:
        def work(connection) -> None:
            with connection.transaction():
                if keep > 0:
                    connection.execute("INSERT INTO hoidap_bot_history (chat_id, question, answer, created) "
                                       "VALUES (%s, %s, %s, %s)", (chat_id, question, answer, time.time()))
                connection.execute(
                    "DELETE FROM hoidap_bot_history WHERE chat_id = %(chat)s AND id NOT IN "
                    "(SELECT id FROM hoidap_bot_history WHERE chat_id = %(chat)s ORDER BY id DESC LIMIT %(keep)s)",
                    {"chat": chat_id, "keep": max(keep, 0)})

        self._run(work)

    def clear_history(self, chat_id: int) -> None:
        self._execute("DELETE FROM hoidap_bot_history WHERE chat_id = %s", (chat_id,))

    # --- answers, votes, corrections ---

    def save_answer(self, chat_id: int, user_id: int | None, question_message_id: int | None,
                    question: str, answer: Answer) -> int:
        [(answer_id,)] = self._rows(
            "INSERT INTO hoidap_bot_answers (chat_id, user_id, question_message_id, question, answer, found, sources, "
            "created) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) RETURNING id",
            (chat_id, user_id, question_message_id, question, answer.text, answer.found, sources_json(answer),
             time.time()))
        return int(answer_id)

    def stored_answer(self, answer_id: int) -> StoredAnswer | None:
        rows = self._rows("SELECT chat_id, question, answer, found, sources FROM hoidap_bot_answers WHERE id = %s",
                          (answer_id,))
        if not rows:
            return None
        chat_id, question, text, found, sources = rows[0]
        return StoredAnswer(answer_id, chat_id, question, answer_from_row(text, found, sources))

    def answered_question(self, chat_id: int, question_message_id: int) -> str | None:
        rows = self._rows("SELECT question FROM hoidap_bot_answers WHERE chat_id = %s AND question_message_id = %s "
                          "ORDER BY id DESC LIMIT 1", (chat_id, question_message_id))
        return rows[0][0] if rows else None

    def record_vote(self, answer_id: int, user_id: int, vote: int) -> Vote | None:
        stored = self.stored_answer(answer_id)
        if stored is None:
            return None

        def work(connection) -> int | None:
            with connection.transaction():
                # A first vote inserts; otherwise the row is locked and read, then changed: two replicas handling
                # two presses of one voter wait for each other, and each learns the vote it replaced.
                inserted = connection.execute(
                    "INSERT INTO hoidap_bot_votes (answer_id, user_id, chat_id, vote, question, answer, created) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (answer_id, user_id) DO NOTHING RETURNING 1",
                    (answer_id, user_id, stored.chat_id, vote, stored.question, stored.answer.text,
                     time.time())).fetchall()
                if inserted:
                    return None
                [(previous,)] = connection.execute("SELECT vote FROM hoidap_bot_votes WHERE answer_id = %s AND "
                                                   "user_id = %s FOR UPDATE", (answer_id, user_id)).fetchall()
                connection.execute("UPDATE hoidap_bot_votes SET vote = %s, created = %s WHERE answer_id = %s AND "
                                   "user_id = %s", (vote, time.time(), answer_id, user_id))
                return int(previous)

        previous = self._run(work)
        return Vote(answer_id, user_id, stored.chat_id, vote, stored.question, stored.answer.text, previous)

    def vote_of(self, answer_id: int, user_id: int) -> int | None:
        rows = self._rows("SELECT vote FROM hoidap_bot_votes WHERE answer_id = %s AND user_id = %s", (answer_id, user_id))
        return int(rows[0][0]) if rows else None

    def expect_correction(self, chat_id: int, prompt_message_id: int, answer_id: int, user_id: int) -> None:
        self._execute(
            "INSERT INTO hoidap_bot_correction_prompts (chat_id, prompt_message_id, answer_id, user_id, created) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (chat_id, prompt_message_id) DO UPDATE SET "
            "answer_id = EXCLUDED.answer_id, user_id = EXCLUDED.user_id, created = EXCLUDED.created",
            (chat_id, prompt_message_id, answer_id, user_id, time.time()))

    def correction_prompt(self, chat_id: int, prompt_message_id: int) -> CorrectionPrompt | None:
        rows = self._rows("SELECT answer_id, user_id, created FROM hoidap_bot_correction_prompts "
                          "WHERE chat_id = %s AND prompt_message_id = %s", (chat_id, prompt_message_id))
        return CorrectionPrompt(*rows[0]) if rows else None

    def save_correction(self, chat_id: int, prompt_message_id: int, correction: str) -> bool:
        def work(connection) -> bool:
            with connection.transaction():
                rows = connection.execute(
                    "DELETE FROM hoidap_bot_correction_prompts WHERE chat_id = %s AND prompt_message_id = %s "
                    "RETURNING answer_id, user_id", (chat_id, prompt_message_id)).fetchall()
                if not rows:
                    return False
                connection.execute("UPDATE hoidap_bot_votes SET correction = %s WHERE answer_id = %s AND user_id = %s",
                                   (correction, *rows[0]))
                return True

        return self._run(work)

    def voted_answers(self, *, since: float | None = None, until: float | None = None,
                      vote: int | None = None) -> list[VotedAnswer]:
        having = {1: " HAVING count(*) FILTER (WHERE v.vote = 1) > 0",
                  -1: " HAVING count(*) FILTER (WHERE v.vote = -1) > 0"}.get(vote or 0, "")
        rows = self._rows(
            "SELECT a.id, a.question, a.answer, a.found, a.sources, a.created, max(v.created), "
            "count(*) FILTER (WHERE v.vote = 1), count(*) FILTER (WHERE v.vote = -1), "
            "array_agg(v.correction ORDER BY v.created) FILTER (WHERE v.correction IS NOT NULL) "
            "FROM hoidap_bot_answers a JOIN hoidap_bot_votes v ON v.answer_id = a.id "
            "WHERE v.created >= %s AND v.created < %s GROUP BY a.id" + having + " ORDER BY max(v.created)",
            _period(since, until))
        return [VotedAnswer(int(answer_id), question, answer_from_row(text, found, sources), asked, last, up, down,
                            list(corrections or []))
                for answer_id, question, text, found, sources, asked, last, up, down, corrections in rows]

    def votes(self) -> list[Vote]:
        rows = self._rows("SELECT answer_id, user_id, chat_id, vote, question, answer FROM hoidap_bot_votes "
                          "ORDER BY created")
        return [Vote(*row) for row in rows]

    def vote_values(self, *, since: float | None = None, until: float | None = None) -> list[int]:
        rows = self._rows("SELECT vote FROM hoidap_bot_votes WHERE created >= %s AND created < %s",
                          _period(since, until))
        return [int(row[0]) for row in rows]

    # --- the question log ---

    def start_question(self, via: str, chat_id: int | None, user_id: int | None) -> int:
        [(question_id,)] = self._rows("INSERT INTO hoidap_bot_questions (via, chat_id, user_id, created) "
                                      "VALUES (%s, %s, %s, %s) RETURNING id", (via, chat_id, user_id, time.time()))
        return int(question_id)

    def finish_question(self, question_id: int, outcome: str, *, answer_seconds: float | None = None,
                        retrieval_seconds: float | None = None, error_kind: str | None = None) -> None:
        self._execute("UPDATE hoidap_bot_questions SET outcome = %s, answer_seconds = %s, retrieval_seconds = %s, "
                      "error_kind = %s WHERE id = %s",
                      (outcome, answer_seconds, retrieval_seconds, error_kind, question_id))

    def question_log(self, *, since: float | None = None, until: float | None = None) -> list[QuestionRow]:
        return [tuple(row) for row in self._rows(
            "SELECT via, outcome, answer_seconds, retrieval_seconds, error_kind FROM hoidap_bot_questions "
            "WHERE created >= %s AND created < %s ORDER BY id", _period(since, until))]

    # --- turns ---

    def claim_chat(self, chat_id: int) -> bool:
        # On the shared connection, without waiting: a waiting lock would hold every other call of this replica.
        [(claimed,)] = self._rows("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (CHAT_LOCKS, str(chat_id)))
        return bool(claimed)

    def release_chat(self, chat_id: int) -> None:
        import psycopg

        with self._lock:
            if self._connection.closed:
                return  # the session that held the turn is gone, and its lock with it
            try:
                self._connection.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CHAT_LOCKS, str(chat_id)))
            except psycopg.OperationalError:
                self._connection.close()  # the same: the next call connects again, and says so

    # --- refusals and rate limits ---

    def first_refusal(self, chat_id: int) -> bool:
        return self._execute("INSERT INTO hoidap_bot_refusals (chat_id, created) VALUES (%s, %s) "
                             "ON CONFLICT (chat_id) DO NOTHING", (chat_id, time.time())) == 1

    def update_rate_window(self, user_id: int,
                           change: Callable[[RateWindow], tuple[RateWindow, RateDecision]]) -> RateDecision:
        def work(connection) -> RateDecision:
            with connection.transaction():
                connection.execute("INSERT INTO hoidap_bot_rate_windows (user_id, asked, notified_until) "
                                   "VALUES (%s, '{}', 0) ON CONFLICT (user_id) DO NOTHING", (user_id,))
                [(asked, notified_until)] = connection.execute(
                    "SELECT asked, notified_until FROM hoidap_bot_rate_windows WHERE user_id = %s FOR UPDATE",
                    (user_id,)).fetchall()
                changed, decision = change(RateWindow(tuple(asked), notified_until))
                connection.execute("UPDATE hoidap_bot_rate_windows SET asked = %s, notified_until = %s "
                                   "WHERE user_id = %s", ([float(t) for t in changed.asked], float(changed.notified_until), user_id))
                return decision

        return self._run(work)


def _connect(url: str):
    connection = connect(url, vector=False)
    connection.autocommit = True
    return connection

