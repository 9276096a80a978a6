"""Pieces of the operator's view and of inline mode, one at a time: the state's migration, the inline
answer cache, the shared-answer format, JSON log lines and metrics rebuilt from the state."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
from pathlib import Path

from bot.ops import (
    QUESTION_ID,
    JsonFormatter,
    QuestionIdFilter,
    QuestionRecord,
    metrics_from_records,
)
from bot.telegram.app import SecretRedactor
from bot.telegram.formatting import (
    MESSAGE_LIMIT,
    shared_answer_html,
    to_plain_text,
    utf16_len,
)
from bot.telegram.inline import AnswerCache, question_key
from bot.telegram.state import SqliteState
from retrieval.types import Answer, Source


def _source(n: int, source: str | None = "THTG") -> Source:
    return Source(n, f"a{n}", f"Bài <{n}> & \"tin\"", "2014-10-29", source, "Đoạn trích.", 0, 11, 0.9)


def test_an_older_state_file_gains_the_correction_column(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:  # the votes table as the first release wrote it
        db.execute("CREATE TABLE votes (answer_id INTEGER NOT NULL, user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL,"
                   " vote INTEGER NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL,"
                   " PRIMARY KEY (answer_id, user_id))")
    state = SqliteState.open(path)
    answer_id = state.save_answer(1, 2, 3, "Câu hỏi?", Answer("Trả lời [1].", True, [_source(1)]))
    state.record_vote(answer_id, 2, -1)
    state.expect_correction(1, 10, answer_id, 2)
    assert state.save_correction(1, 10, "Câu đúng") and not state.save_correction(1, 10, "lần nữa")
    [voted] = state.voted_answers(vote=-1)
    state.close()
    assert voted.corrections == ["Câu đúng"] and voted.down == 1 and voted.up == 0
    assert voted.answer.sources[0].article_id == "a1"


def test_the_inline_cache_computes_a_question_once_and_forgets_it_after_its_ttl() -> None:
    now = [0.0]
    cache = AnswerCache(ttl=60, clock=lambda: now[0])
    calls: list[str] = []

    async def work() -> Answer:
        calls.append("x")
        await asyncio.sleep(0.01)
        return Answer("Trả lời.", True)

    async def scenario() -> tuple[Answer, Answer, Answer | None]:
        first = cache.compute("Ai chủ trì?", work)
        joined = cache.compute("  ai CHỦ trì ", work)  # the same question, typed differently, joins it
        assert first is joined
        return await first, cache.get("ai chủ trì?"), None

    answered, cached, _ = asyncio.run(scenario())
    assert calls == ["x"] and cached == answered
    now[0] = 61
    assert cache.get("Ai chủ trì?") is None
    assert question_key("Ai  chủ trì?") == question_key("ai chủ trì") != question_key("ai chủ trì buổi họp")


def test_a_shared_answer_is_one_message_with_each_source_and_its_link() -> None:
    answer = Answer("Rất dài. " * 900, True, [_source(1, "https://thtg.vn/bai-1?a=1&b=2"), _source(2)])
    markup = shared_answer_html(answer)
    plain = to_plain_text(markup)
    assert utf16_len(plain) <= MESSAGE_LIMIT and plain.rstrip().endswith("THTG")
    assert '<a href="https://thtg.vn/bai-1?a=1&amp;b=2">Bài &lt;1&gt; &amp; &quot;tin&quot;</a>' in markup
    assert "[1] Bài <1> & \"tin\" · 29/10/2014" in plain and "[2] Bài <2>" in plain


def test_json_log_lines_carry_the_question_id_and_no_secret() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(QuestionIdFilter())
    handler.addFilter(SecretRedactor("123:SECRET"))
    logger = logging.getLogger("hoidap.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    token = QUESTION_ID.set("42")
    try:
        logger.warning("calling https://api.telegram.org/bot%s/getMe", "123:SECRET")
        try:
            raise RuntimeError("boom with 123:SECRET")
        except RuntimeError:
            logger.exception("failed")
    finally:
        QUESTION_ID.reset(token)
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["question_id"] for line in lines] == ["42", "42"]
    assert lines[0]["message"] == "calling https://api.telegram.org/bot<redacted>/getMe"
    assert "RuntimeError: boom with <redacted>" in lines[1]["exception"]
    assert "SECRET" not in stream.getvalue()


def test_metrics_rebuilt_from_the_question_log() -> None:
    records = [QuestionRecord("chat", "found", 0.2, 0.01, None), QuestionRecord("inline", "not_found", 0.1, 0.02, None),
               QuestionRecord("chat", "error", None, None, "RuntimeError"), QuestionRecord("chat", "pending", None, None, None)]
    text = metrics_from_records(records, [1, -1, -1]).render().decode()
    for line in ('hoidap_questions_total{via="chat"} 3.0', 'hoidap_questions_total{via="inline"} 1.0',
                 'hoidap_answers_total{outcome="found"} 1.0', 'hoidap_answers_total{outcome="not_found"} 1.0',
                 'hoidap_errors_total{kind="RuntimeError"} 1.0', 'hoidap_votes_total{vote="down"} 2.0',
                 "hoidap_retrieval_seconds_count 2.0", 'hoidap_answer_seconds_count{via="chat"} 1.0'):
        assert line in text, line
