"""A small local Telegram Bot API server for tests and the load bench, plus a thread running the bot.

It speaks the real Bot API over HTTP on 127.0.0.1 (random port) for the methods hoidap's bot uses,
with what Telegram enforces and bots often trip on: the 4096-character limit on the parsed text,
valid HTML entities (only Telegram's tags, properly nested; `&lt; &gt; &amp; &quot;` and numeric
entities), "message is not modified", long polling that honours `offset` and `timeout`, webhooks
with the secret-token header, dates in seconds, callback queries with `chat_instance`; streamed drafts
(`sendMessageDraft`: private chats only, a non-zero `draft_id`, the same 4096-character and entity rules)
and inline queries (`answerInlineQuery`: at most 50 results with unique ids of 1-64 bytes, each article's
message checked like a sent one, answered once and within `inline_timeout` seconds of the query).

With `balance_webhook(backends)` it is also the load balancer in front of several webhook replicas: the
registered webhook URL is the public one, and each update goes to the next backend in turn.

The test side is plain Python, thread-safe: a `TestUser` sends messages, stickers, edits and button
presses as updates, and `wait_for` blocks until the bot has sent what the test expects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import ClientSession, ClientTimeout, web

T = TypeVar("T")

MESSAGE_LIMIT = 4096
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
                "tg-spoiler", "blockquote", "tg-emoji"}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[A-Za-z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)\s*>")
_ATTRIBUTE = re.compile(r"([A-Za-z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>\"']+))?")
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z]+);")
INLINE_RESULTS_LIMIT = 50
INLINE_TIMEOUT = 10.0
"""Seconds Telegram waits for answerInlineQuery; a later answer gets QUERY_ID_INVALID (the client gave up)."""
_JSON_FIELDS = {"reply_markup", "reply_parameters", "entities", "commands", "allowed_updates", "link_preview_options",
                "scope", "results", "button"}
_INT_FIELDS = {"chat_id", "message_id", "offset", "limit", "timeout", "reply_to_message_id", "max_connections",
               "draft_id", "cache_time"}
_BOOL_FIELDS = {"show_alert", "drop_pending_updates", "disable_notification", "allow_sending_without_reply",
                "is_personal"}


class ApiError(Exception):
    """A Bot API error response: HTTP status, description, optional parameters (retry_after)."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(markup: str) -> str:
    """Telegram's HTML parse mode: the visible text, or ApiError 400 "can't parse entities" like Telegram."""
    out: list[str] = []
    stack: list[str] = []
    i = 0

    def fail(reason: str) -> ApiError:
        offset = len(markup[:i].encode("utf-8"))
        return ApiError(400, f"Bad Request: can't parse entities: {reason} at byte offset {offset}")

    while i < len(markup):
        char = markup[i]
        if char == "<":
            match = _TAG.match(markup, i)
            if not match:
                raise fail("Unsupported start tag")
            closing, name, attributes = match[1] == "/", match[2].lower(), match[3]
            if closing:
                if not stack:
                    raise fail(f'Unexpected end tag "{name}"')
                if stack[-1] != name:
                    raise fail(f'Unmatched end tag, expected "</{stack[-1]}>", found "</{name}>"')
                stack.pop()
            else:
                if name not in ALLOWED_TAGS:
                    raise fail(f'Unsupported start tag "{name}"')
                attrs = {key.lower(): (value or "").strip("\"'") for key, value in _ATTRIBUTE.findall(attributes)}
                if name == "a" and not attrs.get("href"):
                    raise fail('Tag "a" must have attribute "href"')
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise fail('Tag "span" must have class "tg-spoiler"')
                stack.append(name)
            i = match.end()
        elif char == "&":
            match = _ENTITY.match(markup, i)
            if not match:
                raise fail("Character entity expected")
            name = match[1]
            if name.startswith("#"):
                out.append(chr(int(name[2:], 16) if name[1] in "xX" else int(name[1:])))
            elif name in NAMED_ENTITIES:
                out.append(NAMED_ENTITIES[name])
            else:
                raise fail(f'Unsupported HTML entity "&{name};"')
            i = match.end()
        else:
            out.append(char)
            i += 1
    if stack:
        raise ApiError(400, f'Bad Request: can\'t parse entities: Can\'t find end tag corresponding to start tag '
                            f'"{stack[-1]}"')
    return "".join(out)


