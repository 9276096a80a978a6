"""The terminal front-end: printing answers and the interactive `hoidap chat` loop.

In a chat each answer is computed in a worker thread while the main thread prints its fragments, so
that Ctrl-C (delivered to the main thread) cancels that answer and returns to the prompt; Ctrl-C at
an empty prompt, or Ctrl-D, leaves.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from bot.cli.app import language, tr
from index.errors import HoidapError
from index.text import Language, answer_language, short_quote
from retrieval.answering.replies import NEAREST_HEADING, SOURCES_HEADING
from retrieval.types import Answer, Answerer, Source, Turn


def chat_help() -> str:
    return tr("""Hỏi bất cứ điều gì về các bài báo đã được lập chỉ mục (có dấu, không dấu hoặc tiếng Anh).
  /sources  toàn văn các đoạn mà câu trả lời vừa rồi trích dẫn
  /reset    quên cuộc hội thoại
  /help     trợ giúp này
  Ctrl-C    huỷ câu trả lời đang viết; ở dòng trống: thoát
  Ctrl-D    thoát""", """Ask anything about the indexed articles (Vietnamese with or without diacritics, or English).
  /sources  full text of the passages cited by the last answer
  /reset    forget the conversation
  /help     this help
  Ctrl-C    cancel the answer being written; at an empty prompt: leave
  Ctrl-D    leave""")


def stdout_console() -> Console:
    """The console for answers: wrapped to a terminal's width, but one line per paragraph when piped."""
    return Console(soft_wrap=not sys.stdout.isatty())


def source_label(source: Source) -> str:
    """`[n] Title (date, outlet)` for a source line."""
    details = ", ".join(part for part in (source.date, source.source) if part)
    return f"[{source.n}] {source.title}" + (f" ({details})" if details else "")


def print_sources(console: Console, answer: Answer, language: Language, *, full: bool = False) -> None:
    """The answer's sources under a heading in the answer's language; `full` for whole passages."""
    if not answer.sources:
        return
    heading = (SOURCES_HEADING if answer.found else NEAREST_HEADING)[language]
    console.print(f"[bold]{heading}:[/]")
    span = {"vi": "ký tự", "en": "chars"}[language]
    for source in answer.sources:
        console.print(f"  [cyan]{escape(source_label(source))}[/]", highlight=False)
        if source.url:
            console.print(f"    [link={escape(source.url)}]{escape(source.url)}[/link]", highlight=False, soft_wrap=True)
        body = source.text if full else short_quote(source.text)
        console.print(f"    {escape(body)}" + (f"  [dim]({span} {source.start}–{source.end})[/]" if full else ""),
                      highlight=False)


def print_answer(console: Console, answer: Answer, language: Language) -> None:
    """The answer text, then its sources; `language` is the answer's (`answer_language(question)`)."""
    style = "bold" if answer.found else "yellow"
    console.print(f"[{style}]{escape(answer.text)}[/]", highlight=False)
    print_sources(console, answer, language)


class AnswerCancelled(Exception):
    """The user pressed Ctrl-C while an answer was being written."""


class BackgroundAnswers:
    """Answers one question at a time in a worker thread; the main thread reads its fragments and may cancel.

    A cancelled answer stops at its next fragment (its stream is closed, so an LLM stops generating).
    The next answer starts only once the previous worker has stopped: an answerer's model is not
    asked two things at once from one chat.
    """

    _FRAGMENT, _FINAL, _ERROR = "fragment", "final", "error"

    def __init__(self, answerer: Answerer) -> None:
        self._answerer = answerer
        self._worker: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """A cancelled answer is still stopping (a model in the middle of reading its prompt)."""
        return self._worker is not None and self._worker.is_alive()

    def stream(self, question: str, history: list[Turn]) -> Iterator[str | Answer]:
        """The answer's text fragments, then its checked `Answer`; Ctrl-C raises `AnswerCancelled`."""
        self._wait_for_previous()
        events: queue.Queue[tuple[str, object]] = queue.Queue()
        cancelled = threading.Event()
        self._worker = threading.Thread(target=self._produce, args=(question, history, events, cancelled),
                                        name="chat-answer", daemon=True)
        self._worker.start()
        try:
            while True:
                kind, value = self._next(events)
                if kind == self._ERROR:
                    raise value  # type: ignore[misc]
                yield value  # type: ignore[misc]
                if kind == self._FINAL:
                    return
        except KeyboardInterrupt:
            raise AnswerCancelled from None
        finally:  # Ctrl-C here, or in the caller while it printed a fragment (the stream is closed): stop
            cancelled.set()

    def _produce(self, question: str, history: list[Turn], events: queue.Queue, cancelled: threading.Event) -> None:
        try:
            stream = self._answerer.stream(question, history)
            for fragment in stream:
                if cancelled.is_set():
                    stream.close()
                    return
                events.put((self._FRAGMENT, fragment))
            if not cancelled.is_set():
                events.put((self._FINAL, stream.final()))
        except BaseException as error:  # noqa: BLE001 (handed to the main thread, which re-raises it)
            events.put((self._ERROR, error))

    @staticmethod
    def _next(events: queue.Queue) -> tuple[str, object]:
        # A timeout keeps the main thread waking up, so Ctrl-C is seen at once.
        while True:
            try:
                return events.get(timeout=0.1)
            except queue.Empty:
                continue

    def _wait_for_previous(self) -> None:
        while self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=0.1)


