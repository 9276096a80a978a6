"""Loading files and folders: supported kinds, NFC, unique ids, and bad inputs skipped with a reason."""

from __future__ import annotations

import os

import json
import unicodedata
from pathlib import Path

import pytest

from index.cleaning import clean_article
from index.documents import RawDocument, Skipped
from index.errors import UnreadableFileError
from index.loading import load_documents, read_document_file

CORPUS = Path(__file__).resolve().parents[2] / "index" / "corpus"


def _reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in skipped}


def test_the_bundled_corpus_loads_in_sorted_order_with_stem_ids() -> None:
    documents, skipped = load_documents([CORPUS])
    assert skipped == []
    assert [d.doc_id for d in documents] == sorted(p.stem for p in CORPUS.glob("*.txt"))
    assert documents[0].doc_id == "000_4ba1eb3306e6e18e"
    assert all(d.kind == "text" and d.path and d.title is None for d in documents)
    assert documents[4].text == (CORPUS / "004_8775d9b0c7bf92f4.txt").read_text(encoding="utf-8")


def test_bad_files_are_skipped_with_their_reason_and_the_rest_loads(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Tiêu đề\n\nNội dung bài báo.", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\t\n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes("Café à Paris, été".encode("latin-1"))
    (tmp_path / "controls.txt").write_bytes(bytes(range(1, 32)) * 10)
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    documents, skipped = load_documents([tmp_path])
    assert [d.doc_id for d in documents] == ["good"]
    reasons = _reasons(skipped)
    assert reasons["empty.txt"] == "empty file"
    assert reasons["blank.md"] == "empty file"
    assert reasons["binary.txt"].startswith("binary file")
    assert reasons["controls.txt"].startswith("binary file")
    assert reasons["latin1.txt"].startswith("not UTF-8 text")
    assert reasons["report.pdf"] == "unsupported file type '.pdf'"
    assert reasons["broken.txt"] == "unreadable: broken symbolic link"
    assert len(skipped) == 7


def test_a_folder_named_like_a_file_is_unreadable_as_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "x.txt"
    folder.mkdir()
    (folder / "inner.txt").write_text("Bài bên trong thư mục.", encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="is a folder"):
        read_document_file(folder)
    documents, skipped = load_documents([tmp_path])
    assert [d.doc_id for d in documents] == ["inner"] and skipped == []


def test_missing_paths_are_skipped_not_raised(tmp_path: Path) -> None:
    documents, skipped = load_documents([tmp_path / "missing", tmp_path / "gone.txt"])
    assert documents == []
    assert [s.reason for s in skipped] == ["no such file or folder"] * 2


def test_encodings_with_a_bom_and_nfd_text_become_nfc(tmp_path: Path) -> None:
    text = "Hội nghị sơ kết của Đảng ủy"
    (tmp_path / "a_sig.txt").write_bytes("\ufeff".encode() + text.encode("utf-8"))
    (tmp_path / "b_utf16.txt").write_bytes(text.encode("utf-16"))  # with BOM
    (tmp_path / "c_nfd.txt").write_text(unicodedata.normalize("NFD", text), encoding="utf-8")
    documents, skipped = load_documents([tmp_path])
    assert skipped == []
    assert [d.text for d in documents] == [text, text, text]
    assert unicodedata.normalize("NFD", text) != text  # the NFD file really was different


def test_hidden_files_are_ignored_and_a_file_listed_twice_loads_once(tmp_path: Path) -> None:
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.txt").write_text("nội bộ", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Bài một.", encoding="utf-8")
    documents, skipped = load_documents([tmp_path, tmp_path / "a.txt"])
    assert [d.doc_id for d in documents] == ["a"] and skipped == []


def test_files_sharing_a_stem_get_their_relative_path_as_id(tmp_path: Path) -> None:
    for folder in ("b", "a"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "tin.txt").write_text(f"Bài ở thư mục {folder}.", encoding="utf-8")
    (tmp_path / "a" / "tin.md").write_text("# Bài markdown\n\nNội dung.", encoding="utf-8")
    (tmp_path / "only.txt").write_text("Một mình.", encoding="utf-8")
    documents, _ = load_documents([tmp_path])
    assert [d.doc_id for d in documents] == ["a/tin.md", "a/tin.txt", "b/tin", "only"]
    assert [d.kind for d in documents] == ["markdown", "text", "text", "text"]


