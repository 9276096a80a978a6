"""Accent folding, syllable tokens, stopwords and the kind of a question."""

from __future__ import annotations

import unicodedata

import pytest

from index.text import (
    content_tokens,
    detect_query_kind,
    fold_diacritics,
    has_diacritics,
    is_vietnamese_syllable,
    normalize_tone_marks,
    tokenize,
)


def test_fold_removes_every_vietnamese_mark_and_keeps_length() -> None:
    text = "Tổng số đảng viên toàn Đảng bộ tỉnh Tiền Giang"
    assert fold_diacritics(text) == "Tong so dang vien toan Dang bo tinh Tien Giang"
    assert len(fold_diacritics(text)) == len(text)
    assert fold_diacritics("ĐĂNG KÝ Ưu Ơn ỹ") == "DANG KY Uu On y"


def test_fold_handles_decomposed_input() -> None:
    decomposed = unicodedata.normalize("NFD", "Đảng ủy Khối")
    assert fold_diacritics(decomposed) == "Dang uy Khoi"


def test_has_diacritics() -> None:
    assert has_diacritics("đảng viên")
    assert not has_diacritics("dang vien 2023")


def test_tokens_are_lower_case_syllables_with_whole_numbers() -> None:
    tokens = tokenize("Toàn Đảng bộ có 74.127 đồng chí, đạt 87,8% (nhiệm kỳ 2015-2020).")
    assert tokens == ["toàn", "đảng", "bộ", "có", "74.127", "74127", "đồng", "chí", "đạt", "87,8%", "878",
                      "nhiệm", "kỳ", "2015", "2020"]


def test_digits_only_variant_lets_a_plain_number_match() -> None:
    assert "74127" in tokenize("74.127")
    assert tokenize("74127") == ["74127"]
    assert tokenize("74.127", number_variants=False) == ["74.127"]


def test_folded_tokens() -> None:
    assert tokenize("Đảng viên ĐƯỢC kết nạp", fold=True) == ["dang", "vien", "duoc", "ket", "nap"]


def test_old_and_new_tone_placement_give_one_token() -> None:
    assert tokenize("Tỉnh uỷ") == tokenize("Tỉnh ủy") == ["tỉnh", "ủy"]
    assert tokenize("hoà bình") == tokenize("hòa bình")
    assert normalize_tone_marks("quý") == "quý"  # "qu" is an onset: its tone stays on y
    assert normalize_tone_marks("hoàng") == "hoàng"  # closed syllable: one spelling only


def test_syllable_shape() -> None:
    assert all(is_vietnamese_syllable(s) for s in ["nghiêng", "đảng", "khuyến", "quốc", "giang", "a"])
    assert not any(is_vietnamese_syllable(s) for s in ["what", "members", "party", "how", "is", "of"])


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?", "vi"),
        ("Tong so dang vien toan Dang bo tinh nam 2023 la bao nhieu?", "vi_plain"),
        ("bi thu tinh uy tien giang la ai", "vi_plain"),
        ("What was the total number of party members in the province in 2023?", "en"),
        ("How many party members did Tiền Giang have?", "en"),
        ("Who is he?", "en"),
        ("Los Angeles Angels of Anaheim đến từ môn thể thao nào?", "vi"),
        ("Doctor Who nao duoc viet ma khong co Doctor Who trong do?", "vi_plain"),
        ("Bitcoin price", "en"),  # no function word, but "price" cannot be Vietnamese syllables
        ("party members 2023", "en"),
        ("x", "vi_plain"),  # neither shape nor words say English: not waved through the English gate
        ("dangvien", "vi_plain"),
    ],
)
def test_query_kind(question: str, kind: str) -> None:
    assert detect_query_kind(question) == kind


def test_content_tokens_drop_question_and_function_words() -> None:
    assert content_tokens("Đảng ủy Khối có bao nhiêu đảng viên?", fold=False) == ["đảng", "ủy", "khối", "đảng", "viên"]
    # Folded, `dang` (Đảng, đang) and `co` (cơ, có) are kept: they are content words too often.
    assert content_tokens("dang uy khoi co bao nhieu dang vien", fold=True) == ["dang", "uy", "khoi", "co", "dang", "vien"]


def test_no_vocabulary_of_the_sample_articles_in_the_text_rules() -> None:
    """English is told by the shape of its words, not by a glossary of the bundled articles' topics."""
    import index.text as text

    assert not hasattr(text, "english_to_vietnamese_terms")
    assert detect_query_kind("zebra crossing") == "en"  # no function word, no glossary: the shape says English
    assert detect_query_kind("dangvien toanbo") == "vi_plain"  # Vietnamese syllables typed together
