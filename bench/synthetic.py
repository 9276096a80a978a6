"""A synthetic index of any size, grown from real article text, in the real on-disk format (for benchmarks).

Embedding a million chunks would take most of a day on 2 cores, so only the real passages are
embedded (the bundled articles and the XQuAD-vi paragraphs, ~180 of them, cached under the work
folder); every synthetic chunk is then:

- text: the sentences of one real passage, shuffled, plus a few sentences from other passages, with
  every number replaced by a random one (so the vocabulary keeps growing with the corpus, as news does);
- vector, by default (`copies`): a copy of that passage's real vector plus gaussian noise (sigma 0.03
  per dimension, cosine ~0.85 to the original), renormalised. With only ~280 real vectors, a large
  corpus becomes ~280 tight shells of near-equidistant copies (3,600 each at 1M), the hardest case for
  an approximate index: HNSW recall measured on it is a pessimistic bound.
- vector, `lineage` variant: each new vector is a noisy copy (sigma 0.02) of a random *earlier* vector,
  real or synthetic, so the corpus grows into topics, sub-topics and near-duplicates, closer to how
  news accumulates; its text follows the real passage at the root of its lineage.

Chunks are grouped into articles of 1-12 chunks, and the index is written exactly as the indexer
writes it (manifest.json, vectors.faiss, store.sqlite3 with index/store.py's schema), so the real
IndexStore, LexicalIndex and HybridRetriever run on it unchanged. A flat and an HNSW variant share one
SQLite file (hard link). Builds are cached: a complete directory is reused.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from index.chunking import split_into_chunks, split_into_sentences
from index.cleaning import clean_article
from index.embedding import Embedder
from index.indexer import PIPELINE_VERSION, passage_text
from index.loading import load_documents
from index.store import DATABASE, MANIFEST, SCHEMA, SCHEMA_VERSION, VECTORS, Manifest, new_vector_index

ROOT = Path(__file__).resolve().parent.parent
REAL_SOURCES = [ROOT / "index" / "corpus", ROOT / "eval" / "xquad_vi" / "corpus.jsonl"]
NOISE_SIGMA = 0.03
LINEAGE_SIGMA = 0.02
VectorModel = Literal["copies", "lineage"]
CHUNK_SIZE, CHUNK_OVERLAP = 160, 1
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OUTLETS = ["Báo Quảng Ngãi", "THTG", "Báo Tiền Giang", "Báo Nhân Dân", "VnExpress", None]


@dataclass(frozen=True)
class RealPassages:
    """The real passages a synthetic corpus grows from: sentences per passage and one vector each."""

    sentences: list[list[str]]
    vectors: np.ndarray  # float32, (n, dim), L2-normalised


def real_passages(embedder: Embedder, work_dir: Path) -> RealPassages:
    """Chunk and embed the real texts once (the real cleaning, chunking and passage prompt); cached."""
    cache = work_dir / f"real-{model_tag(embedder)}"
    if (cache / "vectors.npy").is_file():
        return RealPassages(json.loads((cache / "sentences.json").read_text(encoding="utf-8")),
                            np.load(cache / "vectors.npy"))
    documents, _ = load_documents(REAL_SOURCES)
    sentences, texts = [], []
    for document in documents:
        article = clean_article(document)
        for chunk in split_into_chunks(article, size_words=CHUNK_SIZE, overlap_sentences=CHUNK_OVERLAP):
            pieces = [chunk.text[s:e] for s, e in split_into_sentences(chunk.text)]
            if pieces:
                sentences.append(pieces)
                texts.append(passage_text(article.title, chunk.text))
    vectors = embedder.embed_passages(texts)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "sentences.json").write_text(json.dumps(sentences, ensure_ascii=False), encoding="utf-8")
    np.save(cache / "vectors.npy", vectors)
    return RealPassages(sentences, vectors)


def _random_numbers(text: str, rng: np.random.Generator) -> str:
    def replace(match: re.Match[str]) -> str:
        value = int(rng.integers(1, 100_000))
        return f"{value:,}".replace(",", ".") if value >= 1000 and "." in match.group() else str(value)

    return _NUMBER.sub(replace, text)


def synthetic_chunk(real: RealPassages, base: int, rng: np.random.Generator) -> str:
    """The text of one synthetic chunk grown from real passage `base`."""
    own = list(real.sentences[base])
    rng.shuffle(own)
    extra = [real.sentences[int(i)] for i in rng.integers(0, len(real.sentences), size=int(rng.integers(0, 3)))]
    picked = own + [s[int(rng.integers(0, len(s)))] for s in extra]
    words, kept = 0, []
    for sentence in picked:
        n = len(sentence.split())
        if kept and words + n > CHUNK_SIZE:
            break
        kept.append(sentence)
        words += n
    return _random_numbers(" ".join(kept), rng)


def model_tag(embedder: Embedder) -> str:
    """The cache name of what embedded the vectors: the weights' digest, and the precision unless fp32."""
    tag = embedder.identity.weights_sha256[:12]
    return tag if embedder.identity.precision == "fp32" else f"{tag}-{embedder.identity.precision}"


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def synthetic_vectors(real: RealPassages, n: int, model: VectorModel,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` synthetic vectors and, for each, the real passage its text grows from."""
    dim = real.vectors.shape[1]
    if model == "copies":
        roots = rng.integers(0, len(real.sentences), size=n)
        vectors = np.empty((n, dim), dtype=np.float32)
        for first in range(0, n, 100_000):
            part = roots[first:first + 100_000]
            vectors[first:first + len(part)] = _normalised(real.vectors[part] + rng.normal(0.0, NOISE_SIGMA, (len(part), dim)))
        return vectors, roots
    # lineage: generations, each copying random members of everything made so far
    vectors, roots = real.vectors.astype(np.float32), np.arange(len(real.sentences))
    while len(vectors) < n + len(real.sentences):
        m = min(len(vectors), n + len(real.sentences) - len(vectors))
        parents = rng.integers(0, len(vectors), size=m)
        children = _normalised(vectors[parents] + rng.normal(0.0, LINEAGE_SIGMA, (m, dim)))
        vectors, roots = np.concatenate([vectors, children]), np.concatenate([roots, roots[parents]])
    return vectors[len(real.sentences):], roots[len(real.sentences):]


def build_synthetic_index(work_dir: Path, n_chunks: int, embedder: Embedder, *, hnsw: bool = True,
                          vectors: VectorModel = "copies", seed: int = 0, report=print) -> dict[str, Path]:
    """`{"flat": dir, "hnsw": dir}` for a synthetic index of `n_chunks` chunks (built once, then reused)."""
    real = real_passages(embedder, work_dir)
    root = work_dir / f"synthetic-{n_chunks}-{vectors}-{model_tag(embedder)}"
    kinds = ["flat", "hnsw"] if hnsw else ["flat"]
    dirs = {kind: root / kind for kind in kinds}
    if all((d / MANIFEST).is_file() for d in dirs.values()):
        return dirs
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    all_vectors, bases = synthetic_vectors(real, n_chunks, vectors, rng)
    report(f"  {n_chunks:,} {vectors} vectors drawn in {time.perf_counter() - started:.0f}s")
    database_path = root / DATABASE
    if not (root / "store.complete").is_file():
        started = time.perf_counter()
        root.mkdir(parents=True, exist_ok=True)
        database_path.unlink(missing_ok=True)
        n_articles = _write_database(database_path, real, bases, rng)
        (root / "store.complete").write_text(str(n_articles))
        report(f"  {n_chunks:,} chunks of text written in {time.perf_counter() - started:.0f}s")
    n_articles = int((root / "store.complete").read_text())
    for kind, directory in dirs.items():
        if (directory / MANIFEST).is_file():
            continue
        started = time.perf_counter()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / DATABASE).unlink(missing_ok=True)
        os.link(database_path, directory / DATABASE)
        index = new_vector_index(embedder.identity.dim, kind)
        for first in range(0, n_chunks, 50_000):
            index.add(all_vectors[first:first + 50_000])
        faiss.write_index(index, str(directory / VECTORS))
        Manifest(schema_version=SCHEMA_VERSION, embedding_model=embedder.identity.name,
                 embedding_weights_sha256=embedder.identity.weights_sha256, dim=embedder.identity.dim,
                 chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, index_type=kind, n_articles=n_articles,
                 n_chunks=n_chunks, pipeline_version=PIPELINE_VERSION,
                 embedding_precision=embedder.identity.precision).write(directory / MANIFEST)
        report(f"  {kind} index of {n_chunks:,} vectors built in {time.perf_counter() - started:.0f}s")
        del index
    return dirs


def _write_database(path: Path, real: RealPassages, bases: np.ndarray, rng: np.random.Generator) -> int:
    """Articles of 1-12 synthetic chunks each, the chunks as exact spans of their article's text."""
    database = sqlite3.connect(path)
    database.executescript(SCHEMA)
    database.execute("PRAGMA journal_mode=OFF")
    database.execute("PRAGMA synchronous=OFF")
    chunk_id, n_articles = 0, 0
    articles, chunks = [], []
    while chunk_id < len(bases):
        size = min(int(rng.integers(1, 13)), len(bases) - chunk_id)
        texts = [synthetic_chunk(real, int(bases[chunk_id + i]), rng) for i in range(size)]
        article_id = f"syn_{n_articles:07d}"
        body, offset = [], 0
        for ordinal, text in enumerate(texts):
            chunks.append((chunk_id, article_id, ordinal, offset, offset + len(text), text))
            body.append(text)
            offset += len(text) + 2
            chunk_id += 1
        title = " ".join(texts[0].split()[:12])
        year, month, day = int(rng.integers(2014, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
        outlet = _OUTLETS[int(rng.integers(0, len(_OUTLETS)))]
        articles.append((article_id, title, 1, f"{year}-{month:02d}-{day:02d}", 0, outlet, None, None, None,
                         "\n\n".join(body), "synthetic", size))
        n_articles += 1
        if len(chunks) >= 20_000:
            _flush(database, articles, chunks)
    _flush(database, articles, chunks)
    database.commit()
    database.close()
    return n_articles


def _flush(database: sqlite3.Connection, articles: list, chunks: list) -> None:
    database.executemany("INSERT INTO articles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", articles)
    database.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", chunks)
    articles.clear()
    chunks.clear()
