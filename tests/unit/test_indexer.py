"""The sync logic of the indexer with a deterministic fake embedder: changes, atomicity, refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.settings import BUNDLED_CORPUS
from index import indexer
from index.embedding import ModelIdentity
from index.errors import IndexCorruptError, IndexMissingError, ModelMismatchError
from index.indexer import ChunkSettings, sync_index
from index.store import IndexStore

SETTINGS = ChunkSettings(size_words=120, overlap_sentences=1)


class HashEmbedder:
    """Same text, same unit vector; counts what it embeds."""

    def __init__(self, weights: str = "a" * 64, dim: int = 16, precision: str = "fp32") -> None:
        self.identity = ModelIdentity("fake", weights, dim, precision)
        self.embedded = 0

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        self.embedded += len(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            row = np.random.default_rng(seed).standard_normal(self.identity.dim).astype(np.float32)
            rows.append(row / np.linalg.norm(row))
        return np.array(rows, dtype=np.float32).reshape(len(texts), self.identity.dim)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return Path(shutil.copytree(BUNDLED_CORPUS, tmp_path / "corpus"))


def test_second_sync_embeds_nothing_and_writes_nothing(tmp_path: Path, corpus: Path) -> None:
    embedder = HashEmbedder()
    first = sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    generation = (tmp_path / "index").resolve()
    embedded = embedder.embedded
    second = sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    assert first.added and embedded == first.chunks_embedded > 0
    assert second.unchanged == first.added and not second.changed
    assert embedder.embedded == embedded and (tmp_path / "index").resolve() == generation


def test_changed_and_removed_articles_are_synced_and_vectors_carried_over(tmp_path: Path, corpus: Path) -> None:
    embedder = HashEmbedder()
    sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    edited = corpus / "001_f6c7d3c508b4bd76.txt"
    edited.write_text(edited.read_text(encoding="utf-8").replace("3.463", "3.500"), encoding="utf-8")
    (corpus / "002_0dc449bf4ae97b1a.txt").unlink()
    before = embedder.embedded
    summary = sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    assert summary.updated == ["001_f6c7d3c508b4bd76"] and summary.removed == ["002_0dc449bf4ae97b1a"]
    store = IndexStore.open(tmp_path / "index")
    assert embedder.embedded - before == store.article("001_f6c7d3c508b4bd76").n_chunks
    assert "3.500" in store.article("001_f6c7d3c508b4bd76").text
    vectors = store.vectors()
    for chunk in store.chunks():  # every row still holds the vector of its own chunk
        article = store.article(chunk.article_id)
        expected = embedder.embed_passages([indexer.passage_text(article.title, chunk.text)])[0]
        assert np.allclose(vectors[chunk.chunk_id], expected, atol=1e-6)


def test_crash_before_the_swap_keeps_the_previous_index(tmp_path: Path, corpus: Path, monkeypatch) -> None:
    embedder = HashEmbedder()
    sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    (corpus / "000_4ba1eb3306e6e18e.txt").unlink()

    def crash(*_args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "_swap_symlink", crash)
    with pytest.raises(KeyboardInterrupt):
        sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    assert len(IndexStore.open(tmp_path / "index").articles()) == 5
    monkeypatch.undo()
    summary = sync_index([corpus], tmp_path / "index", embedder, SETTINGS)
    assert summary.removed == ["000_4ba1eb3306e6e18e"]
    assert len(list(tmp_path.glob("index.*"))) == 1  # the leftover generation was cleaned up


def test_other_model_is_refused_and_rebuild_replaces(tmp_path: Path, corpus: Path) -> None:
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    other = HashEmbedder(weights="b" * 64)
    with pytest.raises(ModelMismatchError, match="--rebuild"):
        sync_index([corpus], tmp_path / "index", other, SETTINGS)
    with pytest.raises(ModelMismatchError):
        IndexStore.open(tmp_path / "index", model=other.identity)
    summary = sync_index([corpus], tmp_path / "index", other, SETTINGS, rebuild=True)
    assert summary.rebuilt_reason and len(summary.added) == 5
    assert IndexStore.open(tmp_path / "index", model=other.identity).manifest.embedding_weights_sha256 == "b" * 64


def test_the_precision_is_recorded_and_another_one_embeds_everything_again(tmp_path: Path, corpus: Path) -> None:
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    fp32, int8 = HashEmbedder().identity, HashEmbedder(precision="int8").identity
    assert IndexStore.open(tmp_path / "index", model=fp32).manifest.embedding_precision == "fp32"
    with pytest.raises(ModelMismatchError, match="HOIDAP_EMBEDDING_PRECISION=fp32"):
        IndexStore.open(tmp_path / "index", model=int8)  # questions are not embedded in another precision
    embedder = HashEmbedder(precision="int8")
    summary = sync_index([corpus], tmp_path / "index", embedder, SETTINGS)  # no --rebuild needed
    store = IndexStore.open(tmp_path / "index", model=int8)
    assert summary.rebuilt_reason == "embedding precision changed (fp32 -> int8)"
    assert embedder.embedded == summary.chunks_embedded == store.manifest.n_chunks > 0
    assert store.manifest.embedding_precision == "int8"
    with pytest.raises(ModelMismatchError, match="in int8"):
        IndexStore.open(tmp_path / "index", model=fp32)
    with pytest.raises(ModelMismatchError, match="--rebuild"):  # another model in another precision: still refused
        sync_index([corpus], tmp_path / "index", HashEmbedder(weights="b" * 64), SETTINGS)


def test_a_manifest_written_before_precisions_were_recorded_reads_as_fp32(tmp_path: Path, corpus: Path) -> None:
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    path = tmp_path / "index" / indexer.MANIFEST
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["embedding_precision"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert IndexStore.open(tmp_path / "index", model=HashEmbedder().identity).manifest.embedding_precision == "fp32"
    with pytest.raises(ModelMismatchError):
        IndexStore.open(tmp_path / "index", model=HashEmbedder(precision="int8").identity)


def test_an_unset_precision_follows_the_index_and_a_new_index_is_int8(tmp_path: Path, corpus: Path) -> None:
    from bot.settings import Settings
    from bot.wiring import embedding_precision

    unset = Settings(_env_file=None, data_dir=tmp_path / "data")
    assert unset.embedding_precision is None
    assert embedding_precision(unset, tmp_path / "index") == "int8"  # nothing there yet
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)  # an fp32 index (an upgrade's)
    assert embedding_precision(unset, tmp_path / "index") == "fp32"
    assert embedding_precision(Settings(_env_file=None, embedding_precision="int8"), tmp_path / "index") == "int8"
    (tmp_path / "index" / indexer.MANIFEST).write_text("{", encoding="utf-8")  # damaged: the store's open says so
    assert embedding_precision(unset, tmp_path / "index") == "int8"
    torch = Settings(_env_file=None, data_dir=tmp_path / "data", embedding_backend="torch")
    assert embedding_precision(torch, tmp_path / "nothing") == "fp32"  # int8 needs ONNX Runtime


def test_int8_with_the_torch_backend_is_one_clear_error(tmp_path: Path) -> None:
    from bot.settings import Settings
    from bot.wiring import build_embedder
    from index.errors import HoidapError

    settings = Settings(_env_file=None, data_dir=tmp_path, embedding_precision="int8", embedding_backend="torch")
    with pytest.raises(HoidapError, match="HOIDAP_EMBEDDING_BACKEND is torch"):
        build_embedder(settings)


def test_changed_chunk_settings_redo_everything(tmp_path: Path, corpus: Path) -> None:
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    summary = sync_index([corpus], tmp_path / "index", HashEmbedder(), ChunkSettings(60, 0))
    assert summary.rebuilt_reason == "chunk settings changed" and len(summary.added) == 5


def test_missing_and_corrupt_indexes_raise_clear_errors(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(IndexMissingError, match="hoidap index"):
        IndexStore.open(tmp_path / "index")
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    (tmp_path / "index" / "manifest.json").write_text("{", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="--rebuild"):
        IndexStore.open(tmp_path / "index")
    summary = sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    assert summary.rebuilt_reason and summary.rebuilt_reason.startswith("previous index unreadable")
    assert len(IndexStore.open(tmp_path / "index").articles()) == 5


def test_chunk_offsets_point_into_the_stored_article(tmp_path: Path, corpus: Path) -> None:
    sync_index([corpus], tmp_path / "index", HashEmbedder(), SETTINGS)
    store = IndexStore.open(tmp_path / "index")
    chunks = store.chunks()
    assert [c.chunk_id for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert store.article(chunk.article_id).text[chunk.start:chunk.end] == chunk.text
