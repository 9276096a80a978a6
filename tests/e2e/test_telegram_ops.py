"""Streaming drafts, inline answers, corrections that become eval questions, metrics and health.

The real python-telegram-bot stack talks HTTP to the local Bot API server (tests/e2e/botapi_server.py),
which enforces Telegram's rules for drafts (private chats only, non-zero id, 4096 characters) and for
inline queries (≤ 50 results, answered once, within the timeout). The operator's side runs as users run
it: `hoidap telegram` in webhook mode, `hoidap feedback`, `hoidap eval` and `hoidap stats` as subprocesses.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from bot.settings import Settings
from bot.telegram.formatting import ArticleListing
from bot.telegram.state import SqliteState
from tests.conftest import cli_env, run_cli
from tests.e2e.botapi_server import BotApiServer
from tests.e2e.test_telegram import (
    TOKEN,
    ScriptedAnswerer,
    _free_port,
    bot_settings,
    copy_index,
    running_bot,
    stop,
    telegram_process,
)

pytestmark = pytest.mark.e2e

QUESTION = "Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang đến làm việc với Đảng ủy Khối Các cơ quan tỉnh?"
LLM_REPLY = "Đoàn công tác của Tỉnh ủy do đồng chí Trần Thế Ngọc dẫn đầu [1]."


class SlowChatModel(BaseChatModel):
    """A chat model at LangChain's boundary that streams one fixed reply a word at a time, slowly, as a
    local LLM on a small CPU does (the real one takes minutes on this machine's 2 shared cores)."""

    reply: str
    pause: float = 0.35

    @property
    def _llm_type(self) -> str:
        return "slow-scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for i, word in enumerate(self.reply.split(" ")):
            time.sleep(self.pause)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word if i == 0 else " " + word))


@pytest.fixture
def server() -> Iterator[BotApiServer]:
    with BotApiServer(TOKEN) as srv:
        yield srv


def _listing(components) -> list[ArticleListing]:
    return [ArticleListing(a.title, a.date, a.source, a.n_chunks) for a in components.store.articles()]


# --- streaming ---


def test_private_answer_streams_as_drafts_then_arrives_as_one_message(tmp_path: Path, server: BotApiServer,
                                                                     built_index_settings: Settings,
                                                                     components) -> None:
    from bot.wiring import build_generative
    from retrieval.answering.generative import COMPACT_PROMPT
    from retrieval.answering.judgement import CorpusGate

    settings = copy_index(built_index_settings, tmp_path, server)
    answerer = build_generative(settings, components.retriever, CorpusGate(components.lexical.idf, components.embedder),
                                SlowChatModel(reply=LLM_REPLY), COMPACT_PROMPT)
    with running_bot(settings, answerer, _listing(components), draft_interval=0.5):
        lan = server.user(201, "Lan")
        question = lan.say(QUESTION)
        reply = lan.wait_reply(question, timeout=120)
        server.wait_for(lambda: reply.buttons(), what="the vote buttons")
    drafts = server.drafts_in(201)
    assert len(drafts) >= 2, "a slow answer grows as several drafts"
    assert all(d.draft_id == question["message_id"] for d in drafts)  # one draft, animated
    assert all(d.text.endswith("▌") and LLM_REPLY.startswith(d.text[:-2].rstrip()) for d in drafts)
    assert len(drafts[-1].text) > len(drafts[0].text)
    assert [m.message_id for m in server.messages_in(201)] == [reply.message_id]  # one final message
    assert reply.edits == 0 and reply.parse_mode == "HTML" and reply.reply_to == question["message_id"]
    assert "Trần Thế Ngọc" in reply.text and "[1]" in reply.text and "Nguồn:" in reply.text
    assert server.calls_of("editMessageText") == []


