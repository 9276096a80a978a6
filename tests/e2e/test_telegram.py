"""The real python-telegram-bot Application over HTTP (loopback) against a local Bot API server.

A test user sends messages, presses buttons, edits and sends stickers; the assertions read what the
bot really sent, after the server accepted it with Telegram's own checks (4096 characters, entities).
The question test uses the real extractive Answerer over a real index of the bundled articles; the
bot-edge cases (long answers, failures, streaming) use a deterministic Answerer of our own.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from bot.settings import Settings
from bot.telegram.app import build_application
from bot.telegram.formatting import ArticleListing
from index.errors import HoidapError
from retrieval.types import Answer, AnswerStream, Source, Turn
from tests.conftest import HOIDAP, cli_env
from tests.e2e.botapi_server import BotApiServer, BotThread, SentMessage, TestUser, parse_html

pytestmark = pytest.mark.e2e

TOKEN = "7000000001:AAE-hoidapTestToken_0123456789abcdef"
ARTICLES = [
    ArticleListing("Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối", "2014-10-29", "THTG", 6),
    ArticleListing("Giá lúa <tăng> & nông dân \"phấn khởi\"", None, None, 3),
]


def _source(n: int, title: str = "Tin <Tiền Giang> & \"Đảng\"", text: str | None = None) -> Source:
    text = text or (f"Đoạn trích số {n}: Sáng ngày 29/10, Đoàn công tác Tỉnh ủy đã làm việc với Ban Thường vụ "
                    "Đảng ủy Khối Các cơ quan tỉnh về tình hình 9 tháng đầu năm 2014 <quan trọng> & đầy đủ.")
    return Source(n=n, article_id=f"a{n}", title=title, date="2014-10-29", source="THTG", text=text,
                  start=0, end=len(text), score=0.9)


class ScriptedAnswerer:
    """A deterministic Answerer: fixed answers by keyword; records the history it was given."""

    def __init__(self) -> None:
        self.histories: list[tuple[str, list[Turn]]] = []
        self._lock = threading.Lock()

    def _reply(self, question: str) -> tuple[list[str], Answer, float]:
        if "dài" in question:
            paragraph = ("Đoàn công tác Tỉnh ủy đã làm việc với Ban Thường vụ <Đảng ủy> & các cơ quan [1]. "
                         "Nhiều nhiệm vụ được giao cho năm tới, với sự tham gia của đông đảo cán bộ [2]. ") * 6
            text = "\n\n".join(f"Ý {i}: {paragraph}" for i in range(12))
            return [text], Answer(text, True, [_source(1), _source(2)]), 0.0
        if "lỗi" in question:
            raise RuntimeError("the answerer failed on purpose")
        if "chậm" in question:
            parts = ["Đoàn công tác ", "đã làm việc ", "với Ban Thường vụ ", "trong buổi sáng [1]."]
            return parts, Answer("".join(parts), True, [_source(1)]), 0.9
        if "thời tiết" in question:
            return ["Không tìm thấy"], Answer("Không tìm thấy thông tin này trong các bài báo đã lập chỉ mục.",
                                              False, []), 0.0
        text = f"Về câu hỏi «{question}»: Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ Đảng ủy Khối [1]."
        return [text], Answer(text, True, [_source(1)]), 0.0

    def answer(self, question: str, history: list[Turn] | None = None) -> Answer:
        return self.stream(question, history).final()

    def stream(self, question: str, history: list[Turn] | None = None) -> AnswerStream:
        with self._lock:
            self.histories.append((question, list(history or [])))
        fragments, answer, pause = self._reply(question)

        def produce() -> Generator[str, None, Answer]:
            for fragment in fragments:
                time.sleep(pause)  # a slow generator, as a local LLM would be
                yield fragment
            return answer

        return AnswerStream(produce())

    def warm_up(self) -> None:
        return None

    def history_for(self, question: str) -> list[Turn]:
        with self._lock:
            return next(h for q, h in reversed(self.histories) if q == question)


@pytest.fixture
def server() -> Iterator[BotApiServer]:
    with BotApiServer(TOKEN) as srv:
        yield srv


def bot_settings(tmp_path: Path, server: BotApiServer, **overrides: object) -> Settings:
    """Settings that ignore the developer's .env; state in the test's own directory."""
    values: dict[str, object] = {"data_dir": tmp_path / "data", "telegram_token": TOKEN,
                                 "telegram_api_url": server.base_url, "telegram_rate_limit": 100}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@contextmanager
def running_bot(settings: Settings, answerer: object, articles: list[ArticleListing] = ARTICLES,
                **options: object) -> Iterator[BotThread]:
    application = build_application(settings, answerer, lambda: articles, **options)  # type: ignore[arg-type]
    with BotThread(application, settings) as bot:
        yield bot


def answer_parts(user: TestUser, question: dict, count: int | None = None) -> list[SentMessage]:
    """All the messages of one answer: the reply, then the parts sent after it up to the keyboard."""
    first = user.wait_reply(question)
    server = user.server

    def parts() -> list[SentMessage] | None:
        chat = [m for m in server.messages_in(first.chat_id) if m.message_id >= first.message_id]
        for i, message in enumerate(chat):
            if any(b.get("callback_data", "").startswith("vote:") for b in message.buttons()):
                return chat[: i + 1]
        return None

    return server.wait_for(parts, what="the last part of an answer (with its vote buttons)")


def copy_index(built: Settings, tmp_path: Path, server: BotApiServer) -> Settings:
    """The session's real index in this test's own data dir, so the bot's state stays apart."""
    data_dir = tmp_path / "data"
    shutil.copytree(built.index_dir, data_dir / "index")
    return built.model_copy(update={"data_dir": data_dir, "telegram_token": SecretStr(TOKEN),
                                    "telegram_api_url": server.base_url})


