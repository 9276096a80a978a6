"""Two `hoidap telegram` replicas behind one load balancer behave as one bot, with their state in PostgreSQL.

Only one process may long-poll a token, so the replicas run in webhook mode, as they would behind a
load balancer: both register the same public URL and secret, and the local Bot API server
(tests/e2e/botapi_server.py) delivers the updates to one replica, then the other, in turn. The index is
the session's embedded index moved into a fresh database by the real `hoidap migrate`; the replicas
have a data dir each (nothing shared on disk), and their state (history, answers, votes, rate-limit
windows, the question log) lives in that database. Then `hoidap stats` and `hoidap feedback` read the
figures of both from it. A follow-up that reaches the other replica while its question is still being
answered waits for that answer's turn in the history.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from bot.settings import Settings
from bot.telegram import texts
from tests.conftest import cli_env, make_settings, run_cli
from tests.e2e.botapi_server import BotApiServer
from tests.e2e.test_telegram import TOKEN, _free_port, stop, telegram_process

pytestmark = pytest.mark.e2e

RATE_LIMIT = 3
"""Questions per user per minute for these replicas: low, so the limit is reached within the test."""
SECRET = "replicas-share-this-secret"
"""Every replica must register the same webhook secret, or each start would lock the others out."""
FIRST = "Năm 2023 đã kết nạp mới bao nhiêu đảng viên?"
FOLLOW_UP = "Còn năm 2018 thì sao?"


@pytest.fixture(scope="module")
def indexed_database(postgres_cluster, built_index_settings: Settings) -> str:
    """A fresh database holding the bundled index, copied from the embedded one (nothing embedded again)."""
    url = postgres_cluster.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    moved = run_cli(["migrate", "--to", url], built_index_settings)
    assert moved.returncode == 0, moved.stderr
    return url


def _replica_env(tmp_path: Path, name: str, models_dir: Path, url: str, server: BotApiServer, port: int,
                 public_url: str) -> dict[str, str]:
    settings = make_settings(tmp_path / name / "data", models_dir)
    return cli_env(settings, HOIDAP_DATABASE_URL=url, HOIDAP_TELEGRAM_TOKEN=TOKEN,
                   HOIDAP_TELEGRAM_API_URL=server.base_url, HOIDAP_TELEGRAM_WEBHOOK_URL=public_url,
                   HOIDAP_TELEGRAM_WEBHOOK_SECRET=SECRET, HOIDAP_TELEGRAM_WEBHOOK_PORT=str(port),
                   HOIDAP_TELEGRAM_RATE_LIMIT=str(RATE_LIMIT))


def _metric(base: str, line: str) -> float:
    """One sample of a replica's own /metrics (0 when it has none yet)."""
    body = httpx.get(f"{base}/metrics", timeout=30).text
    match = re.search(rf"^{re.escape(line)} (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_two_webhook_replicas_share_conversations_limits_and_votes(tmp_path: Path, models_dir: Path,
                                                                   indexed_database: str) -> None:
    url = indexed_database
    operator = make_settings(tmp_path / "operator" / "data", models_dir)
    operator.data_dir.mkdir(parents=True)
    before = run_cli(["stats"], operator, HOIDAP_DATABASE_URL=url)
    assert before.returncode == 1 and "chưa có dữ liệu của bot" in before.stderr and "Traceback" not in before.stderr
    ports = [_free_port(), _free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    with BotApiServer(TOKEN) as server:
        public_url = "http://127.0.0.1:9/hook"  # the load balancer's address, as both replicas register it
        server.balance_webhook([f"{base}/hook" for base in bases])
        envs = [_replica_env(tmp_path, f"replica{i + 1}", models_dir, url, server, port, public_url)
                for i, port in enumerate(ports)]
        with telegram_process(envs[0], tmp_path, server) as one, telegram_process(envs[1], tmp_path, server) as two:
            lan, minh = server.user(301, "Lan"), server.user(302, "Minh")

            # A conversation started on one replica continues on the other.
            asked = lan.say(FIRST)
            first = lan.wait_reply(asked, timeout=180, where=lambda m: bool(m.buttons()))
            follow = lan.say(FOLLOW_UP)
            follow_up = lan.wait_reply(follow, timeout=180, where=lambda m: bool(m.buttons()))
            answered_by = [server.delivered_to(asked["_update_id"]), server.delivered_to(follow["_update_id"])]

            # What a server restart or failover does to every client: the next update connects again.
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()")

            # The same 👍 pressed twice at once (a double click), each press going to another replica, is one vote.
            button = first.button("vote:")["callback_data"]
            presses = [lan.press(first, button), lan.press(first, button)]
            server.wait_for(lambda: len(server.callback_answers) >= 2, what="both presses answered")
            pressed_at = {server.delivered_to(press["_update_id"]) for press in presses}

            # The rate limit counts Minh's questions on both replicas together: the fourth in a minute is refused.
            questions, answers = [], []
            for text in ("Ai dẫn đầu đoàn công tác Tỉnh ủy Tiền Giang?", "Đoàn công tác làm việc vào ngày nào?",
                         "Đảng bộ Khối các cơ quan tỉnh có bao nhiêu đảng viên?",
                         "Có bao nhiêu đảng viên mới được kết nạp?"):
                questions.append(minh.say(text))
                answers.append(minh.wait_reply(questions[-1], timeout=180,
                                               where=lambda m: bool(m.buttons()) or "hơi nhanh" in m.text))
            limited_at = {server.delivered_to(q["_update_id"]) for q in questions}
            per_replica = [_metric(base, 'hoidap_questions_total{via="chat"}') for base in bases]
            votes_counted = [_metric(base, 'hoidap_votes_total{vote="up"}') for base in bases]
            _, stderr_one = stop(one)
            _, stderr_two = stop(two)

    assert answered_by == [f"{bases[0]}/hook", f"{bases[1]}/hook"]  # asked on replica 1, followed up on replica 2
    assert "1.513" in first.text
    # The 2018 article's admissions: "còn năm 2018 thì sao?" read as a question about admissions, which only the
    # history replica 1 kept says (alone, it is answered with the 2018 membership, 3.463, instead).
    assert "527/600" in follow_up.text
    assert pressed_at == {f"{bases[0]}/hook", f"{bases[1]}/hook"}
    assert [a.get("text") for a in server.callback_answers] == [texts.THANKS_UP] * 2  # each replica knew the answer
    assert sorted(votes_counted) == [0.0, 1.0]  # whichever press came second changed nothing: counted nowhere
    assert all(a.buttons() for a in answers[:RATE_LIMIT])
    assert answers[RATE_LIMIT].text.startswith(f"Bạn đang hỏi hơi nhanh: tối đa {RATE_LIMIT} câu hỏi mỗi phút.")
    assert limited_at == {f"{bases[0]}/hook", f"{bases[1]}/hook"}  # the four questions went to both replicas
    assert per_replica == [3.0, 2.0]  # each replica saw only its share of the 5 answered questions
    for stderr in (stderr_one, stderr_two):  # each replica lost its connection once and said so once
        [lost] = [line for line in stderr.splitlines() if "Lost the connection to the bot's database" in line]
        assert "127.0.0.1:" in lost and "connecting again" in lost
    assert "Traceback" not in stderr_one + stderr_two
    assert SECRET not in stderr_one + stderr_two and TOKEN not in stderr_one + stderr_two

    # The operator's figures are those of the whole bot, read from the database by any machine.
    prometheus = run_cli(["stats", "--prometheus"], operator, HOIDAP_DATABASE_URL=url)
    assert prometheus.returncode == 0, prometheus.stderr
    assert 'hoidap_questions_total{via="chat"} 5.0' in prometheus.stdout
    assert 'hoidap_votes_total{vote="up"} 1.0' in prometheus.stdout
    table = run_cli(["stats"], operator, HOIDAP_DATABASE_URL=url)
    assert table.returncode == 0, table.stderr
    assert re.search(r"câu hỏi \(trò chuyện\)\s*│\s*5\b", table.stdout), table.stdout
    assert re.search(r"👍 / 👎\s*│\s*1 / 0", table.stdout), table.stdout
    voted = run_cli(["feedback", "--vote", "up"], operator, HOIDAP_DATABASE_URL=url)
    assert voted.returncode == 0, voted.stderr
    assert FIRST in voted.stdout and "👍 1 👎 0" in voted.stdout and "1 câu trả lời." in voted.stdout
    exported = tmp_path / "feedback.jsonl"
    export = run_cli(["feedback", "export", "--vote", "up", "--out", str(exported)], operator, HOIDAP_DATABASE_URL=url)
    assert export.returncode == 0, export.stderr
    [record] = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert record["question"] == FIRST and record["feedback"]["votes_up"] == 1 and "1.513" in record["answers"][0]
    assert not (operator.data_dir / "state.sqlite3").exists()  # nothing was read from, or written to, the data dir


def test_a_follow_up_on_one_replica_waits_for_the_question_answered_on_the_other(tmp_path: Path, models_dir: Path,
                                                                                indexed_database: str) -> None:
    ports = [_free_port(), _free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    with BotApiServer(TOKEN) as server:
        server.balance_webhook([f"{base}/hook" for base in bases])
        envs = [_replica_env(tmp_path, f"replica{i + 1}", models_dir, indexed_database, server, port,
                             "http://127.0.0.1:9/hook") for i, port in enumerate(ports)]
        with telegram_process(envs[0], tmp_path, server) as one, telegram_process(envs[1], tmp_path, server) as two:
            hoa = server.user(303, "Hoa")
            asked = hoa.say(FIRST)
            # Replica 1 is answering (it shows "typing…" once the chat's turn is its own): the follow-up comes now.
            server.wait_for(lambda: any(call["chat_id"] == 303 for call in server.calls_of("sendChatAction")),
                            timeout=120, what="replica 1 to start answering")
            follow = hoa.say(FOLLOW_UP)
            first = hoa.wait_reply(asked, timeout=180, where=lambda m: bool(m.buttons()))
            follow_up = hoa.wait_reply(follow, timeout=180, where=lambda m: bool(m.buttons()))
            answered_by = [server.delivered_to(asked["_update_id"]), server.delivered_to(follow["_update_id"])]
            _, stderr_one = stop(one)
            _, stderr_two = stop(two)
    assert answered_by == [f"{bases[0]}/hook", f"{bases[1]}/hook"]
    assert "1.513" in first.text
    # Only the history makes "còn năm 2018 thì sao?" a question about admissions: answered without it (both
    # replicas at once, no turn per chat), it came back "not found" in every run tried.
    assert "527/600" in follow_up.text, follow_up.text
    assert "Traceback" not in stderr_one + stderr_two and "answering without waiting" not in stderr_two
