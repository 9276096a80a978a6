"""The bot's own memory: per-chat history, answers behind the buttons, votes and corrections, refusals
sent, rate-limit windows, and a log of every question (how it went and how long it took) for `hoidap stats`.

One interface (`BotState`), two implementations: `SqliteState`, a file in the data dir (the default, one
bot process), and `PostgresState` (`state_postgres`), tables in the `HOIDAP_DATABASE_URL` database, so that
several `hoidap telegram` replicas behind a load balancer are one bot: a conversation continues on
whichever replica gets the next update, a rate limit holds across them, a vote lands once.
`open_state` picks one from the settings. Every method is a few small indexed statements; the
handlers call them from a worker thread so that the event loop never waits on a disk or a network.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.telegram.access import RateDecision, RateWindow
from retrieval.types import Answer, Source, Turn

if TYPE_CHECKING:
    from bot.settings import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_chat ON history (chat_id, id);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    user_id INTEGER,
    question_message_id INTEGER,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    found INTEGER NOT NULL,
    sources TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_question ON answers (chat_id, question_message_id);
CREATE TABLE IF NOT EXISTS votes (
    answer_id INTEGER NOT NULL REFERENCES answers (id),
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (answer_id, user_id)
);
CREATE TABLE IF NOT EXISTS refusals (
    chat_id INTEGER PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    via TEXT NOT NULL,
    chat_id INTEGER,
    user_id INTEGER,
    outcome TEXT NOT NULL DEFAULT 'pending',
    answer_seconds REAL,
    retrieval_seconds REAL,
    error_kind TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_windows (
    user_id INTEGER PRIMARY KEY,
    asked TEXT NOT NULL,
    notified_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS correction_prompts (
    chat_id INTEGER NOT NULL,
    prompt_message_id INTEGER NOT NULL,
    answer_id INTEGER NOT NULL REFERENCES answers (id),
    user_id INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (chat_id, prompt_message_id)
);
"""
_MIGRATIONS = {("votes", "correction"): "ALTER TABLE votes ADD COLUMN correction TEXT"}
"""Columns added since the first release: an older state file gains them when opened."""


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as it was sent, so its buttons keep working after a restart."""

    answer_id: int
    chat_id: int
    question: str
    answer: Answer


@dataclass(frozen=True)
class Vote:
    """One 👍 (+1) or 👎 (-1) with the question and answer it judged, for later review.

    `previous` is the voter's vote before this one, as `record_vote` found it (None: a first vote)."""

    answer_id: int
    user_id: int
    chat_id: int
    vote: int
    question: str
    answer: str
    previous: int | None = None


@dataclass(frozen=True)
class VotedAnswer:
    """An answer readers voted on, with its votes and corrections, for `hoidap feedback`."""

    answer_id: int
    question: str
    answer: Answer
    asked_at: float
    last_vote_at: float
    up: int
    down: int
    corrections: list[str]


@dataclass(frozen=True)
class CorrectionPrompt:
    """The bot asked this user what the right answer would be; the reply to `prompt_message_id` is it."""

    answer_id: int
    user_id: int
    created: float


QuestionRow = tuple[str, str, float | None, float | None, str | None]
"""(via, outcome, answer_seconds, retrieval_seconds, error_kind) of one logged question."""
FOREVER = 1e18
"""The end of an open period (epoch seconds)."""


