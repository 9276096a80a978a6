"""The ONNX Runtime path gives the same vectors as PyTorch sentence-transformers on the same folder."""

from __future__ import annotations

import unicodedata

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


def _real_texts() -> list[str]:
    """Every line of the bundled articles and of XQuAD-vi (titles, paragraphs, questions), as prefixed for e5."""
    import json
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    lines: list[str] = []
    for article in (repo / "index" / "corpus").glob("*.txt"):
        lines += article.read_text(encoding="utf-8").splitlines()
    for name in ("corpus.jsonl", "questions.jsonl"):
        for row in (repo / "eval" / "xquad_vi" / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(row)
            lines += [record.get("title", ""), *record.get("text", "").splitlines(), record.get("question", "")]
    for row in (repo / "eval" / "bundled" / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        lines.append(json.loads(row)["question"])
    return [prefix + line for line in lines for prefix in ("query: ", "passage: ")]


def test_the_sentencepiece_conversion_gives_the_ids_of_tokenizers(models_dir) -> None:
    """The fast tokenizer the encoder loads (index.tokenizing) is the model's own, id for id."""
    from index.tokenizing import HuggingFaceTokenIds, SentencePieceTokenIds, write_sentencepiece_model

    embedder = load_embedder("multilingual-e5-small", models_dir, backend="onnx")
    embedder.prepare()
    assert isinstance(embedder._onnx.tokens, SentencePieceTokenIds)  # the conversion is what runs
    folder = embedder.folder
    original = HuggingFaceTokenIds(folder / "tokenizer.json", 512)
    texts = [*_real_texts(), *TEXTS, "  leading and trailing  ", "nbsp\u00a0", "\u00a0", "", "tab\there", "ＡＢＣ ①",
             "á ế ờ", "😀 emoji", "x " * 600]
    converted = SentencePieceTokenIds(models_dir / "onnx" / "check.sentencepiece.model", 512) if write_sentencepiece_model(
        folder / "tokenizer.json", models_dir / "onnx" / "check.sentencepiece.model") else None
    assert converted is not None
    for start in range(0, len(texts), 256):
        batch = texts[start : start + 256]
        ids, mask = converted.encode(batch)
        expected_ids, expected_mask = original.encode(batch)
        assert np.array_equal(mask, expected_mask) and np.array_equal(ids * mask, expected_ids * expected_mask), batch
    # Decomposed letters are composed first (`tokenizers` itself drops the second mark of NFD "ế").
    decomposed = [unicodedata.normalize("NFD", text) for text in texts[:200]]
    assert np.array_equal(converted.encode(decomposed)[0], original.encode(texts[:200])[0])
    (models_dir / "onnx" / "check.sentencepiece.model").unlink()


# The int8 graph's vectors against fp32's, measured on the bundled articles: cosine >= 0.993 for their
# chunks and lines (mean 0.996); on 182 XQuAD-vi chunks >= 0.995. The bound leaves room for other CPUs'
# int8 kernels, and is still far above what ranking needs (two passages of one article: ~0.85-0.9).
INT8_MIN_COSINE = 0.99


def test_int8_vectors_agree_with_fp32_on_the_bundled_articles(models_dir) -> None:
    from dataclasses import replace

    from bot.settings import BUNDLED_CORPUS
    from index.chunking import split_into_chunks
    from index.cleaning import clean_article
    from index.indexer import passage_text
    from index.loading import load_documents

    fp32 = load_embedder("multilingual-e5-small", models_dir, precision="fp32")
    int8 = load_embedder("multilingual-e5-small", models_dir, precision="int8")
    documents, _ = load_documents([BUNDLED_CORPUS])
    chunks, lines = [], []
    for document in documents:
        article = clean_article(document)
        chunks += [passage_text(article.title, c.text) for c in split_into_chunks(article, size_words=220, overlap_sentences=1)]
        lines += [line for line in article.text.splitlines() if line.strip()]
    assert len(chunks) >= 20 and len(lines) >= 30
    passages = (fp32.embed_passages(chunks) * int8.embed_passages(chunks)).sum(axis=1)
    questions = (fp32.embed_queries(lines) * int8.embed_queries(lines)).sum(axis=1)
    assert passages.min() > INT8_MIN_COSINE and questions.min() > INT8_MIN_COSINE
    assert passages.max() < 0.99999  # the int8 graph is the one that ran, not the fp32 one again
    assert int8.backend == "onnx" and any((models_dir / "onnx").glob("*.embeds.int8.onnx"))
    assert int8.identity != fp32.identity and replace(int8.identity, precision="fp32") == fp32.identity
    # The calibration kept the few MatMuls whose inputs int8 renders worst in fp32, and only those.
    import onnx

    graph = onnx.load(str(next((models_dir / "onnx").glob("*.embeds.int8.onnx"))))
    matrices = {t.name for t in graph.graph.initializer if len(t.dims) == 2 and t.data_type == onnx.TensorProto.FLOAT}
    fp32_matmuls = [n.name for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in matrices]
    int8_matmuls = [n.name for n in graph.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert 1 <= len(fp32_matmuls) <= 6 and len(int8_matmuls) >= 60, (fp32_matmuls, len(int8_matmuls))
    assert all("output/dense" in name for name in fp32_matmuls)  # feed-forward down-projections


def test_a_cut_short_int8_graph_is_made_again(models_dir, tmp_path) -> None:
    """The int8 graph is a cache beside the fp32 export: damaged, it is exported and quantised again."""
    cache = tmp_path / "models"
    (cache / "onnx").mkdir(parents=True)
    (cache / "multilingual-e5-small").symlink_to(models_dir / "multilingual-e5-small")
    fresh = load_embedder("multilingual-e5-small", cache, precision="int8")
    fresh.prepare()  # exported and quantised into the empty cache
    graph = next((cache / "onnx").glob("*.embeds.int8.onnx"))
    expected = fresh.embed_passages(TEXTS[:1])
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    again = load_embedder("multilingual-e5-small", cache, precision="int8")
    assert np.allclose(again.embed_passages(TEXTS[:1]), expected, atol=1e-5)
    assert graph.stat().st_size > 10_000_000


def test_batches_run_side_by_side_give_the_vectors_of_one_at_a_time(models_dir) -> None:
    from index.onnx_encoder import OnnxEncoder

    int8 = load_embedder("multilingual-e5-small", models_dir, precision="int8")
    int8.prepare()
    graph, export = int8._onnx.onnx_file, next((models_dir / "onnx").glob("*.embeds.onnx"))
    texts = [f"passage: {text} {n}" for n in range(4) for text in TEXTS]
    serial = OnnxEncoder(models_dir / "multilingual-e5-small", graph, export=export, threads=1).encode(texts, 2)
    parallel = OnnxEncoder(models_dir / "multilingual-e5-small", graph, export=export, threads=2).encode(texts, 2)
    assert np.allclose(serial, parallel, atol=1e-5)
    assert (serial[:3] * serial[3:6]).sum(axis=1).max() < 0.9999  # different texts, different vectors
