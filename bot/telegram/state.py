"""The bot's own memory in SQLite: per-chat history, answers behind the buttons, votes, refusals sent.

Everything survives a restart. The writes are small indexed rows, so the event loop calls these
methods directly; a lock makes the one connection safe if a worker thread ever uses it too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from retrieval.types import Answer, Source, Turn

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
"""


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as it was sent, so its buttons keep working after a restart."""

    answer_id: int
    chat_id: int
    question: str
    answer: Answer


@dataclass(frozen=True)
class Vote:
    """One 👍 (+1) or 👎 (-1) with the question and answer it judged, for later review."""

    answer_id: int
    user_id: int
    chat_id: int
    vote: int
    question: str
    answer: str


class BotState:
    """The SQLite file at `Settings.state_db`; one instance per running bot."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> BotState:
        """Open (creating if needed) the state database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")  # a reviewer may read votes while the bot writes
        connection.execute("PRAGMA busy_timeout=5000")
        connection.executescript(_SCHEMA)
        return cls(connection)

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
        sources = json.dumps([source.to_dict() for source in answer.sources], ensure_ascii=False)
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
        answer = Answer(text, bool(found), [Source(**item) for item in json.loads(sources)])
        return StoredAnswer(answer_id, chat_id, question, answer)

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
        with self._lock:
            self._db.execute(
                "INSERT INTO votes (answer_id, user_id, chat_id, vote, question, answer, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (answer_id, user_id) DO UPDATE SET vote = excluded.vote, created = excluded.created",
                (answer_id, user_id, stored.chat_id, vote, stored.question, stored.answer.text, time.time()),
            )
        return Vote(answer_id, user_id, stored.chat_id, vote, stored.question, stored.answer.text)

    def votes(self) -> list[Vote]:
        """Every vote, oldest first, for review."""
        with self._lock:
            rows = self._db.execute(
                "SELECT answer_id, user_id, chat_id, vote, question, answer FROM votes ORDER BY created"
            ).fetchall()
        return [Vote(*row) for row in rows]

    # --- refusals ---

    def first_refusal(self, chat_id: int) -> bool:
        """Record that this chat was refused; True only the first time, so the refusal is sent once."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO refusals (chat_id, created) VALUES (?, ?)", (chat_id, time.time())
            )
        return cursor.rowcount == 1
