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
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from selectolax.lexbor import LexborHTMLParser, LexborNode

from index.documents import DocumentKind, RawDocument, Skipped
from index.errors import UnreadableFileError
from index.sources import DEFAULT_LIMITS, ReadLimits, Source, SourceReader
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
# Control characters (Unicode category Cc) other than tab, line feed, form feed and carriage return.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# UTF-32 first: its little-endian BOM begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_SNIFF_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9_.:-]+)["']""", re.IGNORECASE)
# Labels browsers read as another encoding than Python's codec of that name (WHATWG Encoding standard).
_WEB_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252"}
_WHITESPACE = re.compile(r"\s+")


def load_documents(paths: Iterable[Path], limits: ReadLimits = DEFAULT_LIMITS) -> tuple[list[RawDocument], list[Skipped]]:
    """Read every supported file under `paths` (folders recursively, in sorted order).

    Returns the documents and the inputs that were skipped, each with a reason. File documents are
    identified by their file stem; when two files share a stem, by their path relative to the
    folder given. Hidden files and folders (`.git`, `.DS_Store`) are ignored silently.
    """
    files, skipped = _collect_files(paths)
    documents: list[RawDocument] = []
    for item in _read_files(files, limits):
        (skipped if isinstance(item, Skipped) else documents).append(item)
    return documents, skipped


def read_folder(source: Source, limits: ReadLimits) -> Iterator[RawDocument | Skipped]:
    """The documents of a folder source, one file at a time."""
    files, skipped = _collect_files([Path(source.locator)])
    yield from skipped
    yield from _read_files(files, limits)


def read_file(source: Source, limits: ReadLimits) -> Iterator[RawDocument | Skipped]:
    """The documents of a file source: one, or one per line of a `.jsonl` file."""
    path = Path(source.locator)
    yield from _read_files([(path, path.parent)], limits)


FILE_READERS: dict[str, SourceReader] = {"folder": read_folder, "file": read_file}


def _read_files(files: list[tuple[Path, Path]], limits: ReadLimits) -> Iterator[RawDocument | Skipped]:
    seen_ids: set[str] = set()
    for (path, _root), doc_id in zip(files, _file_ids(files)):
        try:
            for item in read_document_file(path, doc_id=doc_id, limits=limits):
                if isinstance(item, RawDocument) and item.doc_id in seen_ids:
                    yield Skipped(str(path), f"duplicate id {item.doc_id!r}: already read from another input",
                                  vi=f"trùng mã {item.doc_id!r}: đã đọc từ một đầu vào khác")
                    continue
                if isinstance(item, RawDocument):
                    seen_ids.add(item.doc_id)
                yield item
        except UnreadableFileError as error:
            yield Skipped(str(path), str(error), vi=error.vi)


