"""Admin commands for articles from the web: `/add URL` (a page, a feed or a sitemap) and `/feeds`.

Only user ids in HOIDAP_TELEGRAM_ADMINS may use them; everyone else is told so. The URL goes through
the same polite, SSRF-safe fetcher as the CLI, so an admin's link cannot reach the server's own
network unless HOIDAP_FETCH_ALLOW_PRIVATE allows it. Fetching and indexing run on a worker thread
of their own, one at a time, so questions keep being answered meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes, filters

from bot.telegram.delivery import send_html
from bot.telegram.formatting import escape
from bot.telegram.handlers import command_argument
from index.errors import HoidapError

log = logging.getLogger(__name__)

NOT_ADMIN = "Xin lỗi, chỉ quản trị viên của bot mới được thêm trang hoặc nguồn tin."
ADD_USAGE = "Hãy gửi kèm địa chỉ, ví dụ: <code>/add https://baoapbac.vn/rss/thoi-su.rss</code>"
ADDING = "Đang tải và lập chỉ mục {url}…"
NO_FEEDS = "Chưa theo dõi nguồn tin nào. Thêm bằng <code>/add URL</code>."


@dataclass(frozen=True)
class WebCommands:
    """What the admin commands do, given by the entry point: blocking calls, run off the event loop.

    `add(url)` indexes a page or follows and syncs a feed, returning the lines of its summary (raises
    HoidapError with the reason when nothing could be done); `feeds()` gives (url, kind, title) rows.
    """

    admins: frozenset[int]
    add: Callable[[str], list[str]]
    feeds: Callable[[], Sequence[tuple[str, str, str | None]]]


class WebHandlers:
    """`/add` and `/feeds`, for admins only."""

    def __init__(self, commands: WebCommands) -> None:
        self._commands = commands
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hoidap-web")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _admitted(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        user = update.effective_user
        if user is not None and user.id in self._commands.admins:
            return True
        await _say(update, context, NOT_ADMIN)
        return False

    async def add(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/add URL: index a page, or follow a feed or sitemap and index its articles."""
        if not await self._admitted(update, context):
            return
        message = update.effective_message
        url = command_argument(message.text)
        if not url.lower().startswith(("http://", "https://")) or len(url.split()) != 1:
            await _say(update, context, ADD_USAGE)
            return
        await _say(update, context, ADDING.format(url=escape(url)))
        loop = asyncio.get_running_loop()
        try:
            lines = await loop.run_in_executor(self._executor, self._commands.add, url)
        except HoidapError as error:
            await _say(update, context, f"Không thêm được: {escape(error.in_language('vi'))}")
            return
        await _say(update, context, "\n".join(escape(line) for line in lines))

    async def feeds(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/feeds: the followed feeds and sitemaps."""
        if not await self._admitted(update, context):
            return
        rows = await asyncio.get_running_loop().run_in_executor(self._executor, self._commands.feeds)
        if not rows:
            await _say(update, context, NO_FEEDS)
            return
        lines = [f"<b>Nguồn tin đang theo dõi ({len(rows)}):</b>"]
        lines += [f"{i}. {escape(title or url)} — {escape(kind)}\n{escape(url)}" for i, (url, kind, title) in
                  enumerate(rows, start=1)]
        await _say(update, context, "\n".join(lines))


async def _say(update: Update, context: ContextTypes.DEFAULT_TYPE, markup: str) -> None:
    message = update.effective_message
    await send_html(context.bot, message.chat_id, markup, reply_to=message.message_id)


def register_web_handlers(application: Application, handlers: WebHandlers) -> None:
    new_messages = filters.UpdateType.MESSAGE
    application.add_handler(CommandHandler("add", handlers.add, filters=new_messages))
    application.add_handler(CommandHandler("feeds", handlers.feeds, filters=new_messages))
