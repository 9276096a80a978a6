"""Getting HTML to Telegram intact: split to its limit, fall back to plain text, stream an answer as it grows.

A streaming answer grows in place in one of two ways: in a private chat as a native draft
(`sendMessageDraft`, Bot API 9.5+), then the final answer is sent as one normal message; in groups (where
drafts are not allowed) as a message edited every few seconds. A draft the server refuses switches that
answer to the edited message, so an older or stricter server still shows the answer growing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from telegram import Bot, ForceReply, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, EndPointNotFound, TelegramError

from bot.telegram.formatting import (
    MESSAGE_LIMIT,
    escape,
    split_message,
    to_plain_text,
    utf16_len,
)

log = logging.getLogger(__name__)

STREAM_EDIT_INTERVAL = 1.5
"""Seconds between edits of a streaming answer: Telegram throttles bots that edit faster."""
STREAM_DRAFT_INTERVAL = 0.6
"""Seconds between drafts: a draft is one ephemeral update, not an edit, so it may come more often; a
local LLM writes ~5-10 tokens/s on 2 cores, so 0.6 s shows a few words per step."""


def _entities_rejected(error: BadRequest) -> bool:
    return "can't parse entities" in error.message.lower()


def _not_modified(error: BadRequest) -> bool:
    return "message is not modified" in error.message.lower()


async def send_part(bot: Bot, chat_id: int, markup: str, *, reply_to: int | None = None,
                    reply_markup: InlineKeyboardMarkup | ForceReply | None = None) -> Message:
    """Send one message of at most 4096 visible characters as HTML; as plain text if Telegram rejects it."""
    reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
    try:
        return await bot.send_message(chat_id, markup, parse_mode=ParseMode.HTML, reply_parameters=reply,
                                      reply_markup=reply_markup)
    except BadRequest as error:
        if not _entities_rejected(error):
            raise
        log.warning("Telegram rejected our HTML (%s); sending the same text as plain text", error.message)
        return await bot.send_message(chat_id, to_plain_text(markup), reply_parameters=reply,
                                      reply_markup=reply_markup)


async def send_html(bot: Bot, chat_id: int, markup: str, *, reply_to: int | None = None,
                    reply_markup: InlineKeyboardMarkup | None = None) -> list[Message]:
    """Send HTML of any length: split into valid parts, the first a reply, the keyboard under the last."""
    parts = split_message(markup, MESSAGE_LIMIT)
    sent: list[Message] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sent.append(await send_part(bot, chat_id, part, reply_to=reply_to if i == 0 else None,
                                    reply_markup=reply_markup if last else None))
    return sent


async def edit_part(message: Message, markup: str, *, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
    """Replace a message's text with one part of HTML, as plain text if Telegram rejects the entities."""
    try:
        edited = await message.edit_text(markup, parse_mode=ParseMode.HTML, reply_markup=reply_markup)
    except BadRequest as error:
        if _not_modified(error):
            return message
        if not _entities_rejected(error):
            raise
        log.warning("Telegram rejected our HTML in an edit (%s); using plain text", error.message)
        edited = await message.edit_text(to_plain_text(markup), reply_markup=reply_markup)
    return edited if isinstance(edited, Message) else message


def _clip_utf16(text: str, limit: int) -> str:
    """`text` cut to fit `limit` UTF-16 code units (Telegram's measure), with "…" when cut."""
    if utf16_len(text) <= limit:
        return text
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit - 1:
            return text[:i] + "…"
    return text


class Reply(Protocol):
    """An answer on its way to a chat: shown as it grows (`update`), then as the final HTML (`finish`)."""

    async def update(self, text: str) -> None: ...

    async def finish(self, markup: str, reply_markup: InlineKeyboardMarkup | None = None) -> list[Message]: ...


def _draft_markup(text: str) -> str:
    """The answer so far as HTML for a draft: escaped, clipped to the limit, with a cursor."""
    return escape(_clip_utf16(text, MESSAGE_LIMIT - 50)) + " ▌"


