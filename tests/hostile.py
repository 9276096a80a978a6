"""Hypothesis strategies for hostile text, shared by the fuzz tests of ingestion, questions and Telegram.

Text is built from fragments that broke or could break something (NFD Vietnamese, control characters,
NUL, every line break Python knows, BOM and zero-width characters, RTL overrides, astral emoji, markup
and Markdown debris) mixed with arbitrary Unicode, so a few dozen examples reach the corners that
uniform random text almost never does.

The fuzz tests are derandomized (the same examples on every run, no example database), so CI is
reproducible; `HOIDAP_FUZZ_SCALE=20` multiplies every example budget for a deeper local run.
"""

from __future__ import annotations

import os
import unicodedata

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_SCALE = int(os.environ.get("HOIDAP_FUZZ_SCALE", "1"))

VIETNAMESE = [
    "Đảng ủy Khối", "Tiền Giang", "hòa", "hoà", "thủy", "Thuỷ", "Nguyễn Văn A", "Bí thư Tỉnh ủy",
    "đảng viên", "3.463", "87,8%", "29/10/2014", "TP.", "PGS.", "(THTG)", "Sáng ngày 29/10,", "năm 2019",
    "TIN LIÊN QUAN", "Ý kiến bạn đọc", "Thứ Hai, 08/10/2018, 19:46 (GMT+7)", "P. MAI", "Ảnh minh họa |",
]
OTHER_SCRIPTS = [
    "中文新闻", "東京タワー", "뉴스 속보", "خبر عاجل", "שלום עולם", "Привет", "Ελληνικά", "हिन्दी", "ไทย",
    "👍", "🇻🇳", "👨‍👩‍👧", "❤️", "👋🏽", "𝕏𝕐", "\U0010fffd", "\ue000",
]
INVISIBLE = ["\ufeff", "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\u200e", "\u200f", "\u202e", "\u2066",
             "\u00a0", "\u3000", "\u2009"]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b[31m", "\x7f", "\x9b", "\x1f", "\ufffe", "\uffff"]
LINE_BREAKS = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\x1c", "\n\n", " \n \n", "\t"]
COMBINING = ["\u0301", "\u0323", "\u0300\u0301\u0302\u0303", "e\u0302\u0301", "\u0360"]
MARKUP = [
    "<b>", "</b>", "</a>", "<a href=\"x\">", "<script>alert(1)</script>", "<i>", "<br>", "&", "&amp;", "&lt;",
    "&nbsp;", "&#0;", "&#x110000;", "<", ">", "\"", "'", "*_[", "**", "__", "`", "```", "# ", "## ", "[x](y)",
    "![ảnh](a.jpg)", "[[", "](", "|", "> ", "- ", "1. ", "<tg-spoiler>", "<blockquote>", "<!--", "-->",
]
PUNCTUATION = [".", "…", "?", "!", ",", ";", ":", "“", "”", "«", "»", "(", ")", " - ", "–", "...", "?!"]
SPACES = [" ", "  ", "   "]

_FRAGMENTS = (VIETNAMESE + OTHER_SCRIPTS + INVISIBLE + CONTROLS + LINE_BREAKS + COMBINING + MARKUP + PUNCTUATION
              + SPACES)
_ANY_CHAR = st.characters(exclude_categories=("Cs",))  # lone surrogates cannot be encoded, so never reach us


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


fragments = st.one_of(
    st.sampled_from(_FRAGMENTS),
    st.sampled_from(VIETNAMESE).map(nfd),
    st.text(_ANY_CHAR, max_size=12),
)


def hostile_text(max_fragments: int = 40) -> st.SearchStrategy[str]:
    """Text of hostile fragments and arbitrary characters (no lone surrogates), possibly empty."""
    return st.lists(fragments, max_size=max_fragments).map("".join)


def fuzz_settings(max_examples: int) -> settings:
    """Fixed examples for CI (derandomized, no database), no per-example deadline (a loaded CI box)."""
    return settings(
        max_examples=max_examples * _SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