@pytest.mark.llm
def test_the_real_local_llm_streams_as_drafts_in_a_private_chat(tmp_path: Path, server: BotApiServer,
                                                                built_index_settings: Settings, components) -> None:
    from bot.wiring import build_answerer
    from retrieval.answering.judgement import CorpusGate

    settings = copy_index(built_index_settings, tmp_path, server).model_copy(
        update={"llm_context": 2048, "llm_max_tokens": 96})
    answerer = build_answerer(settings, components.retriever, CorpusGate(components.lexical.idf, components.embedder), "local")
    answerer.warm_up()
    with running_bot(settings, answerer, _listing(components), draft_interval=0.5):
        lan = server.user(220, "Lan")
        question = lan.say("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")
        reply = lan.wait_reply(question, timeout=600)
        server.wait_for(lambda: reply.buttons(), what="the vote buttons")
    drafts = server.drafts_in(220)
    assert drafts and all(d.text.endswith("▌") for d in drafts)
    assert len({d.text for d in drafts}) == len(drafts)  # each draft shows more of the answer
    assert [m.message_id for m in server.messages_in(220)] == [reply.message_id] and reply.edits == 0
    assert "74.127" in reply.text and "[1]" in reply.text


def test_group_answer_streams_by_editing_one_message(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer(), stream_interval=1.0):
        group = server.group(-2001)
        lan = server.user(202, "Lan")
        question = lan.say("@hoidap_test_bot Trả lời chậm thôi", chat=group)
        reply = server.wait_for(lambda: next((m for m in server.replies_to(-2001, question["message_id"])
                                              if m.buttons()), None), what="the finished streamed answer")
    assert reply.history and reply.history[0].endswith("▌") and reply.history[0].startswith("Đoàn công tác")
    assert reply.text.startswith("Đoàn công tác đã làm việc với Ban Thường vụ trong buổi sáng [1].")
    assert len(server.messages_in(-2001)) == 1  # the draft was edits of one message
    assert server.calls_of("sendMessageDraft") == []  # drafts are for private chats only


def test_refused_draft_falls_back_to_editing_a_message(tmp_path: Path, server: BotApiServer) -> None:
    server.fail_next("sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID")
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer(), stream_interval=1.0,
                     draft_interval=0.5) as bot:
        lan = server.user(203, "Lan")
        question = lan.say("Trả lời chậm thôi")
        reply = server.wait_for(lambda: next((m for m in server.replies_to(203, question["message_id"])
                                              if m.buttons()), None), what="the finished answer")
        metrics = bot.application.bot_data["metrics"].render().decode()
    assert len(server.calls_of("sendMessageDraft")) == 1 and server.drafts == []  # refused once, then no more
    assert reply.history and reply.history[0].endswith("▌")  # the answer grew by edits instead
    assert reply.text.startswith("Đoàn công tác đã làm việc với Ban Thường vụ trong buổi sáng [1].")
    assert len(server.messages_in(203)) == 1
    assert 'hoidap_errors_total{kind="draft_refused"} 1.0' in metrics


def test_the_server_holds_drafts_to_telegrams_rules(server: BotApiServer) -> None:
    lan = server.user(204)
    lan.say("xin chào")  # the private chat exists now
    group = server.group(-2004)
    url = f"{server.base_url}{TOKEN}/sendMessageDraft"
    results = [httpx.post(url, json=params).json() for params in (
        {"chat_id": 204, "draft_id": 7, "text": "Đang <b>viết</b>", "parse_mode": "HTML"},
        {"chat_id": -2004, "draft_id": 7, "text": "nhóm"},
        {"chat_id": 204, "draft_id": 0, "text": "không có id"},
        {"chat_id": 204, "draft_id": 8, "text": "x" * 4097},
        {"chat_id": 204, "draft_id": 9, "text": "<b>mở", "parse_mode": "HTML"},
    )]
    assert group.type == "group"
    assert results[0] == {"ok": True, "result": True}
    assert [r.get("description") for r in results[1:]] == [
        "Bad Request: TEXTDRAFT_PEER_INVALID", "Bad Request: draft_id must be non-zero",
        "Bad Request: message is too long",
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""]
    assert [d.text for d in server.drafts] == ["Đang viết"]


