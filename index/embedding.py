"""Sentence-transformers embeddings for queries and passages, loaded from local files only."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from index.errors import ModelFilesMissingError
from index.hashing import HASH_CACHE, read_json, weights_digest
from index.models import MARKER, check_embedding_folder, resolve_embedding_model
from index.onnx_encoder import (
    OnnxEncoder,
    OnnxLoadError,
    OnnxUnsupportedError,
    describe,
    export_onnx,
    prompts,
    quantize_onnx,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# int8: the ONNX graph with int8 weight matrices (index.onnx_encoder.quantize_onnx), for passages and questions
# alike; bf16: PyTorch in bfloat16. Vectors of two precisions are close but not equal, so the precision is
# part of the model's identity: an index records it and is not mixed with another's vectors.
Precision = Literal["fp32", "int8", "bf16"]
Backend = Literal["onnx", "torch"]


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that embedded it; two identities must match to mix vectors."""

    name: str
    weights_sha256: str
    dim: int
    precision: str = "fp32"


def _model_dim(folder: Path) -> int:
    config = read_json(folder / "config.json")
    dim = config.get("hidden_size") or config.get("d_model") or config.get("dim")
    if not dim:
        raise ModelFilesMissingError(f"{folder / 'config.json'} is missing or has no hidden size.")
    for module in _read_json_list(folder / "modules.json"):
        if module.get("type", "").endswith("Dense"):
            dense = read_json(folder / module["path"] / "config.json")
            dim = dense.get("out_features", dim)
    return int(dim)


def _read_json_list(path: Path) -> list[dict]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return value if isinstance(value, list) else []


# Questions whose vectors the embedder remembers: a question is embedded by the retriever, then by the
# answer judgement (and the English sentence reading) within the same answer.
_REMEMBERED_QUERIES = 8
# Sentences whose vectors the embedder remembers (`embed_sentences`), the most recently used kept.
# The answer judgement embeds each question's best sentences and the English reader its candidate
# sentences; questions about the same articles meet the same sentences again (on the bundled set, 74 of
# the 120 best sentences of 40 questions had been embedded for an earlier question), and with the index's
# own model as the English reader both embed the same sentences for one question. 1,024 vectors of 384
# floats are 1.5 MB.
_REMEMBERED_SENTENCES = 1024


