"""IndexStore.verify and check_index on a real FAISS + SQLite index (fake embedder), each kind of damage in turn."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from bot.settings import BUNDLED_CORPUS
from bot.wiring import check_index
from retrieval.search.lexical import open_lexical_index
from index.errors import IndexCorruptError
from index.indexer import sync_index
from index.store import DATABASE, VECTORS, IndexStore
from tests.unit.test_indexer import SETTINGS, HashEmbedder


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    corpus = shutil.copytree(BUNDLED_CORPUS, tmp_path / "corpus")
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    return tmp_path / "index"


def _edit_database(index_dir: Path, *statements: str) -> None:
    database = sqlite3.connect(index_dir / DATABASE)
    for statement in statements:
        database.execute(statement)
    database.commit()
    database.close()


def _problems(index_dir: Path) -> list[str]:
    store = IndexStore.open(index_dir)
    try:
        return store.verify()
    finally:
        store.close()


def test_a_sound_index_has_no_problem(index_dir: Path) -> None:
    assert _problems(index_dir) == []
    described, problems = check_index(index_dir)
    assert problems == [] and described.startswith("5 articles, ")


DAMAGE: dict[str, tuple[tuple[str, ...], str]] = {
    "chunk of a missing article": (("UPDATE chunks SET article_id = 'ghost' WHERE chunk_id = 0",), "belong to no stored article"),
    "gap in chunk ids": (("UPDATE chunks SET chunk_id = 1000 WHERE chunk_id = (SELECT MAX(chunk_id) FROM chunks)",),
                         "chunk ids run from 0 to 1000"),
    "chunk text edited": (("UPDATE chunks SET text = 'văn bản khác' WHERE chunk_id = 3",), "differ from their article's text at their offsets"),
    "chunk offsets shifted": (("UPDATE chunks SET start = start + 1 WHERE chunk_id = 2",), "(chunk ids [2])"),
    "article text edited": (("UPDATE articles SET text = 'x' || text WHERE article_id = '001_f6c7d3c508b4bd76'",),
                            "differ from their article's text at their offsets"),
    "article chunk count": (("UPDATE articles SET n_chunks = n_chunks + 1 WHERE article_id = '002_0dc449bf4ae97b1a'",),
                            "002_0dc449bf4ae97b1a (8 recorded, 7 stored)"),
    "article id changed": (("UPDATE articles SET article_id = 'renamed' WHERE article_id = '003_e35ce0b84459139b'",),
                           "belong to no stored article"),
    "other schema": (("ALTER TABLE articles ADD COLUMN extra TEXT",), "table articles has columns"),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_each_database_inconsistency_is_reported(index_dir: Path, name: str) -> None:
    statements, expected = DAMAGE[name]
    _edit_database(index_dir, *statements)
    problems = _problems(index_dir)
    assert any(expected in problem for problem in problems), problems


def test_a_damaged_database_page_fails_the_integrity_check(index_dir: Path) -> None:
    path = index_dir / DATABASE
    data = bytearray(path.read_bytes())
    data[-4096:] = b"\xa5" * 4096  # the last page: opening still works, reading it does not
    path.write_bytes(bytes(data))
    problems = _problems(index_dir)
    assert len(problems) == 1 and ("integrity check failed" in problems[0] or "--rebuild" in problems[0]), problems


def test_vectors_that_are_not_unit_vectors_are_reported(index_dir: Path) -> None:
    vectors = faiss.read_index(str(index_dir / VECTORS))
    rows = vectors.reconstruct_n(0, vectors.ntotal)
    rows[4] *= 7.5
    rows[6] = np.nan
    replaced = faiss.IndexFlatIP(vectors.d)
    replaced.add(rows)
    faiss.write_index(replaced, str(index_dir / VECTORS))
    assert _problems(index_dir) == ["2 vectors are not unit vectors (rows [4, 6])"]


Tamper = Callable[[IndexStore], IndexStore]


def _fewer_vectors(store: IndexStore) -> IndexStore:
    vectors = faiss.IndexFlatIP(store.manifest.dim)
    vectors.add(store.vectors()[:-1])
    return IndexStore(store.directory, store.manifest, vectors, store._database)


def _manifest(**changes) -> Tamper:
    def tamper(store: IndexStore) -> IndexStore:
        return IndexStore(store.directory, dataclasses.replace(store.manifest, **changes), store._vectors, store._database)

    return tamper


@pytest.mark.parametrize(("tamper", "expected"), [
    (_fewer_vectors, "vectors for"),
    (_manifest(n_chunks=99), "manifest says 99 chunks"),
    (_manifest(n_articles=7), "manifest says 7 articles"),
    (_manifest(dim=32), "manifest says dimension 32"),
])
def test_faiss_and_manifest_disagreeing_with_the_rows_is_reported(index_dir: Path, tamper: Tamper, expected: str) -> None:
    """IndexStore.open refuses most of these; verify must still name them for a store built another way."""
    store = tamper(IndexStore.open(index_dir))
    problems = store.verify()
    assert any(expected in problem for problem in problems), problems


def test_open_refuses_vectors_and_rows_of_different_counts(index_dir: Path) -> None:
    vectors = faiss.read_index(str(index_dir / VECTORS))
    fewer = faiss.IndexFlatIP(vectors.d)
    fewer.add(vectors.reconstruct_n(0, vectors.ntotal - 1))
    faiss.write_index(fewer, str(index_dir / VECTORS))
    with pytest.raises(IndexCorruptError, match="inconsistent.*--rebuild"):
        IndexStore.open(index_dir)


def test_open_refuses_a_manifest_that_miscounts_the_articles(index_dir: Path) -> None:
    _edit_database(index_dir, "DELETE FROM articles WHERE article_id = '003_e35ce0b84459139b'")
    with pytest.raises(IndexCorruptError, match="4 articles; manifest says .* 5 articles"):
        IndexStore.open(index_dir)


def test_a_query_on_a_damaged_database_is_a_corrupt_index_error(index_dir: Path) -> None:
    store = IndexStore.open(index_dir)
    path = index_dir / DATABASE
    path.write_bytes(path.read_bytes()[:4096] + b"\xa5" * (path.stat().st_size - 4096))
    with pytest.raises(IndexCorruptError, match="--rebuild"):
        store.chunks()


def test_a_dangling_index_link_is_corrupt_not_missing(index_dir: Path) -> None:
    shutil.rmtree(index_dir.resolve())
    with pytest.raises(IndexCorruptError, match="holds no index.*--rebuild"):
        IndexStore.open(index_dir)


@pytest.mark.parametrize("damage", ["garbage", "cut", "other store"])
def test_a_damaged_saved_bm25_index_is_reported_then_replaced(index_dir: Path, damage: str) -> None:
    store = IndexStore.open(index_dir)
    open_lexical_index(store)
    folder = store.directory / "lexical"
    if damage == "garbage":
        (folder / "chunk_ids.npy").write_bytes(b"\x93NUMPY garbage")
    elif damage == "cut":
        (folder / "plain" / "vocab.index.json").write_text('{"a": 1', encoding="utf-8")
    else:
        np.save(folder / "chunk_ids.npy", np.arange(3), allow_pickle=False)
    assert any("saved BM25 index" in problem for problem in check_index(index_dir)[1])

    rebuilt = open_lexical_index(store)

    assert len(rebuilt) == store.manifest.n_chunks
    assert check_index(index_dir)[1] == []
    assert sorted(p.name for p in store.directory.iterdir()) == ["lexical", "manifest.json", "store.sqlite3", "vectors.faiss"]
    store.close()


def test_sync_replaces_a_damaged_index_instead_of_carrying_it_over(index_dir: Path) -> None:
    _edit_database(index_dir, "UPDATE chunks SET text = 'hỏng' WHERE chunk_id = 1")
    corpus = index_dir.parent / "corpus"
    summary = sync_index([corpus], index_dir, HashEmbedder(), SETTINGS)
    assert summary.rebuilt_reason and summary.rebuilt_reason.startswith("previous index damaged")
    assert len(summary.added) == 5 and _problems(index_dir) == []