# --- inline mode ---


def test_inline_query_offers_a_sourced_answer_and_refuses_a_stranger(tmp_path: Path, server: BotApiServer,
                                                                   built_index_settings: Settings,
                                                                   components) -> None:
    settings = copy_index(built_index_settings, tmp_path, server).model_copy(
        update={"telegram_allowed_users": [205]})
    with running_bot(settings, components.answerer, _listing(components)):
        lan, stranger = server.user(205, "Lan"), server.user(206, "Khách")
        typing = lan.inline(QUESTION[:30])  # the client sends a query per word; only the last is answered
        answered = server.inline_answer(lan.inline(QUESTION), timeout=120)
        not_found = server.inline_answer(lan.inline("Giá vàng SJC hôm nay là bao nhiêu?"), timeout=120)
        english = server.inline_answer(lan.inline("What is the price of gold today?"), timeout=120)
        refused = server.inline_answer(stranger.inline(QUESTION))
    [result] = answered.results
    [text] = answered.texts()
    assert result["title"] == f"Trả lời: {QUESTION}" and result["description"].startswith("Theo «Đoàn công tác")
    assert "Trần Thế Ngọc" in text and "[1]" in text and "Nguồn:" in text
    cited = next(a for a in _listing(components) if "Đoàn công tác Tỉnh ủy" in a.title)
    assert f"[1] {cited.title}" in text
    assert answered.params.get("is_personal") is True  # an allowlist: Telegram must not share it with others
    assert [r["title"] for r in not_found.results] == ["Không tìm thấy trong các bài báo"]
    assert [r["title"] for r in english.results] == ["Not found in the articles"]  # the asker's language
    assert refused.results == [] and refused.params["button"]["text"].startswith("Bot này chỉ dành cho")
    assert answered.delay < server.inline_timeout and refused.delay < server.inline_timeout
    assert [a.query_id for a in server.inline_answers].count(typing["id"]) == 0


def test_a_slow_inline_answer_is_cached_for_the_next_query(tmp_path: Path, server: BotApiServer) -> None:
    answerer = ScriptedAnswerer()  # "chậm": four fragments, 0.9 s apart
    with running_bot(bot_settings(tmp_path, server), answerer, inline_deadline=1.0) as bot:
        lan = server.user(207, "Lan")
        first = server.inline_answer(lan.inline("Trả lời chậm thôi"))
        time.sleep(4.5)  # the answer finishes in the background meanwhile
        second = server.inline_answer(lan.inline("trả lời   chậm thôi?"))  # the same question, typed on
        metrics = bot.application.bot_data["metrics"].render().decode()
    assert 'hoidap_inline_cache_total{result="miss"} 1.0' in metrics
    assert 'hoidap_inline_cache_total{result="hit"} 1.0' in metrics
    assert first.results == [] and first.params["button"]["text"].startswith("Đang tìm câu trả lời")
    assert first.delay < server.inline_timeout
    [text] = second.texts()
    assert text.startswith("Đoàn công tác đã làm việc với Ban Thường vụ trong buổi sáng [1].")
    assert [q for q, _ in answerer.histories] == ["Trả lời chậm thôi"]  # computed once


def test_the_server_holds_inline_answers_to_telegrams_rules(server: BotApiServer) -> None:
    lan = server.user(208)
    url = f"{server.base_url}{TOKEN}/answerInlineQuery"

    def article(i: int, text: str = "Trả lời") -> dict[str, Any]:
        return {"type": "article", "id": f"r{i}", "title": "T", "input_message_content": {"message_text": text}}

    too_many = httpx.post(url, json={"inline_query_id": lan.inline("câu hỏi một")["id"],
                                     "results": [article(i) for i in range(51)]}).json()
    duplicate = httpx.post(url, json={"inline_query_id": lan.inline("câu hỏi hai")["id"],
                                      "results": [article(1), article(1)]}).json()
    late_query = lan.inline("câu hỏi ba")
    server.inline_timeout = 0.2
    time.sleep(0.4)
    late = httpx.post(url, json={"inline_query_id": late_query["id"], "results": [article(1)]}).json()
    assert too_many["description"] == "Bad Request: RESULTS_TOO_MUCH"
    assert duplicate["description"] == "Bad Request: RESULT_ID_DUPLICATE"
    assert late["description"].startswith("Bad Request: query is too old")