def read_document_file(path: Path, *, doc_id: str | None = None,
                       limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[RawDocument | Skipped]:
    """Read one file into documents (several for `.jsonl`, with a `Skipped` for each bad line).

    Raises UnreadableFileError, whose message is the reason, when the file cannot be used at all
    (before yielding anything, except for a `.jsonl` file that turns unreadable midway).
    """
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UnreadableFileError(f"unsupported file type {path.suffix or '(no extension)'!r}",
                                  vi=f"loại tệp không hỗ trợ {path.suffix or '(không có đuôi)'!r}")
    handle, size = _open_regular_file(path)
    if kind == "jsonl":
        return _jsonl_documents(path, handle, limits)
    with handle:
        if size > limits.max_article_bytes:
            en, vi = _too_large(size, limits)
            raise UnreadableFileError(en, vi=vi)
        data = handle.read(limits.max_article_bytes + 1)
    if len(data) > limits.max_article_bytes:  # it grew while we looked
        en, vi = _too_large(len(data), limits)
        raise UnreadableFileError(en, vi=vi)
    text = _decode(data, kind)
    doc_id = doc_id or path.stem
    if kind == "html":
        return iter([_html_document(path, text, doc_id)])
    return iter([RawDocument(doc_id=doc_id, text=text, path=str(path), kind=kind)])


def _too_large(size: int, limits: ReadLimits) -> tuple[str, str]:
    """The size-cap reason, in English and in Vietnamese."""
    figures = f"({size / 2**20:.1f} MB > {limits.max_article_bytes / 2**20:g} MB, HOIDAP_MAX_ARTICLE_MB)"
    return f"larger than the size cap per article {figures}", f"lớn hơn giới hạn mỗi bài {figures}"


def _open_regular_file(path: Path) -> tuple[BinaryIO, int]:
    """Open a regular file for reading; FIFOs, devices and sockets are refused without being opened.

    Opening a FIFO blocks until a writer comes, and `/dev/zero` never ends: both would hang a run.
    """
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(info.st_mode)
        # O_NONBLOCK: should a FIFO replace the file between stat and open, opening it still returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if path.is_symlink():
            raise UnreadableFileError("unreadable: broken symbolic link", vi="không đọc được: liên kết tượng trưng hỏng") from None
        raise UnreadableFileError("unreadable: no such file", vi="không đọc được: không có tệp này") from None
    except IsADirectoryError:
        raise UnreadableFileError("unreadable: is a folder, not a file", vi="không đọc được: là thư mục, không phải tệp") from None
    except PermissionError:
        raise UnreadableFileError("unreadable: permission denied", vi="không đọc được: không có quyền đọc") from None
    except OSError as error:
        raise UnreadableFileError(f"unreadable: {error.strerror or error}", vi=f"không đọc được: {error.strerror or error}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _not_regular(info.st_mode)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), info.st_size


def _not_regular(mode: int) -> UnreadableFileError:
    """The refusal of a FIFO, device or socket, named in both languages."""
    en, vi = _file_type(mode)
    return UnreadableFileError(f"not a regular file ({en}): not read", vi=f"không phải tệp thường ({vi}): không đọc")


def _file_type(mode: int) -> tuple[str, str]:
    if stat.S_ISFIFO(mode):
        return "a FIFO", "một FIFO"
    if stat.S_ISCHR(mode):
        return "a character device", "thiết bị ký tự"
    if stat.S_ISBLK(mode):
        return "a block device", "thiết bị khối"
    if stat.S_ISSOCK(mode):
        return "a socket", "một socket"
    return ("a folder", "một thư mục") if stat.S_ISDIR(mode) else ("not a file", "không phải tệp")


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
            skipped.append(Skipped(str(given), "no such file or folder", vi="không có tệp hay thư mục này"))
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


def detect_encoding(data: bytes, kind: DocumentKind) -> str:
    """The encoding of a file: its BOM, else UTF-16 recognised by its NUL bytes, else what the page
    declares (`<meta charset>`, the XML declaration), else UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    head = data[:_SNIFF_BYTES]
    if (utf16 := _utf16_by_nul_bytes(head)) is not None:
        return utf16
    if kind == "html" and (declared := _declared_encoding(head)) is not None:
        return declared
    return "utf-8"


def _utf16_by_nul_bytes(head: bytes) -> str | None:
    """UTF-16 without a BOM: ASCII letters, digits and spaces give a NUL in every other byte, on one side."""
    half = len(head) // 2
    if half < 8:
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd >= 0.2 * half and even <= 0.02 * half:
        return "utf-16-le"
    if even >= 0.2 * half and odd <= 0.02 * half:
        return "utf-16-be"
    return None


def _declared_encoding(head: bytes) -> str | None:
    match = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    if match is None:
        return None
    name = match.group(1).decode("ascii").lower()
    name = _WEB_ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode(data: bytes, kind: DocumentKind) -> str:
    """Decode a file in its detected encoding, refuse binary data, normalise to NFC."""
    if not data.strip():
        raise UnreadableFileError("empty file", vi="tệp rỗng")
    encoding = detect_encoding(data, kind)
    if encoding == "utf-8":
        if b"\x00" in data:
            raise UnreadableFileError("binary file (contains NUL bytes), not text", vi="tệp nhị phân (có byte NUL), không phải văn bản")
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        if encoding == "utf-8-sig":
            raise UnreadableFileError(
                f"not UTF-8 text (undecodable byte at offset {error.start}), and no BOM, <meta charset> or XML "
                "declaration names another encoding; save it as UTF-8 and index again",
                vi=f"không phải văn bản UTF-8 (byte không giải mã được ở vị trí {error.start}), và không có BOM, "
                "<meta charset> hay khai báo XML nêu bảng mã khác; hãy lưu lại dạng UTF-8 rồi lập chỉ mục lại",
            ) from None
        raise UnreadableFileError(f"not valid {encoding} text (undecodable byte at offset {error.start})",
                                  vi=f"không phải văn bản {encoding} hợp lệ (byte không giải mã được ở vị trí {error.start})") from None
    if "\x00" in text:  # a UTF-16 file holding U+0000: binary, as a UTF-8 one with a NUL byte is
        raise UnreadableFileError("binary file (contains NUL characters), not text", vi="tệp nhị phân (có ký tự NUL), không phải văn bản")
    controls = sum(1 for _ in _CONTROLS.finditer(text))
    if controls > _BINARY_CONTROL_SHARE * len(text):
        raise UnreadableFileError("binary file (mostly control characters), not text",
                                  vi="tệp nhị phân (phần lớn là ký tự điều khiển), không phải văn bản")
    text = normalize(text)
    if not text.strip():
        raise UnreadableFileError("empty file", vi="tệp rỗng")
    return text


def _jsonl_documents(path: Path, handle: BinaryIO, limits: ReadLimits) -> Iterator[RawDocument | Skipped]:
    """One record per line, read a line at a time: a huge corpus file never sits in memory whole."""
    # Records end at "\n" only: `splitlines` would also cut at U+2028, U+0085 and the like, which JSON
    # allows raw inside strings (`json.dumps(..., ensure_ascii=False)` writes them so).
    with handle:
        number = records = 0
        while True:
            line = handle.readline(limits.max_article_bytes + 1)
            if not line:
                break
            number += 1
            if len(line) > limits.max_article_bytes and not line.endswith(b"\n"):
                _skip_rest_of_line(handle)
                en, vi = _too_large(len(line), limits)
                yield Skipped(str(path), f"line {number}: {en}", vi=f"dòng {number}: {vi}")
                continue
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8):]
            if not line.strip():
                continue
            records += 1
            try:
                yield _jsonl_record(path, json.loads(line.decode("utf-8")))
            except UnicodeDecodeError as error:
                yield Skipped(str(path), f"line {number}: not UTF-8 (undecodable byte at offset {error.start})",
                              vi=f"dòng {number}: không phải UTF-8 (byte không giải mã được ở vị trí {error.start})")
            except json.JSONDecodeError as error:
                yield Skipped(str(path), f"line {number}: invalid JSON ({error.msg})",
                              vi=f"dòng {number}: JSON không hợp lệ ({error.msg})")
            except _RecordError as error:
                yield Skipped(str(path), f"line {number}: {error}", vi=f"dòng {number}: {error.vi}")
    if not records:
        yield Skipped(str(path), "empty file", vi="tệp rỗng")


def _skip_rest_of_line(handle: BinaryIO) -> None:
    while (piece := handle.readline(1 << 20)) and not piece.endswith(b"\n"):
        pass


class _RecordError(ValueError):
    """A JSON-lines record that is not an article; carries the reason in Vietnamese too."""

    def __init__(self, message: str, *, vi: str) -> None:
        super().__init__(message)
        self.vi = vi


def _jsonl_record(path: Path, record: object) -> RawDocument:
    """One `{"id", "title", "text"}` record (plus optional `date`, `url`, `source`); ValueError if malformed."""
    if not isinstance(record, dict):
        raise _RecordError("expected a JSON object", vi="cần một đối tượng JSON")
    doc_id = record.get("id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise _RecordError('missing "id"', vi='thiếu "id"')
    body = record.get("text")
    if not isinstance(body, str) or not body.strip():
        raise _RecordError('missing or empty "text"', vi='thiếu hoặc trống "text"')
    optional: dict[str, str | None] = {}
    for key in ("title", "date", "url", "source"):
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise _RecordError(f'"{key}" must be a string', vi=f'"{key}" phải là một chuỗi')
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
