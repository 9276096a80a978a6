"""The BM25 postings of the PostgreSQL store stay exactly in step with its chunks through the real `hoidap index`:
a first sync, a re-sync with a changed and a deleted article, a removed source, two syncs at once; and an index
of layout 1 (tsvector fields, GIN indexes) is upgraded in place. After each step the SQL BM25 of every field
ranks as the embedded `LexicalIndex` built over the same chunks. The real CLI, the real model, a real
PostgreSQL 18 (`tests/postgres.py`)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from bot.settings import BUNDLED_CORPUS
from index.store import IndexStore
from index.stores.postgres import SCHEMA_VERSION, PostgresStore, SchemaVersionError, lexical_fields
from tests.conftest import HOIDAP, cli_env, make_settings, run_cli
from tests.e2e.test_cli import ARTICLE_2023, QUESTION
from tests.e2e.test_index import XQUAD_CORPUS
from tests.postgres import Cluster
from tests.unit.test_postgres_postings import assert_same_as_embedded

pytestmark = pytest.mark.e2e


def fresh_database(cluster: Cluster) -> str:
    return cluster.create_database(f"t_{uuid.uuid4().hex[:10]}")


def in_step(url: str) -> int:
    """Check the postings against the chunks and the SQL BM25 against bm25s; the number of chunks."""
    store = PostgresStore.open(url)
    try:
        assert store.verify() == []
        assert_same_as_embedded(store, depths=(5, 50))
        return store.chunk_count()
    finally:
        store.close()


def test_sync_resync_delete_and_remove_keep_postings_in_step(postgres_cluster, models_dir: Path,
                                                             tmp_path: Path) -> None:
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    news = Path(shutil.copytree(BUNDLED_CORPUS, tmp_path / "news"))
    more = tmp_path / "more"
    more.mkdir()
    (more / "xquad.jsonl").write_text("".join(XQUAD_CORPUS.read_text(encoding="utf-8").splitlines(True)[:20]),
                                      encoding="utf-8")

    def index(*args: str) -> str:
        result = run_cli(["index", *args], settings, HOIDAP_DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "thêm 5," in index(str(news)) and "thêm 20," in index(str(more))
    first = in_step(url)
    changed = news / f"{ARTICLE_2023}.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nĐoạn bổ sung: cầu Trà Khúc 3 dài 1.248 mét.\n",
                       encoding="utf-8")
    (news / "000_4ba1eb3306e6e18e.txt").unlink()
    assert "cập nhật 1, xoá 1" in index()
    assert in_step(url) < first
    removed = run_cli(["remove", str(more)], settings, HOIDAP_DATABASE_URL=url)
    assert removed.returncode == 0 and "đã xoá 20 bài" in removed.stdout, removed.stderr
    in_step(url)
    rebuilt = index("--rebuild")
    assert "dựng lại toàn bộ" in rebuilt
    in_step(url)


def test_two_syncs_at_once_keep_postings_in_step(postgres_cluster, models_dir: Path, tmp_path: Path) -> None:
    url = fresh_database(postgres_cluster)
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    lines = XQUAD_CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    folders = []
    for name, part in (("first", lines[:15] + lines[40:41]), ("second", lines[15:30] + lines[40:41])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "xquad.jsonl").write_text("".join(part), encoding="utf-8")
        folders.append(folder)
    processes = [subprocess.Popen([*HOIDAP, "index", str(folder)], env=cli_env(settings, HOIDAP_DATABASE_URL=url),
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for folder in folders]
    outputs = [process.communicate(timeout=600) for process in processes]  # both ended, whichever failed
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    assert len(PostgresStore.open(url).articles()) == 31
    in_step(url)


# ---------------------------------------------------------------------------- layout 1

# What hoidap wrote before postings (layout 1), as it wrote it.
LAYOUT_1 = [
    """CREATE TABLE hoidap_manifest (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        schema_version INTEGER NOT NULL, embedding_model TEXT NOT NULL, embedding_weights_sha256 TEXT NOT NULL,
        dim INTEGER NOT NULL, chunk_size INTEGER NOT NULL, chunk_overlap INTEGER NOT NULL,
        index_type TEXT NOT NULL, pipeline_version TEXT NOT NULL,
        avg_plain DOUBLE PRECISION NOT NULL DEFAULT 1, avg_folded DOUBLE PRECISION NOT NULL DEFAULT 1,
        avg_pairs DOUBLE PRECISION NOT NULL DEFAULT 1, restorer TEXT, generation BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE hoidap_articles (
        article_id TEXT PRIMARY KEY, title TEXT NOT NULL, title_inferred BOOLEAN NOT NULL, date TEXT,
        date_inferred BOOLEAN NOT NULL, source TEXT, byline TEXT, url TEXT, path TEXT, text TEXT NOT NULL,
        content_hash TEXT NOT NULL, n_chunks INTEGER NOT NULL)""",
    """CREATE TABLE hoidap_chunks (
        chunk_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        article_id TEXT NOT NULL REFERENCES hoidap_articles(article_id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
        embedding vector(384) NOT NULL,
        plain TSVECTOR NOT NULL, folded TSVECTOR NOT NULL, pairs TSVECTOR NOT NULL,
        plain_len INTEGER NOT NULL, folded_len INTEGER NOT NULL, pairs_len INTEGER NOT NULL)""",
    "CREATE INDEX hoidap_chunks_by_article ON hoidap_chunks (article_id, ordinal)",
    "CREATE INDEX hoidap_chunks_hnsw ON hoidap_chunks USING hnsw (embedding vector_ip_ops) "
    "WITH (m = 16, ef_construction = 64)",
    *(f"CREATE INDEX hoidap_chunks_{name} ON hoidap_chunks USING gin ({name})" for name in ("plain", "folded", "pairs")),
    "CREATE INDEX hoidap_articles_by_date ON hoidap_articles (date)",
    "CREATE INDEX hoidap_articles_by_source ON hoidap_articles (lower(source))",
    "CREATE TABLE hoidap_sources (kind TEXT NOT NULL, locator TEXT NOT NULL, PRIMARY KEY (kind, locator))",
    """CREATE TABLE hoidap_article_sources (
        article_id TEXT NOT NULL REFERENCES hoidap_articles(article_id) ON DELETE CASCADE,
        kind TEXT NOT NULL, locator TEXT NOT NULL, PRIMARY KEY (article_id, kind, locator))""",
    "CREATE INDEX hoidap_article_sources_by_source ON hoidap_article_sources (kind, locator)",
]


def layout_1_database(cluster: Cluster, embedded: IndexStore) -> str:
    """A database holding the embedded index as hoidap wrote it in layout 1 (its tsvectors from the `simple`
    configuration: the upgrade builds postings from the texts and never reads them)."""
    from pgvector.psycopg import register_vector

    url = fresh_database(cluster)
    manifest = embedded.manifest
    with psycopg.connect(url) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(connection)
        for statement in LAYOUT_1:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO hoidap_manifest (schema_version, embedding_model, embedding_weights_sha256, dim, chunk_size, "
            "chunk_overlap, index_type, pipeline_version) VALUES (1, %s, %s, %s, %s, %s, 'vector-hnsw', %s)",
            (manifest.embedding_model, manifest.embedding_weights_sha256, manifest.dim, manifest.chunk_size,
             manifest.chunk_overlap, manifest.pipeline_version))
        articles = embedded.articles()
        heads = {a.article_id: "\n".join(filter(None, (a.title, a.source))) for a in articles}
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO hoidap_articles VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", [
                (a.article_id, a.title, a.title_inferred, a.date, a.date_inferred, a.source, a.byline, a.url, a.path,
                 a.text, a.content_hash, a.n_chunks) for a in articles])
            vectors = embedded.vectors()
            rows = []
            for chunk in embedded.chunks():
                fields = lexical_fields(heads[chunk.article_id], chunk.text)
                rows.append((chunk.article_id, chunk.ordinal, chunk.start, chunk.end, chunk.text,
                             vectors[chunk.chunk_id], *(len(fields[f]) for f in ("plain", "folded", "pairs"))))
            cursor.executemany(
                'INSERT INTO hoidap_chunks (article_id, ordinal, start, "end", text, embedding, plain, folded, pairs, '
                "plain_len, folded_len, pairs_len) VALUES (%s, %s, %s, %s, %s, %s, to_tsvector('simple', %s), "
                "to_tsvector('simple', %s), to_tsvector('simple', %s), %s, %s, %s)",
                [(*row[:6], row[4], row[4], row[4], *row[6:]) for row in rows])
            cursor.executemany("INSERT INTO hoidap_sources VALUES (%s, %s)",
                               [(s.kind, s.locator) for s in embedded.sources()])
            cursor.executemany("INSERT INTO hoidap_article_sources VALUES (%s, %s, %s)", [
                (a, s.kind, s.locator) for a, claimed in embedded.claims().items() for s in sorted(claimed)])
        connection.execute("UPDATE hoidap_manifest SET avg_plain = s.p, avg_folded = s.f, avg_pairs = s.s FROM "
                           "(SELECT avg(plain_len) p, avg(folded_len) f, avg(pairs_len) s FROM hoidap_chunks) s")
    return url


def layout(url: str) -> tuple[int, list[str]]:
    """The manifest's layout version and the chunk table's tsvector columns."""
    with psycopg.connect(url) as connection:
        version = connection.execute("SELECT schema_version FROM hoidap_manifest").fetchone()[0]
        columns = [row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'hoidap_chunks' "
            "AND data_type = 'tsvector' ORDER BY 1")]
    return version, columns


@pytest.fixture(scope="module")
def embedded(built_index_settings):
    store = IndexStore.open(built_index_settings.index_dir)
    yield store
    store.close()


def test_a_sync_upgrades_a_layout_1_index_in_place(postgres_cluster, built_index_settings, embedded) -> None:
    url = layout_1_database(postgres_cluster, embedded)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_cluster.url(name), autocommit=True) as admin:  # a reader who owns nothing
        admin.execute("DO $$ BEGIN CREATE ROLE reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    reader_url = f"postgresql://reader@127.0.0.1:{postgres_cluster.port}/{name}"
    refused = run_cli(["ask", QUESTION], built_index_settings, HOIDAP_DATABASE_URL=reader_url, HOIDAP_LANGUAGE="en")
    assert refused.returncode == 1 and "has layout 1" in refused.stderr and "hoidap index" in refused.stderr
    assert "Traceback" not in refused.stderr
    not_owner = run_cli(["index", str(BUNDLED_CORPUS)], built_index_settings, HOIDAP_DATABASE_URL=reader_url,
                        HOIDAP_LANGUAGE="en")
    assert not_owner.returncode == 1 and "has layout 1" in not_owner.stderr and "owner" in not_owner.stderr
    assert "Traceback" not in not_owner.stderr
    assert layout(url) == (1, ["folded", "pairs", "plain"])  # the reader changed nothing

    synced = run_cli(["index", str(BUNDLED_CORPUS)], built_index_settings, HOIDAP_DATABASE_URL=url)
    assert synced.returncode == 0, synced.stderr
    assert "giữ nguyên 5" in synced.stdout and "đã nhúng 0 đoạn" in synced.stdout  # nothing embedded again
    assert layout(url) == (SCHEMA_VERSION, [])
    in_step(url)
    with psycopg.connect(postgres_cluster.url(name), autocommit=True) as admin:  # the new tables, too
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    store = PostgresStore.open(reader_url)
    try:
        assert store.lexical_search(["74.127"], "plain", 5)
    finally:
        store.close()


def test_opening_the_store_upgrades_a_layout_1_index(postgres_cluster, embedded) -> None:
    url = layout_1_database(postgres_cluster, embedded)
    store = PostgresStore.open(url)
    try:
        assert store.manifest.schema_version == SCHEMA_VERSION and store.chunk_count() == embedded.chunk_count()
    finally:
        store.close()
    assert layout(url) == (SCHEMA_VERSION, [])
    in_step(url)


def test_a_newer_layout_is_refused_with_one_message(postgres_cluster, built_index_settings, embedded) -> None:
    url = layout_1_database(postgres_cluster, embedded)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE hoidap_manifest SET schema_version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionError, match="newer hoidap"):
        PostgresStore.open(url)
    for args in (["ask", QUESTION], ["index", str(BUNDLED_CORPUS)]):
        result = run_cli(args, built_index_settings, HOIDAP_DATABASE_URL=url, HOIDAP_LANGUAGE="en")
        assert result.returncode == 1 and "newer hoidap" in result.stderr and "Traceback" not in result.stderr
