"""Sentence splitting for Vietnamese news text and chunk offsets that reproduce the passage exactly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from index.chunking import split_into_chunks, split_into_sentences
from index.cleaning import clean_article
from index.documents import Article, Chunk, RawDocument

CORPUS = Path(__file__).resolve().parents[2] / "index" / "corpus"


def _sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_into_sentences(text)]


def _article(text: str, article_id: str = "a") -> Article:
    return Article(article_id, "t", False, None, False, None, None, None, None, text)


@pytest.fixture(scope="module")
def corpus() -> list[Article]:
    return [
        clean_article(RawDocument(doc_id=p.stem, text=p.read_text(encoding="utf-8"), path=str(p)))
        for p in sorted(CORPUS.glob("*.txt"))
    ]


# --- sentences ------------------------------------------------------------------------------------


def test_numbers_are_not_sentence_ends() -> None:
    text = "Toàn khối có 3.463 đảng viên, đạt 87,8% so với cả nhiệm kỳ. Nghị quyết số 01 ngày 15-5-2009 vẫn còn hiệu lực."
    assert _sentences(text) == [
        "Toàn khối có 3.463 đảng viên, đạt 87,8% so với cả nhiệm kỳ.",
        "Nghị quyết số 01 ngày 15-5-2009 vẫn còn hiệu lực.",
    ]


def test_abbreviations_and_initials_are_not_sentence_ends() -> None:
    text = (
        "PGS. TS. Nguyễn Văn A và Th.S Lê B về TP. Hồ Chí Minh. ThS. Trần C ở Tp. Huế đến U.S. Embassy. "
        "GS. Phạm D phát biểu. Bài, ảnh: X.THIÊN đến cùng P. MAI."
    )
    assert _sentences(text) == [
        "PGS. TS. Nguyễn Văn A và Th.S Lê B về TP. Hồ Chí Minh.",
        "ThS. Trần C ở Tp. Huế đến U.S. Embassy.",
        "GS. Phạm D phát biểu.",
        "Bài, ảnh: X.THIÊN đến cùng P. MAI.",
    ]


def test_ellipsis_before_lowercase_goes_on_and_closing_quotes_stay() -> None:
    text = "Chất lượng còn hạn chế… nhất là ở cơ sở. Ông nói: “Phải làm ngay!” Sau đó… Hội nghị kết thúc?"
    assert _sentences(text) == [
        "Chất lượng còn hạn chế… nhất là ở cơ sở.",
        "Ông nói: “Phải làm ngay!”",
        "Sau đó…",
        "Hội nghị kết thúc?",
    ]


def test_line_breaks_end_sentences_and_spans_are_stripped() -> None:
    text = "  Tiêu đề không dấu chấm  \n\nCâu một.  Câu hai.\nĐại biểu tham dự Hội nghị\n\n"
    spans = split_into_sentences(text)
    assert [text[s:e] for s, e in spans] == ["Tiêu đề không dấu chấm", "Câu một.", "Câu hai.", "Đại biểu tham dự Hội nghị"]
    assert all(text[s:e] == text[s:e].strip() for s, e in spans)


def test_no_sentences_in_blank_text() -> None:
    assert split_into_sentences("") == [] and split_into_sentences(" \n\n ") == []


def test_real_article_sentences_end_where_expected(corpus: list[Article]) -> None:
    article = next(a for a in corpus if a.article_id.startswith("001"))
    sentences = _sentences(article.text)
    assert "Từ đầu nhiệm kỳ đến nay, Đảng ủy Khối đã kết nạp 527/600 đảng viên (đạt 87,8% so với cả nhiệm kỳ)." in sentences
    assert any(s.startswith("Tính đến tháng 6-2018, toàn Đảng bộ khối có 3.463 đảng viên") for s in sentences)
    assert sentences[-1].endswith("trong các cơ quan, đơn vị….")


# --- chunks ---------------------------------------------------------------------------------------


def _check_chunks(article: Article, chunks: list[Chunk], size_words: int) -> None:
    text = article.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.article_id == article.article_id
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        assert len(chunk.text.split()) <= size_words
        # never mid-word
        assert chunk.start == 0 or text[chunk.start - 1].isspace()
        assert chunk.end == len(text) or text[chunk.end].isspace()
    assert all(a.start < b.start and a.end < b.end for a, b in zip(chunks, chunks[1:]))
    # every sentence's words are in some chunk
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


@pytest.mark.parametrize("size_words", [8, 25, 60, 160, 400])
@pytest.mark.parametrize("overlap", [0, 1, 2])
def test_chunks_of_every_article_reproduce_the_text(corpus: list[Article], size_words: int, overlap: int) -> None:
    for article in corpus:
        chunks = split_into_chunks(article, size_words=size_words, overlap_sentences=overlap)
        assert chunks
        _check_chunks(article, chunks, size_words)


def test_without_overlap_chunks_follow_each_other(corpus: list[Article]) -> None:
    for article in corpus:
        chunks = split_into_chunks(article, size_words=60, overlap_sentences=0)
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
        words = sum(len(c.text.split()) for c in chunks)
        assert words == len(article.text.split())


def test_consecutive_chunks_share_the_overlap_sentences() -> None:
    text = " ".join(f"Câu {i} có năm từ." for i in range(12))  # 12 sentences of 5 words
    chunks = split_into_chunks(_article(text), size_words=20, overlap_sentences=1)
    assert [len(c.text.split()) for c in chunks] == [20, 20, 20, 15]
    for previous, following in zip(chunks, chunks[1:]):
        last_sentence = _sentences(previous.text)[-1]
        assert following.text.startswith(last_sentence)
    two = split_into_chunks(_article(text), size_words=20, overlap_sentences=2)
    assert _sentences(two[1].text)[:2] == _sentences(two[0].text)[-2:]


def test_small_texts_make_one_chunk_and_empty_text_none() -> None:
    article = _article("Câu một. Câu hai.")
    assert split_into_chunks(article, size_words=160, overlap_sentences=1) == [Chunk("a", 0, 0, 17, "Câu một. Câu hai.")]
    assert split_into_chunks(_article(""), size_words=160, overlap_sentences=1) == []


def test_a_sentence_longer_than_the_size_is_cut_at_words() -> None:
    long_sentence = " ".join(f"Từ{i}" for i in range(45)) + "."
    article = _article(f"Câu ngắn đầu. {long_sentence} Câu cuối.")
    chunks = split_into_chunks(article, size_words=20, overlap_sentences=0)
    _check_chunks(article, chunks, 20)
    assert [len(c.text.split()) for c in chunks] == [3, 20, 20, 7]


def test_long_real_sentences_are_cut_at_clauses(corpus: list[Article]) -> None:
    """Article 000 has 150-word sentences of `;`-separated clauses: pieces end at a `;` or `,`."""
    article = next(a for a in corpus if a.article_id.startswith("000"))
    chunks = split_into_chunks(article, size_words=60, overlap_sentences=0)
    assert len(chunks) > 5
    assert all(chunk.text[-1] in ".;," for chunk in chunks)
    assert sum(chunk.text.endswith(";") for chunk in chunks) >= 3


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    first = " ".join(["Đoạn một có sáu từ đây."] * 5)  # 30 words
    second = " ".join(["Đoạn hai có sáu từ đây."] * 5)
    article = _article(f"{first}\n\n{second}")
    chunks = split_into_chunks(article, size_words=50, overlap_sentences=0)
    assert [c.text for c in chunks] == [first, second]


@pytest.mark.parametrize(("size", "overlap"), [(0, 1), (10, -1)])
def test_bad_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split_into_chunks(_article("Câu."), size_words=size, overlap_sentences=overlap)


_VOCABULARY = "Đảng ủy khối các cơ quan tỉnh hội nghị sơ kết 3.463 87,8% 15-5-2009 TP. PGS. X.THIÊN “mới” đạt…".split()


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 40)):
        words = rng.choices(_VOCABULARY, k=rng.randint(1, 30))
        words[0] = words[0][:1].upper() + words[0][1:]
        parts.append(" ".join(words) + rng.choice([".", "!", "?", "…", "", ".”"]))
        parts.append(rng.choice([" ", "  ", "\n", "\n\n", " \n \n", "\t"]))
    return rng.choice(["", " ", "\n"]) + "".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_random_sentence_like_text_keeps_every_offset_exact(seed: int) -> None:
    rng = random.Random(seed)
    article = _article(_random_text(rng), article_id=f"r{seed}")
    spans = split_into_sentences(article.text)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    size, overlap = rng.randint(1, 60), rng.randint(0, 3)
    chunks = split_into_chunks(article, size_words=size, overlap_sentences=overlap)
    if article.text.strip():
        _check_chunks(article, chunks, size)
    else:
        assert chunks == []
