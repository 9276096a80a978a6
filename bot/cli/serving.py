"""`hoidap telegram`: run the bot."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bot.cli.app import app, err, load_settings, run


@app.command("telegram")
def telegram_command(
    answerer: Annotated[Optional[str], typer.Option(help="extractive, local or openai (default: the best available).")] = None,
) -> None:
    """Run the Telegram bot (token from HOIDAP_TELEGRAM_TOKEN); long polling, or a webhook if configured."""

    def action() -> None:
        from bot.ops import BotMetrics, index_check, model_check
        from bot.telegram.app import bot_token, run_bot
        from bot.wiring import build_components, warm_up_in_background

        settings = load_settings(writes_data=True)  # conversations are kept in the data dir
        bot_token(settings)  # fail fast, before loading the model, if there is no token
        metrics = BotMetrics()
        components = build_components(settings, answerer=answerer, wrap_retriever=metrics.timed)
        warm_up_in_background(components.answerer)
        store = components.store
        checks = {"index": index_check(store.directory), "model": model_check(components.embedder.embed_queries)}
        run_bot(settings, components.answerer,
                lambda: [(a.title, a.date, a.source, a.n_chunks) for a in store.articles()],
                announce=lambda line: err.print(line, highlight=False), metrics=metrics, checks=checks)

    run(action)