# --- feedback that teaches ---


def test_a_vote_down_with_a_correction_becomes_an_eval_question(tmp_path: Path, server: BotApiServer,
                                                                built_index_settings: Settings,
                                                                components) -> None:
    settings = copy_index(built_index_settings, tmp_path, server)
    correction = "Đồng chí Trần Thế Ngọc, Phó Bí thư Thường trực Tỉnh ủy"
    with running_bot(settings, components.answerer, _listing(components)):
        lan = server.user(209, "Lan")
        reply = lan.wait_reply(lan.say(QUESTION), timeout=120)
        lan.press(reply, reply.button("vote:")["callback_data"].replace(":up", ":down"))
        prompt = lan.wait_reply(server.message(209, reply.message_id))
        thanks = lan.wait_reply(lan.say(correction, reply_to=server.message(209, prompt.message_id)))
    assert prompt.text.startswith("Câu trả lời đúng là gì?") and prompt.reply_markup["force_reply"] is True
    assert thanks.text.startswith("Cảm ơn bạn! Mình đã lưu")
    assert len(server.messages_in(209)) == 3  # the answer, the prompt, the thanks: the correction was not a question

    listed = run_cli(["feedback"], settings)
    assert listed.returncode == 0, listed.stderr
    assert QUESTION in listed.stdout and "👎 1" in listed.stdout and correction in listed.stdout
    assert "Trần Thế Ngọc" in listed.stdout and "1 câu trả lời." in listed.stdout
    assert "Không có câu trả lời" in run_cli(["feedback", "--vote", "up"], settings).stdout
    assert "Không có câu trả lời" in run_cli(["feedback", "--until", "2020-01-01"], settings).stdout

    exported = tmp_path / "feedback.jsonl"
    result = run_cli(["feedback", "export", "--out", str(exported)], settings)
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    cited = {s.article_id for s in components.answerer.answer(QUESTION).sources}
    assert record["question"] == QUESTION and record["answers"] == [correction]
    assert set(record["passage_ids"]) == cited and record["answerable"] is True
    assert "to-correct" in record["tags"] and record["feedback"]["votes_down"] == 1
    assert "Trần Thế Ngọc" in record["feedback"]["bot_answer"]

    report = tmp_path / "report.json"
    evaluated = run_cli(["eval", "--questions", str(exported), "--answerer", "extractive", "--out", str(report)],
                        settings)
    assert evaluated.returncode == 0, evaluated.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    [scored] = data["questions"]
    assert scored["id"] == record["id"] and scored["hit_rank"] == 1  # the cited article is found first


def test_in_a_group_only_the_voter_can_correct(tmp_path: Path, server: BotApiServer) -> None:
    settings = bot_settings(tmp_path, server)
    with running_bot(settings, ScriptedAnswerer()):
        group = server.group(-2010)
        lan, minh = server.user(211, "Lan"), server.user(212, "Minh")
        reply = lan.wait_reply(lan.say("/ask Ai chủ trì buổi làm việc?", chat=group))
        minh.press(reply, reply.button("vote:")["callback_data"].replace(":up", ":down"))
        prompt = minh.wait_reply(server.message(-2010, reply.message_id))
        other = lan.say("Tôi nghĩ là ông Ngọc", chat=group, reply_to=server.message(-2010, prompt.message_id))
        answered_as_question = lan.wait_reply(other)
        thanks = minh.wait_reply(minh.say("Ông Trần Thế Ngọc", chat=group,
                                          reply_to=server.message(-2010, prompt.message_id)))
    assert prompt.text.startswith("Minh, Câu trả lời đúng là gì?") and '<a href="tg://user?id=212">' in prompt.raw
    assert "Tôi nghĩ là ông Ngọc" in answered_as_question.text  # not the voter: a reply to the bot is a question
    assert thanks.text.startswith("Cảm ơn bạn! Mình đã lưu")
    state = SqliteState.open(settings.state_db)
    try:
        [voted] = state.voted_answers(vote=-1)
    finally:
        state.close()
    assert voted.corrections == ["Ông Trần Thế Ngọc"] and voted.question == "Ai chủ trì buổi làm việc?"