class StreamingReply:
    """One answer arriving in fragments: a draft message edited at most every `interval` seconds.

    A fast answer never shows a draft at all: the first draft is sent only once `interval` has passed,
    so most answers arrive as one finished message and the edit budget goes to slow (LLM) answers.
    """

    def __init__(self, bot: Bot, chat_id: int, reply_to: int | None, *, interval: float = STREAM_EDIT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, started: float | None = None) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._reply_to = reply_to
        self._interval = interval
        self._clock = clock
        self._started = clock() if started is None else started
        self._last_edit = self._started
        self._draft: Message | None = None
        self._shown = ""
        self.edits = 0

    async def update(self, text: str) -> None:
        """The answer so far (plain text); shown if the last change is at least `interval` old."""
        now = self._clock()
        if now - self._last_edit < self._interval or not text.strip() or text == self._shown:
            return
        self._last_edit = now
        self._shown = text
        draft = _draft_markup(text)
        if self._draft is None:
            self._draft = await send_part(self._bot, self._chat_id, draft, reply_to=self._reply_to)
        else:
            self._draft = await edit_part(self._draft, draft)
            self.edits += 1

    async def finish(self, markup: str, reply_markup: InlineKeyboardMarkup | None = None) -> list[Message]:
        """Show the final answer: edit the draft into its first part (if any) and send the rest."""
        if self._draft is None:
            return await send_html(self._bot, self._chat_id, markup, reply_to=self._reply_to,
                                   reply_markup=reply_markup)
        parts = split_message(markup, MESSAGE_LIMIT)
        first = await edit_part(self._draft, parts[0], reply_markup=reply_markup if len(parts) == 1 else None)
        sent = [first]
        for i, part in enumerate(parts[1:], start=1):
            sent.append(await send_part(self._bot, self._chat_id, part,
                                        reply_markup=reply_markup if i == len(parts) - 1 else None))
        return sent


class DraftReply:
    """A private chat's answer as a native draft (`sendMessageDraft`), at most every `interval` seconds,
    then the final answer sent as one message (a reply to the question, buttons under its last part).

    Like the edited reply, a fast answer never shows a draft. If the server refuses a draft (an error,
    not a flood wait: the rate limiter waits those out), `on_refused` is told and the rest of the answer
    goes through edit-in-place (`StreamingReply`).
    """

    def __init__(self, bot: Bot, chat_id: int, reply_to: int | None, *, draft_id: int,
                 interval: float = STREAM_DRAFT_INTERVAL, edit_interval: float = STREAM_EDIT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 on_refused: Callable[[TelegramError], None] | None = None) -> None:
        if draft_id == 0:
            raise ValueError("a draft id must be non-zero")
        self._bot = bot
        self._chat_id = chat_id
        self._reply_to = reply_to
        self._draft_id = draft_id
        self._interval = interval
        self._edit_interval = edit_interval
        self._clock = clock
        self._started = clock()
        self._last_draft = self._started
        self._shown = ""
        self._on_refused = on_refused
        self._fallback: StreamingReply | None = None
        self.drafts = 0

    async def update(self, text: str) -> None:
        """The answer so far (plain text); drafted if the last draft is at least `interval` old."""
        if self._fallback is not None:
            await self._fallback.update(text)
            return
        now = self._clock()
        if now - self._last_draft < self._interval or not text.strip() or text == self._shown:
            return
        self._last_draft = now
        self._shown = text
        try:
            await self._bot.send_message_draft(self._chat_id, self._draft_id, _draft_markup(text),
                                               parse_mode=ParseMode.HTML)
        except (BadRequest, EndPointNotFound) as error:
            log.warning("Telegram refused a draft in chat %s (%s); editing a message instead", self._chat_id,
                        error.message)
            if self._on_refused is not None:
                self._on_refused(error)
            # Started at the question, so the edited message shows at once: the answer has taken long enough.
            self._fallback = StreamingReply(self._bot, self._chat_id, self._reply_to, interval=self._edit_interval,
                                            clock=self._clock, started=self._started - self._edit_interval)
            await self._fallback.update(text)
            return
        self.drafts += 1

    async def finish(self, markup: str, reply_markup: InlineKeyboardMarkup | None = None) -> list[Message]:
        """Send the final answer as a message (the draft disappears when it arrives)."""
        if self._fallback is not None:
            return await self._fallback.finish(markup, reply_markup)
        return await send_html(self._bot, self._chat_id, markup, reply_to=self._reply_to, reply_markup=reply_markup)
