"""Where articles come from: a source is a kind and a locator (a folder, a file; later a web feed).

The index remembers its sources, and which source yielded each article, so that re-syncing a source
removes only what vanished from it. Readers turn a source into documents; each kind has one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from index.documents import RawDocument, Skipped


@dataclass(frozen=True, order=True)
class Source:
    """A place articles are read from: `kind` says how (`folder`, `file`), `locator` where (an absolute path)."""

    kind: str
    locator: str

    @classmethod
    def for_path(cls, path: Path) -> Source:
        """The source of a folder or file given on the command line (which must exist)."""
        absolute = Path(os.path.abspath(path))
        return cls("folder" if absolute.is_dir() else "file", str(absolute))

    def exists(self) -> bool:
        """Whether the source can still be read; kinds that are not paths are always tried."""
        if self.kind in ("folder", "file"):
            path = Path(self.locator)
            return path.is_dir() if self.kind == "folder" else (path.exists() or path.is_symlink())
        return True


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one article may cost to read."""

    max_article_bytes: int = 16 * 1024 * 1024


DEFAULT_LIMITS = ReadLimits()


SourceReader = Callable[[Source, ReadLimits], Iterator[RawDocument | Skipped]]


def read_source(source: Source, limits: ReadLimits, readers: Mapping[str, SourceReader]) -> Iterator[RawDocument | Skipped]:
    """Every document of `source` (and a `Skipped` for each input of it that could not be used)."""
    reader = readers.get(source.kind)
    if reader is None:
        yield Skipped(source.locator, f"unknown source kind {source.kind!r}", vi=f"loại nguồn không rõ {source.kind!r}")
        return
    yield from reader(source, limits)

