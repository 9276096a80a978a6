"""Builds and runs the Telegram bot: one Application, its handlers, long polling or a webhook.

In webhook mode the bot's own server (bot/telegram/webhook.py) also serves `/healthz` and `/metrics`.

`run_bot(settings, answerer, list_sources)` is what `hoidap telegram` calls. Tests and the load bench
use `build_application` and `serve` directly, so they run exactly the production code path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from telegram import BotCommand, Update
from telegram.error import BadRequest, InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from bot.ops import BotMetrics, Check
from bot.settings import Settings
from bot.telegram import texts
from bot.telegram.access import AccessPolicy, RateLimiter
from bot.telegram.delivery import STREAM_DRAFT_INTERVAL, STREAM_EDIT_INTERVAL
from bot.telegram.handlers import BotHandlers, ListSources
from bot.telegram.inline import INLINE_DEADLINE, AnswerCache
from bot.telegram.state import open_state
from bot.telegram.web_handlers import WebCommands, WebHandlers, register_web_handlers
from bot.telegram.webhook import WebhookServer
from index.errors import HoidapError
from retrieval.types import Answerer

log = logging.getLogger(__name__)

CONCURRENT_UPDATES = 256
"""Updates handled at once; cheap coroutines, since the CPU work is bounded by the worker pool instead."""
RATE_PERIOD = 60.0
"""Seconds of the rate limit's sliding window: `HOIDAP_TELEGRAM_RATE_LIMIT` is questions per minute."""
POLL_TIMEOUT = 30
"""Seconds one getUpdates long poll may wait for news."""
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class RetryingRateLimiter(AIORateLimiter):
    """Telegram's flood limits and `RetryAfter` waits (AIORateLimiter), plus retries of network errors.

    A `BadRequest` is our mistake and is never retried; a timeout or a dropped connection is retried with
    a growing pause. A retried send whose first attempt did arrive may show twice, which beats losing it.
    """

    def __init__(self, *, max_retries: int = 5, network_retries: int = 3, backoff: float = 0.5) -> None:
        super().__init__(max_retries=max_retries)
        self._network_retries = network_retries
        self._backoff = backoff

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, Any]], args: Any,
                              kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None) -> Any:
        for attempt in range(self._network_retries + 1):
            try:
                return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)
            except BadRequest:
                raise
            except NetworkError as error:
                if attempt == self._network_retries:
                    raise
                pause = self._backoff * 2**attempt
                log.warning("%s failed (%s); retrying in %.1f s", endpoint, error, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")


class SecretRedactor(logging.Filter):
    """Replaces secrets (the bot token, the webhook secret) in log records, tracebacks included."""

    def __init__(self, *secrets_: str) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets_ if s)

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
        return True


def protect_secrets(*secrets_: str) -> SecretRedactor:
    """Keep secrets out of every log line: httpx logs each request URL (token included) at INFO.

    Call it after logging is configured: the redactor goes on the root logger's handlers.
    """
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    redactor = SecretRedactor(*secrets_)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretRedactor) and f.secrets == redactor.secrets for f in handler.filters):
            handler.addFilter(redactor)
    return redactor


def bot_token(settings: Settings) -> str:
    """The bot token from the settings (environment or .env only), or a HoidapError saying how to get one."""
    if settings.telegram_token is None or not settings.telegram_token.get_secret_value().strip():
        raise HoidapError("HOIDAP_TELEGRAM_TOKEN is not set: create a bot with @BotFather and put its token "
                          "in the environment or in .env (never on the command line).")
    return settings.telegram_token.get_secret_value().strip()


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret a log line could carry: the bot token (and its secret half), the webhook secret, the API key.

    The API key is there because a failing LLM endpoint may echo it in its error, which the error
    handler logs with the traceback.
    """
    token = settings.telegram_token.get_secret_value().strip() if settings.telegram_token else ""
    found = [token, token.partition(":")[2]]  # the whole token first, so its redaction is the one seen
    found += [value.get_secret_value() for value in (settings.telegram_webhook_secret, settings.openai_api_key)
              if value is not None]
    return [value for value in found if value.strip()]


def _webhook_secret(settings: Settings) -> str:
    """The configured webhook secret, or a fresh random one (setWebhook registers it at every start)."""
    if settings.telegram_webhook_secret is None:
        return secrets.token_urlsafe(32)
    secret = settings.telegram_webhook_secret.get_secret_value()
    if not _SECRET_TOKEN.fullmatch(secret):
        raise HoidapError("HOIDAP_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters from A-Z, a-z, 0-9, _ and -.")
    return secret


def file_url(api_url: str) -> str:
    """Telegram's file URL beside its API URL (`…/bot` -> `…/file/bot`), for a self-hosted server too."""
    return api_url[: -len("bot")] + "file/bot" if api_url.endswith("/bot") else api_url


