"""The webhook server: Telegram's updates on one path, and the operator's `/healthz` and `/metrics`.

python-telegram-bot's own webhook server (`Updater.start_webhook`) serves the update path only, so
this is a small tornado app instead (tornado comes with python-telegram-bot[webhooks]), built the way
PTB documents custom webhook servers: each update is checked, decoded and put on
`application.update_queue`, where the Application handles it as it would a polled one.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable

import tornado.httpserver
import tornado.web
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot.ops import METRICS_CONTENT_TYPE, BotMetrics, Check, run_checks

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
BOT_API_CHECK_TIMEOUT = 5.0


class _Updates(tornado.web.RequestHandler):
    """POST an update: 403 without the secret, 400 if it is not an update, 200 once it is queued."""

    def initialize(self, bot_application: Application, secret: str) -> None:
        self._application = bot_application
        self._secret = secret

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            log.warning("Webhook request without the right secret token from %s", self.request.remote_ip)
            raise tornado.web.HTTPError(403)
        try:
            update = Update.de_json(json.loads(self.request.body), self._application.bot)
        except (ValueError, TypeError, KeyError) as error:
            log.warning("Webhook request is not an update: %s", error)
            raise tornado.web.HTTPError(400) from None
        await self._application.update_queue.put(update)
        self.set_status(200)

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)


class _Metrics(tornado.web.RequestHandler):
    def initialize(self, metrics: BotMetrics) -> None:
        self._metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.write(self._metrics.render())


class _Health(tornado.web.RequestHandler):
    """200 and each check's "ok" when healthy; 503 and what is wrong otherwise (JSON)."""

    def initialize(self, checks: Callable[[], dict[str, Check]]) -> None:
        self._checks = checks

    async def get(self) -> None:
        healthy, results = await run_checks(self._checks())
        self.set_status(200 if healthy else 503)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.write(json.dumps({"healthy": healthy, "checks": results}, ensure_ascii=False))


def bot_api_check(application: Application) -> Check:
    """Healthy while the Bot API answers getMe."""

    async def check() -> str | None:
        try:
            await asyncio.wait_for(application.bot.get_me(), BOT_API_CHECK_TIMEOUT)
        except (TelegramError, TimeoutError) as error:
            return f"Bot API unreachable: {type(error).__name__}"
        return None

    return check


class WebhookServer:
    """Serves `url_path` (updates), `/healthz` and `/metrics` on `listen:port` until stopped."""

    def __init__(self, application: Application, *, url_path: str, secret: str, metrics: BotMetrics,
                 checks: dict[str, Check]) -> None:
        all_checks = {**checks, "bot_api": bot_api_check(application)}
        routes = [
            (r"/healthz", _Health, {"checks": lambda: all_checks}),
            (r"/metrics", _Metrics, {"metrics": metrics}),
            (rf"/{url_path.strip('/')}", _Updates, {"bot_application": application, "secret": secret}),
        ]
        self._app = tornado.web.Application(routes, log_function=lambda handler: None)
        self._server: tornado.httpserver.HTTPServer | None = None

    def start(self, listen: str, port: int) -> None:
        self._server = tornado.httpserver.HTTPServer(self._app, xheaders=True)
        self._server.listen(port, address=listen)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
