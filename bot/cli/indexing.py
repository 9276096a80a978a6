"""`hoidap index` and `hoidap sources`: keep the index in step with the articles, and list them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

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

from bot.cli.app import app, err, load_settings, run
from bot.settings import Settings
from index.errors import HoidapError


@app.command("index")
def index_command(
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Files, folders or web pages (http/https URLs); default: the bundled articles.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-embed everything.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Verify the current index and change nothing.")] = False,
) -> None:
    """Sync the index with the article files: embed new and changed ones, drop removed ones."""

    def action() -> int:
        from bot.wiring import check_store, sync

        settings = load_settings(writes_data=not check)
        if check:
            if paths or rebuild:
                raise HoidapError("`hoidap index --check` verifies the current index; it takes no paths and no --rebuild.")
            described, problems = check_store(settings)
            if not problems:
                Console().print(f"index OK: {described}", highlight=False, soft_wrap=True)
                return 0
            err.print(f"[bold red]index damaged:[/] {described}", highlight=False, soft_wrap=True)
            for problem in problems:
                err.print(f"  - {problem}", highlight=False, soft_wrap=True)
            err.print("Run `hoidap index --rebuild`.")
            return 1
        urls = [item for item in paths or [] if is_url(item)]
        files = [Path(item) for item in paths or [] if not is_url(item)]
        if files or not urls:
            with embedding_progress() as progress:
                summary = sync(settings, files or None, rebuild=rebuild, progress=progress)
            print_summary(summary, settings)
        if urls:
            from bot.wiring import web_source

            with embedding_progress() as progress, web_source(settings, progress) as web:
                print_summary(web.index_pages(urls), settings)
        return 0

    run(action)


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


@contextmanager
def embedding_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while chunks are embedded (only on a terminal)."""
    with Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("embed", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def summary_lines(summary, settings: Settings) -> list[str]:
    """A sync's report: what changed, then each skipped input with its reason."""
    from bot.wiring import store_location

    lines = [f"full rebuild: {summary.rebuilt_reason}"] if summary.rebuilt_reason else []
    lines.append(f"added {len(summary.added)}, updated {len(summary.updated)}, removed {len(summary.removed)}, "
                 f"unchanged {len(summary.unchanged)}, skipped {len(summary.skipped)}; "
                 f"{summary.chunks_embedded} chunks embedded in {summary.seconds:.1f}s; "
                 f"index: {summary.n_articles} articles, {summary.n_chunks} chunks in {store_location(settings)}")
    lines += [f"  skipped {skipped.path}: {skipped.reason}" for skipped in summary.skipped]
    return lines


def print_summary(summary, settings: Settings) -> None:
    out = Console()
    for line in summary_lines(summary, settings):
        out.print(line, highlight=False, soft_wrap=True)


@app.command("sources")
def sources_command() -> None:
    """List the indexed articles: title, date, source, chunks."""

    def action() -> None:
        from bot.wiring import open_any_store

        settings = load_settings()
        store = open_any_store(settings)
        table = Table("id", "title", "date", "source", "chunks")
        for article in store.articles():
            date = f"{article.date}{' (inferred)' if article.date_inferred and article.date else ''}" if article.date else "—"
            table.add_row(article.article_id, article.title, date, article.source or "—", str(article.n_chunks))
        Console().print(table)

    run(action)
