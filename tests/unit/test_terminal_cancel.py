"""Ctrl-C during a streamed chat answer: cancelled wherever it lands, never taken for "leave the chat"."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest
from rich.console import Console

from bot.terminal import AnswerCancelled, BackgroundAnswers, _show
from retrieval.types import Answer, Answerer, AnswerStream


class EndlessAnswerer(Answerer):
    """Streams fragments until it is closed, and says when it was."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def answer(self, question, history=None):  # pragma: no cover - the chat streams
        raise AssertionError("the chat streams")

    def stream(self, question, history=None) -> AnswerStream:
        def produce() -> Generator[str, None, Answer]:
            try:
                while True:
                    yield "chậm "
            finally:
                self.closed.set()

        return AnswerStream(produce())


class InterruptedConsole(Console):
    """A terminal where Ctrl-C arrives while the second fragment is being printed."""

    def __init__(self) -> None:
        super().__init__(file=open("/dev/null", "w"), force_terminal=False)
        self.fragments = 0

    def print(self, *objects, **kwargs) -> None:
        if objects and objects[0] == "chậm ":
            self.fragments += 1
            if self.fragments == 2:
                raise KeyboardInterrupt
        super().print(*objects, **kwargs)


def test_ctrl_c_while_a_fragment_is_printed_cancels_the_answer_and_stops_the_worker() -> None:
    answerer = EndlessAnswerer()
    with pytest.raises(AnswerCancelled):
        _show(BackgroundAnswers(answerer), "Có bao nhiêu đảng viên?", [], InterruptedConsole())
    assert answerer.closed.wait(5)  # the worker saw the cancellation and closed the answer's stream
