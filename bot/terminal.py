"""The terminal front-end: printing answers and the interactive `hoidap chat` loop."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from index.text import short_quote
from retrieval.types import Answer, Answerer, Source, Turn

HELP = """Hỏi bất cứ điều gì về các bài báo đã được lập chỉ mục (có dấu, không dấu hoặc tiếng Anh).
Ask anything about the indexed articles (Vietnamese with or without diacritics, or English).
  /sources  full text of the passages cited by the last answer
  /reset    forget the conversation
  /help     this help
  Ctrl-D    leave"""



def source_label(source: Source) -> str:
    """`[n] Title (date, outlet)` for a source line."""
    details = ", ".join(part for part in (source.date, source.source) if part)
    return f"[{source.n}] {source.title}" + (f" ({details})" if details else "")


def print_sources(console: Console, answer: Answer, *, full: bool = False) -> None:
    if not answer.sources:
        return
    heading = "Nguồn" if answer.found else "Nguồn gần nhất / nearest sources"
    console.print(f"[bold]{heading}:[/]")
    for source in answer.sources:
        console.print(f"  [cyan]{escape(source_label(source))}[/]", highlight=False)
        body = source.text if full else short_quote(source.text)
        console.print(f"    {escape(body)}" + (f"  [dim](chars {source.start}–{source.end})[/]" if full else ""), highlight=False)


def print_answer(console: Console, answer: Answer) -> None:
    style = "bold" if answer.found else "yellow"
    console.print(f"[{style}]{escape(answer.text)}[/]", highlight=False)
    print_sources(console, answer)


def _stream(answerer: Answerer, question: str, history: list[Turn], console: Console) -> Answer:
    streamed: list[str] = []
    stream = answerer.stream(question, history)
    for fragment in stream:
        streamed.append(fragment)
        console.print(escape(fragment), end="", highlight=False, soft_wrap=True)
    final = stream.final()
    text = "".join(streamed).strip()
    if text:
        console.print()
    if text != final.text.strip():
        # The checked answer differs from the raw stream (citations renumbered or dropped): show what counts.
        if text:
            console.print("[dim]— checked answer —[/]")
        print_answer(console, final)
    else:
        print_sources(console, final)
    return final


def _read_lines(history_file: Path | None) -> Iterator[str]:
    if sys.stdin.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        history = InMemoryHistory()
        if history_file:
            history_file.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(history_file))
        session: PromptSession[str] = PromptSession(history=history)
        while True:
            try:
                yield session.prompt("hỏi> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
    else:
        for line in sys.stdin:
            yield line.rstrip("\n")


def run_chat(answerer: Answerer, answerer_name: str, *, history_turns: int = 4,
             history_file: Path | None = None, console: Console | None = None) -> None:
    """Read questions until Ctrl-D (or end of input), streaming each answer with its sources."""
    console = console or Console()
    console.print(f"[bold]hoidap[/] ({answerer_name}) — /help for commands, Ctrl-D to leave.", highlight=False)
    history: list[Turn] = []
    last: Answer | None = None
    for line in _read_lines(history_file):
        question = line.strip()
        if not question:
            continue
        if question in ("/help", "/?"):
            console.print(HELP, highlight=False)
        elif question == "/reset":
            history, last = [], None
            console.print("Đã xoá hội thoại. / Conversation cleared.")
        elif question == "/sources":
            if last is None or not last.sources:
                console.print("Chưa có nguồn nào. / No sources yet.")
            else:
                print_sources(console, last, full=True)
        elif question.startswith("/"):
            console.print(f"Unknown command {escape(question)}; /help lists them.", highlight=False)
        else:
            last = _stream(answerer, question, history, console)
            history = (history + [Turn(question, last.text)])[-history_turns:] if history_turns else []
    console.print("Tạm biệt! / Bye!")