def register_handlers(application: Application, handlers: BotHandlers) -> None:
    """Route updates: commands, questions (private or addressed in groups), edits, non-text, buttons, inline.

    Another command is one more `CommandHandler` line here and one method on `BotHandlers`.
    """
    new_messages = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("start", handlers.start, filters=new_messages))
    application.add_handler(CommandHandler("help", handlers.show_help, filters=new_messages))
    application.add_handler(CommandHandler("sources", handlers.sources, filters=new_messages))
    application.add_handler(CommandHandler("new", handlers.new_conversation, filters=new_messages))
    application.add_handler(CommandHandler("ask", handlers.ask, filters=new_messages))
    application.add_handler(MessageHandler(new_messages & filters.TEXT & ~filters.COMMAND, handlers.text))
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.TEXT, handlers.edited))
    application.add_handler(MessageHandler(new_messages & ~filters.TEXT & ~filters.StatusUpdate.ALL,
                                           handlers.non_text))
    application.add_handler(CallbackQueryHandler(handlers.button))
    application.add_handler(InlineQueryHandler(handlers.inline))
    application.add_error_handler(handlers.error)


def build_application(settings: Settings, answerer: Answerer, list_sources: ListSources, *,
                      metrics: BotMetrics | None = None, checks: dict[str, Check] | None = None,
                      stream_interval: float = STREAM_EDIT_INTERVAL, draft_interval: float = STREAM_DRAFT_INTERVAL,
                      inline_deadline: float = INLINE_DEADLINE,
                      web_commands: WebCommands | None = None) -> Application:
    """The bot, wired to the shared Answerer; `list_sources` gives (title, date, source, n_chunks) rows.

    `metrics` (default: a fresh registry) is what `/metrics` shows; `checks` are the health checks of the
    pieces the caller owns (index, model), served with the Bot API's own at `/healthz` in webhook mode.
    With `web_commands`, admins also get `/add URL` and `/feeds`.
    """
    metrics = metrics or BotMetrics()
    token = bot_token(settings)
    protect_secrets(*configured_secrets(settings))
    state = open_state(settings)
    executor = ThreadPoolExecutor(max_workers=settings.telegram_workers, thread_name_prefix="hoidap-answer")
    handlers = BotHandlers(
        answerer=answerer, state=state, executor=executor, list_sources=list_sources,
        access=AccessPolicy.from_ids(settings.telegram_allowed_users, settings.telegram_allowed_chats),
        limiter=RateLimiter(settings.telegram_rate_limit, RATE_PERIOD, windows=state), history_turns=settings.history_turns,
        max_input_chars=settings.telegram_max_input_chars, metrics=metrics,
        inline_cache=AnswerCache(settings.telegram_inline_cache_seconds),
        correction_minutes=settings.telegram_correction_minutes, stream_interval=stream_interval,
        draft_interval=draft_interval, inline_deadline=inline_deadline,
    )

    async def register_commands(application: Application) -> None:
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in texts.COMMANDS])

    web_handlers = WebHandlers(web_commands) if web_commands is not None else None

    async def release(application: Application) -> None:
        executor.shutdown(wait=False, cancel_futures=True)
        if web_handlers is not None:
            web_handlers.close()
        state.close()

    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_api_url)
        .base_file_url(file_url(settings.telegram_api_url))
        .rate_limiter(RetryingRateLimiter())
        .concurrent_updates(CONCURRENT_UPDATES)
        .post_init(register_commands)
        .post_shutdown(release)
        .build()
    )
    if web_handlers is not None:
        register_web_handlers(application, web_handlers)
    register_handlers(application, handlers)
    application.bot_data["metrics"] = metrics
    application.bot_data["checks"] = dict(checks or {})
    return application