def visible_text(text: str, parse_mode: str | None) -> str:
    """What Telegram stores for a message: the parsed text, length-checked, stripped."""
    if parse_mode is None or parse_mode == "":
        plain = text
    elif parse_mode.upper() == "HTML":
        plain = parse_html(text)
    else:
        raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r} in this test server")
    plain = plain.strip()
    if not plain:
        raise ApiError(400, "Bad Request: message text is empty")
    if utf16_len(plain) > MESSAGE_LIMIT:
        raise ApiError(400, "Bad Request: message is too long")
    return plain


@dataclass
class Chat:
    """A chat as the test user sees it (`private`, `group` or `supergroup`)."""

    id: int
    type: str
    title: str | None = None
    first_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title:
            data["title"] = self.title
        if self.first_name:
            data["first_name"] = self.first_name
        return data


@dataclass
class SentMessage:
    """A message the bot sent, as it stands now (edits applied), with what it was sent as."""

    chat_id: int
    message_id: int
    text: str  # visible text after parsing
    raw: str  # text as sent
    parse_mode: str | None
    reply_to: int | None
    reply_markup: dict[str, Any] | None
    date: int
    at: float = field(default_factory=time.monotonic)  # when the server accepted it (for latencies)
    updated_at: float = field(default_factory=time.monotonic)  # when it last changed (edits)
    edits: int = 0
    history: list[str] = field(default_factory=list)  # earlier visible texts (drafts)

    def buttons(self) -> list[dict[str, Any]]:
        """Inline buttons, flattened in order (none for a ForceReply markup)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    def button(self, startswith: str) -> dict[str, Any]:
        for button in self.buttons():
            if button.get("callback_data", "").startswith(startswith):
                return button
        raise AssertionError(f"no button with callback data {startswith!r} in {self.buttons()}")


@dataclass
class Draft:
    """One `sendMessageDraft` the server accepted: the text a private chat saw growing."""

    chat_id: int
    draft_id: int
    text: str  # visible text after parsing
    at: float = field(default_factory=time.monotonic)


@dataclass
class InlineAnswer:
    """An accepted `answerInlineQuery`: its results (as sent) and options, and when it came."""

    query_id: str
    results: list[dict[str, Any]]
    params: dict[str, Any]
    delay: float  # seconds after the query was sent

    def texts(self) -> list[str]:
        """Each result's message as the chat would show it (parsed HTML)."""
        return [visible_text(r["input_message_content"]["message_text"], r["input_message_content"].get("parse_mode"))
                for r in self.results]