def test_jsonl_good_lines_load_and_bad_lines_are_skipped_with_their_number(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a1", "title": "Hội nghị", "text": "Nội dung một.", "date": "2019-08-02", "url": "https://x.vn/a1", "source": "Báo X"}),
        "",
        "{not json",
        json.dumps({"id": "a2", "text": ""}),
        json.dumps(["a", "list"]),
        json.dumps({"id": 7, "title": "Số", "text": "Id là số nguyên."}),
        json.dumps({"id": "a3", "title": "Ngày sai kiểu", "text": "x", "date": 20190802}),
        json.dumps({"title": "Không id", "text": "y"}),
        json.dumps({"id": "a1", "title": "Trùng", "text": "Trùng id."}),
        json.dumps({"id": "a4", "title": unicodedata.normalize("NFD", "Đảng ủy"), "text": "Câu cuối."}),
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    documents, skipped = load_documents([path])
    assert [d.doc_id for d in documents] == ["a1", "7", "a4"]
    first = documents[0]
    assert (first.title, first.date, first.url, first.source, first.kind, first.path) == (
        "Hội nghị", "2019-08-02", "https://x.vn/a1", "Báo X", "jsonl", str(path)
    )
    assert documents[1].date is None and documents[1].url is None
    assert documents[2].title == "Đảng ủy"  # NFC
    reasons = [s.reason for s in skipped]
    assert reasons[0].startswith("line 3: invalid JSON")
    assert reasons[1:5] == [
        'line 4: missing or empty "text"',
        "line 5: expected a JSON object",
        'line 7: "date" must be a string',
        'line 8: missing "id"',
    ]
    assert reasons[5].startswith("duplicate id 'a1'")
    assert len(skipped) == 6
    assert [s.in_language("vi") for s in skipped[1:5]] == [
        'dòng 4: thiếu hoặc trống "text"',
        "dòng 5: cần một đối tượng JSON",
        'dòng 7: "date" phải là một chuỗi',
        'dòng 8: thiếu "id"',
    ]


HTML_PAGE = """<!doctype html>
<html><head><title>Triển khai nhiệm vụ - Báo Tỉnh</title>
<meta property="article:published_time" content="2019-08-02T10:15:00+07:00">
<meta property="og:site_name" content="Báo Tỉnh">
<link rel="canonical" href="https://baotinh.vn/trien-khai.html">
<style>.menu { color: red }</style><script>trackVisitor();</script></head>
<body>
<header class="site"><div class="logo">BÁO TỈNH</div><nav><a href="/">Trang chủ</a> <a href="/xh">Xã hội</a></nav></header>
<article>
  <header><h1>Đảng ủy Khối   triển khai nhiệm vụ</h1></header>
  <p>Sáng 2-8, Ban Thường vụ tổ chức <strong>Hội nghị</strong>
     sơ kết 6 tháng đầu năm.</p>
  <figure><img src="a.jpg" alt=""><figcaption>Các đại biểu tham dự hội nghị.</figcaption></figure>
  <p>Đảng ủy đã kết nạp 3.463 đảng viên.<br>Tỷ lệ đạt 87,8%.</p>
  <form><input name="q"><button>Tìm</button></form>
  <p>Chia sẻ</p>
</article>
<aside><h2>Tin liên quan</h2><ul><li><a href="/b">Bài khác hoàn toàn</a></li></ul></aside>
<footer>© Báo Tỉnh. Ghi rõ nguồn khi phát hành lại.</footer>
<noscript>Bật JavaScript</noscript><iframe src="ads"></iframe>
</body></html>"""


def test_html_loses_markup_and_chrome_and_keeps_blocks_and_hints(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(HTML_PAGE, encoding="utf-8")
    documents, skipped = load_documents([tmp_path])
    assert skipped == []
    doc = documents[0]
    assert (doc.doc_id, doc.kind) == ("page", "html")
    assert doc.title == "Đảng ủy Khối triển khai nhiệm vụ"
    assert doc.date == "2019-08-02T10:15:00+07:00"
    assert doc.source == "Báo Tỉnh" and doc.url == "https://baotinh.vn/trien-khai.html"
    for chrome in ("trackVisitor", "color: red", "Trang chủ", "BÁO TỈNH", "Bài khác", "Ghi rõ nguồn", "JavaScript", "Tìm", "<"):
        assert chrome not in doc.text
    lines = [line for line in doc.text.split("\n") if line]
    assert "Sáng 2-8, Ban Thường vụ tổ chức Hội nghị sơ kết 6 tháng đầu năm." in lines
    assert "Đảng ủy đã kết nạp 3.463 đảng viên." in lines and "Tỷ lệ đạt 87,8%." in lines
    article = clean_article(doc)
    assert (article.title, article.date, article.source) == ("Đảng ủy Khối triển khai nhiệm vụ", "2019-08-02", "Báo Tỉnh")
    assert article.text == (
        "Sáng 2-8, Ban Thường vụ tổ chức Hội nghị sơ kết 6 tháng đầu năm.\n\n"
        "Các đại biểu tham dự hội nghị.\n\n"
        "Đảng ủy đã kết nạp 3.463 đảng viên.\n\nTỷ lệ đạt 87,8%."
    )


def test_html_without_text_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "menu.htm").write_text("<html><body><nav>Trang chủ</nav><script>x()</script></body></html>", encoding="utf-8")
    documents, skipped = load_documents([tmp_path])
    assert documents == [] and skipped[0].reason.startswith("HTML page without any text")


def test_html_title_falls_back_to_the_title_tag(tmp_path: Path) -> None:
    (tmp_path / "t.html").write_text("<html><head><title>Tiêu đề trang</title></head><body><p>Đoạn văn.</p></body></html>", encoding="utf-8")
    (doc,), _ = load_documents([tmp_path])
    assert doc.title == "Tiêu đề trang" and doc.text == "Đoạn văn." and doc.date is None


def test_markdown_loads_and_cleans(tmp_path: Path) -> None:
    (tmp_path / "bai.md").write_text("# Hội nghị sơ kết\n\nNội dung **chính**\ncủa bài.\n", encoding="utf-8")
    (doc,), _ = load_documents([tmp_path])
    assert isinstance(doc, RawDocument) and doc.kind == "markdown"
    article = clean_article(doc)
    assert (article.title, article.text) == ("Hội nghị sơ kết", "Nội dung chính của bài.")


def test_a_file_without_read_permission_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, whom chmod 000 does not stop, so the refusal is simulated at the read.
    locked = tmp_path / "locked.txt"
    locked.write_text("bí mật", encoding="utf-8")
    (tmp_path / "open.txt").write_text("Công khai.", encoding="utf-8")
    real_open = os.open

    def refusing_open(path, flags, *args):
        if Path(path).name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    documents, skipped = load_documents([tmp_path])
    assert [d.doc_id for d in documents] == ["open"]
    assert skipped == [Skipped(str(locked), "unreadable: permission denied", vi="không đọc được: không có quyền đọc")]
