"""Ctrl-C in `hoidap chat` in a pseudo-terminal: it cancels the answer being written and the chat goes on.

The answerer is the real `openai` one (LangChain's ChatOpenAI, streaming) against a local
OpenAI-compatible server on 127.0.0.1 whose first answer is slow: one word every 0.3 s for a minute.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pexpect
import pytest

from tests.conftest import HOIDAP, cli_env, run_cli

pytestmark = pytest.mark.e2e

QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"
QUICK_ANSWER = "Toàn Đảng bộ tỉnh có 74.127 đảng viên [1]."


class SlowThenQuickLLM:
    """Streams its first completion slowly (and notes when the client hangs up), later ones at once."""

    def __init__(self) -> None:
        self.requests = 0
        self.client_left = threading.Event()
        lock = threading.Lock()
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    llm.requests += 1
                    first = llm.requests == 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = (f"chậm{n} " for n in range(200)) if first else iter([QUICK_ANSWER])
                try:
                    for word in words:
                        self.wfile.write(_event(word))
                        self.wfile.flush()
                        if first:
                            threading.Event().wait(0.3)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    llm.client_left.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> SlowThenQuickLLM:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _event(text: str) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "slow",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()


@pytest.fixture
def slow_llm() -> Iterator[SlowThenQuickLLM]:
    with SlowThenQuickLLM() as llm:
        yield llm


def spawn_chat(settings, **env: str) -> pexpect.spawn:
    # A real terminal answers cursor-position requests; pexpect does not, so tell prompt_toolkit not to ask.
    environment = cli_env(settings, TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", **env)
    return pexpect.spawn(HOIDAP[0], HOIDAP[1:] + ["chat"], env=environment, encoding="utf-8", timeout=180,
                         cwd=str(settings.data_dir.parent), dimensions=(50, 200))


def test_ctrl_c_cancels_the_answer_and_the_next_question_is_answered(built_index_settings, slow_llm) -> None:
    child = spawn_chat(built_index_settings, HOIDAP_ANSWERER="openai", HOIDAP_OPENAI_BASE_URL=slow_llm.url)
    try:
        child.expect("hỏi>")
        child.sendline(QUESTION)
        child.expect("chậm2 ")  # the slow answer is being written
        child.sendintr()
        child.expect("đã huỷ câu trả lời")
        child.expect("hỏi>")
        # The stream was closed: the server saw the client hang up long before its 200 words were out.
        assert slow_llm.client_left.wait(30)

        child.sendline(QUESTION)
        child.expect("74.127")
        child.expect("Nguồn:")
        child.expect("hỏi>")
        assert slow_llm.requests == 2

        child.sendintr()  # Ctrl-C again, at an empty prompt: leave
        child.expect("Tạm biệt!")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_c_clears_a_typed_line_and_ctrl_d_leaves(built_index_settings) -> None:
    child = spawn_chat(built_index_settings)
    try:
        child.expect("hỏi>")
        child.send("câu hỏi bỏ dở")
        child.sendintr()  # a typed line is cleared; the chat stays
        child.sendline("/help")
        child.expect("quên cuộc hội thoại")  # the help, so the line held only "/help"
        child.expect("hỏi>")
        child.sendeof()
        child.expect("Tạm biệt!")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_a_failed_answer_is_reported_and_the_chat_goes_on(built_index_settings) -> None:
    # Nothing listens on port 9 of 127.0.0.1 (the discard port): every answer fails to reach the model.
    script = f"{QUESTION}\n/help\n"
    result = run_cli(["chat"], built_index_settings, input=script, HOIDAP_ANSWERER="openai",
                     HOIDAP_OPENAI_BASE_URL="http://127.0.0.1:9/v1", HOIDAP_EXTRACTIVE_FALLBACK="false")
    assert result.returncode == 0, result.stderr
    assert "lỗi:" in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert "quên cuộc hội thoại" in result.stdout and result.stdout.rstrip().endswith("Tạm biệt!")
