"""SHA-256 of model files, cached by (path, size, mtime) so that start-up does not hash gigabytes again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from index.errors import ModelFilesMissingError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
HASH_CACHE = ".weights-sha256.json"  # in the models folder: file hashes keyed by (path, size, mtime)


def weights_digest(folder: Path, cache_file: Path | None = None) -> str:
    """SHA-256 over the weight files of a model folder, cached by (path, size, mtime) to keep start-up fast."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelFilesMissingError(f"No model weights found in {folder}.")
    key = json.dumps([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    cache = read_json(cache_file) if cache_file else {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder)}:{_sha256(path)}\n".encode())
    value = digest.hexdigest()
    if cache_file:
        _remember(cache_file, key, value)
    return value


def file_sha256(path: Path, cache_file: Path | None = None) -> str:
    """SHA-256 of one file, cached like `weights_digest`: rewriting a file changes its size or mtime."""
    key = _file_key(path)
    cached = read_json(cache_file).get(key) if cache_file else None
    if cached:
        return cached
    value = _sha256(path)
    if cache_file:
        _remember(cache_file, key, value)
    return value


def remember_sha256(path: Path, value: str, cache_file: Path) -> None:
    """Record a hash just computed elsewhere (while assembling the file), so the first start does not redo it."""
    _remember(cache_file, _file_key(path), value)


def _file_key(path: Path) -> str:
    stat = path.stat()
    return json.dumps([str(path), stat.st_size, stat.st_mtime_ns])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remember(cache_file: Path, key: str, value: str) -> None:
    cache = read_json(cache_file)
    cache[key] = value
    tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")  # two processes may write at once
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, cache_file)
    except OSError as error:  # a read-only models folder still works; it hashes again at each start
        log.warning("could not cache file hashes in %s: %s", cache_file, error)
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict:
    """A JSON object from a file; an empty dict when the file is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
