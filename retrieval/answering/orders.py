"""Orders in article text: sentences that tell the reader or an assistant how to answer (prompt injection).

News quotes demands all the time ("đề nghị chính quyền hai huyện phối hợp…"), so imperatives in
general are not orders here. These are the phrasings aimed at whoever answers questions about the
text: ignore earlier instructions or rules, reply only / with one word, every answer must be…, reveal
the system prompt, "you are now…", a role line ("SYSTEM:"). Matched on accent-folded text, so the
same order typed without diacritics is found too.

The generative answerer uses `relays_an_order` after generation: an answer whose every new word comes
from such sentences, to a question that is not about them, carries the order out instead of answering.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from index.text import content_features, content_words, fold, strip_citations
from retrieval.types import Source

_NEAR = r"[^.!?\n]{0,40}"
_ORDER_RE = re.compile(
    "|".join([
        rf"\b(?:bo qua|phot lo|quen|bat chap|khong tuan theo){_NEAR}\b(?:huong dan|chi dan|quy tac|yeu cau|lenh)\b",
        r"\b(?:chi|hay) (?:tra loi|dap|viet|in ra|noi)\b",
        r"\btra loi (?:bang|dung) (?:mot|1) tu\b",
        r"\bmoi cau tra loi (?:phai|deu)\b",
        r"\b(?:tu bay gio|ke tu bay gio),? ban la\b",
        rf"\b(?:ignore|disregard|forget|override)\b{_NEAR}\b(?:instructions?|rules?|prompts?|directions?|guidelines?)\b",
        r"\b(?:reply|respond|answer|say|output|write)\b[^.!?\n]{0,20}\b(?:only|just)\b",
        r"\bonly (?:reply|respond|answer|say|output|write)\b",
        r"\bevery answer must\b|\byou are now\b",
        r"\bsystem prompt\b|\b(?:loi nhac|chi dan|huong dan) he thong\b",
        r"(?:^|\n)\s*(?:system|he thong|assistant)\s*:",
    ]),
)
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)", re.MULTILINE)
# A question is about the orders when at least this share of its words and word pairs is in them.
ABOUT_ORDERS_SHARE = 0.5


def order_sentences(text: str) -> list[str]:
    """The sentences of `text` that give an answering assistant orders."""
    return [m.group().strip() for m in _SENTENCE_RE.finditer(text) if _ORDER_RE.search(fold(m.group()))]


def relays_an_order(answer: str, question: str, cited: Sequence[Source]) -> bool:
    """True when the answer only repeats what orders in its cited passages demand, unasked.

    Everything the answer adds to the question must come from order sentences; and the question must
    not be about those sentences ("Bài báo yêu cầu người đọc trả lời bằng từ gì?" may be answered
    with the word, quoted).
    """
    orders = [sentence for source in cited for sentence in order_sentences(source.text)]
    if not orders:
        return False
    added = content_words(strip_citations(answer)) - content_words(question)
    order_words = set().union(*map(content_words, orders))
    if not added or not added <= order_words:
        return False
    asked = content_features(question)
    order_features = set().union(*map(content_features, orders))
    return len(asked & order_features) < ABOUT_ORDERS_SHARE * len(asked)
