"""Telegram formatting fed hostile answers, sources, names and notices: every message is one Telegram accepts.

Properties, on hypothesis-generated `Answer`s (text with markup, entities, Markdown, emoji, astral and
control characters, 10k+ characters; many sources with hostile titles, dates, outlets and passages):
- `to_telegram_html` + `split_message` give parts that each pass the Bot API server's `parse_html`
  (Telegram's HTML rules), have visible text, and fit in 4096 UTF-16 code units;
- the parts' visible text, put together, is the whole message's visible text: only whitespace at the
  split points may go, and every part is a piece of the whole;
- `to_plain_text` of each part (the fallback) fits as well and says the same;
- the same for `passages_html`, `sources_list_html` and the bot's own texts with hostile inputs;
- `truncate_input` keeps the start of any question within its limit.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from bot.telegram import texts
from bot.telegram.access import truncate_input
from bot.telegram.formatting import (
    MESSAGE_LIMIT, ArticleListing, passages_html, sources_list_html, split_message, to_plain_text, to_telegram_html,
    utf16_len,
)
from retrieval.types import Answer, Source
from tests.e2e.botapi_server import parse_html
from tests.hostile import fuzz_settings, hostile_text

long_text = st.tuples(hostile_text(30), st.integers(1, 400)).map(lambda pair: pair[0] * pair[1])
any_text = st.one_of(hostile_text(40), long_text)
dates = st.one_of(st.none(), st.sampled_from(["2014-10-29", "2014-10-29T08:00:00+07:00", "29/10/2014", ""]),
                  hostile_text(4))
sources = st.builds(
    Source,
    n=st.integers(1, 99),
    article_id=hostile_text(3),
    title=hostile_text(12),
    date=dates,
    source=st.none() | hostile_text(4),
    text=any_text,
    start=st.integers(0, 10**6),
    end=st.integers(0, 10**6),
    score=st.floats(allow_nan=True),
)
answers = st.builds(Answer, text=any_text, found=st.booleans(), sources=st.lists(sources, max_size=12))


def _squash(text: str) -> str:
    return "".join(text.split())


def check_messages(markup: str) -> list[str]:
    """Split `markup` as the bot sends it and check every part as Telegram would; the parts' visible texts."""
    whole = parse_html(markup)
    parts = split_message(markup, MESSAGE_LIMIT)
    visible = [parse_html(part) for part in parts]  # raises like Telegram's 400 "can't parse entities"
    for part, text in zip(parts, visible):
        assert text.strip(), f"an empty message would be refused: {part[:200]!r}"
        assert utf16_len(text.strip()) <= MESSAGE_LIMIT
        assert text.strip() in whole
        plain = to_plain_text(part)
        assert plain == text and utf16_len(plain.strip()) <= MESSAGE_LIMIT
    assert _squash("".join(visible)) == _squash(whole), "text lost or added at a split"
    return visible


@fuzz_settings(150)
@given(answer=answers, notice=st.none() | hostile_text(8))
@example(answer=Answer("", False, []), notice=None)
@example(answer=Answer(" \n\t\u2028", True, []), notice=None)
@example(answer=Answer("<b>" * 3000 + "&amp;" * 3000 + "</a>" * 3000, True, []), notice="<i>")
@example(answer=Answer("👍" * 5000, True, []), notice=None)
@example(answer=Answer("a" * 20000, True, [Source(1, "x", "<b>" * 500, "<", "&", "x" * 9000, 0, 1, 0.5)]), notice=None)
def test_any_answer_becomes_messages_telegram_accepts(answer: Answer, notice: str | None) -> None:
    markup = to_telegram_html(answer, notice=notice)
    visible = check_messages(markup)
    assert _squash(answer.text) in _squash("".join(visible))  # shown as written: escaped, never interpreted


@fuzz_settings(80)
@given(source_list=st.lists(sources, max_size=12))
def test_cited_passages_of_any_content_are_valid_messages(source_list: list[Source]) -> None:
    visible = check_messages(passages_html(source_list))
    for source in source_list:  # every passage is there in full
        assert _squash(source.text) in _squash("".join(visible))


listings = st.builds(ArticleListing, title=hostile_text(12), date=dates, source=st.none() | hostile_text(4),
                     n_chunks=st.integers(0, 10**6))


@fuzz_settings(60)
@given(rows=st.lists(listings, max_size=300))
def test_the_sources_listing_of_any_articles_is_valid(rows: list[ArticleListing]) -> None:
    check_messages(sources_list_html(rows))


@fuzz_settings(60)
@given(username=st.none() | hostile_text(6), n=st.integers(0, 10**9), seconds=st.integers(0, 10**6))
def test_the_bots_own_texts_with_any_name_or_number_are_valid(username: str | None, n: int, seconds: int) -> None:
    for markup in (texts.greeting(n, username), texts.help_text(username, n, seconds), texts.rate_limited(n, seconds),
                   texts.input_cut(n), texts.NEW_CONVERSATION, texts.REFUSAL, texts.TEXT_ONLY, texts.ASK_USAGE,
                   texts.EMPTY_QUESTION, texts.ERROR, texts.ANSWER_GONE):
        check_messages(markup)
    if username and username.strip():
        assert username.split()[0] in parse_html(texts.greeting(n, username))


@fuzz_settings(100)
@given(text=any_text, limit=st.integers(10, 5000))
def test_any_question_is_cut_to_its_limit_from_the_start(text: str, limit: int) -> None:
    cut, was_cut = truncate_input(text, limit)
    assert len(cut) <= limit and text.strip().startswith(cut)
    assert was_cut == (len(text.strip()) > limit)
    if was_cut:
        check_messages(to_telegram_html(Answer(cut, False, []), notice=texts.input_cut(limit)))
