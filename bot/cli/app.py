"""The `hoidap` Typer application and the edge every command runs through."""

from __future__ import annotations

import os
from collections.abc import Callable

import typer
from rich.console import Console

from bot.settings import Settings
from index.errors import HoidapError

app = typer.Typer(help="hoidap: hỏi đáp — questions answered from Vietnamese news articles, with cited passages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Provision offline models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

err = Console(stderr=True)


def language() -> str:
    """The language of the CLI's own messages: Vietnamese unless HOIDAP_LANGUAGE=en."""
    return "en" if os.environ.get("HOIDAP_LANGUAGE", "").strip().lower() == "en" else "vi"


def tr(vi: str, en: str) -> str:
    """One CLI message in the user's language."""
    return en if language() == "en" else vi


def load_settings() -> Settings:
    from bot.ops import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def run(action: Callable[[], int | None]) -> None:
    """The edge: domain errors become one clear message and exit code 1; Ctrl-C exits 130."""
    try:
        code = action()
    except HoidapError as error:
        err.print(f"[bold red]{tr('lỗi', 'error')}:[/] {error.in_language(language())}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(tr("đã dừng", "interrupted"))
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)
