"""Read articles from files and folders: `.txt`, `.md`, `.html`/`.htm` and `.jsonl` corpora.

The only module of the ingestion path that touches the disk. A file that cannot be used (empty,
binary, not UTF-8, unreadable, unsupported) is reported as `Skipped` with its reason and the run goes
on; so is a bad line of a jsonl file. Text is normalised to Unicode NFC here, once.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser, LexborNode

from index.documents import DocumentKind, RawDocument, Skipped
from index.errors import UnreadableFileError
from index.text import normalize

KINDS: dict[str, DocumentKind] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
}

# Page furniture that never holds the article itself.
_HTML_CHROME = "script, style, nav, footer, aside, form, noscript, iframe, template, svg, button"
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "main", "ol", "p", "pre", "section",
        "table", "tbody", "td", "th", "thead", "tr", "ul", "caption",
    }
)
_DATE_META = (
    'meta[property="article:published_time"]',
    'meta[itemprop="datePublished"]',
    'meta[name="pubdate"]',
    'meta[name="publishdate"]',
    'meta[name="date"]',
)
_BINARY_CONTROL_SHARE = 0.05
_WHITESPACE = re.compile(r"\s+")


def load_documents(paths: Iterable[Path]) -> tuple[list[RawDocument], list[Skipped]]:
    """Read every supported file under `paths` (folders recursively, in sorted order).

    Returns the documents and the inputs that were skipped, each with a reason. File documents are
    identified by their file stem; when two files share a stem, by their path relative to the
    folder given. Hidden files and folders (`.git`, `.DS_Store`) are ignored silently.
    """
    files, skipped = _collect_files(paths)
    ids = _file_ids(files)
    documents: list[RawDocument] = []
    seen_ids: set[str] = set()
    for (path, _root), doc_id in zip(files, ids):
        try:
            loaded = read_document_file(path, doc_id=doc_id)
        except UnreadableFileError as error:
            skipped.append(Skipped(str(path), str(error)))
            continue
        for item in loaded:
            if isinstance(item, Skipped):
                skipped.append(item)
            elif item.doc_id in seen_ids:
                skipped.append(Skipped(str(path), f"duplicate id {item.doc_id!r}: already read from another input"))
            else:
                seen_ids.add(item.doc_id)
                documents.append(item)
    return documents, skipped


def read_document_file(path: Path, *, doc_id: str | None = None) -> list[RawDocument | Skipped]:
    """Read one file into documents (several for `.jsonl`, with a `Skipped` for each bad line).

    Raises UnreadableFileError, whose message is the reason, when the file cannot be used at all.
    """
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UnreadableFileError(f"unsupported file type {path.suffix or '(no extension)'!r}")
    text = _read_text(path)
    doc_id = doc_id or path.stem
    if kind == "jsonl":
        return list(_jsonl_documents(path, text))
    if kind == "html":
        return [_html_document(path, text, doc_id)]
    return [RawDocument(doc_id=doc_id, text=text, path=str(path), kind=kind)]


def _collect_files(paths: Iterable[Path]) -> tuple[list[tuple[Path, Path]], list[Skipped]]:
    """Files to read, each with the folder it was found under (for unique ids), and missing inputs."""
    files: list[tuple[Path, Path]] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        if given.is_dir():
            found = [
                (path, given)
                for path in sorted(given.rglob("*"))
                if not path.is_dir() and not _is_hidden(path.relative_to(given))
            ]
        elif given.exists() or given.is_symlink():
            found = [(given, given.parent)]
        else:
            skipped.append(Skipped(str(given), "no such file or folder"))
            continue
        for path, root in found:
            key = Path(os.path.abspath(path))
            if key not in seen:  # the same file listed twice, or inside a folder also listed
                seen.add(key)
                files.append((path, root))
    return files, skipped


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _file_ids(files: list[tuple[Path, Path]]) -> list[str]:
    """The file stem, or the relative path when stems clash, or the relative path with suffix."""
    # jsonl documents take their ids from their records, so their file names cannot clash.
    stems = Counter(path.stem for path, _ in files if path.suffix.lower() != ".jsonl")
    ids = [
        path.stem if stems[path.stem] == 1 else path.relative_to(root).with_suffix("").as_posix()
        for path, root in files
    ]
    clashing = Counter(ids)
    return [
        doc_id if clashing[doc_id] == 1 else path.relative_to(root).as_posix()
        for doc_id, (path, root) in zip(ids, files)
    ]


def _read_text(path: Path) -> str:
    """Decode a file as UTF-8 (with or without BOM) or BOM-marked UTF-16, normalised to NFC."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "no such file"
        raise UnreadableFileError(f"unreadable: {reason}") from None
    except IsADirectoryError:
        raise UnreadableFileError("unreadable: is a folder, not a file") from None
    except PermissionError:
        raise UnreadableFileError("unreadable: permission denied") from None
    except OSError as error:
        raise UnreadableFileError(f"unreadable: {error.strerror or error}") from None
    if not data.strip():
        raise UnreadableFileError("empty file")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in data:
        raise UnreadableFileError("binary file (contains NUL bytes), not text")
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise UnreadableFileError(
            f"not UTF-8 text (undecodable byte at offset {error.start}); save it as UTF-8 and index again"
        ) from None
    if "\x00" in text:  # a UTF-16 file holding U+0000: binary, as a UTF-8 one with a NUL byte is
        raise UnreadableFileError("binary file (contains NUL characters), not text")
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f")
    if controls > _BINARY_CONTROL_SHARE * len(text):
        raise UnreadableFileError("binary file (mostly control characters), not text")
    text = normalize(text)
    if not text.strip():
        raise UnreadableFileError("empty file")
    return text


