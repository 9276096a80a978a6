"""The fixed wording of answers, in both answer languages: "not found", disagreeing sources, attribution.

One home for each sentence the answerers write themselves, so that the extractive and the generative
answerer say "not in the articles" in the same words.
"""

from __future__ import annotations

from collections.abc import Sequence

from index.text import Language
from retrieval.types import Answer, Source

NOT_FOUND: dict[Language, str] = {
    "vi": "Không tìm thấy câu trả lời trong các bài báo. Các đoạn gần nhất được liệt kê bên dưới.",
    "en": "The answer was not found in the articles. The nearest passages are listed below.",
}
DISAGREE: dict[Language, str] = {
    "vi": "Các bài viết cho số liệu khác nhau:",
    "en": "The articles give different figures:",
}
ACCORDING_TO: dict[Language, str] = {"vi": "Theo", "en": "According to"}

# Headings front-ends put above an answer's sources, in the answer's language.
SOURCES_HEADING: dict[Language, str] = {"vi": "Nguồn", "en": "Sources"}
NEAREST_HEADING: dict[Language, str] = {
    "vi": "Nguồn gần nhất (không chứa câu trả lời)",
    "en": "Nearest sources (they do not hold the answer)",
}


def not_found(nearest: Sequence[Source], language: Language) -> Answer:
    """The honest "not in the articles" reply, listing the nearest passages as its sources."""
    return Answer(text=NOT_FOUND[language], found=False, sources=list(nearest))