def passive_openmp_waits() -> None:
    """OpenMP threads (PyTorch's, llama.cpp's) wait at each barrier passively: call before either loads.

    A spinning thread keeps its partner from being scheduled when the cores are shared (the bot embeds
    queries, other jobs run). Measured at load ~6 on 2 cores: EmbeddingGemma embedding 12 sentences took
    21.9 s spinning, 1.5 s passive (bf16); the 1.5B LLM generated 2-3 tokens/s spinning, 9-17 passive.
    libgomp reads the variable when it loads; a user's own value wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Embedder:
    """Embeds queries and passages with one sentence-transformers model; the model loads on first use."""

    def __init__(self, folder: Path, *, name: str, precision: Precision = "fp32", batch_size: int = 16,
                 backend: Backend = "onnx", cache_dir: Path | None = None) -> None:
        if not (folder / "config.json").is_file():
            raise ModelFilesMissingError(
                f"The embedding model folder {folder} is incomplete (no config.json). "
                "Run `hoidap models fetch` to provision the default model."
            )
        self.folder = folder
        self.precision = precision
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._queries: dict[str, np.ndarray] = {}  # the last questions' vectors, oldest first
        self._sentences: dict[str, np.ndarray] = {}  # the last sentences' vectors, least recently used first
        self._memo_lock = threading.Lock()  # both memos: the bot answers from several worker threads
        marker = read_json(folder / MARKER)
        cache_file = cache_dir / HASH_CACHE if cache_dir else None
        if marker:  # a provisioned folder: its files must still be the ones assembled (a cached hash keeps this fast)

            check_embedding_folder(folder, cache_file)
        digest = marker.get("model_sha256") or weights_digest(folder, cache_file)
        self.backend: Backend = "torch" if precision == "bf16" else backend  # bf16 runs through PyTorch
        if self.backend == "onnx":
            try:
                describe(folder)
            except OnnxUnsupportedError as reason:
                log.info("embedding with PyTorch: %s", reason)
                self.backend = "torch"
        if precision == "int8" and self.backend == "torch":
            log.info("int8 embedding needs the ONNX path: %s is embedded in fp32 with PyTorch", name)
            self.precision = precision = "fp32"
        self.identity = ModelIdentity(name=name, weights_sha256=digest, dim=_model_dim(folder), precision=precision)
        self._model: SentenceTransformer | None = None
        self._onnx: OnnxEncoder | None = None
        self._lock = threading.Lock()

    def _onnx_encoder(self) -> OnnxEncoder | None:
        """The ONNX Runtime path when the folder allows it (exported once per model), else None."""
        with self._lock:
            if self._onnx is None and self.backend == "onnx":
                # ".embeds": the graph takes token embeddings, its table memory-mapped beside it (index.onnx_encoder).
                target = (self.cache_dir or self.folder) / "onnx" / f"{self.identity.weights_sha256[:24]}.embeds.onnx"
                graph = target.with_suffix(".int8.onnx") if self.precision == "int8" else target
                try:
                    self._onnx = self._made_encoder(target, graph)
                except OnnxLoadError as error:  # the export is a cache: a damaged one is made again
                    log.warning("exporting %s to ONNX again: %s", self.identity.name, error)
                    target.unlink(missing_ok=True)
                    graph.unlink(missing_ok=True)
                    self._onnx = self._made_encoder(target, graph)
                self._prompts = prompts(self.folder)
            return self._onnx

    def _made_encoder(self, target: Path, graph: Path) -> OnnxEncoder:
        """The encoder of `graph`, exporting `target` and quantising it to `graph` first when they are missing."""
        if not target.is_file():
            log.warning("exporting %s to ONNX once (%s)", self.identity.name, target)
            export_onnx(self.folder, target)
            # The export of earlier versions (the whole model in one graph) is not read any more.
            target.with_name(f"{self.identity.weights_sha256[:24]}.onnx").unlink(missing_ok=True)
        if not graph.is_file():
            log.warning("quantising %s to int8 once (%s)", self.identity.name, graph)
            quantize_onnx(self.folder, target, graph)
        return OnnxEncoder(self.folder, graph, export=target)

    def prepare(self) -> None:
        """Do the one-time work now (ONNX export, loading) rather than on the first question."""
        if self._onnx_encoder() is None:
            _ = self.model

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        encoder = self._onnx_encoder()
        if encoder is not None:
            names = ("query",) if kind == "query" else ("document", "passage", "corpus")
            prefix = next((self._prompts[n] for n in names if n in self._prompts), "")
            vectors = encoder.encode([prefix + t for t in texts], self.batch_size)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            return vectors
        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        return np.ascontiguousarray(
            encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32
        )

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (loaded once, thread-safe)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SentenceTransformer:
        passive_openmp_waits()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        model = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
        model.eval()
        return model

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors for questions (the model's query prompt applied).

        A single question's vector is remembered (the last `_REMEMBERED_QUERIES`): the retriever and
        the answer judgement both embed the same question, and it need be encoded once.
        """
        if len(texts) != 1:
            return self._encode(texts, "query")
        with self._memo_lock:
            remembered = self._queries.get(texts[0])
        if remembered is None:
            remembered = self._encode(texts, "query")
            with self._memo_lock:
                self._queries[texts[0]] = remembered
                while len(self._queries) > _REMEMBERED_QUERIES:
                    self._queries.pop(next(iter(self._queries)))
        return remembered.copy()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors for passages (the model's document prompt applied)."""
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        return self._encode(texts, "document")

    def embed_sentences(self, texts: list[str]) -> np.ndarray:
        """`embed_passages` for the sentences read at question time, their vectors remembered.

        The last `_REMEMBERED_SENTENCES` texts are kept, the most recently used first to stay: only texts
        not met recently are encoded, each once however often it is given. Indexing calls
        `embed_passages`, which remembers nothing (its chunks are met once, and the indexer has its own cache).
        """
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        distinct = list(dict.fromkeys(texts))
        with self._memo_lock:
            known = {t: self._sentences.pop(t) for t in distinct if t in self._sentences}
            self._sentences.update(known)  # moved to the recent end
        missing = [t for t in distinct if t not in known]
        if missing:
            fresh = dict(zip(missing, self._encode(missing, "document")))
            known.update(fresh)
            with self._memo_lock:
                self._sentences.update((t, v.copy()) for t, v in fresh.items())
                for _ in range(len(self._sentences) - _REMEMBERED_SENTENCES):
                    self._sentences.pop(next(iter(self._sentences)))
        return np.stack([known[t] for t in texts])


def resolve_model_folder(name_or_path: str, models_dir: Path) -> Path:
    """A local folder for a model setting: the provisioned default, a path, or a name in the local HF cache."""
    resolved = resolve_embedding_model(name_or_path, models_dir)
    path = Path(resolved)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(resolved, local_files_only=True))
    except Exception as error:  # the hub library raises several unrelated types for "not cached"
        raise ModelFilesMissingError(
            f"Embedding model {name_or_path!r} is neither a folder nor in the local Hugging Face cache "
            f"({error.__class__.__name__}). Set HOIDAP_EMBEDDING_MODEL to a sentence-transformers folder, "
            "or run `hoidap models fetch` for the default model."
        ) from error


def load_embedder(name_or_path: str, models_dir: Path, *, precision: Precision = "fp32",
                  batch_size: int = 16, backend: Backend = "onnx") -> Embedder:
    """The Embedder for a model setting, without loading weights until the first embedding."""
    folder = resolve_model_folder(name_or_path, models_dir)
    return Embedder(folder, name=name_or_path, precision=precision, batch_size=batch_size,
                    backend=backend, cache_dir=models_dir)
