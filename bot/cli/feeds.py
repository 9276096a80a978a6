"""`hoidap feeds add/list/remove` and `hoidap sync [--every 30m]`: follow news sites and keep up with them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.cli.app import app, err, language, load_settings, run, tr
from bot.cli.indexing import embedding_progress, print_summary
from bot.settings import parse_interval
from index.errors import HoidapError

feeds_app = typer.Typer(help="Follow RSS/Atom/JSON feeds, sitemaps and news sites.", no_args_is_help=True)
app.add_typer(feeds_app, name="feeds")


@feeds_app.command("add")
def feeds_add(url: Annotated[str, typer.Argument(help="A feed, a sitemap, or a site's home page.")]) -> None:
    """Follow a feed or sitemap (a home page: the feeds it announces, or the site's sitemaps)."""

    def action() -> None:
        from bot.wiring import web_source

        with web_source(load_settings()) as web:
            followed = web.add_source(url)
        out = Console()
        for feed_url, kind, title in followed.followed:
            out.print(tr(f"đã theo dõi {kind} {feed_url}", f"following {kind} {feed_url}")
                      + (f" ({title})" if title else ""), highlight=False, soft_wrap=True)
        for feed_url in followed.already:
            out.print(tr(f"đã theo dõi từ trước: {feed_url}", f"already followed: {feed_url}"),
                      highlight=False, soft_wrap=True)
        out.print(tr("Chạy `hoidap sync` để lập chỉ mục các bài mới.", "Run `hoidap sync` to index the new articles."))

    run(action)


@feeds_app.command("list")
def feeds_list() -> None:
    """The followed feeds and sitemaps, with when each was last checked."""

    def action() -> None:
        from bot.wiring import web_registry

        registry = web_registry(load_settings())
        feeds = registry.feeds()
        registry.close()
        if not feeds:
            Console().print(tr("Chưa theo dõi nguồn tin nào. Thêm bằng `hoidap feeds add URL`.",
                               "No feeds followed yet. Add one with `hoidap feeds add URL`."))
            return
        table = Table(tr("nguồn", "feed"), tr("loại", "kind"), tr("tên", "title"), tr("kiểm tra lúc", "checked"),
                      tr("lỗi gần nhất", "last error"))
        for feed in feeds:
            checked = datetime.fromtimestamp(feed.checked_at).strftime("%Y-%m-%d %H:%M") if feed.checked_at else "—"
            table.add_row(feed.url, feed.kind, feed.title or "—", checked, feed.last_error or "—")
        Console().print(table)

    run(action)


@feeds_app.command("remove")
def feeds_remove(url: Annotated[str, typer.Argument(help="The feed's URL as `hoidap feeds list` shows it.")]) -> None:
    """Stop following a feed; the articles already indexed from it stay."""

    def action() -> None:
        from bot.wiring import web_registry

        registry = web_registry(load_settings())
        removed = registry.remove_feed(url)
        registry.close()
        if not removed:
            raise HoidapError(f"{url} is not followed; `hoidap feeds list` shows what is.",
                              vi=f"{url} không nằm trong danh sách theo dõi; xem `hoidap feeds list`.")
        Console().print(tr(f"đã bỏ theo dõi {url} (các bài đã lập chỉ mục vẫn được giữ)",
                           f"no longer following {url} (its indexed articles stay)"), highlight=False)

    run(action)


@app.command("sync")
def sync_command(
    every: Annotated[str | None, typer.Option("--every", help="Keep syncing at this interval (30m, 2h, 1h30m).")] = None,
) -> None:
    """Fetch what is new in every followed feed and index it incrementally."""

    def action() -> int:
        from bot.wiring import web_source

        settings = load_settings()
        interval = _interval(every) if every else None

        def sync_once() -> None:
            with embedding_progress() as progress, web_source(settings, progress) as web:
                if not web.followed():
                    raise HoidapError("No feeds followed yet: add one with `hoidap feeds add URL`.",
                                      vi="Chưa theo dõi nguồn tin nào: thêm bằng `hoidap feeds add URL`.")
                print_summary(web.sync(), settings)

        if interval is None:
            sync_once()
            return 0
        keep_syncing(sync_once, interval, every or "", sleep=time.sleep)
        return 0

    run(action)


def keep_syncing(sync_once: Callable[[], None], interval: float, every: str, *,
                 sleep: Callable[[float], None], rounds: int | None = None) -> None:
    """`hoidap sync --every`: a round that fails (a site or the network down, no feed yet) is reported
    and the next round comes at its time; only Ctrl-C ends it. `rounds` bounds it (for tests)."""
    done = 0
    while rounds is None or done < rounds:
        try:
            sync_once()
        except HoidapError as error:
            err.print(f"[bold red]{tr('lỗi', 'error')}:[/] {error.in_language(language())}", highlight=False)
        done += 1
        err.print(tr(f"lần đồng bộ tiếp theo sau {every}; Ctrl-C để dừng", f"next sync in {every}; Ctrl-C to stop"))
        sleep(interval)


def _interval(text: str) -> float:
    try:
        return parse_interval(text)
    except ValueError as error:
        raise HoidapError(str(error), vi=f"{text!r} không phải khoảng thời gian; viết như 30m, 2h, 1h30m") from None