def _show(answers: BackgroundAnswers, question: str, history: list[Turn], console: Console) -> Answer:
    """Print the answer's fragments as they come, then what counts: the checked answer and its sources."""
    language = answer_language(question)
    if answers.busy:
        console.print(tr("(đang dừng câu trả lời trước…)", "(stopping the previous answer…)"), style="dim")
    streamed: list[str] = []
    final: Answer | None = None
    try:
        with closing(answers.stream(question, history)) as stream:
            for item in stream:
                if isinstance(item, Answer):
                    final = item
                else:
                    streamed.append(item)
                    console.print(escape(item), end="", highlight=False, soft_wrap=True)
    except (AnswerCancelled, KeyboardInterrupt):  # Ctrl-C while waiting for a fragment, or printing one
        if streamed:
            console.print()
        raise AnswerCancelled from None
    assert final is not None
    text = "".join(streamed).strip()
    if text:
        console.print()
    if text != final.text.strip():
        # The checked answer differs from the raw stream (citations renumbered or dropped): show what counts.
        if text:
            console.print(f"[dim]— {tr('câu trả lời đã kiểm tra', 'checked answer')} —[/]")
        print_answer(console, final, language)
    else:
        print_sources(console, final, language)
    return final


def _read_lines(history_file: Path | None) -> Iterator[str]:
    """Questions typed at the prompt (Ctrl-C clears a typed line, and leaves from an empty one), or piped in."""
    if sys.stdin.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event) -> None:
            buffer = event.app.current_buffer
            if buffer.text:
                buffer.reset()
            else:
                event.app.exit(exception=EOFError())

        history: History = InMemoryHistory()
        if history_file:
            history_file.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(history_file))
        session: PromptSession[str] = PromptSession(history=history, key_bindings=bindings)
        while True:
            try:
                yield session.prompt(tr("hỏi> ", "ask> "))
            except EOFError:
                return
    else:
        for line in sys.stdin:
            yield line.rstrip("\n")


def run_chat(answerer: Answerer, answerer_name: str, *, history_turns: int = 4,
             history_file: Path | None = None, console: Console | None = None) -> None:
    """Read questions until Ctrl-D, Ctrl-C at an empty prompt, or end of input, streaming each answer."""
    console = console or stdout_console()
    console.print(tr(f"[bold]hoidap[/] ({answerer_name}) — /help để xem lệnh; Ctrl-C huỷ câu trả lời; Ctrl-D để thoát.",
                     f"[bold]hoidap[/] ({answerer_name}) — /help for commands; Ctrl-C cancels an answer; Ctrl-D leaves."),
                  highlight=False)
    answers = BackgroundAnswers(answerer)
    history: list[Turn] = []
    last: Answer | None = None
    last_language: Language = "vi"
    try:
        for line in _read_lines(history_file):
            question = line.strip()
            if not question:
                continue
            if question in ("/help", "/?"):
                console.print(chat_help(), highlight=False)
            elif question == "/reset":
                history, last = [], None
                console.print(tr("Đã xoá hội thoại.", "Conversation cleared."))
            elif question == "/sources":
                if last is None or not last.sources:
                    console.print(tr("Chưa có nguồn nào.", "No sources yet."))
                else:
                    print_sources(console, last, last_language, full=True)
            elif question.startswith("/"):
                console.print(tr(f"Không có lệnh {escape(question)}; /help liệt kê các lệnh.",
                                 f"Unknown command {escape(question)}; /help lists them."), highlight=False)
            else:
                try:
                    last = _show(answers, question, history, console)
                except AnswerCancelled:
                    console.print(tr("(đã huỷ câu trả lời; Ctrl-C lần nữa hoặc Ctrl-D để thoát)",
                                     "(answer cancelled; Ctrl-C again or Ctrl-D to leave)"), style="yellow")
                    continue
                except HoidapError as error:  # one failed answer (an LLM server gone) does not end the chat
                    console.print(f"[bold red]{tr('lỗi', 'error')}:[/] {escape(error.in_language(language()))}",
                                  highlight=False)
                    continue
                last_language = answer_language(question)
                history = (history + [Turn(question, last.text)])[-history_turns:] if history_turns else []
    except KeyboardInterrupt:  # Ctrl-C while reading piped input, or between two prompts: leave
        console.print()
    console.print(tr("Tạm biệt!", "Bye!"))
