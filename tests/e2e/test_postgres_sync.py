"""Syncing the PostgreSQL store as the embedded one: sources remembered, remove, --prune, --yes; several
`hoidap index` processes at once into one database; a read replica answering the questions; a user who may
not create pgvector. The real CLI, the real model, a real PostgreSQL 18 (`tests/postgres.py`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from bot.settings import BUNDLED_CORPUS
from index.indexer import HANDED_IN
from index.stores.postgres import _SYNC_LOCK as SCHEMA_LOCK
from index.stores.postgres import PostgresStore, connect
from tests.conftest import HOIDAP, cli_env, make_settings, run_cli
from tests.e2e.test_cli import ARTICLE_2023, QUESTION
from tests.e2e.test_index import XQUAD_CORPUS
from tests.e2e.test_web import FETCH_ENV, site  # noqa: F401 - the local news site fixture
from tests.postgres import Cluster, owned_temp_dir, private_folder, remove_cluster, start_cluster, start_replica

pytestmark = pytest.mark.e2e

# An article of our own for the replica test: its fact is in no other test article.
BRIDGE_ARTICLE = """Khánh thành cầu Sông Trà Khúc 3

Ngày 14/3/2024, UBND tỉnh Quảng Ngãi tổ chức lễ khánh thành cầu Sông Trà Khúc 3. Cây cầu dài 1.248 mét,
rộng 26 mét, với tổng vốn đầu tư 1.100 tỷ đồng từ ngân sách tỉnh. Công trình nối phường Trương Quang Trọng
với xã Tịnh Long, rút ngắn quãng đường đi về phía đông thành phố.
"""
BRIDGE_QUESTION = "Cầu Sông Trà Khúc 3 dài bao nhiêu mét?"


def fresh_database(cluster: Cluster) -> str:
    return cluster.create_database(f"t_{uuid.uuid4().hex[:10]}")


def xquad_folder(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "xquad.jsonl").write_text("".join(lines), encoding="utf-8")
    return folder


def xquad_lines() -> list[str]:
    return XQUAD_CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)


def ask(settings, **env: str):
    def run(question: str) -> dict:
        result = run_cli(["ask", "--json", question], settings, **env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    return run


def counts(url: str) -> dict:
    store = PostgresStore.open(url)
    try:
        claims = store.claims()
        return {"articles": [a.article_id for a in store.articles()], "claims": claims, "sources": store.sources(),
                "problems": store.verify(), "chunks": store.chunk_count()}
    finally:
        store.close()


def test_sources_are_remembered_and_removed_as_in_the_embedded_store(postgres_cluster, models_dir: Path,
                                                                     tmp_path: Path) -> None:
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    news = Path(shutil.copytree(BUNDLED_CORPUS, tmp_path / "news"))
    more = xquad_folder(tmp_path / "more", xquad_lines()[:3])

    def index(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["index", *args], settings, HOIDAP_DATABASE_URL=url)

    assert "thêm 5, cập nhật 0, xoá 0" in index(str(news)).stdout
    second = index(str(more))
    assert "thêm 3, cập nhật 0, xoá 0, giữ nguyên 5" in second.stdout, second.stderr  # news kept
    again = index()  # the remembered sources, both
    assert "thêm 0, cập nhật 0, xoá 0, giữ nguyên 8" in again.stdout and "đã nhúng 0 đoạn" in again.stdout
    listing = run_cli(["sources"], settings, HOIDAP_DATABASE_URL=url)
    assert f"folder: {news} (5 bài)" in listing.stdout and f"folder: {more} (3 bài)" in listing.stdout

    (news / "000_4ba1eb3306e6e18e.txt").unlink()
    assert "xoá 1, giữ nguyên 7" in index().stdout
    removed = run_cli(["remove", str(more)], settings, HOIDAP_DATABASE_URL=url)
    assert removed.returncode == 0 and "đã xoá 3 bài" in removed.stdout, removed.stderr
    state = counts(url)
    assert len(state["articles"]) == 4 and [s.locator for s in state["sources"]] == [str(news)]

    shutil.move(news, tmp_path / "moved")
    kept = index()
    assert "nguồn không còn nữa; 4 bài của nó vẫn được giữ" in kept.stdout and len(counts(url)["articles"]) == 4
    refused = index("--prune")
    assert refused.returncode == 1 and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert len(counts(url)["articles"]) == 4  # nothing changed
    pruned = index("--prune", "--yes")
    assert pruned.returncode == 0 and "xoá 4" in pruned.stdout, pruned.stderr
    state = counts(url)
    assert state["articles"] == [] and state["sources"] == [] and state["problems"] == []


def test_two_index_processes_sync_two_folders_into_one_database_at_once(postgres_cluster, models_dir: Path,
                                                                        tmp_path: Path) -> None:
    """Both embed at the same time (each holds only its own source's lock); every article ends up exactly once,
    and the id both folders hold goes to one of them, the other reporting it as a duplicate."""
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    lines = xquad_lines()
    shared = lines[40]  # in both folders
    first = Path(shutil.copytree(BUNDLED_CORPUS, tmp_path / "first"))
    (first / "xquad.jsonl").write_text("".join(lines[:12] + [shared]), encoding="utf-8")
    second = xquad_folder(tmp_path / "second", lines[12:30] + [shared])
    expected = 5 + 30 + 1

    processes = [subprocess.Popen([*HOIDAP, "index", str(folder)], env=cli_env(settings, HOIDAP_DATABASE_URL=url),
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for folder in (first, second)]
    most_at_once = 0
    with psycopg.connect(url, autocommit=True) as watcher:
        while any(p.poll() is None for p in processes):
            held = watcher.execute(  # the sources' locks in this database, not the short one of the schema
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid <> %s "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (SCHEMA_LOCK,)).fetchone()[0]
            most_at_once = max(most_at_once, held)
            time.sleep(0.05)
    outputs = [p.communicate() for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    assert most_at_once == 2  # the two syncs ran side by side, not one after the other

    state = counts(url)
    assert len(state["articles"]) == len(set(state["articles"])) == expected
    assert state["problems"] == []
    shared_id = json.loads(shared)["id"]
    assert len(state["claims"][shared_id]) == 1  # held by one folder
    duplicates = [out for out, _ in outputs if f"trùng mã bài {shared_id!r}" in out]
    assert len(duplicates) == 1  # and reported by the other
    assert {s.locator for s in state["sources"]} == {str(first), str(second)}
    assert all(state["claims"].get(a) for a in state["articles"])

    answer = ask(settings, HOIDAP_DATABASE_URL=url)
    bundled = answer(QUESTION)
    assert "74.127" in bundled["answer"] and bundled["sources"][0]["article_id"] == ARTICLE_2023
    from_second = answer("Tên của thầy tâm linh trong Ấn Độ giáo là gì?")  # an article only the second folder has
    assert from_second["found"] and from_second["sources"][0]["article_id"] == "xquad_vi_a05_p3", from_second
    again = run_cli(["index"], settings, HOIDAP_DATABASE_URL=url)
    assert f"giữ nguyên {expected}" in again.stdout and "đã nhúng 0 đoạn" in again.stdout, again.stderr


def test_two_connections_creating_pgvector_at_once_both_get_it(postgres_cluster) -> None:
    """Two processes reaching a new database at once both create pgvector: the second waits for the first
    (stopped here before its commit) and finds it, instead of failing on the catalog's unique index."""
    url = fresh_database(postgres_cluster)
    first = psycopg.connect(url)
    first.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))  # as `connect` creates it
    first.execute("CREATE EXTENSION IF NOT EXISTS vector")
    with ThreadPoolExecutor(1) as pool, psycopg.connect(url, autocommit=True) as watcher:
        second = pool.submit(connect, url)
        deadline = time.monotonic() + 30
        while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'").fetchone()[0]:
            assert time.monotonic() < deadline and not second.done(), "the second never waited for the first"
            time.sleep(0.02)
        first.commit()
        first.close()
        connection = second.result(timeout=30)
    try:
        assert connection.execute("SELECT '[1,2]'::vector").fetchone()[0].to_list() == [1, 2]
    finally:
        connection.close()


