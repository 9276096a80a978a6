"""The real indexing pipeline through the real CLI: build, incremental sync, model refusal, crash safety, bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from bot.settings import BUNDLED_CORPUS
from index.journal import JOURNAL
from index.store import IndexStore
from tests.conftest import HOIDAP, cli_env, make_settings, run_cli

pytestmark = pytest.mark.e2e

XQUAD_CORPUS = Path(__file__).resolve().parents[2] / "eval" / "xquad_vi" / "corpus.jsonl"


def _articles(settings) -> dict[str, int]:
    store = IndexStore.open(settings.index_dir)
    try:
        return {a.article_id: a.n_chunks for a in store.articles()}
    finally:
        store.close()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(BUNDLED_CORPUS, folder)
    return folder


def test_build_then_sync_embeds_only_changes(tmp_path: Path, models_dir: Path, corpus: Path) -> None:
    settings = make_settings(tmp_path / "data", models_dir)
    first = run_cli(["index", str(corpus)], settings)
    assert first.returncode == 0, first.stderr
    assert "thêm 5, cập nhật 0, xoá 0, giữ nguyên 0" in first.stdout
    built = _articles(settings)
    assert len(built) == 5 and all(n > 0 for n in built.values())

    again = run_cli(["index", str(corpus)], settings)
    assert again.returncode == 0, again.stderr
    assert "giữ nguyên 5" in again.stdout and "đã nhúng 0 đoạn" in again.stdout

    changed = corpus / "004_8775d9b0c7bf92f4.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nĐoạn bổ sung để kiểm tra cập nhật.\n", encoding="utf-8")
    (corpus / "000_4ba1eb3306e6e18e.txt").unlink()
    synced = run_cli(["index", str(corpus)], settings)
    assert synced.returncode == 0, synced.stderr
    assert "thêm 0, cập nhật 1, xoá 1, giữ nguyên 3" in synced.stdout
    after = _articles(settings)
    assert set(after) == set(built) - {"000_4ba1eb3306e6e18e"}
    embedded = int(synced.stdout.split("đã nhúng ")[1].split(" ")[0])
    assert embedded == after["004_8775d9b0c7bf92f4"]

    store = IndexStore.open(settings.index_dir)
    for chunk in store.chunks():
        assert store.article(chunk.article_id).text[chunk.start:chunk.end] == chunk.text
    # The vectors carried over still find their own passages.
    chunk = store.chunks()[0]
    embedder_vectors = store.vectors()
    assert store.search(embedder_vectors[:1], 1)[0][0][0] == chunk.chunk_id
    store.close()

    listing = run_cli(["sources"], settings)
    assert listing.returncode == 0, listing.stderr
    assert "Đảng ủy Khối các cơ quan tỉnh triển khai nhiệm vụ cuối năm 2019" in listing.stdout


def test_other_embedding_model_is_refused(tmp_path: Path, models_dir: Path, built_index_settings) -> None:
    other = tmp_path / "other-model"
    _tiny_model(other, models_dir / "multilingual-e5-small")
    settings = make_settings(built_index_settings.data_dir, models_dir)
    result = run_cli(["ask", "--json", "Tổng số đảng viên là bao nhiêu?"], settings, HOIDAP_EMBEDDING_MODEL=str(other))
    assert result.returncode == 1
    assert "was built with embedding model" in result.stderr and "hoidap index --rebuild" in result.stderr
    assert "Traceback" not in result.stderr


def _tiny_model(folder: Path, tokenizer_from: Path) -> None:
    """A real, different sentence-transformers model (random small BERT on the e5 tokenizer)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True)
    transformer_dir = folder / "hf"
    config = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(transformer_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, transformer_dir / name)
    transformer = models.Transformer(str(transformer_dir))
    SentenceTransformer(modules=[transformer, models.Pooling(32)]).save(str(folder))


def test_missing_index_gives_one_clear_message(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path / "empty", models_dir)
    settings.data_dir.mkdir(parents=True)
    result = run_cli(["ask", "Giá vàng hôm nay?"], settings)
    assert result.returncode == 1
    assert "No index in" in result.stderr and "hoidap index" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_model_files_give_one_clear_message(tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path / "data", tmp_path / "no-models")
    result = run_cli(["index"], settings)
    assert result.returncode == 1
    assert "hoidap models fetch" in result.stderr and "Traceback" not in result.stderr


def test_kill_during_index_leaves_previous_index_loadable(tmp_path: Path, models_dir: Path, corpus: Path) -> None:
    settings = make_settings(tmp_path / "data", models_dir)
    assert run_cli(["index", str(corpus)], settings).returncode == 0
    before = _articles(settings)
    shutil.copy(XQUAD_CORPUS, corpus / "xquad.jsonl")  # 150 more articles: long enough to be killed mid-way

    process = subprocess.Popen([*HOIDAP, "index", str(corpus)], env=cli_env(settings), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait until the new generation is being written and some of its vectors are in the journal, then kill
    # without warning.
    wait_for_journal(process, settings.data_dir)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = journal_rows(settings.data_dir)

    assert _articles(settings) == before  # the previous index, whole and consistent
    store = IndexStore.open(settings.index_dir)
    assert len(store.chunks()) == store.manifest.n_chunks
    store.close()

    finished = run_cli(["index", str(corpus)], settings)
    assert finished.returncode == 0, finished.stderr
    assert len(_articles(settings)) == 155
    assert not list(settings.data_dir.glob("index.*.building"))
    # What the killed sync had embedded is taken up again, not embedded a second time; then forgotten.
    assert f"({kept} trong số đó lấy lại từ lần chạy bị ngắt)" in finished.stdout
    assert journal_rows(settings.data_dir) == 0


def journal_rows(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / JOURNAL)) as db:
        return db.execute("SELECT count(*) FROM vectors").fetchone()[0]


def wait_for_journal(process: subprocess.Popen, data_dir: Path) -> None:
    """Until the sync `process` has written vectors to its journal (kept by the next sync if it dies)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if (data_dir / JOURNAL).exists() and journal_rows(data_dir) >= 3:
                return
        except sqlite3.OperationalError:  # its tables are not made yet
            pass
        time.sleep(0.05)
    raise AssertionError("the sync wrote nothing to its journal")


def test_bad_files_are_skipped_with_reasons(tmp_path: Path, models_dir: Path, corpus: Path) -> None:
    (corpus / "empty.txt").write_text("", encoding="utf-8")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (corpus / "latin1.txt").write_bytes("Bài báo cũ".encode("utf-16-le") + b"\xff\xfe\x00")
    (corpus / "broken.jsonl").write_text('{"id": "j1", "title": "Tin", "text": "Nội dung hợp lệ của bài."}\n{not json\n', encoding="utf-8")
    settings = make_settings(tmp_path / "data", models_dir)
    result = run_cli(["index", str(corpus)], settings)
    assert result.returncode == 0, result.stderr
    for name in ("empty.txt", "binary.txt", "latin1.txt", "broken.jsonl"):
        assert name in result.stdout
    assert "thêm 6" in result.stdout  # the five articles and the valid jsonl line
    assert set(_articles(settings)) >= {"j1", "004_8775d9b0c7bf92f4"}
    manifest = json.loads((settings.index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["embedding_model"] == "multilingual-e5-small" and manifest["dim"] == 384