def _jsonl_documents(path: Path, text: str) -> Iterator[RawDocument | Skipped]:
    # Records end at "\n" only: `splitlines` would also cut at U+2028, U+0085 and the like, which JSON
    # allows raw inside strings (`json.dumps(..., ensure_ascii=False)` writes them so).
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield _jsonl_record(path, json.loads(line))
        except json.JSONDecodeError as error:
            yield Skipped(str(path), f"line {number}: invalid JSON ({error.msg})")
        except ValueError as error:
            yield Skipped(str(path), f"line {number}: {error}")


def _jsonl_record(path: Path, record: object) -> RawDocument:
    """One `{"id", "title", "text"}` record (plus optional `date`, `url`, `source`); ValueError if malformed."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    doc_id = record.get("id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise ValueError('missing "id"')
    body = record.get("text")
    if not isinstance(body, str) or not body.strip():
        raise ValueError('missing or empty "text"')
    optional: dict[str, str | None] = {}
    for key in ("title", "date", "url", "source"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f'"{key}" must be a string')
        optional[key] = _nfc(value.strip()) if value and value.strip() else None
    return RawDocument(doc_id=_nfc(doc_id.strip()), text=_nfc(body), path=str(path), kind="jsonl", **optional)


def _nfc(text: str) -> str:
    return normalize(text)


def read_html(html: str, *, doc_id: str, path: str | None = None) -> RawDocument:
    """One HTML page (already decoded) as a document; raises UnreadableFileError when it holds no text."""
    return _html_document(path, normalize(html), doc_id)


def _html_document(path: Path | str | None, html: str, doc_id: str) -> RawDocument:
    """Strip markup and page chrome, keep block structure as line breaks, take title/date/site hints."""
    tree = LexborHTMLParser(html)
    date = next((_meta(tree, selector) for selector in _DATE_META if _meta(tree, selector)), None)
    site = _meta(tree, 'meta[property="og:site_name"]')
    url = _meta(tree, 'meta[property="og:url"]') or _link(tree, 'link[rel="canonical"]')
    for node in tree.css(_HTML_CHROME):
        node.decompose()
    # A page <header> is chrome (logo, menu); an <article>'s own <header> holds its headline.
    for node in tree.css("header"):
        if not _inside(node, {"article", "main"}):
            node.decompose()
    title = _first_text(tree, "h1") or _first_text(tree, "title")
    root = tree.css_first("article") or tree.css_first("main") or tree.body or tree.root
    parts: list[str] = []
    if root is not None:
        try:
            _collect_text(root, parts)
        except RecursionError:
            raise UnreadableFileError("HTML nested too deeply to read") from None
    text = "\n".join(line.strip() for line in "".join(parts).split("\n"))
    text = _nfc(re.sub(r"\n{3,}", "\n\n", text).strip())
    if not text.strip():
        raise UnreadableFileError("HTML page without any text outside the page chrome")
    return RawDocument(
        doc_id=doc_id, text=text, path=str(path) if path is not None else None, title=title, date=date, url=url, source=site, kind="html"
    )


def _collect_text(node: LexborNode, parts: list[str]) -> None:
    """Text of `node` in document order; block elements start and end a line."""
    for child in node.iter(include_text=True):
        if child.is_text_node:
            # Whitespace inside HTML source is layout, not content: one space.
            parts.append(_WHITESPACE.sub(" ", child.text_content or ""))
        elif child.is_element_node:
            block = child.tag in _HTML_BLOCKS
            if block:
                parts.append("\n")
            _collect_text(child, parts)
            if block:
                parts.append("\n")


def _inside(node: LexborNode, tags: set[str]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.parent
    return False


def _first_text(tree: LexborHTMLParser, selector: str) -> str | None:
    node = tree.css_first(selector)
    text = " ".join(node.text(deep=True).split()) if node is not None else ""
    return _nfc(text) if text else None


def _meta(tree: LexborHTMLParser, selector: str) -> str | None:
    node = tree.css_first(selector)
    content = (node.attributes.get("content") or "").strip() if node is not None else ""
    return _nfc(content) if content else None


def _link(tree: LexborHTMLParser, selector: str) -> str | None:
    node = tree.css_first(selector)
    href = (node.attributes.get("href") or "").strip() if node is not None else ""
    return href or None
