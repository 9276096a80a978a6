"""ONNX Runtime inference for sentence-transformers folders of the common shape (Transformer, Pooling, Normalize).

Why: on these CPUs ONNX Runtime with graph optimisations embeds about twice as fast as eager PyTorch with
identical vectors (cosine 1.00000 in bench/indexing.py), and a process that only answers questions
never imports torch. Folders of another shape (Dense layers, custom modules) keep the PyTorch path.

The word-embedding table is not in the ONNX graph: a multilingual vocabulary makes it most of the
model (multilingual-e5-small: 250k x 384 floats, 384 of its 470 MB), yet a question uses a few dozen of
its rows. It is saved beside the graph as a `.npy` file that is memory-mapped, so a one-shot question
reads only the rows of its tokens, and the graph ONNX Runtime must load and optimise is ~90 MB (the
vectors are the same: the rows are looked up in numpy instead of inside the graph).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from index.errors import HoidapError
from index.tokenizing import (
    TokenizerCacheError,
    load_token_ids,
    write_sentencepiece_model,
)

SUPPORTED_POOLING = ("mean", "cls")


log = logging.getLogger(__name__)


class OnnxUnsupportedError(HoidapError):
    """The model folder has modules the ONNX path does not implement; use the PyTorch backend."""


class OnnxLoadError(HoidapError):
    """ONNX Runtime cannot load an exported file (cut short or overwritten): export it again."""


def _json(path: Path) -> dict | list:
    return json.loads(path.read_text(encoding="utf-8"))


def describe(folder: Path) -> tuple[str, bool, int]:
    """(pooling mode, normalise, max tokens) of a plain Transformer + Pooling [+ Normalize] folder."""
    try:
        modules = _json(folder / "modules.json")
    except (OSError, ValueError) as error:
        raise OnnxUnsupportedError(f"{folder} has no readable modules.json") from error
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxUnsupportedError(f"modules {kinds} are not Transformer, Pooling[, Normalize]")
    if modules[0].get("path", "") not in ("", "."):
        raise OnnxUnsupportedError("the transformer lives in a sub-folder")
    pooling = _json(folder / modules[1]["path"] / "config.json")
    mode = "mean" if pooling.get("pooling_mode_mean_tokens") else "cls" if pooling.get("pooling_mode_cls_token") else None
    if mode is None:
        raise OnnxUnsupportedError(f"pooling {pooling} is not mean or cls")
    max_tokens = 512
    if (folder / "sentence_bert_config.json").is_file():
        max_tokens = int(_json(folder / "sentence_bert_config.json").get("max_seq_length", max_tokens))
    return mode, len(kinds) == 3, max_tokens


def prompts(folder: Path) -> dict[str, str]:
    """The folder's named prompts (e5: query / document); empty when it has none."""
    path = folder / "config_sentence_transformers.json"
    return dict(_json(path).get("prompts", {})) if path.is_file() else {}


def embedding_table_path(onnx_file: Path) -> Path:
    """Where the word-embedding table of an exported graph is kept."""
    return onnx_file.with_suffix(".embeddings.npy")


def sentencepiece_path(onnx_file: Path) -> Path:
    """Where the SentencePiece conversion of the folder's tokenizer is kept (when it has one)."""
    return onnx_file.with_suffix(".sentencepiece.model")


# Calibration text for `quantize_onnx`: the bundled news articles, in windows of about one chunk.
CALIBRATION_CORPUS = Path(__file__).resolve().parent / "corpus"
CALIBRATION_CHARS = 1500
CALIBRATION_TEXTS = 16
# A MatMul whose input int8 renders with noise above this share of the input's root mean square keeps its
# fp32 weights. The noise of per-batch uint8 quantisation is (range / 255) / sqrt(12) per element. Over the
# calibration text (11 windows) it is at most .093 for 69 of multilingual-e5-small's 72 MatMuls, and .23-.34
# for the feed-forward down-projections of layers 0, 4 and 5, whose GELU inputs carry a few outliers that
# stretch the range (layer 1's: .11). Measured on the tuning set (bench/README.md, "int8 embedding"): with
# those three in fp32, dense and hybrid R@5 are within .002 of fp32 and the encoder 1.7x as fast; with all
# twelve down-projections in fp32 1.4x; with every MatMul in int8, dense R@5 drops .007 (questions with
# diacritics) and .013 (without).
NOISE_LIMIT = 0.15