class BotApiServer:
    """The Bot API, for one bot token, on 127.0.0.1 at a random port."""

    def __init__(self, token: str, *, bot_id: int = 7000000001, bot_username: str = "hoidap_test_bot",
                 inline_timeout: float = INLINE_TIMEOUT) -> None:
        self.token = token
        self.bot = {"id": bot_id, "is_bot": True, "first_name": "Hỏi đáp", "username": bot_username,
                    "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": True}
        self.inline_timeout = inline_timeout
        self.drafts: list[Draft] = []
        self.inline_answers: list[InlineAnswer] = []
        self._inline_queries: dict[str, float] = {}  # open query id -> when it was sent
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._delivered_up_to = 0
        self._message_ids: dict[int, itertools.count] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # every message, user's and bot's, as JSON
        self.sent: list[SentMessage] = []  # bot messages in the order sent
        self._replies: dict[tuple[int, int], list[SentMessage]] = {}  # (chat, replied message) -> bot replies
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.webhook_rejections = 0
        self._backends: list[str] = []  # load-balanced webhook replicas, in turn; empty: the webhook URL itself
        self.webhook_deliveries: list[tuple[int, str]] = []  # (update id, URL it was accepted at)
        self._faults: list[tuple[str, ApiError]] = []
        self._chats: dict[int, Chat] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_updates: asyncio.Event | None = None  # wakes long polls
        self._new_webhook_work: asyncio.Event | None = None  # wakes webhook delivery
        self._stop_serving: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopped = threading.Event()
        self.port = 0

    # --- lifecycle ---

    @property
    def base_url(self) -> str:
        """The bot's `HOIDAP_TELEGRAM_API_URL` (python-telegram-bot appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    def start(self) -> BotApiServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="botapi-server", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the local Bot API server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._stop_serving is not None:
            self._stopped.set()
            self._loop.call_soon_threadsafe(self._shut_down)
            self._thread.join(30)

    def _shut_down(self) -> None:
        self._wake()  # long polls return at once
        assert self._stop_serving is not None
        self._stop_serving.set()

    def __enter__(self) -> BotApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._new_updates = asyncio.Event()
        self._new_webhook_work = asyncio.Event()
        self._stop_serving = asyncio.Event()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        delivery = asyncio.create_task(self._deliver_webhooks())
        ready.set()
        await self._stop_serving.wait()
        delivery.cancel()
        await self._runner.cleanup()

    def _wake(self) -> None:
        """Runs on the server's loop: new updates (or a new webhook) for whoever is waiting."""
        for event in (self._new_updates, self._new_webhook_work):
            if event is not None:
                event.set()

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    # --- HTTP side (the bot) ---

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ConnectionResetError:  # the client gave up on this request: nobody to answer
            return web.Response(status=499)
        with self._lock:
            self.calls.append((method, params))
            fault = self._take_fault(method)
        try:
            if fault is not None:
                raise fault
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = handler(params) if method not in ("getUpdates", "setWebhook") else await handler(params)
        except ApiError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.status)
        return web.json_response({"ok": True, "result": result})

    def _take_fault(self, method: str) -> ApiError | None:
        for i, (name, error) in enumerate(self._faults):
            if name == method:
                del self._faults[i]
                return error
        return None

    def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.bot

    def _api_logOut(self, params: dict[str, Any]) -> bool:
        return True

    def _api_close(self, params: dict[str, Any]) -> bool:
        return True

    def _api_setMyCommands(self, params: dict[str, Any]) -> bool:
        with self._changed:
            self.commands = list(params.get("commands") or [])
            self._changed.notify_all()
        return True

    def _api_getMyCommands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.commands)

    def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook = None
            if params.get("drop_pending_updates"):
                self._updates.clear()
        return True

    async def _api_setWebhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
            if params.get("drop_pending_updates"):
                self._updates.clear()
        self._wake()
        return True

    def _api_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                    "pending_update_count": len(self._updates)}

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = min(int(params.get("limit") or 100), 100)
        deadline = time.monotonic() + max(0, float(params.get("timeout") or 0))
        assert self._new_updates is not None
        while True:
            self._new_updates.clear()
            with self._lock:
                if self.webhook is not None:
                    raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                        "use deleteWebhook to delete the webhook first")
                if offset:  # confirms every update before `offset`, as Telegram does
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                batch = self._updates[:limit]
                if batch:
                    self._delivered_up_to = max(self._delivered_up_to, batch[-1]["update_id"])
                    self._changed.notify_all()
                    return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopped.is_set():
                return []
            await self._wait(self._new_updates, remaining)

    async def _deliver_webhooks(self) -> None:
        """Push pending updates to the webhook in order, with the secret header, retrying failures."""
        assert self._new_webhook_work is not None
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            while True:
                self._new_webhook_work.clear()
                with self._lock:
                    hook = self.webhook
                    update = self._updates[0] if hook and self._updates else None
                    # The balancer's turn moves on with each accepted update; a failed one is tried there again.
                    url = (self._backends[len(self.webhook_deliveries) % len(self._backends)] if self._backends
                           else hook["url"] if hook else "")
                if update is None:
                    await self._wait(self._new_webhook_work, 5.0)
                    continue
                headers = {"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"]} if hook["secret_token"] else {}
                try:
                    async with session.post(url, json=update, headers=headers) as response:
                        ok = response.status == 200
                except OSError:
                    ok = False
                with self._changed:
                    if ok and self._updates and self._updates[0] is update:
                        self._updates.pop(0)
                        self._delivered_up_to = max(self._delivered_up_to, update["update_id"])
                        self.webhook_deliveries.append((update["update_id"], url))
                        self._changed.notify_all()
                if not ok:
                    await asyncio.sleep(0.2)

    def _chat_for(self, params: dict[str, Any]) -> Chat:
        chat_id = params.get("chat_id")
        with self._lock:
            chat = self._chats.get(int(chat_id)) if chat_id is not None else None
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _reply_target(self, params: dict[str, Any], chat: Chat) -> int | None:
        reply = params.get("reply_parameters") or {}
        target = reply.get("message_id") or params.get("reply_to_message_id")
        if target is None:
            return None
        if (chat.id, int(target)) not in self._messages:
            if reply.get("allow_sending_without_reply") or params.get("allow_sending_without_reply"):
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return int(target)

    def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat_for(params)
        text = visible_text(str(params.get("text", "")), params.get("parse_mode"))
        with self._changed:
            reply_to = self._reply_target(params, chat)
            message_id = self._next_message_id(chat.id)
            data = {"message_id": message_id, "from": self.bot, "chat": chat.to_dict(), "date": int(time.time()),
                    "text": text}
            if reply_to is not None:
                data["reply_to_message"] = _shallow(self._messages[(chat.id, reply_to)])
            if (params.get("reply_markup") or {}).get("inline_keyboard"):
                # Telegram shows only inline keyboards in a Message; a ForceReply is an instruction to clients.
                data["reply_markup"] = params["reply_markup"]
            self._messages[(chat.id, message_id)] = data
            record = SentMessage(chat.id, message_id, text, str(params.get("text", "")), params.get("parse_mode"),
                                 reply_to, params.get("reply_markup"), data["date"])
            self.sent.append(record)
            if reply_to is not None:
                self._replies.setdefault((chat.id, reply_to), []).append(record)
            self._changed.notify_all()
            return data

    def _bot_message(self, params: dict[str, Any]) -> tuple[dict[str, Any], SentMessage]:
        chat = self._chat_for(params)
        key = (chat.id, int(params.get("message_id") or 0))
        record = next((m for m in self.sent if (m.chat_id, m.message_id) == key), None)
        if record is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return self._messages[key], record

    def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        text = visible_text(str(params.get("text", "")), params.get("parse_mode"))
        with self._changed:
            data, record = self._bot_message(params)
            markup = params.get("reply_markup")
            if text == record.text and markup == record.reply_markup:
                raise ApiError(400, "Bad Request: message is not modified: specified new message content and "
                                    "reply markup are exactly the same as a current content and reply markup "
                                    "of the message")
            record.history.append(record.text)
            record.text, record.raw, record.parse_mode = text, str(params.get("text", "")), params.get("parse_mode")
            record.reply_markup = markup
            record.edits += 1
            record.updated_at = time.monotonic()
            data["text"] = text
            data["edit_date"] = int(time.time())
            if markup:
                data["reply_markup"] = markup
            else:
                data.pop("reply_markup", None)
            self._changed.notify_all()
            return data

    def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            data, record = self._bot_message(params)
            markup = params.get("reply_markup")
            if markup == record.reply_markup:
                raise ApiError(400, "Bad Request: message is not modified: specified new message content and "
                                    "reply markup are exactly the same as a current content and reply markup "
                                    "of the message")
            record.reply_markup = markup
            record.edits += 1
            record.updated_at = time.monotonic()
            data["reply_markup"] = markup
            self._changed.notify_all()
            return data

    def _api_deleteMessage(self, params: dict[str, Any]) -> bool:
        with self._changed:
            _, record = self._bot_message(params)
            self.sent.remove(record)
            if record.reply_to is not None:
                self._replies[(record.chat_id, record.reply_to)].remove(record)
            self._changed.notify_all()
        return True

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        with self._changed:
            self.callback_answers.append(params)
            self._changed.notify_all()
        return True

    def _api_sendMessageDraft(self, params: dict[str, Any]) -> bool:
        chat = self._chat_for(params)
        if chat.type != "private":
            raise ApiError(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        draft_id = params.get("draft_id")
        if not isinstance(draft_id, int) or draft_id == 0:
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        raw = str(params.get("text") or "")
        # An empty text shows Telegram's "Thinking…" placeholder; anything else obeys the message rules.
        text = visible_text(raw, params.get("parse_mode")) if raw.strip() else ""
        with self._changed:
            self.drafts.append(Draft(chat.id, draft_id, text))
            self._changed.notify_all()
        return True

    def _api_answerInlineQuery(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("inline_query_id") or "")
        results = params.get("results")
        if not isinstance(results, list):
            raise ApiError(400, "Bad Request: results must be an array")
        if len(results) > INLINE_RESULTS_LIMIT:
            raise ApiError(400, "Bad Request: RESULTS_TOO_MUCH")
        ids = [str(r.get("id", "")) for r in results]
        if any(not 1 <= len(i.encode()) <= 64 for i in ids):
            raise ApiError(400, "Bad Request: RESULT_ID_INVALID")
        if len(set(ids)) != len(ids):
            raise ApiError(400, "Bad Request: RESULT_ID_DUPLICATE")
        for result in results:
            if result.get("type") != "article" or not str(result.get("title") or "").strip():
                raise ApiError(400, "Bad Request: ARTICLE_TITLE_EMPTY")
            content = result.get("input_message_content") or {}
            visible_text(str(content.get("message_text", "")), content.get("parse_mode"))
        with self._changed:
            asked = self._inline_queries.pop(query_id, None)
            delay = time.monotonic() - asked if asked is not None else math.inf
            if delay > self.inline_timeout:
                raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is "
                                    "invalid")
            self.inline_answers.append(InlineAnswer(query_id, results, params, delay))
            self._changed.notify_all()
        return True

    def _api_sendChatAction(self, params: dict[str, Any]) -> bool:
        self._chat_for(params)
        if params.get("action") not in {"typing", "upload_photo", "record_video", "upload_video", "record_voice",
                                        "upload_voice", "upload_document", "choose_sticker", "find_location",
                                        "record_video_note", "upload_video_note"}:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    # --- test side (the users) ---

    def user(self, user_id: int, first_name: str = "Lan", username: str | None = None) -> TestUser:
        """A human user who can talk to the bot in a private chat or in groups."""
        return TestUser(self, {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "vi",
                               **({"username": username} if username else {})})

    def group(self, chat_id: int, title: str = "Nhóm đọc báo") -> Chat:
        """A group chat (negative id, as Telegram's)."""
        with self._lock:
            return self._chats.setdefault(chat_id, Chat(chat_id, "group", title=title))

    def balance_webhook(self, backends: list[str]) -> None:
        """Deliver webhook updates to these URLs in turn (round robin), as a load balancer in front of replicas."""
        with self._lock:
            self._backends = list(backends)

    def delivered_to(self, update_id: int) -> str | None:
        """The URL that accepted this update (webhook mode), once it has."""
        with self._lock:
            return next((url for delivered, url in self.webhook_deliveries if delivered == update_id), None)

    def fail_next(self, method: str, status: int, description: str, *, retry_after: int | None = None) -> None:
        """Make the next call of `method` fail as Telegram would (e.g. 429 with retry_after, 502, 400)."""
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        with self._lock:
            self._faults.append((method, ApiError(status, description, parameters)))

    def push_update(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update of `kind` (message, edited_message, callback_query) for the bot."""
        with self._changed:
            # A deep copy: the bot must see the update as it was pushed, whatever the test does next.
            update = {"update_id": next(self._update_ids), kind: json.loads(json.dumps(_public(payload)))}
            self._updates.append(update)
            self._changed.notify_all()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)
        return update

    def record_message(self, chat: Chat, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._chats.setdefault(chat.id, chat)
            data["message_id"] = self._next_message_id(chat.id)
            self._messages[(chat.id, data["message_id"])] = data
        return data

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """A copy of a stored message (user's or bot's) as Telegram would quote it."""
        with self._lock:
            return json.loads(json.dumps(self._messages[(chat_id, message_id)]))

    def delivered(self, update_id: int) -> bool:
        """Whether the bot has fetched (polling) or accepted (webhook) this update."""
        with self._lock:
            return self._delivered_up_to >= update_id

    def wait_for(self, condition: Callable[[], T], timeout: float = 60.0, what: str = "the bot") -> T:
        """Block until `condition()` (checked under the server's lock) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    sent = "\n".join(f"  chat {m.chat_id} #{m.message_id} ↩{m.reply_to}: {m.text[:120]!r}"
                                     for m in self.sent[-20:])
                    raise AssertionError(f"waited {timeout:.0f} s for {what}; last messages sent:\n{sent}")
                self._changed.wait(min(remaining, 0.5))

    def replies_to(self, chat_id: int, message_id: int) -> list[SentMessage]:
        """Bot messages sent as a reply to this message."""
        with self._lock:
            return list(self._replies.get((chat_id, message_id), ()))

    def messages_in(self, chat_id: int) -> list[SentMessage]:
        with self._lock:
            return [m for m in self.sent if m.chat_id == chat_id]

    def open_inline_query(self, query_id: str) -> None:
        with self._lock:
            self._inline_queries[query_id] = time.monotonic()

    def inline_answer(self, query: dict[str, Any], timeout: float = 60.0) -> InlineAnswer:
        """The bot's accepted answer to an inline query."""
        return self.wait_for(lambda: next((a for a in self.inline_answers if a.query_id == query["id"]), None),
                             timeout, what=f"the answer to the inline query {query['query']!r}")

    def drafts_in(self, chat_id: int) -> list[Draft]:
        with self._lock:
            return [d for d in self.drafts if d.chat_id == chat_id]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [params for name, params in self.calls if name == method]


class TestUser:
    """One person talking to the bot: sends updates through the server, reads the bot's replies."""

    __test__ = False  # not a pytest test class

    def __init__(self, server: BotApiServer, data: dict[str, Any]) -> None:
        self.server = server
        self.data = data
        self.id: int = data["id"]
        self.private = Chat(self.id, "private", first_name=data["first_name"])

    def _message(self, chat: Chat | None, **fields: Any) -> dict[str, Any]:
        chat = chat or self.private
        data = {"from": self.data, "chat": chat.to_dict(), "date": int(time.time()), **fields}
        return self.server.record_message(chat, data)

    def say(self, text: str, *, chat: Chat | None = None, reply_to: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a text message; `/commands` and `@mentions` get their entities, as Telegram adds them."""
        fields: dict[str, Any] = {"text": text}
        entities = _entities(text)
        if entities:
            fields["entities"] = entities
        if reply_to is not None:
            fields["reply_to_message"] = _shallow(reply_to)
        message = self._message(chat, **fields)
        return {**message, "_update_id": self.server.push_update("message", message)["update_id"]}

    def send_sticker(self, *, chat: Chat | None = None) -> dict[str, Any]:
        sticker = {"file_id": "CAACAgIAAxkBAAEBsticker", "file_unique_id": "AgADsticker", "type": "regular",
                   "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "👍"}
        message = self._message(chat, sticker=sticker)
        return {**message, "_update_id": self.server.push_update("message", message)["update_id"]}

    def send_voice(self, *, chat: Chat | None = None) -> dict[str, Any]:
        voice = {"file_id": "AwACAgIAAxkBAAEBvoice", "file_unique_id": "AgADvoice", "duration": 3}
        message = self._message(chat, voice=voice)
        return {**message, "_update_id": self.server.push_update("message", message)["update_id"]}

    def edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        """Edit one of this user's messages: the bot gets an `edited_message` update."""
        edited = {k: v for k, v in message.items() if k not in ("entities", "_update_id")}
        edited.update(text=text, edit_date=int(time.time()))
        entities = _entities(text)
        if entities:
            edited["entities"] = entities
        return {**edited, "_update_id": self.server.push_update("edited_message", edited)["update_id"]}

    def press(self, sent: SentMessage, callback_data: str) -> dict[str, Any]:
        """Press an inline button under a bot message."""
        query = {"id": f"{self.id}{next(_query_ids)}", "from": self.data, "chat_instance": f"ci{sent.chat_id}",
                 "message": self.server.message(sent.chat_id, sent.message_id), "data": callback_data}
        update = self.server.push_update("callback_query", query)
        return {**query, "_update_id": update["update_id"]}

    def inline(self, text: str, *, chat_type: str = "sender") -> dict[str, Any]:
        """Type `@bot text` in a chat: the bot gets an `inline_query` update, to answer within the timeout."""
        query = {"id": f"iq{self.id}{next(_query_ids)}", "from": self.data, "query": text, "offset": "",
                 "chat_type": chat_type}
        self.server.open_inline_query(query["id"])
        update = self.server.push_update("inline_query", query)
        return {**query, "_update_id": update["update_id"]}

    def wait_reply(self, message: dict[str, Any], *, timeout: float = 60.0,
                   where: Callable[[SentMessage], bool] = lambda m: True) -> SentMessage:
        """The first bot message replying to `message` (and matching `where`)."""
        chat_id = message["chat"]["id"]
        return self.server.wait_for(
            lambda: next((m for m in self.server.replies_to(chat_id, message["message_id"]) if where(m)), None),
            timeout, what=f"a reply to {message.get('text', 'message')!r} in chat {chat_id}")


_query_ids = itertools.count(1)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _shallow(message: dict[str, Any]) -> dict[str, Any]:
    """A message as quoted inside another (Telegram does not nest reply chains)."""
    return {k: v for k, v in _public(message).items() if k != "reply_to_message"}


def _entities(text: str) -> list[dict[str, Any]]:
    """Entities Telegram's clients add: a leading /command, and @mentions, with UTF-16 offsets."""
    entities = []
    for match in re.finditer(r"(?:^/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?)|(?:(?<![\w@])@[A-Za-z0-9_]{5,32})", text):
        kind = "bot_command" if match.group(0).startswith("/") else "mention"
        entities.append({"type": kind, "offset": utf16_len(text[: match.start()]),
                         "length": utf16_len(match.group(0))})
    return entities


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Bot API parameters from the query string, a form, or JSON, typed like Telegram reads them."""
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key, value in list(params.items()):
        if not isinstance(value, str):
            continue
        if key in _JSON_FIELDS:
            params[key] = json.loads(value)
        elif key in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
            params[key] = int(value)
        elif key in _BOOL_FIELDS:
            params[key] = value.lower() == "true"
    return params


class BotThread:
    """Runs the real bot (`bot.telegram.app.serve`) in its own thread and event loop, like `hoidap telegram`."""

    def __init__(self, application: Any, settings: Any) -> None:
        self.application = application
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> BotThread:
        from bot.telegram.app import serve

        started = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started.set()
            await serve(self.application, self.settings, self._stop)

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as error:  # surfaced by stop() so a crashed bot fails the test
                self.error = error
                started.set()

        self._thread = threading.Thread(target=run, name="hoidap-bot", daemon=True)
        self._thread.start()
        started.wait(timeout)
        deadline = time.monotonic() + timeout
        while not self.application.running and self.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.error is not None:
            raise self.error
        if not self.application.running:
            raise RuntimeError("the bot did not start")
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop fetching updates, finish the ones in hand, shut down (as on SIGTERM)."""
        if self._loop is not None and self._stop is not None and self._thread is not None \
                and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("the bot did not stop")
        if self.error is not None:
            raise self.error

    def __enter__(self) -> BotThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def iter_ids(start: int) -> Iterator[int]:
    """Distinct user ids for simulated users."""
    return itertools.count(start)