# --- the operator's view ---


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30)


def test_webhook_serves_metrics_and_health_and_logs_json(tmp_path: Path, server: BotApiServer,
                                                         built_index_settings: Settings) -> None:
    settings = copy_index(built_index_settings, tmp_path, server)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(settings, HOIDAP_TELEGRAM_TOKEN=TOKEN, HOIDAP_TELEGRAM_API_URL=server.base_url,
                  HOIDAP_TELEGRAM_WEBHOOK_URL=f"{base}/hook", HOIDAP_TELEGRAM_WEBHOOK_PORT=str(port),
                  HOIDAP_LOG_FORMAT="json", HOIDAP_LOG_LEVEL="INFO")
    with telegram_process(env, tmp_path, server) as process:
        lan = server.user(210)
        reply = lan.wait_reply(lan.say(QUESTION), timeout=120)
        server.wait_for(lambda: reply.buttons(), what="the finished answer")
        lan.press(reply, reply.button("vote:")["callback_data"])
        server.wait_for(lambda: server.callback_answers, what="the vote")
        metrics = _get(f"{base}/metrics")
        healthy = _get(f"{base}/healthz")
        shutil.rmtree(settings.index_dir)
        unhealthy = _get(f"{base}/healthz")
        _, stderr = stop(process)
    assert "Trần Thế Ngọc" in reply.text
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    body = metrics.text
    for line in ('hoidap_questions_total{via="chat"} 1.0', 'hoidap_answers_total{outcome="found"} 1.0',
                 'hoidap_answers_total{outcome="not_found"} 0.0', 'hoidap_votes_total{vote="up"} 1.0',
                 'hoidap_answer_seconds_count{via="chat"} 1.0', "hoidap_worker_queue_depth 0.0"):
        assert line in body, line
    assert "hoidap_retrieval_seconds_count 1.0" in body or "hoidap_retrieval_seconds_count 2.0" in body
    assert healthy.status_code == 200
    assert healthy.json() == {"healthy": True, "checks": {"index": "ok", "model": "ok", "bot_api": "ok"}}
    assert unhealthy.status_code == 503 and unhealthy.json()["checks"]["index"].startswith("index files missing")
    assert unhealthy.json()["checks"]["bot_api"] == "ok"
    lines = [line for line in stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    # Every log line is one JSON object; the one other line is the start-up announcement on the console.
    assert records and [line for line in lines if not line.startswith("{")] == [
        next(line for line in lines if line.startswith("Telegram bot @hoidap_test_bot running (webhook"))]
    answered = [r for r in records if r["message"].startswith("Question ") and "answered" in r["message"]]
    assert answered and answered[0]["question_id"] == answered[0]["message"].split()[1]
    assert TOKEN not in stderr and TOKEN.split(":")[1] not in stderr

    stats = run_cli(["stats"], settings)
    assert stats.returncode == 0, stats.stderr
    assert "câu hỏi (trò chuyện)" in stats.stdout and "👍 / 👎" in stats.stdout
    prometheus = run_cli(["stats", "--prometheus"], settings)
    assert 'hoidap_questions_total{via="chat"} 1.0' in prometheus.stdout
    assert 'hoidap_votes_total{vote="up"} 1.0' in prometheus.stdout
