"""The Telegram front-end of the shared Answerer (python-telegram-bot 22, asyncio)."""

from bot.telegram.app import build_application, run_bot, serve

__all__ = ["build_application", "run_bot", "serve"]
