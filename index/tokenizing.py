"""Token ids for the ONNX encoder: SentencePiece for XLM-R-style Unigram tokenizers, else Hugging Face `tokenizers`.

multilingual-e5-small's `tokenizer.json` (the XLM-R vocabulary: 250k Unigram pieces) takes `tokenizers`
about a second and ~300 MB to load here, most of a one-shot question's start-up. The same vocabulary,
scores and normalisation written as a SentencePiece model (the format XLM-R was trained in) loads in a
fraction of that, a compact trie of ~85 MB peak. The conversion is done once, beside the ONNX export,
and only for the shape it reproduces exactly: a Unigram model, the `Precompiled` normaliser followed by
collapsing runs of spaces, a `Metaspace` pre-tokenizer adding a prefix space, `<s> $A </s>` around each
text. tests/e2e/test_embedding.py checks the ids against `tokenizers` on every bundled and XQuAD-vi text.
Any other tokenizer keeps the `tokenizers` path.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from index.text import normalize


class TokenIds(Protocol):
    """Turns a batch of texts into padded token ids and their attention mask."""

    vocab_size: int

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...


def _pad(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(row) for row in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class HuggingFaceTokenIds:
    """Any `tokenizer.json`, through `tokenizers`, truncated to `max_tokens`."""

    def __init__(self, tokenizer_json: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        pad_id = self._tokenizer.token_to_id("<pad>")
        self._pad_id = 0 if pad_id is None else pad_id
        self.vocab_size = self._tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return _pad([encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))], self._pad_id)


class SentencePieceTokenIds:
    """The ids `tokenizers` gives for an XLM-R-style tokenizer.json, from its SentencePiece conversion."""

    def __init__(self, model_file: Path, max_tokens: int) -> None:
        import sentencepiece

        self._processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self._bos, self._eos, self._pad_id = self._processor.bos_id(), self._processor.eos_id(), self._processor.pad_id()
        self._space = self._processor.piece_to_id("▁")
        self._room = max_tokens - 2  # <s> and </s>
        self.vocab_size = self._processor.get_piece_size()

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        # The precompiled map composes decomposed letters as `tokenizers` applies it only after NFC.
        texts = [normalize(text) for text in texts]
        rows = []
        for text, ids in zip(texts, self._processor.encode(texts)):
            # SentencePiece drops trailing white space; `tokenizers` keeps it as one "▁" piece.
            if text[-1:].isspace():
                ids.append(self._space)
            rows.append([self._bos, *ids[: self._room], self._eos])
        return _pad(rows, self._pad_id)


def sentencepiece_model(tokenizer_json: Path) -> bytes | None:
    """The SentencePiece model equivalent to `tokenizer_json`, or None when it is not of the shape converted."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model, normaliser = spec.get("model") or {}, spec.get("normalizer") or {}
    steps = normaliser.get("normalizers", []) if normaliser.get("type") == "Sequence" else []
    expected = (
        model.get("type") == "Unigram" and not model.get("byte_fallback")
        and [step.get("type") for step in steps] == ["Precompiled", "Replace"]
        and steps[1].get("pattern") == {"Regex": " {2,}"} and steps[1].get("content") == " "
        and (spec.get("pre_tokenizer") or {}).get("type") == "Metaspace"
        and (spec.get("pre_tokenizer") or {}).get("replacement") == "▁"
        and _wraps_in(spec.get("post_processor") or {}, "<s>", "</s>")
    )
    vocab = [piece for piece, _ in model.get("vocab", [])] if expected else []
    names = {"<s>", "<pad>", "</s>", "<unk>"}
    if not expected or not names <= set(vocab) or vocab.index("<unk>") != model.get("unk_id"):
        return None
    proto = pb.ModelProto()
    trainer = proto.trainer_spec
    trainer.model_type = pb.TrainerSpec.UNIGRAM
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = (vocab.index(n) for n in ("<unk>", "<s>", "</s>", "<pad>"))
    rules = proto.normalizer_spec
    rules.name = "precompiled"
    rules.precompiled_charsmap = base64.b64decode(steps[0]["precompiled_charsmap"])
    rules.add_dummy_prefix = rules.remove_extra_whitespaces = rules.escape_whitespaces = True
    special = {token["id"] for token in spec.get("added_tokens", []) if token.get("special")}
    for i, (text, score) in enumerate(model["vocab"]):
        piece = proto.pieces.add(piece=text, score=score)
        if i == trainer.unk_id:
            piece.type = pb.ModelProto.SentencePiece.UNKNOWN
        elif i in special:
            piece.type = pb.ModelProto.SentencePiece.CONTROL
    return proto.SerializeToString()


def _wraps_in(post_processor: dict, first: str, last: str) -> bool:
    """True for a `TemplateProcessing` that puts `first` before and `last` after a single text."""
    single = post_processor.get("single", []) if post_processor.get("type") == "TemplateProcessing" else []
    tokens = [item.get("SpecialToken", {}).get("id") or item.get("Sequence", {}).get("id") for item in single]
    return tokens == [first, "A", last]


def write_sentencepiece_model(tokenizer_json: Path, target: Path) -> bool:
    """Convert `tokenizer_json` into `target` atomically; False (nothing written) when it is not convertible."""
    data = sentencepiece_model(tokenizer_json)
    if data is None:
        return False
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return True


def load_token_ids(folder: Path, sentencepiece_file: Path, max_tokens: int) -> TokenIds:
    """SentencePiece when a conversion of the folder's tokenizer.json exists, else `tokenizers`."""
    if sentencepiece_file.is_file():
        try:
            return SentencePieceTokenIds(sentencepiece_file, max_tokens)
        except (OSError, RuntimeError) as error:  # a damaged conversion is a cache: it is made again
            raise TokenizerCacheError(f"{sentencepiece_file} cannot be read ({error})") from error
    return HuggingFaceTokenIds(folder / "tokenizer.json", max_tokens)


class TokenizerCacheError(Exception):
    """The SentencePiece conversion on disk cannot be read."""