@contextmanager
def telegram_process(env: dict[str, str], cwd: Path, server: BotApiServer,
                     answerer: str = "extractive") -> Iterator[subprocess.Popen[str]]:
    """The real `hoidap telegram` in a subprocess, once it has registered its commands; killed if left running."""
    registered = len(server.calls_of("setMyCommands"))
    process = subprocess.Popen([*HOIDAP, "telegram", "--answerer", answerer], env=env, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server.wait_for(lambda: len(server.calls_of("setMyCommands")) > registered or process.poll() is not None,
                        timeout=300, what="the bot to start")
        assert process.poll() is None, process.communicate()[1][-3000:]
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, as a service manager sends it: the bot must leave cleanly. Returns its stdout and stderr."""
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    return stdout, stderr


# --- the scenarios ---


def test_question_answered_with_citations_by_the_real_answerer(tmp_path: Path, server: BotApiServer,
                                                                built_index_settings: Settings, components) -> None:
    settings = copy_index(built_index_settings, tmp_path, server)
    articles = [ArticleListing(a.title, a.date, a.source, a.n_chunks) for a in components.store.articles()]
    with running_bot(settings, components.answerer, articles):
        lan = server.user(101, "Lan")
        question = lan.say("Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang đến làm việc với Đảng ủy Khối "
                           "Các cơ quan tỉnh?")
        reply = lan.wait_reply(question, timeout=120, where=lambda m: bool(m.buttons()))  # drafts may come first
        lan.press(reply, reply.button("src:")["callback_data"])
        passages = server.wait_for(lambda: next(iter(server.replies_to(101, reply.message_id)), None))
    assert reply.parse_mode == "HTML" and reply.reply_to == question["message_id"]
    assert "Trần Thế Ngọc" in reply.text and "[1]" in reply.text and "Nguồn:" in reply.text
    cited = next(a for a in articles if "Đoàn công tác Tỉnh ủy" in a.title)
    assert f"[1] {cited.title}" in reply.text or any(f"] {cited.title}" in line for line in reply.text.splitlines())
    assert [b["callback_data"].split(":")[0] for b in reply.buttons()] == ["src", "vote", "vote"]
    assert any(c["action"] == "typing" and c["chat_id"] == 101 for c in server.calls_of("sendChatAction"))
    assert passages.text.startswith("Các đoạn được trích dẫn") and "Trần Thế Ngọc" in passages.text


def test_hoidap_telegram_command_serves_until_sigterm(tmp_path: Path, server: BotApiServer,
                                                      built_index_settings: Settings) -> None:
    settings = copy_index(built_index_settings, tmp_path, server)
    env = cli_env(settings, HOIDAP_TELEGRAM_TOKEN=TOKEN, HOIDAP_TELEGRAM_API_URL=server.base_url,
                  HOIDAP_LOG_LEVEL="DEBUG")
    with telegram_process(env, tmp_path, server) as process:
        lan = server.user(120)
        listing = lan.wait_reply(lan.say("/sources"), timeout=120)
        answer = lan.wait_reply(lan.say("Đoàn công tác Tỉnh ủy làm việc với Ban Thường vụ vào ngày nào?"), timeout=120,
                                where=lambda m: bool(m.buttons()))
        _, stderr = stop(process)
    assert "Các bài báo đã lập chỉ mục (5)" in listing.text
    assert "29/10" in answer.text and "[1]" in answer.text
    assert "Telegram bot @hoidap_test_bot running (long polling)" in stderr
    assert "Calling Bot API endpoint" in stderr  # DEBUG logging was on, and still:
    assert TOKEN not in stderr and TOKEN.split(":")[1] not in stderr


def test_answer_html_escapes_titles_and_quotes(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(121, "Lan")
        question = lan.say("Đoàn công tác Tỉnh ủy làm việc với ai?")
        reply = lan.wait_reply(question)
    assert reply.parse_mode == "HTML"  # accepted by the server's Telegram-strict parser
    assert "Tin <Tiền Giang> & \"Đảng\"" in reply.text  # escaped on the way, shown as written
    assert "29/10/2014" in reply.text and "“Đoạn trích số 1" in reply.text


def test_start_and_help_in_vietnamese_and_commands_registered(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(102)
        start = lan.wait_reply(lan.say("/start"))
        help_ = lan.wait_reply(lan.say("/help"))
    assert start.text.startswith("Xin chào!")
    assert "2 bài báo" in start.text and "[n]" in start.text and "/ask" in start.text
    assert "/sources" in help_.text and "100 câu hỏi mỗi phút" in help_.text
    assert [c["command"] for c in server.commands] == ["start", "help", "sources", "new", "ask"]


def test_sources_lists_the_indexed_articles(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(103)
        reply = lan.wait_reply(lan.say("/sources"))
    assert "Các bài báo đã lập chỉ mục (2)" in reply.text
    assert "1. Đoàn công tác Tỉnh ủy" in reply.text and "29/10/2014 · THTG · 6 đoạn" in reply.text
    assert "2. Giá lúa <tăng> & nông dân \"phấn khởi\" — 3 đoạn" in reply.text


def test_history_follows_the_chat_survives_restart_and_new_forgets_it(tmp_path: Path, server: BotApiServer) -> None:
    answerer = ScriptedAnswerer()
    settings = bot_settings(tmp_path, server, history_turns=2)
    lan = server.user(104)
    with running_bot(settings, answerer):
        for question in ("Câu một?", "Câu hai?", "Câu ba?"):
            answer_parts(lan, lan.say(question))
    with running_bot(settings, answerer):  # a restart: the history is in SQLite
        answer_parts(lan, lan.say("Câu bốn?"))
        assert [t.question for t in answerer.history_for("Câu bốn?")] == ["Câu hai?", "Câu ba?"]
        cleared = lan.wait_reply(lan.say("/new"))
        answer_parts(lan, lan.say("Câu năm?"))
    assert "cuộc trò chuyện mới" in cleared.text
    assert answerer.history_for("Câu năm?") == []
    assert answerer.history_for("Câu một?") == []


def test_sources_button_opens_the_full_passages(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(105)
        reply = lan.wait_reply(lan.say("Ai làm việc với Ban Thường vụ?"))
        press = lan.press(reply, reply.button("src:")["callback_data"])
        passages = server.wait_for(lambda: next(iter(server.replies_to(105, reply.message_id)), None),
                                   what="the cited passages")
        server.wait_for(lambda: any(a["callback_query_id"] == press["id"] for a in server.callback_answers))
    assert passages.text.startswith("Các đoạn được trích dẫn")
    assert "<quan trọng> & đầy đủ." in passages.text  # the full passage, not the short quote
    assert passages.parse_mode == "HTML"


def test_vote_is_stored_with_question_and_answer(tmp_path: Path, server: BotApiServer) -> None:
    settings = bot_settings(tmp_path, server)
    with running_bot(settings, ScriptedAnswerer()):
        lan = server.user(106)
        question = lan.say("Buổi làm việc diễn ra khi nào?")
        reply = lan.wait_reply(question)
        lan.press(reply, reply.button("vote:")["callback_data"])  # 👍
        server.wait_for(lambda: any("👍 ✓" == b["text"] for b in server.messages_in(106)[0].buttons()),
                        what="the ticked 👍")
    with sqlite3.connect(settings.state_db) as db:
        rows = db.execute("SELECT user_id, chat_id, vote, question, answer FROM votes").fetchall()
    assert rows == [(106, 106, 1, "Buổi làm việc diễn ra khi nào?",
                     "Về câu hỏi «Buổi làm việc diễn ra khi nào?»: Đoàn công tác Tỉnh ủy làm việc với Ban "
                     "Thường vụ Đảng ủy Khối [1].")]
    assert any("Cảm ơn" in a.get("text", "") for a in server.callback_answers)


def test_long_answer_arrives_as_several_valid_messages(tmp_path: Path, server: BotApiServer) -> None:
    answerer = ScriptedAnswerer()
    with running_bot(bot_settings(tmp_path, server), answerer):
        lan = server.user(107)
        parts = answer_parts(lan, lan.say("Cho một câu trả lời dài"))
    full = answerer.answer("dài").text
    assert len(full) > 2 * 4096 and len(parts) >= 3
    assert all(p.parse_mode == "HTML" and len(p.text.encode("utf-16-le")) // 2 <= 4096 for p in parts)
    joined = "\n\n".join(p.text for p in parts)
    for paragraph in full.split("\n\n"):
        assert paragraph.strip() in joined  # split on paragraph boundaries: nothing lost or cut
    assert parts[0].reply_to is not None and all(p.reply_to is None for p in parts[1:])
    assert parts[-1].buttons() and not any(p.buttons() for p in parts[:-1])


def test_rejected_entities_fall_back_to_plain_text(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(108)
        server.fail_next("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at "
                                             "byte offset 0")
        reply = lan.wait_reply(lan.say("Ai làm việc với Ban Thường vụ?"))
    assert reply.parse_mode is None
    assert reply.raw == reply.text and "Tin <Tiền Giang> & \"Đảng\"" in reply.text and "[1]" in reply.text
    assert reply.buttons()


def test_group_answers_only_when_mentioned_replied_to_or_asked(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()) as bot:
        group = server.group(-1001)
        lan, minh = server.user(109, "Lan"), server.user(110, "Minh")
        chatter = lan.say("Chiều nay ai đi họp không?", chat=group)
        mentioned = lan.say("@hoidap_test_bot Đoàn công tác làm việc với ai?", chat=group)
        reply = lan.wait_reply(mentioned)
        follow_up = minh.wait_reply(minh.say("Vào ngày nào?", chat=group,
                                             reply_to=server.message(-1001, reply.message_id)))
        asked = lan.wait_reply(lan.say("/ask@hoidap_test_bot Ai chủ trì?", chat=group))
        ignored_sticker = minh.send_sticker(chat=group)
        server.wait_for(lambda: server.delivered(ignored_sticker["_update_id"]))
        bot.stop()  # finishes every update it fetched: now silence can be asserted
    assert "Đoàn công tác làm việc với ai?" in reply.text and "@hoidap_test_bot" not in reply.text
    assert "Vào ngày nào?" in follow_up.text and "Ai chủ trì?" in asked.text
    assert server.replies_to(-1001, chatter["message_id"]) == []
    assert server.replies_to(-1001, ignored_sticker["message_id"]) == []


def test_allowlisted_user_answered_others_refused_once(tmp_path: Path, server: BotApiServer) -> None:
    settings = bot_settings(tmp_path, server, telegram_allowed_users=[111], telegram_allowed_chats=[-1002])
    with running_bot(settings, ScriptedAnswerer()) as bot:
        allowed, stranger = server.user(111, "Lan"), server.user(112, "Khách")
        answered = allowed.wait_reply(allowed.say("Ai làm việc với Ban Thường vụ?"))
        refusal = stranger.wait_reply(stranger.say("Cho tôi hỏi một câu"))
        again = stranger.say("Hỏi lại lần nữa")
        in_allowed_group = stranger.wait_reply(stranger.say("@hoidap_test_bot Ai chủ trì?", chat=server.group(-1002)))
        server.wait_for(lambda: server.delivered(again["_update_id"]))
        bot.stop()
    assert "[1]" in answered.text
    assert refusal.text.startswith("Xin lỗi, bot này chỉ dành cho")
    assert server.replies_to(112, again["message_id"]) == []  # refused once, then quiet
    assert len(server.messages_in(112)) == 1
    assert "Ai chủ trì?" in in_allowed_group.text  # an allowlisted group lets its members ask


def test_sticker_and_voice_get_a_text_only_reply(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(113)
        sticker = lan.wait_reply(lan.send_sticker())
        voice = lan.wait_reply(lan.send_voice())
    assert sticker.text == voice.text == "Mình chỉ đọc được tin nhắn chữ. Hãy gõ câu hỏi của bạn nhé."


def test_edited_question_is_answered_anew(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()) as bot:
        lan = server.user(114)
        question = lan.say("Ai làm việc với Ban Thường vụ Đảng ủy Khói?")
        first = lan.wait_reply(question)
        edited = lan.edit(question, "Ai làm việc với Ban Thường vụ Đảng ủy Khối?")
        second = lan.wait_reply(question, where=lambda m: m.message_id != first.message_id)
        unchanged = lan.edit(edited, "Ai làm việc với Ban Thường vụ Đảng ủy Khối?")
        server.wait_for(lambda: server.delivered(unchanged["_update_id"]))
        bot.stop()
    assert second.text.startswith("Trả lời cho câu hỏi đã sửa") and "Đảng ủy Khối?»" in second.text
    assert len(server.replies_to(114, question["message_id"])) == 2  # the no-op edit got no third answer


def test_rate_limit_and_long_input_are_explained(tmp_path: Path, server: BotApiServer) -> None:
    settings = bot_settings(tmp_path, server, telegram_rate_limit=2, telegram_max_input_chars=40)
    with running_bot(settings, ScriptedAnswerer()) as bot:
        lan = server.user(115)
        long_one = lan.wait_reply(lan.say("Đoàn công tác Tỉnh ủy đã làm việc với những cơ quan nào trong tỉnh?"))
        lan.wait_reply(lan.say("Câu hai?"))
        limited = lan.wait_reply(lan.say("Câu ba?"))
        quiet = lan.say("Câu bốn?")
        server.wait_for(lambda: server.delivered(quiet["_update_id"]))
        bot.stop()
    assert long_one.text.startswith("Câu hỏi dài hơn 40 ký tự nên chỉ phần đầu được dùng.")
    assert "«Đoàn công tác Tỉnh ủy đã làm việc với»" in long_one.text
    assert "tối đa 2 câu hỏi mỗi phút" in limited.text and "giây" in limited.text
    assert server.replies_to(115, quiet["message_id"]) == []  # told once per wait, not at every message


def test_streaming_answer_shows_drafts_then_the_final_answer(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer(), draft_interval=0.5):
        lan = server.user(116)
        question = lan.say("Trả lời chậm thôi")
        reply = server.wait_for(lambda: next((m for m in server.replies_to(116, question["message_id"])
                                              if m.buttons()), None), what="the finished streamed answer")
    drafts = server.drafts_in(116)
    assert drafts, "a slow answer shows a draft before the final text"
    assert drafts[0].text.endswith("▌") and drafts[0].text.startswith("Đoàn công tác")
    assert reply.text.startswith("Đoàn công tác đã làm việc với Ban Thường vụ trong buổi sáng [1].")
    assert len(server.messages_in(116)) == 1 and reply.edits == 0  # drafts, then one message


def test_flood_wait_and_network_errors_are_retried(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(117)
        server.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
        server.fail_next("sendMessage", 502, "Bad Gateway")
        reply = lan.wait_reply(lan.say("Ai làm việc với Ban Thường vụ?"))
    assert "[1]" in reply.text
    assert len(server.calls_of("sendMessage")) == 3  # refused twice, delivered on the third attempt


def test_failure_is_logged_with_traceback_and_the_user_told(tmp_path: Path, server: BotApiServer,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        lan = server.user(118)
        reply = lan.wait_reply(lan.say("Câu này gây lỗi"))
        ok = lan.wait_reply(lan.say("Còn câu này thì sao?"))
    assert reply.text.startswith("Xin lỗi, đã có lỗi")
    assert "[1]" in ok.text  # the bot carries on
    failures = [r for r in caplog.records if r.getMessage().startswith("Failed to handle update")]
    assert failures and failures[0].exc_info and "the answerer failed on purpose" in caplog.text
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text  # even at DEBUG level
    assert "bot<redacted>" in caplog.text  # python-telegram-bot logged its API URL, token redacted


def test_twenty_users_asking_at_once_are_all_answered(tmp_path: Path, server: BotApiServer) -> None:
    with running_bot(bot_settings(tmp_path, server), ScriptedAnswerer()):
        users = [server.user(1000 + i, f"Người {i}") for i in range(20)]
        questions = [(u, u.say(f"Người {i} hỏi: Ai làm việc với Ban Thường vụ?")) for i, u in enumerate(users)]
        replies = [u.wait_reply(q, timeout=120) for u, q in questions]
    for (user, question), reply in zip(questions, replies):
        assert reply.chat_id == user.id and question["text"] in reply.text and "[1]" in reply.text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webhook_mode_checks_the_secret_token(tmp_path: Path, server: BotApiServer) -> None:
    port = _free_port()
    settings = bot_settings(tmp_path, server, telegram_webhook_url=f"http://127.0.0.1:{port}/hoidap",
                            telegram_webhook_listen="127.0.0.1", telegram_webhook_port=port,
                            telegram_webhook_secret="s3cret-Webhook_token")
    with running_bot(settings, ScriptedAnswerer()):
        assert server.webhook == {"url": f"http://127.0.0.1:{port}/hoidap", "secret_token": "s3cret-Webhook_token"}
        lan = server.user(119)
        reply = lan.wait_reply(lan.say("Ai làm việc với Ban Thường vụ?"))
        forged = httpx.post(f"http://127.0.0.1:{port}/hoidap", headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                            json={"update_id": 999, "message": {"message_id": 1, "date": 0, "text": "giả mạo",
                                                                "chat": {"id": 119, "type": "private"}}})
    assert "[1]" in reply.text
    assert forged.status_code == 403
    assert len(server.messages_in(119)) == 1


def test_a_wrong_token_is_one_clear_error(tmp_path: Path, server: BotApiServer) -> None:
    settings = bot_settings(tmp_path, server, telegram_token="7000000001:AAE-not-the-right-one")
    application = build_application(settings, ScriptedAnswerer(), lambda: ARTICLES)
    with pytest.raises(HoidapError, match="Telegram refused the token in HOIDAP_TELEGRAM_TOKEN"):
        BotThread(application, settings).start()
    assert server.calls == []  # the server accepted nothing under the wrong token


def test_server_rejects_what_telegram_rejects() -> None:
    """The local server is only useful if it is as strict as Telegram on what bots get wrong."""
    assert parse_html("<b>a &amp; b</b> &lt;i&gt; <a href=\"https://x.vn\">x</a>") == "a & b <i> x"
    for bad in ("<br>", "<b>open", "<b><i>x</b></i>", "a & b", "<a>x</a>", "&nbsp;", "x</b>"):
        with pytest.raises(Exception, match="can't parse entities"):
            parse_html(bad)


# --- access control, secrets, crash survival ---


class CountingRetriever:
    """The real retriever, counting the queries that reach it (the answerer's way into the index)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.queries: list[str] = []
        self._lock = threading.Lock()

    def retrieve(self, query: str, k: int, filters: object = None) -> list:
        with self._lock:
            self.queries.append(query)
        return self.inner.retrieve(query, k, filters)  # type: ignore[attr-defined]


def test_no_update_from_a_stranger_reaches_retrieval(tmp_path: Path, server: BotApiServer,
                                                     built_index_settings: Settings, components) -> None:
    """With an allowlist, a stranger's messages, commands, edits and copied buttons never reach the index.

    The policy (bot/telegram/access.py): a listed user may ask anywhere; a listed chat lets its members
    ask. So a stranger is answered only in a listed chat, and refused everywhere else.
    """
    from bot.wiring import build_answerer
    from retrieval.answering.judgement import CorpusGate

    settings = copy_index(built_index_settings, tmp_path, server).model_copy(
        update={"telegram_allowed_users": [111], "telegram_allowed_chats": [-1002]})
    retriever = CountingRetriever(components.retriever)
    answerer = build_answerer(settings, retriever, CorpusGate(components.lexical.idf, components.embedder), "extractive")
    shared_group, listed_group = server.group(-1003, "Nhóm chung"), server.group(-1002, "Nhóm được phép")
    with running_bot(settings, answerer) as bot:
        lan, stranger = server.user(111, "Lan"), server.user(112, "Khách")
        answer = lan.wait_reply(lan.say("Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?"), timeout=120)
        in_group = lan.wait_reply(lan.say("@hoidap_test_bot Buổi làm việc diễn ra vào ngày nào?", chat=shared_group),
                                  timeout=120)
        asked = stranger.say("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")
        refusal = stranger.wait_reply(asked)
        stranger.say("/ask Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?")
        stranger.edit(asked, "Tổng số đảng viên năm 2018 là bao nhiêu?")
        presses = [stranger.press(answer, answer.button("src:")["callback_data"]),
                   stranger.press(answer, answer.button("vote:")["callback_data"]),
                   stranger.press(refusal, answer.button("src:")["callback_data"])]  # copied onto its own chat
        stranger.say("@hoidap_test_bot Ai chủ trì buổi làm việc?", chat=shared_group)
        stranger.say("Còn năm 2016 thì sao?", chat=shared_group, reply_to=server.message(-1003, in_group.message_id))
        copied = lan.press(in_group, answer.button("src:")["callback_data"])  # Lan's own, under another chat
        server.wait_for(lambda: server.delivered(copied["_update_id"]))
        policy_case = stranger.wait_reply(stranger.say("/ask Ai chủ trì buổi làm việc?", chat=listed_group),
                                          timeout=120)
        bot.stop()  # finishes every update it fetched: now silence can be asserted
    assert "Trần Thế Ngọc" in answer.text and "29/10" in in_group.text and "[1]" in policy_case.text
    assert retriever.queries == ["Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?",
                                 "Buổi làm việc diễn ra vào ngày nào?", "Ai chủ trì buổi làm việc?"]
    assert refusal.text.startswith("Xin lỗi, bot này chỉ dành cho")
    assert [m.text for m in server.messages_in(112)] == [refusal.text]  # refused once, nothing else
    refused = [a for a in server.callback_answers if a["callback_query_id"] in {p["id"] for p in presses}]
    assert len(refused) == 3 and all(a.get("show_alert") and a["text"].startswith("Xin lỗi") for a in refused)
    assert server.replies_to(111, answer.message_id) == []  # the stranger's button opened no passages
    assert server.replies_to(-1003, in_group.message_id) == []  # nor did a button moved to another chat
    assert any(a["callback_query_id"] == copied["id"] and a["text"] == "Câu trả lời này không còn được lưu."
               for a in server.callback_answers)
    assert [m.text for m in server.messages_in(-1003) if m.text.startswith("Xin lỗi")] == [refusal.text]
    with sqlite3.connect(settings.state_db) as db:
        history = db.execute("SELECT chat_id, question FROM history ORDER BY id").fetchall()
        askers = db.execute("SELECT DISTINCT user_id FROM answers ORDER BY user_id").fetchall()
        votes = db.execute("SELECT COUNT(*) FROM votes").fetchone()
    assert history == [(111, "Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?"),
                       (-1003, "Buổi làm việc diễn ra vào ngày nào?"), (-1002, "Ai chủ trì buổi làm việc?")]
    assert askers == [(111,), (112,)] and votes == (0,)  # 112 asked only where the policy lets it


API_KEY = "sk-hoidapTest-0123456789abcdefSECRET"


class LeakyLLMEndpoint:
    """An OpenAI-compatible endpoint that refuses every request and echoes the key it got in its error,
    as some proxies do: a worst case for what reaches the bot's logs."""

    def __init__(self) -> None:
        import http.server

        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.keys_seen.append(self.headers.get("Authorization", ""))
                status = 401 if len(endpoint.keys_seen) % 2 else 500
                body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}",
                                             "type": "invalid_request_error", "code": status}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.keys_seen: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def everything_the_bot_said(server: BotApiServer) -> str:
    """Every parameter of every Bot API call the bot made: messages, drafts, edits, alerts, commands."""
    return "\n".join(json.dumps(params, ensure_ascii=False, default=str) for _, params in server.calls)