@pytest.fixture(scope="module")
def primary_and_replica():
    """A primary of its own (the test stops it) and a streaming replica of it."""
    with private_folder() as root:
        primary = start_cluster(root / "primary")
        replica = None
        try:
            replica = start_replica(primary, owned_temp_dir(root / "standby") / "pgdata")
            yield primary, replica
        finally:
            if replica is not None:
                remove_cluster(replica)
            remove_cluster(primary)


def wait_for_replay(primary_url: str, replica_url: str, deadline: float = 120) -> None:
    """Until the replica has replayed everything the primary has written so far."""
    with psycopg.connect(primary_url, autocommit=True) as primary:
        target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    with psycopg.connect(replica_url, autocommit=True) as replica:
        end = time.monotonic() + deadline
        while not replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
            assert time.monotonic() < end, "the replica did not catch up"
            time.sleep(0.1)


def test_questions_are_answered_by_the_read_replica(primary_and_replica, models_dir: Path, tmp_path: Path) -> None:
    primary, replica = primary_and_replica
    url = primary.create_database("news")
    read_url = replica.url("news")
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    env = {"HOIDAP_DATABASE_URL": url, "HOIDAP_DATABASE_READ_URL": read_url}
    assert run_cli(["index", str(BUNDLED_CORPUS)], settings, **env).returncode == 0
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "cau-tra-khuc-3.txt").write_text(BRIDGE_ARTICLE, encoding="utf-8")
    synced = run_cli(["index", str(extra)], settings, **env)
    assert synced.returncode == 0 and "thêm 1" in synced.stdout, synced.stderr
    with psycopg.connect(read_url, autocommit=True) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # really a standby

    wait_for_replay(url, replica.url())
    answer = ask(settings, **env)
    bridge = answer(BRIDGE_QUESTION)
    assert "1.248" in bridge["answer"], bridge
    primary.stop()  # from now on only the replica can answer
    assert answer(BRIDGE_QUESTION)["answer"] == bridge["answer"]
    assert "74.127" in answer(QUESTION)["answer"]
    down = run_cli(["index", str(extra)], settings, **env)  # writes go to the primary, which is down
    assert down.returncode == 1 and "Không kết nối được cơ sở dữ liệu" in down.stderr and "Traceback" not in down.stderr


