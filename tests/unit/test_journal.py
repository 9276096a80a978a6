"""The embedding journal: vectors kept on disk until a sync's index is written, so a sync cut short resumes."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.settings import BUNDLED_CORPUS
from index import indexer
from index.embedding import ModelIdentity
from index.indexer import sync_index
from index.journal import EmbeddingJournal
from index.store import IndexStore
from tests.unit.test_indexer import SETTINGS, HashEmbedder

IDENTITY = ModelIdentity("fake", "a" * 64, 4, "fp32")


def vector(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_vectors_are_recalled_by_key_across_openings(tmp_path: Path) -> None:
    journal = EmbeddingJournal(tmp_path / "j.sqlite3", IDENTITY)
    journal.remember([(b"k1", vector(1, 2, 3, 4)), (b"k2", vector(0, 0, 1, 0))])
    journal.close()
    again = EmbeddingJournal(tmp_path / "j.sqlite3", IDENTITY)
    found = again.recall([b"k2", b"k3", b"k1", b"k2"])
    assert set(found) == {b"k1", b"k2"} and found[b"k1"].dtype == np.float32
    assert np.array_equal(found[b"k1"], vector(1, 2, 3, 4)) and np.array_equal(found[b"k2"], vector(0, 0, 1, 0))


def test_another_model_starts_an_empty_journal(tmp_path: Path) -> None:
    journal = EmbeddingJournal(tmp_path / "j.sqlite3", IDENTITY)
    journal.remember([(b"k1", vector(1, 2, 3, 4))])
    journal.close()
    other = EmbeddingJournal(tmp_path / "j.sqlite3", replace(IDENTITY, precision="int8"))
    assert len(other) == 0 and other.recall([b"k1"]) == {}


def test_a_row_of_the_wrong_size_is_not_used(tmp_path: Path) -> None:
    journal = EmbeddingJournal(tmp_path / "j.sqlite3", IDENTITY)
    journal.remember([(b"k1", vector(1, 2, 3))])  # 3 floats where the model gives 4
    assert journal.recall([b"k1"]) == {}


def test_forgetting_takes_only_what_this_sync_used(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    other = EmbeddingJournal(path, IDENTITY)  # another sync, on the same data folder
    other.remember([(b"theirs", vector(1, 1, 1, 1))])
    ours = EmbeddingJournal(path, IDENTITY)
    ours.remember([(b"mine", vector(1, 0, 0, 0))])
    ours.recall([b"theirs"])  # a passage both syncs have: used, so ours may forget it once written
    ours.remember([(b"later", vector(0, 1, 0, 0))])
    ours.forget_used()
    assert len(ours) == 0
    other.remember([(b"theirs2", vector(0, 0, 0, 1))])
    ours.forget_used()  # nothing used since: nothing goes
    assert set(other.recall([b"theirs", b"theirs2", b"mine"])) == {b"theirs2"}


def test_a_damaged_journal_is_started_again_with_a_warning(tmp_path: Path, caplog) -> None:
    (tmp_path / "j.sqlite3").write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.WARNING):
        journal = EmbeddingJournal.open(tmp_path / "j.sqlite3", IDENTITY)
    assert journal is not None and len(journal) == 0 and "started again" in caplog.text
    journal.remember([(b"k1", vector(1, 2, 3, 4))])
    assert set(journal.recall([b"k1"])) == {b"k1"}


def test_a_journal_that_cannot_be_opened_is_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    (tmp_path / "j.sqlite3").mkdir()  # a folder where the file would be
    with caplog.at_level(logging.WARNING):
        assert EmbeddingJournal.open(tmp_path / "j.sqlite3", IDENTITY) is None
    assert "embed again" in caplog.text and (tmp_path / "j.sqlite3").is_dir()


def test_a_journal_failing_mid_sync_is_left_out(tmp_path: Path, caplog) -> None:
    journal = EmbeddingJournal(tmp_path / "j.sqlite3", IDENTITY)
    journal.remember([(b"k1", vector(1, 2, 3, 4))])
    journal.close()  # every later statement fails, as on a lost disk
    with caplog.at_level(logging.WARNING):
        journal.remember([(b"k2", vector(1, 2, 3, 4))])
        assert journal.recall([b"k1"]) == {}
        journal.forget_used()
    assert journal.broken and caplog.text.count("goes on without it") == 1


def test_a_sync_cut_short_is_resumed_without_embedding_again(tmp_path: Path, monkeypatch) -> None:
    corpus = Path(shutil.copytree(BUNDLED_CORPUS, tmp_path / "corpus"))
    journal = tmp_path / "data" / "journal.sqlite3"
    embedder = HashEmbedder()
    written = []

    def crash_after_two(self, article, digest):  # the third article's embedding is cut short
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(article.article_id)
        return original(self, article, digest)

    original = indexer._Embedding.write_article
    monkeypatch.setattr(indexer._Embedding, "write_article", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        sync_index([corpus], tmp_path / "index", embedder, SETTINGS, journal=journal)
    assert not (tmp_path / "index").exists()  # no index was written
    kept_chunks = embedder.embedded
    assert kept_chunks > 0
    monkeypatch.undo()

    summary = sync_index([corpus], tmp_path / "index", embedder, SETTINGS, journal=journal)
    assert summary.chunks_resumed == kept_chunks and len(summary.added) == 5
    assert embedder.embedded == summary.chunks_embedded  # each chunk embedded once over both runs
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT count(*) FROM vectors").fetchone() == (0,)  # written, so forgotten

    fresh = HashEmbedder()
    sync_index([corpus], tmp_path / "clean", fresh, SETTINGS)
    resumed, clean = IndexStore.open(tmp_path / "index"), IndexStore.open(tmp_path / "clean")
    ids = [c.chunk_id for c in resumed.chunks()]
    assert [c.text for c in resumed.chunks()] == [c.text for c in clean.chunks()]
    assert np.array_equal(resumed.vectors_of(ids), clean.vectors_of([c.chunk_id for c in clean.chunks()]))
