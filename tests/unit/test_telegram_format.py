"""Telegram formatting: escaping, sources under the answer, splitting at 4096 without breaking tags.

Every produced message is checked with the local Bot API server's parser, which rejects what Telegram
rejects, so "valid HTML" here means what Telegram would accept.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bot.telegram.delivery import StreamingReply, _clip_utf16
from bot.telegram.formatting import (
    MESSAGE_LIMIT, ArticleListing, display_date, passages_html, shared_answer_html, short_quote, sources_list_html,
    split_message, to_plain_text, to_telegram_html, utf16_len,
)
from retrieval.types import Answer, Source
from tests.e2e.botapi_server import ApiError, parse_html

CORPUS = Path(__file__).resolve().parents[2] / "index" / "corpus"


def article_text() -> str:
    return next(iter(sorted(CORPUS.glob("*.txt")))).read_text(encoding="utf-8")


def source(n: int, text: str, title: str = "Đoàn công tác <Tỉnh ủy> & \"Khối\"") -> Source:
    return Source(n=n, article_id=f"a{n}", title=title, date="2014-10-29", source="THTG", text=text, start=0,
                  end=len(text), score=0.8)


def visible(markup: str) -> str:
    return parse_html(markup)


def squash(text: str) -> str:
    return "".join(text.split())


def test_answer_html_escapes_everything_and_lists_sources() -> None:
    passage = article_text()[:600]
    answer = Answer("Theo bài báo, giá <lúa> tăng 5% & ổn định [1][2].", True,
                    [source(1, passage), source(2, "x < y & y > z", title="Giá lúa")])
    markup = to_telegram_html(answer)
    text = visible(markup)
    assert text.startswith("Theo bài báo, giá <lúa> tăng 5% & ổn định [1][2].")
    assert "[1] Đoàn công tác <Tỉnh ủy> & \"Khối\" · 29/10/2014 · THTG" in text
    assert "[2] Giá lúa · 29/10/2014 · THTG\n“x < y & y > z”" in text
    assert f"“{short_quote(passage)}”" in text and short_quote(passage).endswith("…")
    assert "<b>[1]</b>" in markup and "&lt;lúa&gt;" in markup


def test_not_found_answer_has_no_sources_block_and_a_notice_is_shown_first() -> None:
    answer = Answer("Không tìm thấy thông tin này trong các bài báo.", False, [])
    text = visible(to_telegram_html(answer, notice="Câu hỏi dài hơn 1000 ký tự nên chỉ phần đầu được dùng."))
    assert text == ("Câu hỏi dài hơn 1000 ký tự nên chỉ phần đầu được dùng.\n\n"
                    "Không tìm thấy thông tin này trong các bài báo.")


def test_closest_sources_of_a_not_found_answer_are_labelled_as_such() -> None:
    text = visible(to_telegram_html(Answer("Không tìm thấy thông tin này.", False, [source(1, "Đoạn gần nhất.")])))
    assert "Nguồn gần nhất (không chứa câu trả lời):\n[1]" in text and "Nguồn:" not in text


def test_source_headings_follow_the_answers_language() -> None:
    found = Answer("There were 74.127 party members [1].", True, [source(1, "Toàn tỉnh có 74.127 đảng viên.")])
    nearest = Answer("The articles do not say.", False, [source(1, "Đoạn gần nhất.")])
    for render in (to_telegram_html, shared_answer_html):
        assert "Sources:" in visible(render(found, language="en")) and "Nguồn" not in visible(render(found, language="en"))
        assert "Nearest sources (they do not hold the answer):" in visible(render(nearest, language="en"))
        assert "Nguồn:" in visible(render(found, language="vi"))


def test_short_quote_cuts_at_a_word_and_dates_read_vietnamese() -> None:
    quote = short_quote("Trong 9 tháng đầu năm, Đảng ủy Khối Các cơ quan tỉnh đã tập trung lãnh đạo", 40)
    assert quote == "Trong 9 tháng đầu năm, Đảng ủy Khối Các…"
    assert short_quote("ngắn", 40) == "ngắn"
    assert display_date("2014-10-29") == "29/10/2014" and display_date("tháng 10") == "tháng 10"
    assert display_date(None) is None


def test_passages_and_sources_listing_are_valid_html() -> None:
    passage = article_text()[:2000]
    text = visible(passages_html([source(1, passage)]))
    assert " ".join(passage.split())[:300] in " ".join(text.split())
    listing = visible(sources_list_html([ArticleListing("A <b> & c", "2014-10-29", "THTG", 4),
                                         ("Bài hai", None, None, 1)]))
    assert listing == "Các bài báo đã lập chỉ mục (2):\n1. A <b> & c — 29/10/2014 · THTG · 4 đoạn\n2. Bài hai — 1 đoạn"
    assert "hoidap index" in visible(sources_list_html([]))


def test_split_keeps_short_messages_whole() -> None:
    markup = to_telegram_html(Answer("Ngắn gọn [1].", True, [source(1, "đoạn")]))
    assert split_message(markup) == [markup]


def test_split_long_answer_on_paragraphs_into_valid_parts() -> None:
    paragraphs = [f"Đoạn {i}: " + article_text()[:900].replace("\n", " ") for i in range(12)]
    markup = to_telegram_html(Answer("\n\n".join(paragraphs) + " [1]", True, [source(1, article_text()[:500])]))
    parts = split_message(markup)
    assert len(parts) >= 3
    texts = [visible(part) for part in parts]  # each part parses alone
    assert all(utf16_len(t) <= 4096 for t in texts)
    assert squash("".join(texts)) == squash(visible(markup))  # nothing lost, nothing added
    for t in texts[:-1]:  # every cut falls between paragraphs, none inside one
        assert t.rstrip().endswith(tuple(p.strip()[-20:] for p in paragraphs))


def test_split_inside_a_tag_closes_and_reopens_it() -> None:
    sentence = "Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ &amp; các cơ quan &lt;tỉnh&gt;. "
    markup = "<b>Tiêu đề</b>\n<blockquote>" + sentence * 120 + "</blockquote>\n<i>kết thúc</i>"
    parts = split_message(markup, limit=1000)
    assert len(parts) >= 8
    for part in parts:
        text = visible(part)
        assert utf16_len(text) <= 1000
    assert all(part.count("<blockquote>") == part.count("</blockquote>") for part in parts)
    assert parts[1].startswith("<blockquote>Đoàn công tác")  # reopened where it was cut
    assert all(visible(p).endswith("<tỉnh>.") for p in parts[:-1])  # cut at sentence ends
    assert squash("".join(visible(p) for p in parts)) == squash(visible(markup))


def test_split_counts_utf16_and_never_cuts_an_entity_or_a_word_needlessly() -> None:
    markup = " ".join(["😀&amp;từ"] * 2000)  # each word: 2 + 1 + 2 UTF-16 units
    parts = split_message(markup, limit=500)
    for part in parts:
        assert utf16_len(visible(part)) <= 500
        assert part.startswith("😀&amp;từ") and part.endswith("😀&amp;từ")
    assert squash("".join(visible(p) for p in parts)) == squash(visible(markup))


def test_split_hard_cuts_a_word_longer_than_the_limit() -> None:
    parts = split_message("<code>" + "x" * 9000 + "</code>", limit=4096)
    assert [len(visible(p)) for p in parts] == [4096, 4096, 808]
    assert all(p.startswith("<code>") and p.endswith("</code>") for p in parts)


def test_split_random_markup_always_parses_and_keeps_the_text() -> None:
    rng = random.Random(7)
    words = article_text().split() + ["<", ">", "&", "\"", "😀", "\n", "\n\n", "."]
    for _ in range(40):
        chunks = []
        for _ in range(rng.randint(50, 900)):
            word = rng.choice(words)
            escaped = word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            tag = rng.choice([None] * 6 + ["b", "i", "code", "u"])
            chunks.append(f"<{tag}>{escaped}</{tag}>" if tag else escaped)
        markup = " ".join(chunks)
        if not markup.strip():
            continue
        limit = rng.choice([64, 200, 1000, 4096])
        parts = split_message(markup, limit)
        for part in parts:
            assert utf16_len(visible(part)) <= limit
        assert squash("".join(visible(p) for p in parts)) == squash(visible(markup))


def test_plain_text_fallback_is_the_same_text() -> None:
    markup = to_telegram_html(Answer("A & <b> [1]", True, [source(1, "x & y")]))
    assert to_plain_text(markup) == visible(markup)


def test_server_parser_rejects_broken_markup() -> None:
    for bad in ("<b>x", "<br>", "a & b", "<b><i>x</b></i>", "&nbsp;"):
        with pytest.raises(ApiError, match="can't parse entities"):
            parse_html(bad)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Bot:
    """Records what a StreamingReply sends and edits (the Telegram side is exercised in the e2e tests)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.edited: list[str] = []

    async def send_message(self, chat_id: int, text: str, **kwargs: object) -> _Message:
        self.sent.append(text)
        return _Message(self)

    async def edit(self, text: str) -> None:
        self.edited.append(text)


