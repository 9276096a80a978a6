"""The embedder's memo of question-time sentences: each sentence encoded once while remembered, the vectors
those of a fresh encoding, bounded by use, safe from several threads; indexing's passages never remembered."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

from index import embedding
from index.embedding import Embedder

DIM = 8
SENTENCES = [
    "Về phát triển Đảng viên, đã kết nạp mới được 1.513 đồng chí.",
    "Tổng số đảng viên toàn Đảng bộ tỉnh đến nay là 74.127 đồng chí.",
    "Hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu năm.",
]


class CountingEmbedder(Embedder):
    """The real Embedder with its model replaced by a deterministic one that records every text it encodes."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, name="counting")
        self.encoded: list[str] = []
        self._count_lock = threading.Lock()

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        with self._count_lock:
            self.encoded += texts
        vectors = np.stack([np.random.default_rng(zlib.crc32(f"{kind}:{t}".encode())).normal(size=DIM) for t in texts])
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def embedder(tmp_path: Path) -> CountingEmbedder:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": DIM}), encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    return CountingEmbedder(tmp_path)


def test_a_sentence_met_again_is_not_encoded_again(embedder: CountingEmbedder) -> None:
    first = embedder.embed_sentences(SENTENCES[:2])
    again = embedder.embed_sentences([SENTENCES[1], SENTENCES[2], SENTENCES[0]])
    assert embedder.encoded == [*SENTENCES[:2], SENTENCES[2]]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    assert np.array_equal(again, embedder._encode([SENTENCES[1], SENTENCES[2], SENTENCES[0]], "document"))
    assert again.dtype == np.float32 and again.shape == (3, DIM)


def test_the_same_text_twice_in_one_call_is_encoded_once(embedder: CountingEmbedder) -> None:
    vectors = embedder.embed_sentences([SENTENCES[0], SENTENCES[0]])
    assert embedder.encoded == [SENTENCES[0]]
    assert np.array_equal(vectors[0], vectors[1])


def test_sentences_are_embedded_as_passages_not_as_questions(embedder: CountingEmbedder) -> None:
    assert np.array_equal(embedder.embed_sentences(SENTENCES), embedder.embed_passages(SENTENCES))
    assert not np.array_equal(embedder.embed_sentences(SENTENCES[:1]), embedder.embed_queries(SENTENCES[:1]))
    assert embedder.embed_sentences([]).shape == (0, DIM)


def test_a_returned_array_is_the_callers_own(embedder: CountingEmbedder) -> None:
    vectors = embedder.embed_sentences(SENTENCES[:1])
    expected = vectors.copy()
    vectors *= 0  # a caller normalising or scaling in place must not change what is remembered
    assert np.array_equal(embedder.embed_sentences(SENTENCES[:1]), expected)


def test_the_memo_is_bounded_and_keeps_the_most_recently_used(embedder: CountingEmbedder,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "_REMEMBERED_SENTENCES", 2)
    embedder.embed_sentences(SENTENCES[:2])
    embedder.embed_sentences(SENTENCES[:1])  # the first is now the most recently used
    embedder.embed_sentences(SENTENCES[2:])  # the second is forgotten
    assert len(embedder._sentences) == 2
    embedder.encoded.clear()
    embedder.embed_sentences([SENTENCES[0], SENTENCES[2]])
    assert embedder.encoded == []
    embedder.embed_sentences([SENTENCES[1]])
    assert embedder.encoded == [SENTENCES[1]]


def test_indexing_passages_are_never_remembered(embedder: CountingEmbedder) -> None:
    embedder.embed_passages(SENTENCES)
    embedder.embed_passages(SENTENCES)
    assert embedder.encoded == SENTENCES * 2 and not embedder._sentences


def test_threads_sharing_the_embedder_get_each_sentence_s_own_vector(embedder: CountingEmbedder,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "_REMEMBERED_SENTENCES", 16)  # eviction runs while the others read
    texts = [f"Câu số {n} của bài viết." for n in range(40)]
    expected = {t: embedder._encode([t], "document")[0] for t in texts}
    embedder.encoded.clear()
    failures: list[str] = []

    def ask(offset: int) -> None:
        for round_ in range(30):
            chosen = [texts[(offset + round_ * k) % len(texts)] for k in (1, 3, 7)]
            vectors = embedder.embed_sentences(chosen)
            failures.extend(t for t, v in zip(chosen, vectors) if not np.array_equal(v, expected[t]))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(embedder._sentences) <= 16
    assert len(embedder.encoded) < 6 * 30 * 3  # some were remembered
