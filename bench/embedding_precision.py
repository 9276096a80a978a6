"""Embedding speed of the provisioned multilingual-e5-small in fp32 and bf16, on ~160-word Vietnamese chunks.

Chunks are naive word windows over the bundled corpus (index/corpus/*.txt); the model is warmed up
in both precisions before timing, then the precisions are timed alternately over a few repeats (the
machine is shared, so the best and the median are both printed). Also prints how close the bf16 vectors are to the fp32 ones.

    .venv/bin/python bench/embedding_precision.py [--models-dir DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask the Hub

import numpy as np
import torch
from platformdirs import user_cache_dir
from sentence_transformers import SentenceTransformer

from index.embedding import load_embedder
from index.models import EMBEDDING_MODEL, resolve_embedding_model

CORPUS = Path(__file__).resolve().parent.parent / "index" / "corpus"
CHUNK_WORDS = 160
STRIDE_WORDS = 100  # overlapping windows: the five sample articles give ~30 chunks
BATCH = 16


def corpus_chunks() -> list[str]:
    """~160-word windows over every bundled article."""
    chunks = []
    for path in sorted(CORPUS.glob("*.txt")):
        words = path.read_text(encoding="utf-8").split()
        for start in range(0, max(len(words) - CHUNK_WORDS, 0) + 1, STRIDE_WORDS):
            chunks.append(" ".join(words[start : start + CHUNK_WORDS]))
    return chunks


def time_encode(model: SentenceTransformer, chunks: list[str]) -> tuple[np.ndarray, float]:
    """Encode every chunk once; return the vectors and the chunks/s."""
    began = time.perf_counter()
    vectors = model.encode(chunks, prompt_name="document", batch_size=BATCH, convert_to_numpy=True)
    return vectors.astype(np.float32), len(chunks) / (time.perf_counter() - began)


class _OnnxAsModel:
    """hoidap's ONNX Runtime embedder behind the one `encode` call this script makes."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder

    def encode(self, chunks: list[str], **_: object) -> np.ndarray:
        return self.embedder.embed_passages(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(user_cache_dir("hoidap")) / "models")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    chunks = corpus_chunks()
    path = resolve_embedding_model(EMBEDDING_MODEL, args.models_dir)
    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    tokens = [len(ids) for ids in model.tokenizer(["passage: " + chunk for chunk in chunks])["input_ids"]]
    print(f"{len(chunks)} chunks of {CHUNK_WORDS} words, {statistics.mean(tokens):.0f} tokens on average; "
          f"batch {BATCH}; torch threads {torch.get_num_threads()}")

    # Two copies: casting one model back and forth would leave the fp32 weights rounded to bf16.
    models = {"fp32": model, "bf16": copy.deepcopy(model).to(torch.bfloat16),
              "onnx fp32 (default)": _OnnxAsModel(load_embedder(EMBEDDING_MODEL, args.models_dir, backend="onnx"))}
    for each in models.values():  # warm-up: first calls pay for allocation and kernel selection
        each.encode(chunks[:BATCH], prompt_name="document", batch_size=BATCH)
    # Alternate the precisions so that load from other processes on the machine hits both alike.
    results: dict[str, np.ndarray] = {}
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, each in models.items():
            results[name], rate = time_encode(each, chunks)
            rates[name].append(rate)
    for name, measured in rates.items():
        print(f"{name}: best {max(measured):.1f} chunks/s, median {statistics.median(measured):.1f} chunks/s "
              f"({', '.join(f'{rate:.1f}' for rate in measured)})")

    fp32, bf16 = results["fp32"], results["bf16"]
    cosines = (fp32 * bf16).sum(axis=1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    print(f"bf16 vs fp32 cosine: min {cosines.min():.5f}, mean {cosines.mean():.5f}")
    onnx = results["onnx fp32 (default)"]
    print(f"onnx vs fp32 cosine: min {((onnx * fp32).sum(axis=1) / np.linalg.norm(fp32, axis=1)).min():.5f}")


if __name__ == "__main__":
    main()