class BotState(Protocol):
    """What the bot keeps between updates; every method is safe to call from several threads."""

    def close(self) -> None: ...

    # conversation history
    def history(self, chat_id: int, turns: int) -> list[Turn]:
        """The last `turns` exchanges of this chat, oldest first."""
    def add_turn(self, chat_id: int, question: str, answer: str, keep: int) -> None:
        """Append one exchange and forget all but the last `keep` of this chat."""
    def clear_history(self, chat_id: int) -> None:
        """Forget this chat's conversation (`/new`)."""

    # answers, votes, corrections
    def save_answer(self, chat_id: int, user_id: int | None, question_message_id: int | None,
                    question: str, answer: Answer) -> int:
        """Keep an answer sent to a chat; the returned id goes into its buttons' callback data."""
    def stored_answer(self, answer_id: int) -> StoredAnswer | None: ...
    def answered_question(self, chat_id: int, question_message_id: int) -> str | None:
        """The question text last answered for this message, if any (to tell real edits from no-ops)."""
    def record_vote(self, answer_id: int, user_id: int, vote: int) -> Vote | None:
        """Store (or change) this user's vote on an answer, with the one it replaced; None if the answer is unknown."""
    def vote_of(self, answer_id: int, user_id: int) -> int | None: ...
    def expect_correction(self, chat_id: int, prompt_message_id: int, answer_id: int, user_id: int) -> None:
        """Remember that the bot asked `user_id` to correct an answer, in the message `prompt_message_id`."""
    def correction_prompt(self, chat_id: int, prompt_message_id: int) -> CorrectionPrompt | None: ...
    def save_correction(self, chat_id: int, prompt_message_id: int, correction: str) -> bool:
        """Store the reader's correction with their vote and close the prompt; False if the prompt is gone."""
    def voted_answers(self, *, since: float | None = None, until: float | None = None,
                      vote: int | None = None) -> list[VotedAnswer]:
        """Answers with votes cast between `since` and `until` (epoch seconds); with `vote`, only those that
        got at least one such vote. Oldest vote first."""
    def votes(self) -> list[Vote]:
        """Every vote, oldest first, for review."""
    def vote_values(self, *, since: float | None = None, until: float | None = None) -> list[int]: ...

    # the question log
    def start_question(self, via: str, chat_id: int | None, user_id: int | None) -> int:
        """Log a question being answered (`via` chat or inline); its id goes into the log lines."""
    def finish_question(self, question_id: int, outcome: str, *, answer_seconds: float | None = None,
                        retrieval_seconds: float | None = None, error_kind: str | None = None) -> None:
        """How the question ended: found, not_found or error (with the kind of error)."""
    def question_log(self, *, since: float | None = None, until: float | None = None) -> list[QuestionRow]:
        """Every question of the period, in the order they were asked."""

    # one question of a chat at a time, across the processes sharing this state
    def claim_chat(self, chat_id: int) -> bool:
        """Take this chat's turn for this process, without waiting; False while another process holds it.

        The handlers serialise a chat's questions within their process first; this is the part between processes."""
    def release_chat(self, chat_id: int) -> None:
        """Give back a turn `claim_chat` took."""

    # refusals and rate limits
    def first_refusal(self, chat_id: int) -> bool:
        """Record that this chat was refused; True only the first time, so the refusal is sent once."""
    def update_rate_window(self, user_id: int,
                           change: Callable[[RateWindow], tuple[RateWindow, RateDecision]]) -> RateDecision:
        """Apply `change` to this user's window atomically (see `access.RateLimiter`)."""


def open_state(settings: Settings) -> BotState:
    """The configured state, created if needed: PostgreSQL when `HOIDAP_DATABASE_URL` is set, else `Settings.state_db`."""
    if settings.database_url is not None:
        from bot.telegram.state_postgres import PostgresState

        return PostgresState.open(settings.database_url.get_secret_value())
    return SqliteState.open(settings.state_db)


def existing_state(settings: Settings) -> BotState | None:
    """The configured state for the operator's commands, which only read; None when the bot never ran there."""
    if settings.database_url is not None:
        from bot.telegram.state_postgres import PostgresState

        return PostgresState.open_existing(settings.database_url.get_secret_value())
    return SqliteState.open_existing(settings.state_db)


def answer_from_row(text: str, found: bool, sources: str | list) -> Answer:
    """An `Answer` as stored: its sources are JSON (text in SQLite, jsonb already decoded in PostgreSQL)."""
    items = json.loads(sources) if isinstance(sources, str) else sources
    return Answer(text, bool(found), [Source(**item) for item in items])


def sources_json(answer: Answer) -> str:
    return json.dumps([source.to_dict() for source in answer.sources], ensure_ascii=False)


