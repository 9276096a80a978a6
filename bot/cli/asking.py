"""`hoidap ask` (one question, or a batch from stdin) and `hoidap chat`."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from bot.cli.app import app, err, language, load_settings, run, tr
from index.errors import HoidapError

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.wiring import Components
    from retrieval.types import Answerer, SearchFilters


BATCH_LINE_LIMIT = 10_000
"""Characters in one line of `hoidap ask -`; a longer line is a pasted document, not a question."""

SinceOption = Annotated[Optional[str], typer.Option(help="Only articles dated on or after YYYY-MM-DD.")]
UntilOption = Annotated[Optional[str], typer.Option(help="Only articles dated on or before YYYY-MM-DD.")]
SourceOption = Annotated[Optional[list[str]], typer.Option(help="Only articles from this outlet (repeatable).")]


def empty_question() -> HoidapError:
    return HoidapError("The question is empty.", vi="Câu hỏi trống.")


@app.command("ask")
def ask_command(
    question: Annotated[str, typer.Argument(help="The question, in Vietnamese (with or without diacritics) or English; "
                                                 "'-' reads one question per line from stdin. A question that starts with '-' goes after '--'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per question (JSON Lines).")] = False,
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the setting).")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    source: SourceOption = None,
) -> None:
    """Answer one question with its numbered sources, or with '-' every line of stdin, in order.

    With '-' the model loads once and each question is answered on its own (no conversation), its
    output flushed as soon as it is ready. A blank line, a line over 10,000 characters, or a question
    that fails gives an error for that line (a JSON object {"line", "error"}, or a message on stderr)
    and the batch goes on; the exit status is then 1.
    """

    def action() -> int:
        from bot.terminal import print_answer, stdout_console
        from index.text import answer_language

        settings = load_settings()
        batch = question == "-"
        if not batch and not question.strip():
            raise empty_question()
        components = _components(settings, answerer, _filters(since, until, source))
        if batch:
            return _ask_batch(components.answerer, as_json)
        result = components.answerer.answer(question)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        else:
            print_answer(stdout_console(), result, answer_language(question))
        return 0

    run(action)


def _ask_batch(answerer: Answerer, as_json: bool) -> int:
    """`hoidap ask -`: answer stdin line by line; a bad line is reported and skipped. Exit 1 if any was."""
    from rich.markup import escape

    from bot.terminal import print_answer, stdout_console
    from index.text import answer_language

    out = stdout_console()
    sys.stdin.reconfigure(errors="replace")  # a stray invalid byte spoils one question, not the batch
    failures = 0
    for number, line in enumerate(sys.stdin, start=1):
        text = line.rstrip("\r\n")
        try:
            if not text.strip():
                raise empty_question()
            if len(text) > BATCH_LINE_LIMIT:
                raise HoidapError(f"The line has {len(text):,} characters; a question has at most {BATCH_LINE_LIMIT:,}.",
                                  vi=f"Dòng này có {len(text):,} ký tự; một câu hỏi có tối đa {BATCH_LINE_LIMIT:,}.")
            result = answerer.answer(text.strip())
        except Exception as error:  # the edge of one line: it is reported, the batch goes on
            if not isinstance(error, HoidapError):
                logging.getLogger(__name__).exception("Question on line %d failed", number)
            failures += 1
            said = error.in_language(language()) if isinstance(error, HoidapError) else str(error)
            if as_json:
                sys.stdout.write(json.dumps({"line": number, "error": said}, ensure_ascii=False) + "\n")
            else:
                err.print(f"[bold red]{tr('dòng', 'line')} {number}:[/] {escape(said)}", highlight=False, soft_wrap=True)
        else:
            if as_json:
                record = {"line": number, "question": text.strip(), **result.to_dict()}
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                out.print(f"[bold]> {escape(text.strip())}[/]", highlight=False)
                print_answer(out, result, answer_language(text))
                out.print()
        sys.stdout.flush()
    return 1 if failures else 0


def _filters(since: str | None, until: str | None, sources: list[str] | None) -> SearchFilters | None:
    """Search filters from the command line, with dates checked before any model loads."""
    from datetime import date

    from retrieval.types import SearchFilters

    for value in (since, until):
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise HoidapError(f"{value!r} is not a date; write it as YYYY-MM-DD.",
                                  vi=f"{value!r} không phải ngày; hãy viết theo dạng YYYY-MM-DD.") from None
    if since and until and since > until:
        raise HoidapError(f"--since {since} is after --until {until}: no article can be in that range.",
                          vi=f"--since {since} sau --until {until}: không bài nào có thể nằm trong khoảng đó.")
    if not (since or until or sources):
        return None
    return SearchFilters(date_from=since, date_to=until, sources=tuple(sources or ()))


def _components(settings: Settings, answerer: str | None, filters: SearchFilters | None) -> Components:
    """The front-end's pieces; filters that let no indexed article through are an error, saying why."""
    from bot.wiring import build_components
    from retrieval.search.filters import check_filters_admit_some

    components = build_components(settings, answerer=answerer, filters=filters)
    check_filters_admit_some(filters, ((a.date, a.source) for a in components.store.articles()))
    return components


@app.command("chat")
def chat_command(
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the best available).")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    source: SourceOption = None,
) -> None:
    """Interactive chat in the terminal: /sources, /reset, /help; Ctrl-C cancels an answer; Ctrl-D to leave."""

    def action() -> None:
        from bot.settings import data_dir_writable
        from bot.terminal import run_chat
        from bot.wiring import warm_up_in_background

        settings = load_settings()
        components = _components(settings, answerer, _filters(since, until, source))
        warm_up_in_background(components.answerer)
        # A read-only data directory still chats; the prompt history is then kept in memory only.
        history_file = settings.data_dir / "chat_history" if data_dir_writable(settings) else None
        run_chat(components.answerer, components.answerer_name, history_turns=settings.history_turns,
                 history_file=history_file)

    run(action)