async def _start_webhook(application: Application, settings: Settings) -> WebhookServer:
    """Serve updates, /healthz and /metrics, then register the webhook (with its secret) with Telegram."""
    secret = _webhook_secret(settings)
    protect_secrets(secret)
    server = WebhookServer(application, url_path=urlsplit(settings.telegram_webhook_url or "").path, secret=secret,
                           metrics=application.bot_data["metrics"], checks=application.bot_data["checks"])
    try:
        server.start(settings.telegram_webhook_listen, settings.telegram_webhook_port)
    except OSError as error:
        raise HoidapError(f"Cannot listen on {settings.telegram_webhook_listen}:{settings.telegram_webhook_port} "
                          f"for the webhook ({error}): check HOIDAP_TELEGRAM_WEBHOOK_PORT.") from error
    try:
        await application.bot.set_webhook(settings.telegram_webhook_url, secret_token=secret,
                                          allowed_updates=Update.ALL_TYPES)
    except BaseException:
        await server.stop()
        raise
    return server


async def _start_updates(application: Application, settings: Settings) -> str:
    """Start receiving updates by long polling; return how, for the start-up line."""
    updater = application.updater
    if updater is None:
        raise HoidapError("The Telegram application was built without an updater.")
    # Pending updates are kept: questions asked while the bot was down still get answers.
    await updater.start_polling(timeout=POLL_TIMEOUT, allowed_updates=Update.ALL_TYPES)
    return "long polling"


async def _initialize(application: Application, settings: Settings) -> None:
    """Connect (getMe); a wrong token or an unreachable API becomes one clear message."""
    try:
        await application.initialize()
    except InvalidToken as error:
        raise HoidapError("Telegram refused the token in HOIDAP_TELEGRAM_TOKEN: check it with @BotFather "
                          "(/mybots, API Token).") from error
    except NetworkError as error:
        raise HoidapError(f"Cannot reach the Telegram Bot API at {settings.telegram_api_url} ({error}): check "
                          "the network or HOIDAP_TELEGRAM_API_URL.") from error


async def serve(application: Application, settings: Settings, stop: asyncio.Event,
                announce: Callable[[str], None] | None = None) -> None:
    """Run the bot until `stop` is set, then finish the updates in hand and release everything.

    `announce` receives one line once the bot is up (its @username and how it receives updates).
    """
    try:
        await _initialize(application, settings)
        if application.post_init:
            await application.post_init(application)
        webhook: WebhookServer | None = None
        if settings.telegram_webhook_url:
            webhook = await _start_webhook(application, settings)
            how = (f"webhook {settings.telegram_webhook_url} (listening on {settings.telegram_webhook_listen}:"
                   f"{settings.telegram_webhook_port}, with /healthz and /metrics)")
        else:
            how = await _start_updates(application, settings)
        await application.start()
        line = f"Telegram bot @{application.bot.username} running ({how}); Ctrl-C to stop."
        log.info(line)
        if announce is not None:
            announce(line)
        try:
            await stop.wait()
        finally:
            if webhook is not None:
                await webhook.stop()
            if application.updater and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
    finally:
        await application.shutdown()
        if application.post_shutdown:
            await application.post_shutdown(application)


def run_bot(settings: Settings, answerer: Answerer, list_sources: ListSources, *,
            announce: Callable[[str], None] | None = None, metrics: BotMetrics | None = None,
            checks: dict[str, Check] | None = None,
            web_commands: WebCommands | None = None) -> None:
    """`hoidap telegram`: run until Ctrl-C or SIGTERM (long polling, or a webhook if one is configured).

    `list_sources` gives the indexed articles as (title, date, source, n_chunks); `announce` gets the
    start-up line. Configure logging before calling: the token redaction attaches to its handlers.
    """
    application = build_application(settings, answerer, list_sources, metrics=metrics, checks=checks,
                                    web_commands=web_commands)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):  # not on Windows' default event loop
                loop.add_signal_handler(signum, stop.set)
        await serve(application, settings, stop, announce)

    asyncio.run(main())
