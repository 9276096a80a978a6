"""The vectors a sync has embedded, kept on disk until the sync's index is written, so that a sync cut
short (Ctrl-C, kill -9, a lost machine, a full disk) is resumed by the next one instead of embedding again.

A sync writes its index only at the end (the embedded store swaps in a whole generation, PostgreSQL commits
one transaction), so a crash leaves the previous index; without this, the hours of embedding a first sync of
an archive takes were lost with it. One SQLite file beside the index (`JOURNAL`): a row per passage, keyed by
the blake2b digest of the text that was embedded (`passage_text`), the vector as raw float32 bytes (never a
pickle). Rows are written a batch at a time as the sync embeds; the sync that writes its index deletes those
it used. The file names the model, its weights and precision: opened by another, it starts empty.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from index.embedding import ModelIdentity

JOURNAL = "embedding-journal.sqlite3"
_KEYS_PER_STATEMENT = 500  # SQLite's bound on a statement's parameters is 32,766
log = logging.getLogger(__name__)


class EmbeddingJournal:
    """Vectors by passage digest for one embedding identity (model, weights, precision, dimension)."""

    def __init__(self, path: Path, identity: ModelIdentity) -> None:
        self.path = path
        self.dim = identity.dim
        self.used: set[bytes] = set()  # the keys this sync read or wrote: what `forget_used` deletes
        self.broken = False  # set when it failed: left out for the rest of the sync
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        try:
            self._prepare(identity)
        except sqlite3.Error:
            self._db.close()
            raise

    def _prepare(self, identity: ModelIdentity) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a batch lost in a power cut is embedded again
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (identity TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID")
        wanted = json.dumps(asdict(identity), sort_keys=True)
        with self._db:
            rows = self._db.execute("SELECT identity FROM meta").fetchall()
            if rows != [(wanted,)]:  # a new journal, or one of another model: its vectors cannot serve
                self._db.execute("DELETE FROM meta")
                self._db.execute("DELETE FROM vectors")
                self._db.execute("INSERT INTO meta VALUES (?)", (wanted,))

    @classmethod
    def open(cls, path: Path, identity: ModelIdentity) -> EmbeddingJournal | None:
        """The journal at `path`, or None (with a warning) when it cannot be opened: a sync then works as
        without one, since the journal only saves work and never holds the index's data. A damaged file
        is started again."""
        try:
            try:
                return cls(path, identity)
            except sqlite3.OperationalError:  # locked, unwritable, not a file: not ours to remove
                raise
            except sqlite3.DatabaseError as error:
                log.warning("The embedding journal %s is damaged (%s); it is started again.", path, error)
                for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                    leftover.unlink(missing_ok=True)
                return cls(path, identity)
        except (sqlite3.Error, OSError) as error:
            log.warning("The embedding journal %s cannot be used (%s): an interrupted sync will embed again.",
                        path, error)
            return None

    def recall(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The vectors the journal holds for these keys (a row of the wrong size is ignored)."""
        return self._safely(self._recall, keys) or {}

    def remember(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        """Keep these vectors (one transaction: a crash keeps all of them or none)."""
        self._safely(self._remember, items)

    def forget_used(self) -> None:
        """Delete the rows this sync read or wrote, once its index holds them (another sync's stay)."""
        self._safely(self._forget_used)

    def _safely(self, step, *args):
        """Run `step`; a journal that fails (a full disk, a damaged file) is left out for the rest of the sync
        (None): it only saves work, so the sync goes on as without one."""
        if self.broken:
            return None
        try:
            return step(*args)
        except sqlite3.Error as error:
            log.warning("The embedding journal %s failed (%s): this sync goes on without it.", self.path, error)
            self.broken = True
            return None

    def _recall(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        distinct = list(dict.fromkeys(keys))
        for begin in range(0, len(distinct), _KEYS_PER_STATEMENT):
            part = distinct[begin:begin + _KEYS_PER_STATEMENT]
            marks = ",".join("?" * len(part))
            for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part):
                if len(blob) == self.dim * 4:
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32).copy()
        self.used.update(found)
        return found

    def _remember(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        rows = [(key, np.ascontiguousarray(vector, dtype=np.float32).tobytes()) for key, vector in items]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
        self.used.update(key for key, _ in rows)

    def _forget_used(self) -> None:
        used = list(self.used)
        with self._db:
            for begin in range(0, len(used), _KEYS_PER_STATEMENT):
                part = used[begin:begin + _KEYS_PER_STATEMENT]
                self._db.execute(f"DELETE FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)
        self.used.clear()

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._db.close()