class SqliteState:
    """The SQLite file at `Settings.state_db`; one instance per running bot (one process only)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> SqliteState:
        """Open (creating if needed) the state database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")  # a reviewer may read votes while the bot writes
        connection.execute("PRAGMA busy_timeout=5000")
        connection.executescript(_SCHEMA)
        for (table, column), statement in _MIGRATIONS.items():
            columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                connection.execute(statement)
        return cls(connection)

    @classmethod
    def open_existing(cls, path: Path) -> SqliteState | None:
        """The state database at `path` for reading (migrated like `open`), or None if there is none yet."""
        return cls.open(path) if path.is_file() else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- conversation history ---

    def history(self, chat_id: int, turns: int) -> list[Turn]:
        """The last `turns` exchanges of this chat, oldest first."""
        if turns <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT question, answer FROM history WHERE chat_id = ? ORDER BY id DESC LIMIT ?", (chat_id, turns)
            ).fetchall()
        return [Turn(question, answer) for question, answer in reversed(rows)]

    def add_turn(self, chat_id: int, question: str, answer: str, keep: int) -> None:
        """Append one exchange and forget all but the last `keep` of this chat."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            if keep > 0:
                self._db.execute(
                    "INSERT INTO history (chat_id, question, answer, created) VALUES (?, ?, ?, ?)",
                    (chat_id, question, answer, time.time()),
                )
            self._db.execute(
                "DELETE FROM history WHERE chat_id = ? AND id NOT IN "
                "(SELECT id FROM history WHERE chat_id = ? ORDER BY id DESC LIMIT ?)",
                (chat_id, chat_id, max(keep, 0)),
            )

    def clear_history(self, chat_id: int) -> None:
        """Forget this chat's conversation (`/new`)."""
        with self._lock:
            self._db.execute("DELETE FROM history WHERE chat_id = ?", (chat_id,))

    # --- answers and votes ---

    def save_answer(self, chat_id: int, user_id: int | None, question_message_id: int | None,
                    question: str, answer: Answer) -> int:
        """Keep an answer sent to a chat; the returned id goes into its buttons' callback data."""
        sources = sources_json(answer)
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO answers (chat_id, user_id, question_message_id, question, answer, found, sources, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (chat_id, user_id, question_message_id, question, answer.text, int(answer.found), sources, time.time()),
            )
        return int(cursor.lastrowid)

    def stored_answer(self, answer_id: int) -> StoredAnswer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT chat_id, question, answer, found, sources FROM answers WHERE id = ?", (answer_id,)
            ).fetchone()
        if row is None:
            return None
        chat_id, question, text, found, sources = row
        return StoredAnswer(answer_id, chat_id, question, answer_from_row(text, found, sources))

    def answered_question(self, chat_id: int, question_message_id: int) -> str | None:
        """The question text last answered for this message, if any (to tell real edits from no-ops)."""
        with self._lock:
            row = self._db.execute(
                "SELECT question FROM answers WHERE chat_id = ? AND question_message_id = ? ORDER BY id DESC LIMIT 1",
                (chat_id, question_message_id),
            ).fetchone()
        return row[0] if row else None

    def record_vote(self, answer_id: int, user_id: int, vote: int) -> Vote | None:
        """Store (or change) this user's vote on an answer; None if the answer is unknown."""
        stored = self.stored_answer(answer_id)
        if stored is None:
            return None
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")  # the previous vote and the new one, with no writer between
            row = self._db.execute("SELECT vote FROM votes WHERE answer_id = ? AND user_id = ?",
                                   (answer_id, user_id)).fetchone()
            self._db.execute(
                "INSERT INTO votes (answer_id, user_id, chat_id, vote, question, answer, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (answer_id, user_id) DO UPDATE SET vote = excluded.vote, created = excluded.created",
                (answer_id, user_id, stored.chat_id, vote, stored.question, stored.answer.text, time.time()),
            )
        return Vote(answer_id, user_id, stored.chat_id, vote, stored.question, stored.answer.text,
                    row[0] if row else None)

    def vote_of(self, answer_id: int, user_id: int) -> int | None:
        """This user's current vote on an answer, if any."""
        with self._lock:
            row = self._db.execute("SELECT vote FROM votes WHERE answer_id = ? AND user_id = ?",
                                   (answer_id, user_id)).fetchone()
        return row[0] if row else None

    def expect_correction(self, chat_id: int, prompt_message_id: int, answer_id: int, user_id: int) -> None:
        """Remember that the bot asked `user_id` to correct an answer, in the message `prompt_message_id`."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO correction_prompts (chat_id, prompt_message_id, answer_id, user_id, created)"
                " VALUES (?, ?, ?, ?, ?)", (chat_id, prompt_message_id, answer_id, user_id, time.time()))

    def correction_prompt(self, chat_id: int, prompt_message_id: int) -> CorrectionPrompt | None:
        with self._lock:
            row = self._db.execute(
                "SELECT answer_id, user_id, created FROM correction_prompts WHERE chat_id = ? AND prompt_message_id = ?",
                (chat_id, prompt_message_id)).fetchone()
        return CorrectionPrompt(*row) if row else None

    def save_correction(self, chat_id: int, prompt_message_id: int, correction: str) -> bool:
        """Store the reader's correction with their vote and close the prompt; False if the prompt is gone."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            row = self._db.execute(
                "DELETE FROM correction_prompts WHERE chat_id = ? AND prompt_message_id = ? RETURNING answer_id, user_id",
                (chat_id, prompt_message_id)).fetchone()
            if row is None:
                return False
            self._db.execute("UPDATE votes SET correction = ? WHERE answer_id = ? AND user_id = ?", (correction, *row))
        return True

    def voted_answers(self, *, since: float | None = None, until: float | None = None,
                      vote: int | None = None) -> list[VotedAnswer]:
        """Answers with votes cast between `since` and `until` (epoch seconds); with `vote`, only those that
        got at least one such vote. Oldest vote first."""
        query = ("SELECT a.id, a.question, a.answer, a.found, a.sources, a.created, MAX(v.created),"
                 " SUM(v.vote = 1), SUM(v.vote = -1),"
                 " json_group_array(v.correction) FILTER (WHERE v.correction IS NOT NULL)"
                 " FROM answers a JOIN votes v ON v.answer_id = a.id WHERE v.created >= ? AND v.created < ?"
                 " GROUP BY a.id")
        having = {1: " HAVING SUM(v.vote = 1) > 0", -1: " HAVING SUM(v.vote = -1) > 0"}.get(vote or 0, "")
        with self._lock:
            rows = self._db.execute(query + having + " ORDER BY MAX(v.created)",
                                    (since if since is not None else 0, until if until is not None else FOREVER)).fetchall()
        return [VotedAnswer(answer_id, question, answer_from_row(text, found, sources), asked, last, up, down,
                            json.loads(corrections) if corrections else [])
                for answer_id, question, text, found, sources, asked, last, up, down, corrections in rows]

    def votes(self) -> list[Vote]:
        """Every vote, oldest first, for review."""
        with self._lock:
            rows = self._db.execute(
                "SELECT answer_id, user_id, chat_id, vote, question, answer FROM votes ORDER BY created"
            ).fetchall()
        return [Vote(*row) for row in rows]

    # --- the question log ---

    def start_question(self, via: str, chat_id: int | None, user_id: int | None) -> int:
        """Log a question being answered (`via` chat or inline); its id goes into the log lines."""
        with self._lock:
            cursor = self._db.execute("INSERT INTO questions (via, chat_id, user_id, created) VALUES (?, ?, ?, ?)",
                                      (via, chat_id, user_id, time.time()))
        return int(cursor.lastrowid)

    def finish_question(self, question_id: int, outcome: str, *, answer_seconds: float | None = None,
                        retrieval_seconds: float | None = None, error_kind: str | None = None) -> None:
        """How the question ended: found, not_found or error (with the kind of error)."""
        with self._lock:
            self._db.execute("UPDATE questions SET outcome = ?, answer_seconds = ?, retrieval_seconds = ?,"
                             " error_kind = ? WHERE id = ?",
                             (outcome, answer_seconds, retrieval_seconds, error_kind, question_id))

    def question_log(self, *, since: float | None = None, until: float | None = None) -> list[QuestionRow]:
        with self._lock:
            return self._db.execute(
                "SELECT via, outcome, answer_seconds, retrieval_seconds, error_kind FROM questions"
                " WHERE created >= ? AND created < ? ORDER BY id",
                (since if since is not None else 0, until if until is not None else FOREVER)).fetchall()

    def vote_values(self, *, since: float | None = None, until: float | None = None) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT vote FROM votes WHERE created >= ? AND created < ?",
                                    (since if since is not None else 0, until if until is not None else FOREVER))
            return [row[0] for row in rows.fetchall()]

    # --- turns: one process per state file, so the handlers' own per-chat lock is the whole story ---

    def claim_chat(self, chat_id: int) -> bool:
        return True

    def release_chat(self, chat_id: int) -> None:
        pass

    # --- refusals ---

    def first_refusal(self, chat_id: int) -> bool:
        """Record that this chat was refused; True only the first time, so the refusal is sent once."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO refusals (chat_id, created) VALUES (?, ?)", (chat_id, time.time())
            )
        return cursor.rowcount == 1

    # --- rate limits ---

    def update_rate_window(self, user_id: int,
                           change: Callable[[RateWindow], tuple[RateWindow, RateDecision]]) -> RateDecision:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")  # read and write the window with no other writer between
            row = self._db.execute("SELECT asked, notified_until FROM rate_windows WHERE user_id = ?",
                                   (user_id,)).fetchone()
            window = RateWindow(tuple(json.loads(row[0])), row[1]) if row else RateWindow()
            changed, decision = change(window)
            self._db.execute("INSERT OR REPLACE INTO rate_windows (user_id, asked, notified_until) VALUES (?, ?, ?)",
                             (user_id, json.dumps(changed.asked), changed.notified_until))
        return decision
