"""The `hoidap` Typer application and the edge every command runs through."""

from __future__ import annotations

import os
from collections.abc import Callable

import typer
from rich.console import Console

from bot import settings as settings_module
from bot.settings import ENV_FILE, Settings, SettingsError, data_dir_writable, env_file_value
from index.errors import HoidapError

app = typer.Typer(help="hoidap: hỏi đáp — questions answered from Vietnamese news articles, with cited passages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Provision offline models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

err = Console(stderr=True)

SETTINGS_EXIT = 2
"""Exit status of a command stopped by its settings (a bad value, an unusable data directory)."""


def language() -> str:
    """The language of the CLI's own messages: Vietnamese unless HOIDAP_LANGUAGE=en (environment, then `.env`).

    Read on its own, not from `Settings`, so that the message saying the settings are invalid is in
    the user's language too.
    """
    value = os.environ.get("HOIDAP_LANGUAGE")
    if value is None:
        value = env_file_value(ENV_FILE, "HOIDAP_LANGUAGE")
    return "en" if (value or "").strip().lower() == "en" else "vi"


def tr(vi: str, en: str) -> str:
    """One CLI message in the user's language."""
    return en if language() == "en" else vi


def load_settings(*, writes_data: bool = False) -> Settings:
    """The settings, with unknown names warned about; `writes_data` for commands that must write the data dir.

    Raises `SettingsError` (exit status 2 at the edge) for any unusable value.
    """
    settings, warnings = settings_module.load_settings()
    for warning in warnings:
        warn(warning.in_language(language()))
    if not data_dir_writable(settings):
        problem = tr(f"HOIDAP_DATA_DIR={settings.data_dir}: thư mục chỉ đọc; ask, chat và sources vẫn dùng được "
                     "chỉ mục hiện có, còn index, telegram và eval --corpus cần ghi được vào đây",
                     f"HOIDAP_DATA_DIR={settings.data_dir}: read-only; ask, chat and sources still work over the "
                     "existing index, but index, telegram and eval --corpus need to write here")
        if writes_data:
            raise SettingsError([settings_module.Message(problem, problem)])
        warn(problem)
    from bot.ops import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    return settings


def warn(line: str) -> None:
    """A warning line on stderr, printed as it is (no markup)."""
    err.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)


def run(action: Callable[[], int | None]) -> None:
    """The edge: bad settings exit 2, one line each; domain errors one message and exit 1; Ctrl-C exits 130."""
    try:
        code = action()
    except SettingsError as error:
        for warning in error.warnings:
            warn(warning.in_language(language()))
        for line in error.in_language(language()).splitlines():
            err.print(line, style="bold red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(SETTINGS_EXIT) from None
    except HoidapError as error:
        err.print(f"[bold red]{tr('lỗi', 'error')}:[/] ", end="", highlight=False)
        err.print(error.in_language(language()), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print(tr("đã dừng", "interrupted"))
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)
