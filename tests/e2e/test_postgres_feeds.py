"""With HOIDAP_DATABASE_URL the followed feeds live in the database too: a feed added on one machine is
listed and removed from another (the real `hoidap feeds` CLI, the local news site, real PostgreSQL), and
of several `hoidap telegram` replicas refreshing them on a schedule, one refreshes each round."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from bot.refreshing import FEED_ROUNDS, FeedRefresher, RefreshLeader
from index.indexer import SyncSummary

from tests.conftest import make_settings, run_cli
from tests.e2e.news_site import NewsSite
from tests.e2e.test_web import FETCH_ENV, site  # noqa: F401 - the local news site fixture

pytestmark = pytest.mark.e2e


def test_feeds_followed_on_one_machine_are_seen_on_another(site: NewsSite, tmp_path: Path,  # noqa: F811
                                                           models_dir: Path, postgres_cluster) -> None:
    url = postgres_cluster.create_database(f"feeds_{uuid.uuid4().hex[:8]}")
    one, two = (make_settings(tmp_path / name / "data", models_dir) for name in ("one", "two"))
    for settings in (one, two):
        settings.data_dir.mkdir(parents=True)
    added = run_cli(["feeds", "add", site.url("/sitemap.xml")], one, HOIDAP_DATABASE_URL=url, **FETCH_ENV)
    assert added.returncode == 0, added.stderr
    listed = run_cli(["feeds", "list"], two, HOIDAP_DATABASE_URL=url)
    assert listed.returncode == 0 and site.url("/sitemap.xml") in listed.stdout, listed.stderr
    assert "Chưa theo dõi nguồn tin nào" in run_cli(["feeds", "list"], two).stdout  # its own data dir has none
    removed = run_cli(["feeds", "remove", site.url("/sitemap.xml")], two, HOIDAP_DATABASE_URL=url)
    assert removed.returncode == 0 and "đã bỏ theo dõi" in removed.stdout, removed.stderr
    assert "Chưa theo dõi nguồn tin nào" in run_cli(["feeds", "list"], one, HOIDAP_DATABASE_URL=url).stdout
    assert not (one.data_dir / "web.sqlite3").exists()


def test_one_replica_refreshes_the_feeds_each_round_and_another_takes_over_when_it_dies(postgres_cluster,
                                                                                        caplog) -> None:
    url = postgres_cluster.create_database(f"rounds_{uuid.uuid4().hex[:8]}")
    synced = {"one": 0, "two": 0}
    reloaded = {"one": 0, "two": 0}
    caught_up = {"one": 0, "two": 0}

    def replica(name: str) -> FeedRefresher:
        def sync() -> SyncSummary:
            synced[name] += 1
            time.sleep(0.2)  # a round takes a while: the other replica's round starts while this one runs
            return SyncSummary(added=[f"bai-{synced[name]}"])

        return FeedRefresher(sync, lambda: reloaded.__setitem__(name, reloaded[name] + 1), RefreshLeader(url),
                             catch_up=lambda: caught_up.__setitem__(name, caught_up[name] + 1))

    one, two = replica("one"), replica("two")
    with caplog.at_level(logging.DEBUG, logger="bot.refreshing"):
        first = [None, None]
        threads = [threading.Thread(target=lambda i=i, r=r: first.__setitem__(i, r.round()))
                   for i, r in enumerate((one, two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(synced.values()) == [0, 1]  # two rounds at once: one refresh
        leader, follower = (one, two) if synced["one"] else (two, one)
        names = ("one", "two") if synced["one"] else ("two", "one")
        for _ in range(2):  # the lead is kept from round to round, whoever starts the round first
            assert follower.round() is None
            assert leader.round() is not None
    assert synced == {names[0]: 3, names[1]: 0} and reloaded == synced
    assert caught_up == {names[0]: 0, names[1]: 3}  # each skipped round looks for the leader's changes
    skipped = [r for r in caplog.records if "another replica refreshes them" in r.getMessage()]
    assert len(skipped) == 3 and {r.levelno for r in skipped} == {logging.DEBUG}

    # The leader's replica dies: its session ends, and the lock with it.
    with psycopg.connect(url, autocommit=True) as admin:
        [(pid,)] = admin.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted",
                                 (FEED_ROUNDS,)).fetchall()
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # returns once the backend has exited
    assert follower.round() is not None  # the next round of another replica takes over
    assert leader.round() is None  # the old leader, connected again, follows
    assert synced == {names[0]: 3, names[1]: 1}

    # A replica that stops gives the lead up at once.
    stop = threading.Event()
    stop.set()
    follower.run(3600, stop)
    assert leader.round() is not None
    assert synced == {names[0]: 4, names[1]: 1}
    leader.run(3600, stop)
