"""Cleaning and metadata on the five real sample articles, quirk by quirk, and on small made-up inputs."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from index.cleaning import (
    clean_article,
    derive_title,
    infer_year,
    is_byline,
    is_chrome,
    is_stray,
    near_duplicate,
    parse_date_hint,
    parse_date_stamp,
)
from index.documents import Article, RawDocument

CORPUS = Path(__file__).resolve().parents[2] / "index" / "corpus"

# What cleaning must take out of each real article, line by line (after whitespace normalisation);
# every other non-empty line must be a body paragraph, in order. Stray `.`/`,`/`3`/`4` lines and
# NBSP-only lines are checked separately.
REMOVED = {
    "000_4ba1eb3306e6e18e": [
        "Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối Các cơ quan tỉnh",
        "Khánh Hồng",
    ],
    "001_f6c7d3c508b4bd76": [
        "Thứ Hai, 08/10/2018, 19:46 (GMT+7)",
        "Cần phát huy vai trò của đảng viên là cán bộ, công chức, viên chức",
        # the shorter copy of a caption printed twice
        "Đồng chí Thái Ngọc Bảo Trâm, Bí thư Đảng ủy Khối các cơ quan phát biểu",
        "Đại biểu tham dự Hội nghị",
        "P. MAI",
    ],
    "002_0dc449bf4ae97b1a": [
        "Đảng ủy Khối các cơ quan tỉnh triển khai nhiệm vụ cuối năm 2019",
        "Cập nhật lúc 15:34, Thứ Sáu, 02/08/2019 (GMT+7)",
        "Các đại biểu tham dự hội nghị.",
        "Bí thư Đảng ủy Khối các cơ quan tỉnh Trần Đình Quế phát biểu kết luận hội nghị.",
        "Duy Tiến",
    ],
    "003_e35ce0b84459139b": [
        "Cập nhật lúc: 07:38, 11/06/2016 [GMT+7]",
        "Đảng ủy Khối các cơ quan tỉnh: Tập trung hướng về cơ sở",
        "TIN LIÊN QUAN",
        "Tọa đàm là một trong những hoạt động góp phần tích cực nâng cao hiệu quả công tác lãnh đạo, chỉ đạo"
        " công tác xây dựng Đảng của Đảng ủy Khối các cơ quan tỉnh thời gian qua.",
        "Bài, ảnh: X.THIÊN",
    ],
    "004_8775d9b0c7bf92f4": [
        "Thanh Giang – Văn Hương",
        "Ý kiến bạn đọc",
    ],
}
OUTLET_PREFIX = {"000_4ba1eb3306e6e18e": "(THTG) ", "003_e35ce0b84459139b": "(Báo Quảng Ngãi)- "}


def _raw(article_id: str) -> str:
    return (CORPUS / f"{article_id}.txt").read_text(encoding="utf-8")


def _clean(article_id: str) -> Article:
    path = CORPUS / f"{article_id}.txt"
    return clean_article(RawDocument(doc_id=article_id, text=_raw(article_id), path=str(path)))


def _normalise(line: str) -> str:
    line = re.sub(r" +", " ", line.replace("\xa0", " ")).strip()
    return re.sub(r"\s+\|$", "", line)


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.casefold()))


@pytest.fixture(scope="module")
def articles() -> dict[str, Article]:
    return {article_id: _clean(article_id) for article_id in REMOVED}


def test_the_bundled_corpus_is_the_five_sample_articles() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.txt")) == sorted(REMOVED)


@pytest.mark.parametrize(
    ("article_id", "title", "inferred"),
    [
        ("000_4ba1eb3306e6e18e", "Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối Các cơ quan tỉnh", False),
        ("001_f6c7d3c508b4bd76", "Cần phát huy vai trò của đảng viên là cán bộ, công chức, viên chức", False),
        ("002_0dc449bf4ae97b1a", "Đảng ủy Khối các cơ quan tỉnh triển khai nhiệm vụ cuối năm 2019", False),
        ("003_e35ce0b84459139b", "Đảng ủy Khối các cơ quan tỉnh: Tập trung hướng về cơ sở", False),
        # no headline at all: derived from the first sentence, the time clause "Sáng ngày 29/9, " dropped
        ("004_8775d9b0c7bf92f4", "Ban Tổ chức Tỉnh ủy đã tổ chức Hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu năm", True),
    ],
)
def test_titles(articles: dict[str, Article], article_id: str, title: str, inferred: bool) -> None:
    assert articles[article_id].title == title
    assert articles[article_id].title_inferred is inferred


@pytest.mark.parametrize(
    ("article_id", "iso", "inferred"),
    [
        ("000_4ba1eb3306e6e18e", "2014-10-29", True),  # "Sáng ngày 29/10" + "9 tháng đầu năm 2014"
        ("001_f6c7d3c508b4bd76", "2018-10-08", False),  # "Thứ Hai, 08/10/2018, 19:46 (GMT+7)" above the title
        ("002_0dc449bf4ae97b1a", "2019-08-02", False),  # "Cập nhật lúc 15:34, Thứ Sáu, 02/08/2019" below it
        ("003_e35ce0b84459139b", "2016-06-11", False),  # "Cập nhật lúc: 07:38, 11/06/2016 [GMT+7]", day first
        ("004_8775d9b0c7bf92f4", "2023-09-29", True),  # "Sáng ngày 29/9" + "9 tháng đầu năm 2023"
    ],
)
def test_dates(articles: dict[str, Article], article_id: str, iso: str, inferred: bool) -> None:
    assert articles[article_id].date == iso
    assert articles[article_id].date_inferred is inferred


@pytest.mark.parametrize(
    ("article_id", "source", "byline"),
    [
        ("000_4ba1eb3306e6e18e", "THTG", "Khánh Hồng"),
        ("001_f6c7d3c508b4bd76", None, "P. MAI"),
        ("002_0dc449bf4ae97b1a", None, "Duy Tiến"),
        ("003_e35ce0b84459139b", "Báo Quảng Ngãi", "Bài, ảnh: X.THIÊN"),
        ("004_8775d9b0c7bf92f4", None, "Thanh Giang – Văn Hương"),
    ],
)
def test_outlets_and_bylines(articles: dict[str, Article], article_id: str, source: str | None, byline: str) -> None:
    assert articles[article_id].source == source
    assert articles[article_id].byline == byline
    assert byline not in articles[article_id].text


def test_outlet_marker_leaves_the_sentence(articles: dict[str, Article]) -> None:
    assert articles["000_4ba1eb3306e6e18e"].text.startswith("Sáng ngày 29/10, Đoàn công tác Tỉnh ủy do ông Trần Thế Ngọc")
    assert articles["003_e35ce0b84459139b"].text.startswith("Bên cạnh việc khắc phục những hạn chế, tồn tại,")
    assert "(THTG)" not in articles["000_4ba1eb3306e6e18e"].text
    assert "(Báo Quảng Ngãi)" not in articles["003_e35ce0b84459139b"].text


@pytest.mark.parametrize("article_id", sorted(REMOVED))
def test_body_is_every_other_line_in_order(articles: dict[str, Article], article_id: str) -> None:
    """Nothing is lost: the body is exactly the raw lines minus debris and metadata, in order."""
    to_remove = Counter(REMOVED[article_id])
    expected: list[str] = []
    for raw_line in _raw(article_id).split("\n"):
        line = _normalise(raw_line)
        if not line or is_stray(line):
            continue
        if to_remove[line]:
            to_remove[line] -= 1
            continue
        expected.append(line)
    assert not +to_remove, f"expected removals not found in the raw file: {+to_remove}"
    prefix = OUTLET_PREFIX.get(article_id)
    if prefix:
        assert expected[0].startswith(prefix)
        expected[0] = expected[0][len(prefix) :]
    assert articles[article_id].text.split("\n\n") == expected


@pytest.mark.parametrize("article_id", sorted(REMOVED))
def test_every_word_of_the_raw_file_is_accounted_for(articles: dict[str, Article], article_id: str) -> None:
    """Each word is in the body or the metadata, or belongs to a date stamp, page chrome or a stray number.

    A dropped copy of a caption does not count as accounted for: its words must survive in the copy kept.
    """
    article = articles[article_id]
    kept = set(_words(article.text)) | set(_words(article.title)) | set(_words(article.byline or "")) | set(_words(article.source or ""))
    debris = {"3", "4"}  # the stray page numbers of 000
    for line in REMOVED[article_id]:
        if is_chrome(line) or parse_date_stamp(line):
            debris |= set(_words(line))
    missing = set(_words(_raw(article_id))) - kept - debris
    assert missing == set()


@pytest.mark.parametrize("article_id", sorted(REMOVED))
def test_no_debris_left(articles: dict[str, Article], article_id: str) -> None:
    text = articles[article_id].text
    assert unicodedata.is_normalized("NFC", text)
    assert "\xa0" not in text and "  " not in text and "\n\n\n" not in text
    for paragraph in text.split("\n\n"):
        assert paragraph == paragraph.strip() and paragraph
        assert not is_stray(paragraph), paragraph
        assert not is_chrome(paragraph), paragraph
        assert not paragraph.endswith("|"), paragraph
    assert "TIN LIÊN QUAN" not in text and "Ý kiến bạn đọc" not in text


def test_captions_printed_twice_are_kept_once_the_fuller(articles: dict[str, Article]) -> None:
    paragraphs_001 = articles["001_f6c7d3c508b4bd76"].text.split("\n\n")
    assert paragraphs_001.count("Đại biểu tham dự Hội nghị.") == 1
    assert "Đại biểu tham dự Hội nghị" not in paragraphs_001
    assert "Đồng chí Thái Ngọc Bảo Trâm, Tỉnh ủy viên, Bí thư Đảng ủy Khối các cơ quan phát biểu kết luận Hội nghị." in paragraphs_001
    # alt text and caption that each say something the other does not: both stay
    assert "Đồng chí Trần Long Thôn, Trưởng Ban Dân vận Tỉnh uỷ phát biểu tại hội nghị" in paragraphs_001
    assert "Đồng chí Trần Long Thôn phát biểu chỉ đạo tại hội nghị." in paragraphs_001
    text_002 = articles["002_0dc449bf4ae97b1a"].text
    assert text_002.count("Các đại biểu tham dự hội nghị.") == 1
    assert text_002.count("Trần Đình Quế phát biểu kết luận hội nghị.") == 1
    assert articles["003_e35ce0b84459139b"].text.count("Tọa đàm là một trong những hoạt động") == 1


def test_captions_lose_their_bar_and_keep_their_own_paragraph(articles: dict[str, Article]) -> None:
    paragraphs = articles["004_8775d9b0c7bf92f4"].text.split("\n\n")
    assert "Trưởng Ban Tổ chức Tỉnh ủy Nguyễn Minh Tiến chủ trì hội nghị" in paragraphs
    assert "Phó Trưởng ban Thường trực Ban Tổ chức Tỉnh ủy Nguyễn Văn Tuệ điều hành thảo luận" in paragraphs
    assert "|" not in articles["004_8775d9b0c7bf92f4"].text


def test_section_headings_and_squeezed_spaces(articles: dict[str, Article]) -> None:
    paragraphs = articles["003_e35ce0b84459139b"].text.split("\n\n")
    assert "Khắc phục những hạn chế" in paragraphs
    assert "Hướng về cơ sở" in paragraphs
    assert "tỉnh là hướng về cơ sở" in articles["003_e35ce0b84459139b"].text  # "là\xa0 hướng"
    assert paragraphs[-1].endswith("hướng dẫn của cấp trên.")


# --- the rules one by one -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Thứ Hai, 08/10/2018, 19:46 (GMT+7)", date(2018, 10, 8)),
        ("Cập nhật lúc 15:34, Thứ Sáu, 02/08/2019 (GMT+7)", date(2019, 8, 2)),
        ("Cập nhật lúc: 07:38, 11/06/2016 [GMT+7]", date(2016, 6, 11)),
        ("Chủ nhật, 2019-08-04", date(2019, 8, 4)),
        ("Ngày 15-5-2009 Đảng ủy ban hành Nghị quyết số 01", None),  # a sentence, not a stamp
        ("Cập nhật lúc 15:34, 31/02/2019", None),  # no such day
        ("Đại biểu tham dự Hội nghị", None),
    ],
)
def test_parse_date_stamp(line: str, expected: date | None) -> None:
    assert parse_date_stamp(line) == expected


def test_parse_date_hint_accepts_iso_timestamps_and_day_first() -> None:
    assert parse_date_hint("2019-08-02T10:00:00+07:00") == date(2019, 8, 2)
    assert parse_date_hint("02/08/2019") == date(2019, 8, 2)
    assert parse_date_hint("soon") is None


def test_infer_year_prefers_the_most_frequent_then_the_latest() -> None:
    assert infer_year("9 tháng đầu năm 2014; nhiệm kỳ 2010-2015; năm 2014") == 2014
    assert infer_year("năm 2022 và năm 2023") == 2023
    assert infer_year("không có năm nào, chỉ 3.463 đảng viên") is None


@pytest.mark.parametrize(
    "line", ["Khánh Hồng", "P. MAI", "Duy Tiến", "Bài, ảnh: X.THIÊN", "Thanh Giang – Văn Hương", "Ảnh: NGUYỄN VĂN A"]
)
def test_bylines(line: str) -> None:
    assert is_byline(line)


@pytest.mark.parametrize(
    "line",
    [
        "Hướng về cơ sở",  # a section heading
        "Hội nghị kết thúc lúc 11 giờ.",  # a real closing sentence
        "Trưởng Ban Tổ chức Tỉnh ủy Nguyễn Minh Tiến chủ trì hội nghị",  # a caption
        "Đại biểu Quốc Hội Khóa XV Tham Dự Hội Nghị Tổng Kết",  # too long for names
        "Năm 2023",
    ],
)
def test_not_bylines(line: str) -> None:
    assert not is_byline(line)


@pytest.mark.parametrize("line", ["Ý kiến bạn đọc", "TIN LIÊN QUAN", "Chia sẻ", "Bình luận (3)", "In bài", "Tags: Đảng ủy, hội nghị"])
def test_chrome_lines(line: str) -> None:
    assert is_chrome(line)


def test_chrome_is_only_a_whole_line() -> None:
    assert not is_chrome("Ý kiến bạn đọc được tổng hợp gửi Ban Tổ chức.")
    assert not is_chrome("Chia sẻ kinh nghiệm xây dựng Đảng")


@pytest.mark.parametrize("line", ["3", "4", ".", ",", "...", "--- * ---", "2019"])
def test_stray_lines(line: str) -> None:
    assert is_stray(line)


def test_near_duplicates() -> None:
    assert near_duplicate("Đại biểu tham dự Hội nghị", "Đại biểu tham dự Hội nghị.")
    assert not near_duplicate("Hướng về cơ sở", "Một trong những nét mới là hướng về cơ sở, thường xuyên cử cán bộ.")
    assert not near_duplicate(
        "Đồng chí Trần Long Thôn, Trưởng Ban Dân vận Tỉnh uỷ phát biểu tại hội nghị",
        "Đồng chí Trần Long Thôn phát biểu chỉ đạo tại hội nghị.",
    )


def test_derive_title_cuts_a_long_sentence_at_a_word_boundary() -> None:
    words = " ".join(f"Từ{i}" for i in range(60))
    title = derive_title(f"{words} cuối cùng. Câu hai.")
    assert title.endswith("…") and len(title) <= 101
    assert title[:-1] in words and title[:-1].split()[-1] in words.split()
    assert derive_title("Hội nghị tổng kết năm. Câu hai.") == "Hội nghị tổng kết năm"


def _doc(text: str, **hints: str) -> RawDocument:
    return RawDocument(doc_id="d", text=text, path=None, **hints)


def test_a_real_last_sentence_is_not_eaten_as_a_byline() -> None:
    article = clean_article(_doc("Tiêu đề bài viết\n\nCâu mở đầu của bài.\n\nHội nghị kết thúc lúc 11 giờ."))
    assert article.byline is None
    assert article.text == "Câu mở đầu của bài.\n\nHội nghị kết thúc lúc 11 giờ."


def test_day_month_without_any_year_gives_no_date() -> None:
    article = clean_article(_doc("Sáng ngày 29/9, Ban Tổ chức họp. Không nói năm nào."))
    assert article.date is None and not article.date_inferred
    assert article.title_inferred and article.title == "Ban Tổ chức họp"


def test_full_date_in_the_lead_is_not_inferred() -> None:
    article = clean_article(_doc("Tiêu đề\n\nSáng 2/8/2019, Ban Thường vụ họp. Năm 2020 sẽ khác."))
    assert article.date == "2019-08-02" and not article.date_inferred


def test_given_metadata_wins_and_a_repeated_title_line_goes() -> None:
    doc = _doc(
        "Hội nghị sơ kết\n(THTG) Sáng 2-8, hội nghị diễn ra.\n.\nTIN LIÊN QUAN\nẢnh minh họa |\nẢnh minh họa.",
        title="Hội nghị sơ kết",
        date="2019-08-02",
        source="Báo Tây Ninh",
        url="https://example.vn/a",
        kind="jsonl",
    )
    article = clean_article(doc)
    assert (article.title, article.title_inferred, article.date, article.date_inferred) == ("Hội nghị sơ kết", False, "2019-08-02", False)
    assert article.source == "Báo Tây Ninh" and article.url == "https://example.vn/a"
    assert article.text == "Sáng 2-8, hội nghị diễn ra.\n\nẢnh minh họa."


@pytest.mark.parametrize(
    ("first_line", "outlet", "body"),
    [
        ("(TTXVN) Sáng nay, hội nghị khai mạc.", "TTXVN", "Sáng nay, hội nghị khai mạc."),
        ("(Chinhphu.vn) - Sáng nay, hội nghị khai mạc.", "Chinhphu.vn", "Sáng nay, hội nghị khai mạc."),
        ("(Ảnh minh họa) Hội nghị khai mạc.", None, "(Ảnh minh họa) Hội nghị khai mạc."),
    ],
)
def test_outlet_markers(first_line: str, outlet: str | None, body: str) -> None:
    article = clean_article(_doc(f"Tiêu đề bài\n{first_line}\nCâu thứ hai."))
    assert article.source == outlet
    assert article.text == f"{body}\n\nCâu thứ hai."


def test_markdown_headings_links_and_soft_wraps() -> None:
    doc = _doc(
        "# Hội nghị **sơ kết** 2019\n\nĐoạn một được\ngói dòng, xem [báo](https://x.vn).\n\n## Phần hai\n\n- mục một\n- mục hai\n",
        kind="markdown",
    )
    article = clean_article(doc)
    assert article.title == "Hội nghị sơ kết 2019" and not article.title_inferred
    assert article.text == "Đoạn một được gói dòng, xem báo.\n\nPhần hai\n\n- mục một\n\n- mục hai"


def test_nothing_but_debris_leaves_an_empty_body() -> None:
    article = clean_article(_doc(".\n3\n\xa0\nTIN LIÊN QUAN\n,"))
    assert (article.text, article.title, article.date, article.byline) == ("", "", None, None)


def test_cleaning_is_deterministic(articles: dict[str, Article]) -> None:
    assert _clean("003_e35ce0b84459139b") == articles["003_e35ce0b84459139b"]
