"""Loading, cleaning and chunking fed hostile input: nothing raises, and nothing of the text is lost.

Properties, on hypothesis-generated text and bytes (see `tests/hostile.py`):
- `load_documents` never raises: a file it cannot use becomes a `Skipped` with a reason;
- `clean_article` and `split_into_chunks` never raise; every chunk is `article.text[start:end]`, in order,
  non-empty, and together the chunks cover every non-whitespace character of the body;
- every word of a plain-text file ends up in the body or the metadata, unless its line was debris
  (stray, page chrome, a date stamp): the accounting of `test_cleaning`, on arbitrary text;
- what comes out is NFC, whatever normalisation went in.
One-megabyte lines run once each, as explicit cases: they guard against regexes that backtrack
quadratically (each of them took hours before the fix that came with this file).
"""

from __future__ import annotations

import codecs
import json
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from index.chunking import split_into_chunks
from index.cleaning import clean_article, is_chrome, is_stray, parse_date_stamp
from index.documents import Article, RawDocument, Skipped
from index.loading import load_documents
from tests.hostile import fuzz_settings, hostile_text, nfd
from tests.unit.test_chunking import _check_chunks
from tests.unit.test_cleaning import _normalise, _words

SIZE_WORDS = (1, 7, 60, 160)


def _chunk_everything(article: Article) -> None:
    """Chunk at a few sizes: offsets reproduce the text and cover all of it (or no chunk for no text)."""
    for size in SIZE_WORDS:
        chunks = split_into_chunks(article, size_words=size, overlap_sentences=size % 3)
        if article.text.strip():
            assert chunks
            _check_chunks(article, chunks, size)
        else:
            assert chunks == []


def _check_article(article: Article) -> None:
    for value in (article.text, article.title, article.byline, article.source):
        assert value is None or unicodedata.is_normalized("NFC", value), repr(value)
    assert article.text == article.text.strip()
    assert "\r" not in article.text and "\u2028" not in article.text and "\n\n\n" not in article.text
    _chunk_everything(article)


def _visible_words(text: str) -> set[str]:
    """Words as `test_cleaning` counts them, after dropping invisible format characters (ZWSP, BOM, RLM),
    which cleaning may delete from inside a word."""
    visible = "".join(ch for ch in unicodedata.normalize("NFC", text) if unicodedata.category(ch) != "Cf")
    return set(_words(unicodedata.normalize("NFC", visible)))


def _debris_words(raw: str) -> set[str]:
    """Words of the raw lines that cleaning may drop whole: stray lines, page chrome, date stamps."""
    debris: set[str] = set()
    for raw_line in raw.splitlines():
        line = _normalise(" ".join(_strip_format(raw_line).split()))
        if is_stray(line) or is_chrome(line) or parse_date_stamp(line):
            debris |= _visible_words(line)
    return debris


