"""The bot's SQLite state: bounded per-chat history that survives a restart, votes, refusals once."""

from __future__ import annotations

from pathlib import Path

from bot.telegram.state import BotState
from retrieval.types import Answer, Source, Turn

SOURCE = Source(n=1, article_id="a1", title="Đoàn công tác Tỉnh ủy", date="2014-10-29", source="THTG",
                text="Sáng ngày 29/10, Đoàn công tác Tỉnh ủy đã có buổi làm việc.", start=10, end=70, score=0.7)


def test_history_is_per_chat_bounded_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = BotState.open(path)
    for i in range(5):
        state.add_turn(1, f"hỏi {i}", f"đáp {i}", keep=3)
    state.add_turn(2, "khác", "đáp khác", keep=3)
    state.close()
    state = BotState.open(path)
    assert state.history(1, 3) == [Turn("hỏi 2", "đáp 2"), Turn("hỏi 3", "đáp 3"), Turn("hỏi 4", "đáp 4")]
    assert state.history(1, 2) == [Turn("hỏi 3", "đáp 3"), Turn("hỏi 4", "đáp 4")]
    assert state.history(2, 3) == [Turn("khác", "đáp khác")]
    assert state.history(1, 0) == []
    state.clear_history(1)
    assert state.history(1, 3) == [] and state.history(2, 3) != []
    state.add_turn(3, "q", "a", keep=0)  # history disabled: nothing kept
    assert state.history(3, 5) == []


def test_answers_round_trip_and_votes_keep_question_and_answer(tmp_path: Path) -> None:
    state = BotState.open(tmp_path / "state.sqlite3")
    answer = Answer("Đoàn công tác làm việc với Ban Thường vụ [1].", True, [SOURCE])
    answer_id = state.save_answer(5, 7, 11, "Ai làm việc?", answer)
    stored = state.stored_answer(answer_id)
    assert stored is not None and stored.answer == answer and stored.question == "Ai làm việc?"
    assert state.answered_question(5, 11) == "Ai làm việc?" and state.answered_question(5, 12) is None
    state.record_vote(answer_id, 7, 1)
    state.record_vote(answer_id, 7, -1)  # a changed mind replaces the vote
    state.record_vote(answer_id, 8, 1)
    assert [(v.user_id, v.vote, v.question, v.answer) for v in state.votes()] == [
        (7, -1, "Ai làm việc?", answer.text), (8, 1, "Ai làm việc?", answer.text)]
    assert state.record_vote(999, 7, 1) is None and state.stored_answer(999) is None


def test_refusal_is_recorded_once_per_chat(tmp_path: Path) -> None:
    state = BotState.open(tmp_path / "state.sqlite3")
    assert state.first_refusal(9) is True
    assert state.first_refusal(9) is False
    assert state.first_refusal(10) is True


def test_each_turn_is_on_disk_at_once_without_a_clean_close(tmp_path: Path) -> None:
    """A killed bot never closes its connection: what it wrote must already be readable by the next one."""
    path = tmp_path / "state.sqlite3"
    running = BotState.open(path)
    running.add_turn(7, "Tổng số đảng viên năm 2023?", "74.127 đồng chí [1].", keep=4)
    restarted = BotState.open(path)  # the first connection is still open, as after kill -9
    assert restarted.history(7, 4) == [Turn("Tổng số đảng viên năm 2023?", "74.127 đồng chí [1].")]
    restarted.close()
    running.close()