def quantize_onnx(folder: Path, source: Path, target: Path) -> list[str]:
    """Write `source` (an `export_onnx` graph of `folder`'s model) with its weight matrices in int8,
    atomically; the embedding table and tokenizer stay the source's. Returns the MatMuls kept in fp32.

    Dynamic quantisation: the weights are int8 per output channel and the activations are quantised per
    batch at run time. The MatMuls whose inputs int8 renders worst on the calibration text keep fp32
    weights (`NOISE_LIMIT`). ONNX Runtime's transformer fusions (onnxruntime.transformers.optimizer) add
    nothing before it: with token embeddings as input and the exporter's attention they fuse only
    SkipLayerNormalization and BiasGelu, which the session's own optimisation already does, and an export
    with eager attention, which does fuse Attention, ran half as fast (bench/README.md).
    """
    import onnx
    from google.protobuf.message import DecodeError
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        graph = onnx.load(str(source))
    except (OSError, DecodeError) as error:
        raise OnnxLoadError(f"The ONNX export {source} cannot be read ({error}): it is exported again.") from error
    noise = input_noise(folder, source, graph, calibration_texts())
    del graph
    kept = [name for name, share in noise.items() if share > NOISE_LIMIT]
    log.info("int8: %d of %d MatMuls keep fp32 weights (input noise > %.2f): %s", len(kept), len(noise),
             NOISE_LIMIT, ", ".join(kept))
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    advice = _DropRecords("consider to run pre-processing")  # static quantisation's advice, logged on the root logger
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(str(source), str(partial), per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=kept, weight_type=QuantType.QInt8)
        os.replace(partial, target)
    finally:
        logging.getLogger().removeFilter(advice)
        partial.unlink(missing_ok=True)
    return kept


def calibration_texts() -> list[str]:
    """Windows of about one chunk from the bundled articles, paragraphs kept whole."""
    texts: list[str] = []
    for path in sorted(CALIBRATION_CORPUS.glob("*.txt")):
        window = ""
        for paragraph in (line.strip() for line in path.read_text(encoding="utf-8").splitlines()):
            if paragraph:
                window = f"{window}\n{paragraph}" if window else paragraph
            if len(window) >= CALIBRATION_CHARS:
                texts.append(window[:CALIBRATION_CHARS])
                window = ""
        if window:
            texts.append(window)
    # Spread over the articles rather than the first ones only.
    step = max(1, len(texts) // CALIBRATION_TEXTS)
    return texts[::step][:CALIBRATION_TEXTS]


def input_noise(folder: Path, source: Path, graph, texts: list[str]) -> dict[str, float]:
    """For each MatMul of `graph` with a weight matrix: the noise of quantising its input per batch to uint8,
    as a share of the input's root mean square, averaged over `texts` embedded two at a time."""
    import onnx
    import onnxruntime

    matrices = {t.name for t in graph.graph.initializer if len(t.dims) == 2}
    nodes = [n for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in matrices]
    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    inputs = list(dict.fromkeys(n.input[0] for n in nodes))
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in inputs)
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    del probe
    _, _, max_tokens = describe(folder)
    tokens = load_token_ids(folder, sentencepiece_path(source), max_tokens)
    table = np.load(embedding_table_path(source), mmap_mode="r", allow_pickle=False)
    shares: dict[str, list[float]] = {name: [] for name in inputs}
    for begin in range(0, len(texts), 2):
        ids, mask = tokens.encode(texts[begin:begin + 2])
        real = mask.astype(bool)
        for name, values in zip(inputs, session.run(inputs, {"inputs_embeds": table[ids], "attention_mask": mask})):
            values = values[real]
            spread = float(values.max() - min(float(values.min()), 0.0))
            shares[name].append(spread / 255 / np.sqrt(12) / max(float(np.sqrt((values ** 2).mean())), 1e-12))
    return {n.name: float(np.mean(shares[n.input[0]])) for n in nodes}


