"""Embedding speed of the provisioned multilingual-e5-small in fp32 and bf16, on ~160-word Vietnamese chunks.

Chunks are naive word windows over the bundled corpus (index/corpus/*.txt); the model is warmed up
before timing, and each precision is timed over a few repeats (the machine is shared, so the best
and the median are both printed). Also prints how close the bf16 vectors are to the fp32 ones.

    .venv/bin/python bench/embedding_precision.py [--models-dir DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask the Hub

import numpy as np
import torch
from platformdirs import user_cache_dir
from sentence_transformers import SentenceTransformer

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


def time_encode(model: SentenceTransformer, chunks: list[str], repeats: int) -> tuple[np.ndarray, list[float]]:
    """Warm the model up, then return the vectors and the chunks/s of each timed repeat."""
    model.encode(chunks[:BATCH], prompt_name="document", batch_size=BATCH)
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        vectors = model.encode(chunks, prompt_name="document", batch_size=BATCH, convert_to_numpy=True)
        rates.append(len(chunks) / (time.perf_counter() - began))
    return vectors.astype(np.float32), rates


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

    results = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model.to(dtype)
        vectors, rates = time_encode(model, chunks, args.repeats)
        results[precision] = vectors
        print(f"{precision}: best {max(rates):.1f} chunks/s, median {statistics.median(rates):.1f} chunks/s "
              f"({', '.join(f'{rate:.1f}' for rate in rates)})")

    fp32, bf16 = results["fp32"], results["bf16"]
    cosines = (fp32 * bf16).sum(axis=1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    print(f"bf16 vs fp32 cosine: min {cosines.min():.4f}, mean {cosines.mean():.4f}")


if __name__ == "__main__":
    main()