def test_user_who_may_not_create_pgvector_gets_one_clear_message(postgres_cluster, models_dir: Path,
                                                                 tmp_path: Path) -> None:
    """A database without the extension, reached as a user who may not create it (pgvector is not a trusted
    extension: only a superuser can)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute("DO $$ BEGIN CREATE ROLE reporter LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    url = f"postgresql://reporter@127.0.0.1:{postgres_cluster.port}/{name}"
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    for args, language, expected in ((["index", str(BUNDLED_CORPUS)], "vi", "không có phần mở rộng pgvector"),
                                     (["ask", QUESTION], "en", "has no pgvector extension")):
        result = run_cli(args, settings, HOIDAP_DATABASE_URL=url, HOIDAP_LANGUAGE=language)
        assert result.returncode == 1, result.stdout
        assert expected in result.stderr and "CREATE EXTENSION vector" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    with psycopg.connect(postgres_cluster.url(name), autocommit=True) as admin:  # nothing was created
        assert admin.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'hoidap_%'").fetchone()[0] == 0


def test_a_page_from_the_web_is_indexed_into_the_database(site, postgres_cluster, models_dir: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """`hoidap index URL` with a database: the page goes into PostgreSQL (claimed by the web), nothing into the
    data dir, and the articles from files stay."""
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    assert run_cli(["index", str(BUNDLED_CORPUS)], settings, HOIDAP_DATABASE_URL=url).returncode == 0
    result = run_cli(["index", site.url("/amp/bai-4.html")], settings, HOIDAP_DATABASE_URL=url, **FETCH_ENV)
    assert result.returncode == 0 and "thêm 1," in result.stdout, result.stderr
    state = counts(url)
    store = PostgresStore.open(url)
    try:
        pages = [a for a in store.articles() if a.url]
    finally:
        store.close()
    assert [a.url for a in pages] == [site.url("/thoi-su/bai-4.html")] and len(state["articles"]) == 6
    assert state["claims"][pages[0].article_id] == {HANDED_IN} and state["problems"] == []
    assert not (settings.data_dir / "index").exists()


def test_rebuild_embeds_everything_again_and_keeps_the_sources(postgres_cluster, models_dir: Path,
                                                               tmp_path: Path) -> None:
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    assert run_cli(["index", str(BUNDLED_CORPUS)], settings, HOIDAP_DATABASE_URL=url).returncode == 0
    before = counts(url)
    rebuilt = run_cli(["index", "--rebuild"], settings, HOIDAP_DATABASE_URL=url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "dựng lại toàn bộ: rebuild requested" in rebuilt.stdout and "thêm 5," in rebuilt.stdout
    assert f"đã nhúng {before['chunks']} đoạn" in rebuilt.stdout
    after = counts(url)
    assert (after["articles"], after["claims"], after["sources"]) == (before["articles"], before["claims"],
                                                                      before["sources"])
    assert after["problems"] == [] and after["chunks"] == before["chunks"]


def test_a_rebuild_waits_for_a_sync_writing_instead_of_deadlocking(postgres_cluster, models_dir: Path,
                                                                  tmp_path: Path) -> None:
    """A sync's write (here by hand, stopped after it read the claims, as `_PostgresWriter._apply` does before
    moving postings) and a rebuild's replacement of the tables at once: the rebuild waits for the write to end
    and then replaces everything; the write never waits on a table the rebuild holds."""
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    assert run_cli(["index", str(BUNDLED_CORPUS)], settings, HOIDAP_DATABASE_URL=url).returncode == 0
    with psycopg.connect(url) as sync:
        sync.execute("SET statement_timeout = '60s'")
        sync.execute("SELECT 1 FROM hoidap_manifest FOR UPDATE")
        sync.execute("SELECT count(*) FROM hoidap_articles a JOIN hoidap_article_sources s USING (article_id)")
        rebuild = subprocess.Popen([*HOIDAP, "index", "--rebuild"], env=cli_env(settings, HOIDAP_DATABASE_URL=url),
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with psycopg.connect(url, autocommit=True) as watcher:
            while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock'").fetchone()[0]:  # the rebuild, writing
                assert rebuild.poll() is None, rebuild.communicate()
                time.sleep(0.05)
        for f in ("plain", "folded", "pairs"):  # what the write goes on with: the postings
            sync.execute(f"DELETE FROM hoidap_postings_{f} WHERE block < 0")
        sync.commit()
    out, err = rebuild.communicate(timeout=600)
    assert rebuild.returncode == 0, err
    assert "dựng lại toàn bộ: rebuild requested" in out and counts(url)["problems"] == []
