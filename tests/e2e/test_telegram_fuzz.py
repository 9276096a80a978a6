"""Hostile questions through the real bot: python-telegram-bot over HTTP, the real extractive Answerer.

About thirty questions (the explicit hostile list of `test_fuzz_questions` plus a hypothesis sample drawn
once, derandomized) are sent in one chat, so each is also a follow-up to the hostile one before it. Every
question must get exactly one reply; every message the bot sent must have been accepted as HTML by the
local Bot API server (which refuses invalid entities with 400 and texts over 4096 UTF-16 units), with no
fallback to plain text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.settings import Settings
from bot.telegram import texts
from bot.telegram.formatting import ArticleListing, utf16_len
from tests.e2e.botapi_server import BotApiServer, parse_html
from tests.e2e.test_fuzz_questions import EXPLICIT
from tests.e2e.test_telegram import copy_index, running_bot, server  # noqa: F401  (`server` is a fixture)
from tests.hostile import fuzz_settings, hostile_text

pytestmark = pytest.mark.e2e

USER = 131


def sample(strategy: st.SearchStrategy[str], n: int) -> list[str]:
    """`n` values of `strategy`, the same on every run (derandomized), drawn once for a scripted conversation."""
    drawn: list[str] = []

    @fuzz_settings(n)
    @given(strategy)
    def collect(value: str) -> None:
        drawn.append(value)

    collect()
    return drawn[:n]


def hostile_questions() -> list[str]:
    """What Telegram delivers: text trimmed of surrounding whitespace, never empty, at most 4096 characters."""
    candidates = list(EXPLICIT.values()) + sample(hostile_text(20), 16)
    return [text.strip()[:4096] for text in candidates if text.strip()]


def test_hostile_questions_each_get_one_reply_in_valid_html(tmp_path: Path, server: BotApiServer,  # noqa: F811
                                                             built_index_settings: Settings, components,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    settings = copy_index(built_index_settings, tmp_path, server).model_copy(update={"telegram_rate_limit": 1000})
    articles = [ArticleListing(a.title, a.date, a.source, a.n_chunks) for a in components.store.articles()]
    questions = hostile_questions()
    assert len(questions) >= 28
    with running_bot(settings, components.answerer, articles) as bot:
        user = server.user(USER, "Khách <b>&amp;</b>")
        sent = [user.say(question) for question in questions]
        server.wait_for(lambda: all(server.replies_to(USER, m["message_id"]) for m in sent), timeout=300,
                        what="a reply to every question")
        bot.stop()  # finishes every update in hand: a second reply would show now

    for question, message in zip(questions, sent):
        replies = server.replies_to(USER, message["message_id"])
        assert len(replies) == 1, f"{len(replies)} replies to {question[:80]!r}"
        reply = replies[0]
        if " ".join(question.split()).strip(" ,:;-"):
            assert reply.buttons(), f"no answer (vote buttons) for {question[:80]!r}: {reply.text[:200]!r}"
        else:  # only punctuation the bot trims from a question
            assert reply.text == parse_html(texts.EMPTY_QUESTION)
    html_calls = [call for call in server.calls_of("sendMessage") if call.get("parse_mode") == "HTML"]
    assert len(html_calls) == len(server.calls_of("sendMessage")) == len(server.sent), \
        "a message was refused by the server or resent as plain text"
    assert all(call.get("parse_mode") == "HTML" for call in server.calls_of("editMessageText"))
    for message in server.sent:
        assert message.parse_mode == "HTML" and parse_html(message.raw).strip() == message.text
        assert utf16_len(message.text) <= 4096
    assert "rejected our HTML" not in caplog.text and "Failed to handle update" not in caplog.text
