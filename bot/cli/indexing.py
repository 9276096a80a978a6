"""`hoidap index`, `hoidap remove` and `hoidap sources`: keep the index in step with its sources, and list them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bot.cli.app import app, err, load_settings, run, tr
from bot.settings import Settings
from index.errors import HoidapError

if TYPE_CHECKING:
    from index.indexer import Progress as StageProgress

_STAGES = {"reading": ("đọc", "reading"), "embedding": ("nhúng", "embedding"), "writing": ("ghi", "writing")}


@app.command("index")
def index_command(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Files, folders or web pages (http/https URLs) to add or update; default: re-sync the remembered "
             "sources (the first time, the bundled articles).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-embed everything.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Also drop sources that no longer exist, with their articles.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before a sync that removes more than half of the index.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Verify the current index and change nothing.")] = False,
) -> None:
    """Add or update articles; keep every other article. Removes only what vanished from a source it came from."""

    def action() -> int:
        from bot.wiring import check_store, sync

        settings = load_settings(writes_data=not check)
        if check:
            if paths or rebuild or prune:
                raise HoidapError("`hoidap index --check` verifies the current index; it takes no paths, --rebuild or --prune.",
                                  vi="`hoidap index --check` chỉ kiểm tra chỉ mục hiện có; không nhận đường dẫn, --rebuild hay --prune.")
            return _check(check_store(settings))
        urls = [item for item in paths or [] if is_url(item)]
        files = [Path(item) for item in paths or [] if not is_url(item)]
        if files or not urls:
            with _ProgressDisplay() as bar:
                summary = sync(settings, files or None, rebuild=rebuild, prune=prune, progress=bar.report,
                               confirm=lambda planned: yes or bar.ask_to_remove(planned))
            print_summary(summary, settings)
        if urls:
            from bot.wiring import web_source

            with embedding_progress() as progress, web_source(settings, progress) as web:
                print_summary(web.index_pages(urls), settings)
        return 0

    run(action)


def _check(result: tuple[str, list[str]]) -> int:
    described, problems = result
    if not problems:
        Console().print(tr(f"chỉ mục ổn: {described}", f"index OK: {described}"), highlight=False, soft_wrap=True)
        return 0
    err.print(f"[bold red]{tr('chỉ mục hỏng', 'index damaged')}:[/] {described}", highlight=False, soft_wrap=True)
    for problem in problems:
        err.print(f"  - {problem}", highlight=False, soft_wrap=True)
    err.print(tr("Hãy chạy `hoidap index --rebuild`.", "Run `hoidap index --rebuild`."))
    return 1


class _ProgressDisplay:
    """A progress bar per stage (reading, embedding, writing) with an ETA, on stderr when it is a terminal."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True,
                            disable=not err.is_terminal)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> Self:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def report(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(tr(*_STAGES.get(stage, (stage, stage))), total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def ask_to_remove(self, planned) -> bool:
        """On a terminal, ask before removing more than half of the index; elsewhere, refuse."""
        if not (sys.stdin.isatty() and err.is_terminal):
            return False
        self.bar.stop()
        try:
            return typer.confirm(tr(f"Xoá {len(planned.removed)} trong {planned.n_before} bài của chỉ mục?",
                                    f"Remove {len(planned.removed)} of the {planned.n_before} articles in the index?"),
                                 default=False, err=True)
        finally:
            self.bar.start()


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


@contextmanager
def embedding_progress() -> Iterator[StageProgress]:
    """The staged progress display, as the callback the web sources pass to the indexer."""
    with _ProgressDisplay() as bar:
        yield bar.report


def summary_lines(summary, settings: Settings) -> list[str]:
    from bot.wiring import store_location

    """A sync's report: what changed, then each dropped source and each skipped input with its reason."""
    lines = [tr(f"dựng lại toàn bộ: {summary.rebuilt_reason}", f"full rebuild: {summary.rebuilt_reason}")] \
        if summary.rebuilt_reason else []
    counts = (len(summary.added), len(summary.updated), len(summary.removed), len(summary.unchanged), len(summary.skipped))
    resumed = summary.chunks_resumed
    lines.append(tr(
        "thêm {}, cập nhật {}, xoá {}, giữ nguyên {}, bỏ qua {}; ".format(*counts)
        + f"đã nhúng {summary.chunks_embedded} đoạn"
        + (f" ({resumed} trong số đó lấy lại từ lần chạy bị ngắt)" if resumed else "") + f" trong {summary.seconds:.1f}s; "
          f"chỉ mục: {summary.n_articles} bài, {summary.n_chunks} đoạn trong {store_location(settings)}",
        "added {}, updated {}, removed {}, unchanged {}, skipped {}; ".format(*counts)
        + f"{summary.chunks_embedded} chunks embedded"
        + (f" ({resumed} of them resumed from an interrupted run)" if resumed else "") + f" in {summary.seconds:.1f}s; "
          f"index: {summary.n_articles} articles, {summary.n_chunks} chunks in {store_location(settings)}"))
    lines += [tr(f"  bỏ nguồn {s.locator}: không còn tồn tại", f"  dropped source {s.locator}: no longer exists")
              for s in summary.dropped_sources]
    lines += [tr(f"  bỏ qua {s.path}: {s.in_language('vi')}", f"  skipped {s.path}: {s.reason}") for s in summary.skipped]
    return lines


def print_summary(summary, settings: Settings) -> None:
    out = Console()
    for line in summary_lines(summary, settings):
        out.print(line, highlight=False, soft_wrap=True)


@app.command("remove")
def remove_command(
    targets: Annotated[list[str], typer.Argument(help="Article ids, article files, or source folders/files to remove.")],
) -> None:
    """Remove articles (by id or file) or whole sources (by path) from the index."""

    def action() -> None:
        from bot.wiring import remove

        removed, sources = remove(load_settings(writes_data=True), targets)
        out = Console()
        for source in sources:
            out.print(tr(f"đã bỏ nguồn {source.locator}", f"source removed: {source.locator}"), highlight=False, soft_wrap=True)
        out.print(tr(f"đã xoá {len(removed)} bài: {', '.join(removed)}", f"removed {len(removed)} articles: {', '.join(removed)}"),
                  highlight=False, soft_wrap=True)

    run(action)


@app.command("sources")
def sources_command() -> None:
    """List the sources the index syncs, and each article with where it came from."""

    def action() -> None:
        from bot.wiring import open_any_store

        settings = load_settings()
        store = open_any_store(settings)
        out = Console()
        sources = store.sources()
        number = {source: str(i) for i, source in enumerate(sources, start=1)}
        claims = store.claims()
        out.print(tr("Nguồn được đồng bộ (cột «nguồn» của bảng):", "Sources synced (the table's «from» column):"),
                  highlight=False)
        for source in sources:
            count = sum(1 for claimed in claims.values() if source in claimed)
            out.print(f"  [{number[source]}] {source.kind}: {source.locator} ({count} {tr('bài', 'articles')})",
                      highlight=False, soft_wrap=True)
        table = Table("id", tr("tiêu đề", "title"), tr("ngày", "date"), tr("báo", "outlet"), tr("đoạn", "chunks"),
                      tr("nguồn", "from"))
        for article in store.articles():
            date = f"{article.date}{tr(' (suy ra)', ' (inferred)') if article.date_inferred else ''}" if article.date else "—"
            origin = ", ".join(number.get(s, s.kind) for s in sorted(claims.get(article.article_id, ()))) or "—"
            table.add_row(article.article_id, article.title, date, article.source or "—", str(article.n_chunks), origin)
        out.print(table)

    run(action)