class _Message:
    def __init__(self, bot: _Bot) -> None:
        self.bot = bot

    async def edit_text(self, text: str, **kwargs: object) -> _Message:
        await self.bot.edit(text)
        return self


def test_streaming_reply_edits_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.telegram.delivery.Message", _Message)
    clock, bot = _Clock(), _Bot()
    reply = StreamingReply(bot, 1, 5, interval=1.5, clock=clock)  # type: ignore[arg-type]

    async def run() -> None:
        text = ""
        for i in range(30):  # a fragment every 0.25 s for 7.5 s
            clock.now = i * 0.25
            text += f"từ{i} "
            await reply.update(text)
        clock.now = 8.0
        await reply.finish("<b>Xong</b> [1]")

    asyncio.run(run())
    assert len(bot.sent) == 1 and bot.sent[0].endswith("▌")  # the draft appears after 1.5 s
    assert len(bot.edited) == 4  # at 3.0, 4.5 and 6.0 s, then the final answer
    assert bot.edited[-1] == "<b>Xong</b> [1]"


@pytest.mark.parametrize("draft", ["a" * 5000, "😀" * 3000, "Đảng viên " * 600])
def test_a_streamed_draft_is_cut_to_telegram_utf16_limit(draft: str) -> None:
    clipped = _clip_utf16(draft, MESSAGE_LIMIT - 50)
    assert utf16_len(clipped) <= MESSAGE_LIMIT - 50 and clipped.endswith("…")
    assert draft.startswith(clipped[:-1])