def test_token_and_api_key_never_reach_logs_or_chats(tmp_path: Path, server: BotApiServer,
                                                     built_index_settings: Settings) -> None:
    secrets = [TOKEN, TOKEN.split(":")[1], API_KEY]
    llm = LeakyLLMEndpoint()
    settings = copy_index(built_index_settings, tmp_path, server)
    env = cli_env(settings, HOIDAP_TELEGRAM_TOKEN=TOKEN, HOIDAP_TELEGRAM_API_URL=server.base_url,
                  HOIDAP_LOG_LEVEL="DEBUG", HOIDAP_OPENAI_API_KEY=API_KEY, HOIDAP_OPENAI_BASE_URL=llm.url)
    try:
        with telegram_process(env, tmp_path, server, answerer="openai") as process:
            lan = server.user(130)
            replies = [lan.wait_reply(lan.say(question), timeout=120) for question in
                       ("Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?", "/sources",
                        "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?")]
            stdout, stderr = stop(process)
    finally:
        llm.close()
    assert llm.keys_seen and all(API_KEY in key for key in llm.keys_seen)  # the key was used, and it failed:
    assert replies[0].text.startswith("Xin lỗi, đã có lỗi") and replies[2].text.startswith("Xin lỗi, đã có lỗi")
    assert "Failed to handle update" in stderr and "Incorrect API key provided: Bearer <redacted>" in stderr
    assert "Calling Bot API endpoint" in stderr  # DEBUG logging was on
    for text in (stdout, stderr, everything_the_bot_said(server)):
        for secret in secrets:
            assert secret not in text


