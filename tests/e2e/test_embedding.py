"""The ONNX Runtime path gives the same vectors as PyTorch sentence-transformers on the same folder."""

from __future__ import annotations

import numpy as np
import pytest

from index.embedding import load_embedder

pytestmark = pytest.mark.e2e

TEXTS = [
    "Về phát triển Đảng viên, đã kết nạp mới được 1.513 đồng chí, nâng tổng số đảng viên toàn Đảng bộ tỉnh lên 74.127 đồng chí.",
    "Tong so dang vien toan Dang bo tinh nam 2023 la bao nhieu?",
    "How many Party members did the province have in 2023?",
]


def test_onnx_and_torch_vectors_match(models_dir) -> None:
    onnx = load_embedder("multilingual-e5-small", models_dir, backend="onnx")
    torch = load_embedder("multilingual-e5-small", models_dir, backend="torch")
    for embed in ("embed_queries", "embed_passages"):
        a, b = getattr(onnx, embed)(TEXTS), getattr(torch, embed)(TEXTS)
        assert a.shape == b.shape == (3, 384)
        assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
        assert (a * b).sum(axis=1).min() > 0.9999
    assert onnx.backend == "onnx" and onnx.identity == torch.identity


def test_query_prompt_is_applied(models_dir) -> None:
    embedder = load_embedder("multilingual-e5-small", models_dir)
    query, passage = embedder.embed_queries(TEXTS[:1]), embedder.embed_passages(TEXTS[:1])
    assert float((query * passage).sum()) < 0.999  # "query: " and "passage: " prefixes differ
