"""`hoidap migrate`: move the embedded index into PostgreSQL without embedding anything again."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bot.cli.app import app, load_settings, run, tr


@app.command("migrate")
def migrate_command(
    to: Annotated[str, typer.Option("--to", help="postgresql:// URL of the database to copy the index into.")],
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an index already in that database.")] = False,
) -> None:
    """Copy the embedded index (articles, chunks and their vectors) into PostgreSQL; then set HOIDAP_DATABASE_URL."""

    def action() -> None:
        from bot.wiring import hnsw_settings, restorer_json
        from index.store import IndexStore
        from index.stores.postgres import describe_url
        from index.stores.postgres_sync import migrate_embedded

        settings = load_settings()
        store = IndexStore.open(settings.index_dir)
        try:
            articles, chunks = migrate_embedded(store, to, vector_type=settings.database_vector_type,
                                                hnsw=hnsw_settings(settings), derive_restorer=restorer_json,
                                                replace=replace)
        finally:
            store.close()
        where = describe_url(to)
        Console().print(tr(f"đã chuyển {articles} bài, {chunks} đoạn (không nhúng lại) vào PostgreSQL tại {where}",
                           f"moved {articles} articles, {chunks} chunks (nothing re-embedded) into PostgreSQL at {where}"),
                        highlight=False)

    run(action)
