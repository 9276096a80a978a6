"""Inline mode (`@bot question` in any chat): answers cached per question, and the results offered.

Telegram drops an inline query that is not answered within a few seconds, while an LLM answer may
take longer. So each question's answer is computed once, in the worker pool, and kept for a while
(`AnswerCache`): a query still waiting when the deadline comes gets a "still looking" button, and the
same question asked again (the reader types one more character, or a space) is answered from the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from telegram import InlineQueryResultArticle, InputTextMessageContent
from telegram.constants import ParseMode

from bot.telegram.formatting import shared_answer_html
from index.text import answer_language, normalize
from retrieval.types import Answer

INLINE_DEADLINE = 6.0
"""Seconds an inline query may wait for its answer; Telegram gives up on it at about 10."""
INLINE_SETTLE = 0.4
"""Seconds a query waits for a newer one from the same reader: clients send one as each word is typed, and
only the last deserves an answer (a superseded one is left unanswered; Telegram has dropped it anyway)."""
INLINE_MIN_CHARS = 8
"""Shorter queries are words still being typed, not questions: they get a hint, not a search."""
DESCRIPTION_CHARS = 120


def question_key(question: str) -> str:
    """The cache key of a question: NFC, case and spacing ignored, trailing punctuation too."""
    return " ".join(normalize(question).casefold().split()).rstrip(" ?.!…")


class AnswerCache:
    """Answers per normalised question for `ttl` seconds (at most `size` of them); one computation per
    question at a time, whoever asks it."""

    def __init__(self, ttl: float, size: int = 512, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._answers: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[Answer]] = {}

    def get(self, question: str) -> Answer | None:
        """A fresh cached answer, or None."""
        key = question_key(question)
        entry = self._answers.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] > self._ttl:
            del self._answers[key]
            return None
        self._answers.move_to_end(key)
        return entry[1]

    def computing(self, question: str) -> asyncio.Task[Answer] | None:
        return self._pending.get(question_key(question))

    def compute(self, question: str, work: Callable[[], Awaitable[Answer]]) -> asyncio.Task[Answer]:
        """Start computing this question's answer (kept when done), or join the computation under way."""
        key = question_key(question)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._pending[key] = task
            task.add_done_callback(lambda done: self._store(key, done))
        return task

    def _store(self, key: str, task: asyncio.Task[Answer]) -> None:
        self._pending.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return
        self._answers[key] = (self._clock(), task.result())
        self._answers.move_to_end(key)
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)


def _result_id(question: str, kind: str) -> str:
    """A stable id (≤ 64 bytes, as Telegram requires) for the result of one question."""
    return f"{kind}-{hashlib.sha256(question_key(question).encode()).hexdigest()[:32]}"


def answer_results(question: str, answer: Answer) -> list[InlineQueryResultArticle]:
    """The results offered for an answered question: the sourced answer, or a plain "not found"."""
    text = answer.text.strip()
    language = answer_language(question)
    english = language == "en"
    if answer.found:
        title = f"Answer: {question}" if english else f"Trả lời: {question}"
        kind = "answer"
    else:
        title = "Not found in the articles" if english else "Không tìm thấy trong các bài báo"
        kind = "notfound"
    description = text if len(text) <= DESCRIPTION_CHARS else text[: DESCRIPTION_CHARS - 1].rstrip() + "…"
    return [InlineQueryResultArticle(
        id=_result_id(question, kind), title=title[:200], description=description,
        input_message_content=InputTextMessageContent(shared_answer_html(answer, language=language),
                                                      parse_mode=ParseMode.HTML),
    )]
