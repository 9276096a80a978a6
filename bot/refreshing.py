"""The followed feeds refreshed while `hoidap telegram` runs (`HOIDAP_SYNC_EVERY`), by one replica at a time.

With `HOIDAP_DATABASE_URL` every replica shares the feeds and the index, so one refresh per round is
enough and more would fetch every page N times. The replica that leads holds a session advisory lock
on a connection of its own and keeps it from round to round; the others try for it at each of their
rounds, skip the round with a debug line while it is held, and one of them takes over when the
leader stops or dies, since the lock goes with its session. Without a database there is one process,
which always leads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from index.indexer import SyncSummary
from index.stores.postgres import connect

log = logging.getLogger(__name__)

FEED_ROUNDS = 0x686F6966
"""The advisory lock the refreshing replica holds ("hoif")."""


class RefreshLeader:
    """Whether this process is the one that refreshes the feeds; `url` None: the only process, always."""

    def __init__(self, url: str | None) -> None:
        self._url = url
        self._connection = None
        self._held = False

    def leads(self) -> bool:
        """True if this process holds the refresh lock, taking it if it is free (never waiting for it)."""
        import psycopg

        if self._url is None:
            return True
        if self._held:
            try:
                self._connection.execute("SELECT 1")
                return True
            except psycopg.OperationalError:  # the session, and the lock with it, is gone: try for it again
                log.warning("The feed refresh lost its database session; trying for the lock again")
                self.close()
        if self._connection is None or self._connection.closed:
            self._connection = connect(self._url, vector=False)
            self._connection.autocommit = True
        [(self._held,)] = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (FEED_ROUNDS,)).fetchall()
        return self._held

    def close(self) -> None:
        """Give the lead up: unlocked first, since a closed session's backend frees its locks only as it exits."""
        import psycopg

        if self._connection is not None:
            if self._held:
                with contextlib.suppress(psycopg.OperationalError):  # gone already: so is the lock
                    self._connection.execute("SELECT pg_advisory_unlock(%s)", (FEED_ROUNDS,))
            self._connection.close()
        self._connection, self._held = None, False


class FeedRefresher:
    """Rounds of `sync` (then `reload` when it changed the index), on the replica that leads only; the others
    call `catch_up` instead, to load what the leader (or any `hoidap index`) changed in the shared index."""

    def __init__(self, sync: Callable[[], SyncSummary], reload: Callable[[], None], leader: RefreshLeader, *,
                 catch_up: Callable[[], None] = lambda: None) -> None:
        self._sync = sync
        self._reload = reload
        self._leader = leader
        self._catch_up = catch_up

    def round(self) -> SyncSummary | None:
        """One refresh; None when another replica leads and refreshes for all."""
        if not self._leader.leads():
            log.debug("feeds: another replica refreshes them; skipping this round")
            self._catch_up()
            return None
        summary = self._sync()
        if summary.changed:
            self._reload()
        log.info("feeds refreshed: %d added, %d updated, %d skipped",
                 len(summary.added), len(summary.updated), len(summary.skipped))
        return summary

    def run(self, interval: float, stop: threading.Event) -> None:
        """A round every `interval` seconds until `stop` is set, then the lead given up."""
        try:
            while not stop.wait(interval):
                try:
                    self.round()
                except Exception:  # the edge of one refresh: logged, the next one comes
                    log.exception("refreshing the feeds failed")
        finally:
            self._leader.close()