class _DropRecords(logging.Filter):
    """Drops the log records whose message holds `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def export_onnx(folder: Path, target: Path) -> None:
    """Export the folder's transformer to ONNX (token embeddings in, last hidden state out) and its
    word-embedding table to a `.npy` beside it, atomically; needs torch once."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()

    class HiddenStates(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    table = model.get_input_embeddings().weight.detach().to(torch.float32).numpy()
    embeds = torch.zeros((2, 8, table.shape[1]), dtype=torch.float32)
    mask = torch.ones((2, 8), dtype=torch.long)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    table_file = embedding_table_path(target)
    table_partial = table_file.with_name(f"{table_file.name}.{os.getpid()}.partial")
    axes = {0: "batch", 1: "tokens"}
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about constant shapes; outputs are checked in tests
            torch.onnx.export(HiddenStates(model), (embeds, mask), str(partial),
                              input_names=["inputs_embeds", "attention_mask"], output_names=["hidden"],
                              dynamic_axes={"inputs_embeds": axes, "attention_mask": axes, "hidden": axes},
                              opset_version=17, dynamo=False)
        with table_partial.open("wb") as handle:
            np.save(handle, table, allow_pickle=False)
        os.replace(table_partial, table_file)
        sentencepiece_path(target).unlink(missing_ok=True)
        write_sentencepiece_model(folder / "tokenizer.json", sentencepiece_path(target))
        os.replace(partial, target)  # the graph last: its presence says the export is whole
    finally:
        partial.unlink(missing_ok=True)
        table_partial.unlink(missing_ok=True)


class OnnxEncoder:
    """Tokenise with the folder's tokenizer.json, run ONNX Runtime, pool and normalise like sentence-transformers."""

    def __init__(self, folder: Path, onnx_file: Path, *, export: Path | None = None, threads: int | None = None) -> None:
        """`onnx_file` is the graph run; `export` the `export_onnx` graph whose embedding table and
        tokenizer sit beside it (the same file by default; a quantised graph shares its source's)."""
        from onnxruntime.capi.onnxruntime_pybind11_state import (
            Fail,
            InvalidArgument,
            InvalidGraph,
            InvalidProtobuf,
            NoSuchFile,
        )

        self.pooling, self.normalize, max_tokens = describe(folder)
        try:
            self.tokens = load_token_ids(folder, sentencepiece_path(export or onnx_file), max_tokens)
        except TokenizerCacheError as error:
            raise OnnxLoadError(f"{error}: it is converted again with the ONNX export.") from error
        self.threads = threads or os.cpu_count() or 1
        self.onnx_file = onnx_file
        self._bulk: object | None = None  # the one-thread session of `encode`'s parallel batches, made on first use
        self._bulk_lock = threading.Lock()
        try:
            self.session = _session(onnx_file, self.threads)
            # Memory-mapped: only the pages holding the rows of the tokens met are ever read.
            self.table = np.load(embedding_table_path(export or onnx_file), mmap_mode="r", allow_pickle=False)
        except (InvalidProtobuf, InvalidArgument, InvalidGraph, Fail, NoSuchFile, OSError, ValueError) as error:
            raise OnnxLoadError(
                f"The ONNX export {onnx_file} cannot be loaded ({error}). Delete it: it is exported again at the next start."
            ) from error
        width = self.session.get_inputs()[0].shape[-1]
        if self.table.ndim != 2 or self.table.shape[0] < self.tokens.vocab_size or self.table.shape[1] != width:
            raise OnnxLoadError(f"The embedding table beside {onnx_file} has shape {self.table.shape}, not "
                                f"(>= {self.tokens.vocab_size}, {width}): it is exported again.")

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Vectors for `texts` in their order; batches of similar length waste little on padding.

        More batches than one run side by side, one core each, in a session of one thread: at batch 2 a
        session spreading one batch over both cores waits at every operator for the slower core, and two
        batches at once embed ~1.3x as many chunks per second here (bench/README.md). The batches are the
        same either way, so are the vectors (int8 quantises activations per batch).
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batches = [[texts[i] for i in order[begin:begin + batch_size]] for begin in range(0, len(order), batch_size)]
        if len(batches) > 1 and self.threads > 1:
            session = self._bulk_session()
            with ThreadPoolExecutor(self.threads, thread_name_prefix="hoidap-embed") as pool:
                vectors = list(pool.map(lambda batch: self._pooled(session, batch), batches))
        else:
            vectors = [self._pooled(self.session, batch) for batch in batches]
        result = np.empty((len(texts), vectors[0].shape[1] if vectors else 0), dtype=np.float32)
        if vectors:
            result[order] = np.concatenate(vectors)
        return result

    def _bulk_session(self):
        """One session of one thread run from several threads at once (ONNX Runtime allows concurrent runs)."""
        with self._bulk_lock:
            if self._bulk is None:
                self._bulk = _session(self.onnx_file, 1)
            return self._bulk

    def _pooled(self, session, batch: list[str]) -> np.ndarray:
        ids, mask = self.tokens.encode(batch)
        hidden = session.run(None, {"inputs_embeds": self.table[ids], "attention_mask": mask})[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self.normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)


def _session(onnx_file: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads burn the other core between short queries (25-36 ms -> 13 ms per query here).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