def test_a_wrong_token_at_start_up_is_not_logged(tmp_path: Path, server: BotApiServer,
                                                 built_index_settings: Settings) -> None:
    wrong = "7000000001:AAE-wrongSecretPart_9876543210fedcba"
    settings = copy_index(built_index_settings, tmp_path, server)
    result = subprocess.run([*HOIDAP, "telegram", "--answerer", "extractive"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path,
                            env=cli_env(settings, HOIDAP_TELEGRAM_TOKEN=wrong, HOIDAP_LOG_LEVEL="DEBUG",
                                        HOIDAP_TELEGRAM_API_URL=server.base_url, HOIDAP_OPENAI_API_KEY=API_KEY))
    assert result.returncode == 1
    assert "Telegram refused the token in HOIDAP_TELEGRAM_TOKEN" in result.stderr and "Traceback" not in result.stderr
    assert server.calls == []
    for secret in (wrong, wrong.split(":")[1], API_KEY):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize("configured_secret", ["s3cret-Webhook_token", None], ids=["configured", "generated"])
def test_webhook_rejects_requests_without_the_secret(tmp_path: Path, server: BotApiServer,
                                                     configured_secret: str | None) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hoidap"
    settings = bot_settings(tmp_path, server, telegram_webhook_url=url, telegram_webhook_listen="127.0.0.1",
                            telegram_webhook_port=port, telegram_webhook_secret=configured_secret)
    answerer = ScriptedAnswerer()
    forged = {"update_id": 999, "message": {"message_id": 50, "date": int(time.time()), "text": "Câu hỏi giả mạo?",
                                            "from": {"id": 131, "is_bot": False, "first_name": "Giả"},
                                            "chat": {"id": 131, "type": "private"}}}
    with running_bot(settings, answerer) as bot:
        lan = server.user(131, "Lan")
        first = lan.wait_reply(lan.say("Câu hỏi thật?"))
        statuses = [httpx.post(url, json=forged, headers=headers).status_code for headers in
                    ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                     {"X-Telegram-Bot-Api-Secret-Token": ""})]
        second = lan.wait_reply(lan.say("Câu hỏi thật nữa?"))
        bot.stop()
    assert server.webhook is not None and server.webhook["secret_token"]  # a secret is always registered
    assert statuses == [403, 403, 403]
    assert "[1]" in first.text and "[1]" in second.text
    assert [question for question, _ in answerer.histories] == ["Câu hỏi thật?", "Câu hỏi thật nữa?"]
    assert len(server.messages_in(131)) == 2


def test_conversation_survives_the_bot_being_killed(tmp_path: Path, server: BotApiServer,
                                                    built_index_settings: Settings) -> None:
    settings = copy_index(built_index_settings, tmp_path, server)
    env = cli_env(settings, HOIDAP_TELEGRAM_TOKEN=TOKEN, HOIDAP_TELEGRAM_API_URL=server.base_url)

    lan = server.user(132)
    with telegram_process(env, tmp_path, server) as process:
        first = lan.wait_reply(lan.say("Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"), timeout=120,
                               where=lambda m: bool(m.buttons()))
        process.send_signal(signal.SIGKILL)  # no shutdown, no flush: what a crash or an OOM kill does
        process.wait(60)
    with telegram_process(env, tmp_path, server) as process:
        follow_up = lan.wait_reply(lan.say("còn năm 2018 thì sao?"), timeout=120, where=lambda m: bool(m.buttons()))
        stop(process)
    assert "74.127" in first.text
    assert "3.463" in follow_up.text  # the 2018 article's figure: the question was read with the history
    assert len(server.messages_in(132)) == 2  # nothing answered twice after the restart