def _strip_format(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


# --- cleaning and chunking ------------------------------------------------------------------------


@fuzz_settings(250)
@given(raw=hostile_text(60))
@example(raw="")
@example(raw=" \n\t\u3000\u2028\r\n")
@example(raw="e\u200b\u0301 Câu có dấu tách rời.")  # dropping the ZWSP leaves e + combining acute
@example(raw="Tiêu đề\u2028Câu một. Câu hai.\x85Câu ba\x0bCâu bốn\x1cCâu năm")
@example(raw="A. B. C. D. E. F.\n3\n.\nTIN LIÊN QUAN\nẢnh |\nẢnh.")
def test_clean_and_chunk_any_plain_text(raw: str) -> None:
    text = unicodedata.normalize("NFC", raw)  # what loading hands over
    article = clean_article(RawDocument(doc_id="fuzz", text=text, path=None))
    _check_article(article)
    kept = set().union(*(_visible_words(v or "") for v in (article.text, article.title, article.byline, article.source)))
    missing = _visible_words(text) - kept - _debris_words(text)
    assert not missing, f"words lost by cleaning: {sorted(missing)[:10]}"


@fuzz_settings(150)
@given(raw=hostile_text(60), kind=st.sampled_from(["markdown", "jsonl", "html"]),
       title=st.none() | hostile_text(6), date=st.none() | hostile_text(4))
@example(raw="**e**\u0301 Đậm rồi dấu.", kind="markdown", title=None, date=None)
@example(raw="# Tiêu đề ##   \nDòng một\ndòng hai\n- mục\n[a](b) ![c](d) [[x]](y)", kind="markdown", title=None, date=None)
def test_clean_and_chunk_any_document_with_hints(raw: str, kind: str, title: str | None, date: str | None) -> None:
    """Markdown syntax and container hints (title, date) of any shape: no crash, same invariants."""
    doc = RawDocument(doc_id="fuzz", text=unicodedata.normalize("NFC", raw), path=None, kind=kind,  # type: ignore[arg-type]
                      title=title and unicodedata.normalize("NFC", title), date=date)
    _check_article(clean_article(doc))


@fuzz_settings(100)
@given(raw=hostile_text(40))
def test_decomposed_text_cleans_like_composed_text(raw: str) -> None:
    """NFD input (Vietnamese typed with combining marks) loads into the same article as NFC input."""
    with tempfile.TemporaryDirectory() as folder:
        composed, decomposed = Path(folder, "a.txt"), Path(folder, "b.txt")
        composed.write_text(unicodedata.normalize("NFC", raw), encoding="utf-8", newline="")
        decomposed.write_text(nfd(raw), encoding="utf-8", newline="")
        documents, skipped = load_documents([composed, decomposed])
    if len(documents) == 2:  # NFD is longer, so the share of control characters may differ
        first, second = (clean_article(d) for d in documents)
        assert first.text == second.text and first.title == second.title
    assert len(documents) + len(skipped) == 2


# --- loading --------------------------------------------------------------------------------------


def _encodings(text: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from([
        text.encode("utf-8"),
        codecs.BOM_UTF8 + text.encode("utf-8"),
        text.encode("utf-16"),  # with its BOM
        text.encode("utf-16-le"),  # without: NUL bytes, binary
        text.encode("cp1258", errors="replace"),  # Vietnamese Windows code page: not UTF-8
        text.encode("utf-8")[:-1],  # cut in the middle of a character, maybe
    ])


file_bytes = st.one_of(
    st.binary(max_size=300),
    hostile_text(40).flatmap(_encodings),
)


@fuzz_settings(150)
@given(contents=st.lists(st.tuples(st.sampled_from([".txt", ".md", ".html", ".jsonl", ".htm"]), file_bytes),
                         min_size=1, max_size=4))
@example(contents=[(".txt", b""), (".md", b"   \n\t"), (".html", b"\x00\x01\x02"), (".txt", b"\xff\xfe\x00")])
@example(contents=[(".txt", "\ufeffCâu.".encode("utf-16")), (".txt", b"\xe1\xba"), (".jsonl", b"{\n")])
@example(contents=[(".txt", "Một câu dài có\x00 một NUL ở giữa.".encode("utf-16"))])  # NUL after decoding
def test_loading_any_bytes_never_raises(contents: list[tuple[str, bytes]]) -> None:
    """Every file is read or skipped with a reason; what is read is NFC text, clean and chunkable."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, (suffix, data) in enumerate(contents):
            path = Path(folder, f"f{i}{suffix}")
            path.write_bytes(data)
            paths.append(path)
        documents, skipped = load_documents([Path(folder)])
    assert all(isinstance(s, Skipped) and s.reason.strip() for s in skipped)
    reported = {d.path for d in documents} | {s.path for s in skipped}
    assert reported == {str(p) for p in paths}, "a file was neither read nor skipped"
    for document in documents:
        assert document.text.strip() and unicodedata.is_normalized("NFC", document.text)
        assert "\x00" not in document.text
        _check_article(clean_article(document))


_HTML_PARTS = st.sampled_from([
    "<p>", "</p>", "<div>", "</div>", "<article>", "</article>", "<h1>", "</h1>", "<title>", "</title>",
    "<script>", "</script>", "<style>", "<nav>", "<header>", "<br>", "<li>", "<table><tr><td>", "<!--", "-->",
    "<![CDATA[", "]]>", "&#0;", "&#xD800;", "&#x110000;", "&nbsp;", "&amp;", "&", "<", ">", "<pre>",
    '<meta property="article:published_time" content="', '<meta property="og:site_name" content="',
    '<link rel="canonical" href="', '">', "<svg><text>", "<template>", "<html>", "<body>", "</body>",
])


@fuzz_settings(120)
@given(parts=st.lists(st.one_of(_HTML_PARTS, hostile_text(4)), max_size=50))
@example(parts=["<div>" * 5000, "Sâu quá."])
@example(parts=["<html><head><title>", "e\u0301", "</title></head><body><p>", "\u200b", "</p></body></html>"])
def test_html_of_any_shape(parts: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "page.html")
        path.write_text("".join(parts), encoding="utf-8")
        documents, skipped = load_documents([path])
    assert len(documents) + len(skipped) == 1
    for document in documents:
        assert unicodedata.is_normalized("NFC", document.text)
        assert document.title is None or unicodedata.is_normalized("NFC", document.title)
        _check_article(clean_article(document))


_JSON_VALUE = st.one_of(st.none(), st.integers(), st.booleans(), hostile_text(6), st.lists(st.integers(), max_size=2))
_RECORD = st.fixed_dictionaries(
    {"id": st.one_of(hostile_text(3), st.integers(0, 99)), "text": hostile_text(30)},
    optional={"title": _JSON_VALUE, "date": _JSON_VALUE, "url": _JSON_VALUE, "source": _JSON_VALUE},
)


def _expected_ids(records: list[dict]) -> list[str]:
    """Ids of the records `load_documents` must return: well-formed ones, first of each id."""
    ids: list[str] = []
    for record in records:
        doc_id, text = record["id"], record["text"]
        if isinstance(doc_id, int):
            doc_id = str(doc_id)
        if not doc_id.strip() or not text.strip():
            continue
        if any(not (value is None or isinstance(value, str)) for key, value in record.items() if key not in ("id", "text")):
            continue
        doc_id = unicodedata.normalize("NFC", doc_id.strip())
        if doc_id not in ids:
            ids.append(doc_id)
    return ids


@fuzz_settings(120)
@given(records=st.lists(_RECORD, max_size=6), ascii_only=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]),
       junk=st.lists(hostile_text(5), max_size=2))
@example(records=[{"id": "a", "text": "Câu một.\u2028Câu hai.\x85Câu ba."}], ascii_only=False, newline="\n", junk=[])
def test_jsonl_keeps_every_good_record_whatever_its_content(records: list[dict], ascii_only: bool, newline: str,
                                                            junk: list[str]) -> None:
    """A record is read whatever characters its strings hold (raw U+2028 included); bad lines are skipped."""
    lines = [json.dumps(record, ensure_ascii=ascii_only) for record in records]
    junk_lines = [line for line in junk if line.strip() and not _is_json_line(line)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "corpus.jsonl")
        path.write_bytes(newline.join(lines + junk_lines).encode("utf-8"))
        documents, skipped = load_documents([path])
    if not any(line.strip() for line in lines + junk_lines) or _too_many_controls(lines + junk_lines):
        return  # an empty or binary-looking file is skipped whole, as it should be
    assert [d.doc_id for d in documents] == _expected_ids(records)
    assert all(s.reason.startswith("line ") or s.reason.startswith("duplicate id") for s in skipped)
    for document in documents:
        _check_article(clean_article(document))


def _is_json_line(line: str) -> bool:
    return any(part.strip() and _parses(part) for part in line.split("\n"))


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _too_many_controls(lines: list[str]) -> bool:
    text = "\n".join(lines)
    return "\x00" in text or sum(unicodedata.category(c) == "Cc" and c not in "\n\r\t\f" for c in text) > 0.05 * len(text)


# --- one-megabyte lines ---------------------------------------------------------------------------

# Name -> (file type, a line of about a megabyte); each took hours before, quadratic in its length.
_MEGABYTE_LINES = {
    "initials": (".txt", "A. " * 350_000),  # each period looked back over the whole unfinished sentence
    "whitespace run": (".txt", "Chữ" + " \u2028" * 350_000 + " |"),  # U+2028 was neither a break nor a space
    "one long sentence": (".txt", "Đảng ủy, " * 110_000),
    "mixed scripts": (".txt", "Đảng 中文 خبر 👍🏽 e\u0301 " * 50_000),
    "bracket openers": (".md", "[a" * 500_000),
    "image openers": (".md", "![a" * 340_000),
    "link openers": (".md", "[a](" * 250_000),
    "heading with trailing spaces": (".md", "# Tiêu đề" + " " * 1_000_000 + "x"),
    "soft-wrapped lines": (".md", "từ\n" * 250_000),  # each joined line was copied again
}


@pytest.mark.parametrize("name", sorted(_MEGABYTE_LINES))
def test_a_one_megabyte_line_loads_cleans_and_chunks(tmp_path: Path, name: str) -> None:
    """Run once each (not per example); about a second each now."""
    suffix, text = _MEGABYTE_LINES[name]
    path = tmp_path / f"long{suffix}"
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size >= 1_000_000
    documents, skipped = load_documents([path])
    assert skipped == []
    article = clean_article(documents[0])
    chunks = split_into_chunks(article, size_words=160, overlap_sentences=1)
    assert article.text and chunks
    _check_chunks(article, chunks, 160)
