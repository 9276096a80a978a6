"""`hoidap telegram`: run the bot (and, with HOIDAP_SYNC_EVERY, refresh the followed feeds meanwhile)."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from bot.cli.app import app, err, load_settings, run, tr
from bot.settings import Settings, parse_interval


@app.command("telegram")
def telegram_command(
    answerer: Annotated[str | None, typer.Option(help="extractive, local or openai (default: the best available).")] = None,
) -> None:
    """Run the Telegram bot (token from HOIDAP_TELEGRAM_TOKEN); long polling, or a webhook if configured."""

    def action() -> None:
        from bot.ops import BotMetrics, model_check
        from bot.telegram.app import bot_token, run_bot
        from bot.wiring import (
            ReloadingAnswerer,
            build_components,
            store_check,
            warm_up_in_background,
        )

        settings = load_settings(writes_data=True)  # conversations are kept in the data dir
        bot_token(settings)  # fail fast, before loading the model, if there is no token
        metrics = BotMetrics()
        live = ReloadingAnswerer(lambda embedder: build_components(
            settings, answerer=answerer, embedder=embedder, wrap_retriever=metrics.timed))
        warm_up_in_background(live)
        # The link, not the generation loaded: after /add or a refresh the bot reloads from where it points.
        checks = {"index": store_check(settings, lambda: live.components.store), "model": model_check(live.components.embedder.embed_queries)}
        stop = threading.Event()
        if settings.sync_every:
            _start_refresh(settings, live, parse_interval(settings.sync_every), stop)
        try:
            run_bot(settings, live,
                    lambda: [(a.title, a.date, a.source, a.n_chunks) for a in live.components.store.articles()],
                    announce=lambda line: err.print(line, highlight=False), metrics=metrics, checks=checks,
                    web_commands=_web_commands(settings, live))
        finally:
            stop.set()

    run(action)


def _web_commands(settings: Settings, live):
    """`/add` and `/feeds` for the admins, over the same web sync as `hoidap sync`."""
    from bot.cli.indexing import summary_lines
    from bot.telegram.web_handlers import WebCommands
    from bot.wiring import web_source

    def add(url: str) -> list[str]:
        with web_source(settings) as web:
            followed, summary = web.add(url)
        if summary.changed:
            live.reload()
        lines = [tr(f"đã theo dõi {kind} {feed}", f"following {kind} {feed}") for feed, kind, _ in (followed.followed if followed else [])]
        return lines + summary_lines(summary, settings)

    def feeds() -> list[tuple[str, str, str | None]]:
        with web_source(settings) as web:
            return [(feed.url, feed.kind, feed.title) for feed in web.followed()]

    return WebCommands(admins=frozenset(settings.telegram_admins), add=add, feeds=feeds)


def _start_refresh(settings: Settings, live, interval: float, stop: threading.Event) -> None:
    """Sync the followed feeds every `interval` seconds on a thread of its own until `stop` is set; with
    HOIDAP_DATABASE_URL only on the replica that leads (see `bot.refreshing`)."""
    from bot.refreshing import FeedRefresher, RefreshLeader
    from bot.wiring import web_source

    def sync():
        with web_source(settings) as web:
            return web.sync()

    def catch_up() -> None:
        # Only with a database (a PostgresStore), where another replica may lead: what this replica keeps of
        # the corpus (document frequencies for the corpus gate, BM25 averages) must follow the leader's syncs.
        if not live.components.store.is_current():
            live.reload()

    url = settings.database_url.get_secret_value() if settings.database_url is not None else None
    refresher = FeedRefresher(sync, live.reload, RefreshLeader(url), catch_up=catch_up)
    threading.Thread(target=refresher.run, args=(interval, stop), name="hoidap-feed-refresh", daemon=True).start()
