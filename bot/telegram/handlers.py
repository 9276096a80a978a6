"""The bot's update handlers: thin async functions over the shared Answerer, the state and the access rules.

Answers are computed in a bounded thread pool (`loop.run_in_executor`), never on the event loop, so a
slow answer in one chat never stalls another; the state (SQLite, or PostgreSQL shared by replicas) is
read and written from a worker thread too (`_stored`), so a slow disk or network never stalls the loop.
Questions of one chat are answered one at a time, in order, so its history stays consistent: within the
process by a lock per chat, and across the replicas sharing a PostgreSQL state by the state's turn per
chat (`BotState.claim_chat`), waited for here without holding a thread, for at most `TURN_WAIT`.

Edited messages: an edited question is answered anew, as a reply to the edited message, because people
edit to fix a typo or a wrong name and expect the fixed question to count. An edit that leaves the
question text unchanged (formatting only) is ignored, and so is any edit the bot would not have
answered as a new message (group chatter, commands other than /ask).

Streaming: in a private chat an answer that streams grows as a native draft, then arrives as one
message; in a group it grows by edits of one message (see `delivery`). A 👎 is followed by a
ForceReply prompt: the voter's reply to it, within `correction_minutes`, is stored with the vote.
Inline queries are answered from a per-question cache (see `inline`). Every admitted question is
logged in the state (for `hoidap stats`) and counted in the metrics, and its id is on every log line.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from telegram import (
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultsButton,
    Message,
    MessageEntity,
    Update,
    User,
)
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bot.ops import QUESTION_ID, BotMetrics, run_timed
from bot.telegram import texts
from bot.telegram.access import AccessPolicy, RateLimiter, truncate_input
from bot.telegram.delivery import (
    STREAM_DRAFT_INTERVAL,
    STREAM_EDIT_INTERVAL,
    DraftReply,
    Reply,
    StreamingReply,
    send_html,
    send_part,
)
from bot.telegram.formatting import (
    ArticleListing,
    escape,
    passages_html,
    sources_list_html,
    to_telegram_html,
)
from bot.telegram.inline import (
    INLINE_DEADLINE,
    INLINE_MIN_CHARS,
    INLINE_SETTLE,
    AnswerCache,
    answer_results,
)
from bot.telegram.state import BotState
from index.text import answer_language
from retrieval.types import Answer, Answerer, Turn

log = logging.getLogger(__name__)

ListSources = Callable[[], Sequence[ArticleListing | tuple[str, str | None, str | None, int]]]
"""Gives the indexed articles as (title, date, source, n_chunks); injected so the bot never sees the index."""

TYPING_REFRESH = 4.5  # Telegram shows "typing…" for 5 s per chat action
CORRECTION_CHARS = 300
"""A correction is one line: longer text is cut there."""
TURN_WAIT = 120.0
"""Seconds a question waits for its chat's turn held by another replica before it is answered anyway: far above
one answer of the local LLM (mean 2.7-6.8 s in eval/README), so only a stuck replica is passed by."""
TURN_POLL = 0.05
"""Seconds between two tries for a chat's turn another replica holds (one small statement each)."""
_DONE = object()
T = TypeVar("T")


def replies_to_bot(message: Message, bot_id: int) -> bool:
    """Whether the message answers one of the bot's own messages."""
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot_id


def addressed_question(message: Message, bot_id: int, bot_username: str | None) -> str | None:
    """The question in `message` if it is meant for the bot, else None.

    In a private chat every text is a question. In a group the bot answers only when mentioned
    (`@username` or a text mention) or when the message replies to one of its own messages.
    """
    text = message.text or ""
    mention = f"@{bot_username}".lower() if bot_username else None
    if message.chat.type != ChatType.PRIVATE:
        entities = message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION])
        mentioned = any(
            (entity.type == MessageEntity.MENTION and mention is not None and value.lower() == mention)
            or (entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == bot_id)
            for entity, value in entities.items()
        )
        if not (mentioned or replies_to_bot(message, bot_id)):
            return None
    if bot_username:
        text = re.sub(rf"@{re.escape(bot_username)}\b", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(" ,:;-")


def command_argument(text: str | None) -> str:
    """What follows `/command` (or `/command@bot`) in a message, newlines kept."""
    parts = (text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def answer_keyboard(answer_id: int, with_sources: bool, chosen: int | None = None) -> InlineKeyboardMarkup:
    """The buttons under an answer: the full passages (if any), then 👍 / 👎 (a tick on the chosen one)."""
    rows: list[list[InlineKeyboardButton]] = []
    if with_sources:
        rows.append([InlineKeyboardButton(texts.SOURCES_BUTTON, callback_data=f"src:{answer_id}")])
    rows.append([
        InlineKeyboardButton("👍 ✓" if chosen == 1 else "👍", callback_data=f"vote:{answer_id}:up"),
        InlineKeyboardButton("👎 ✓" if chosen == -1 else "👎", callback_data=f"vote:{answer_id}:down"),
    ])
    return InlineKeyboardMarkup(rows)


class BotHandlers:
    """Every handler of the bot, bound to its collaborators (passed in, never global)."""

    def __init__(self, *, answerer: Answerer, state: BotState, access: AccessPolicy, limiter: RateLimiter,
                 executor: Executor, list_sources: ListSources, history_turns: int, max_input_chars: int,
                 metrics: BotMetrics, inline_cache: AnswerCache, correction_minutes: float,
                 stream_interval: float = STREAM_EDIT_INTERVAL, draft_interval: float = STREAM_DRAFT_INTERVAL,
                 inline_deadline: float = INLINE_DEADLINE, turn_wait: float = TURN_WAIT) -> None:
        self._metrics = metrics
        self._turn_wait = turn_wait
        self._inline_cache = inline_cache
        self._correction_seconds = correction_minutes * 60
        self._draft_interval = draft_interval
        self._inline_deadline = inline_deadline
        self._answerer = answerer
        self._state = state
        self._access = access
        self._limiter = limiter
        self._executor = executor
        self._list_sources = list_sources
        self._history_turns = history_turns
        self._max_input_chars = max_input_chars
        self._stream_interval = stream_interval
        self._chat_locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}
        self._inline_latest: dict[int, str] = {}  # user id -> their latest inline query id

    # --- commands ---

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start: greet in Vietnamese, say what the bot knows and how to ask."""
        if not await self._admit(update, context):
            return
        articles = await self._articles()
        await self._reply(update, context, texts.greeting(len(articles), context.bot.username))

    async def show_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/help: commands, groups, buttons and limits."""
        if not await self._admit(update, context):
            return
        await self._reply(update, context,
                          texts.help_text(context.bot.username, self._max_input_chars, self._limiter.limit))

    async def sources(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/sources: the indexed articles."""
        if not await self._admit(update, context):
            return
        articles = await self._articles()
        await self._reply(update, context, sources_list_html(articles))

    async def new_conversation(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/new: forget this chat's conversation."""
        if not await self._admit(update, context):
            return
        await self._stored(self._state.clear_history, update.effective_chat.id)
        await self._reply(update, context, texts.NEW_CONVERSATION)

    async def ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/ask QUESTION: the way to ask in a group without mentioning the bot."""
        message = update.effective_message
        question = command_argument(message.text)
        if not question:
            if await self._admit(update, context):
                await self._reply(update, context, texts.ASK_USAGE)
            return
        await self._answer_question(update, context, message, question)

    # --- messages ---

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A text message: a correction (a reply to the bot's 👎 prompt), or a question in a private chat,
        or in a group when addressed to the bot."""
        message = update.effective_message
        if await self._take_correction(update, context, message):
            return
        question = addressed_question(message, context.bot.id, context.bot.username)
        if question is None:
            return
        if not question:
            if await self._admit(update, context):
                await self._reply(update, context, texts.EMPTY_QUESTION)
            return
        await self._answer_question(update, context, message, question)

    async def edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edited text: answer the fixed question anew; ignore edits that change nothing we answered."""
        message = update.effective_message
        text = message.text or ""
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0].split("@", 1)[0].lower()
            question = command_argument(text) if command == "/ask" else None
        else:
            question = addressed_question(message, context.bot.id, context.bot.username)
        if not question:
            return
        previous = await self._stored(self._state.answered_question, message.chat_id, message.message_id)
        if previous is not None and previous == truncate_input(question, self._max_input_chars)[0]:
            return
        await self._answer_question(update, context, message, question, notice=texts.EDITED_NOTICE)

    async def non_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice…: say the bot reads text (in groups only when addressed)."""
        message = update.effective_message
        if message.chat.type != ChatType.PRIVATE:
            mention = f"@{context.bot.username}".lower()
            if not (replies_to_bot(message, context.bot.id) or mention in (message.caption or "").lower()):
                return
        if not await self._admit(update, context):
            return
        await self._reply(update, context, texts.TEXT_ONLY)

    # --- buttons ---

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Inline buttons under an answer: the full cited passages, or a 👍 / 👎 vote."""
        query = update.callback_query
        if not self._access.allows(query.from_user.id, update.effective_chat.id if update.effective_chat else None):
            await query.answer(texts.REFUSAL, show_alert=True)
            return
        kind, _, rest = (query.data or "").partition(":")
        answer_id_text, _, value = rest.partition(":")
        if not answer_id_text.isdigit() or kind not in ("src", "vote"):
            await query.answer()
            return
        answer_id = int(answer_id_text)
        stored = await self._stored(self._state.stored_answer, answer_id)
        # Answer ids are sequential: a button copied under a message of another chat must not open its answer.
        if stored is None or (query.message is not None and stored.chat_id != query.message.chat.id):
            await query.answer(texts.ANSWER_GONE, show_alert=True)
            return
        if kind == "src":
            await query.answer()
            if query.message is not None:
                await send_html(context.bot, query.message.chat.id, passages_html(stored.answer.sources),
                                reply_to=query.message.message_id)
            return
        vote = 1 if value == "up" else -1
        recorded = await self._stored(self._state.record_vote, answer_id, query.from_user.id, vote)
        previous = recorded.previous if recorded is not None else None
        if previous != vote:
            self._metrics.votes.labels(vote="up" if vote == 1 else "down").inc()
        await query.answer(texts.THANKS_UP if vote == 1 else texts.THANKS_DOWN)
        try:
            await query.edit_message_reply_markup(answer_keyboard(answer_id, bool(stored.answer.sources), vote))
        except BadRequest as error:
            # The same vote twice leaves the keyboard as it is; Telegram reports that as an error.
            if "not modified" not in error.message.lower():
                raise
        if vote == -1 and previous != -1 and query.message is not None:
            await self._ask_for_correction(context, query.message, answer_id, query.from_user.id, query.from_user)

    async def _ask_for_correction(self, context: ContextTypes.DEFAULT_TYPE, answer_message: Message,
                                  answer_id: int, user_id: int, voter: User | None = None) -> None:
        """After a 👎: ask the voter, with a ForceReply, what the right answer would be.

        In a group the prompt names the voter: a selective ForceReply opens the reply box only for the
        users it mentions.
        """
        markup = texts.CORRECTION_PROMPT
        if answer_message.chat.type != ChatType.PRIVATE and voter is not None:
            markup = f'<a href="tg://user?id={voter.id}">{escape(voter.first_name)}</a>, {markup}'
        prompt = await send_part(
            context.bot, answer_message.chat.id, markup, reply_to=answer_message.message_id,
            reply_markup=ForceReply(selective=True, input_field_placeholder=texts.CORRECTION_PLACEHOLDER))
        await self._stored(self._state.expect_correction, answer_message.chat.id, prompt.message_id, answer_id, user_id)

    async def _take_correction(self, update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message) -> bool:
        """Store the message as a correction if it replies to our prompt, from its voter, in time."""
        replied = message.reply_to_message
        user = update.effective_user
        if replied is None or user is None or not replies_to_bot(message, context.bot.id):
            return False
        prompt = await self._stored(self._state.correction_prompt, message.chat_id, replied.message_id)
        if prompt is None or prompt.user_id != user.id or time.time() - prompt.created > self._correction_seconds:
            return False
        if not await self._admit(update, context):
            return True
        correction = " ".join((message.text or "").split())[:CORRECTION_CHARS]
        if correction and await self._stored(self._state.save_correction, message.chat_id, replied.message_id,
                                             correction):
            log.info("Correction stored for answer %s", prompt.answer_id)
            await self._reply(update, context, texts.CORRECTION_THANKS)
        return True

    # --- inline mode ---

    async def inline(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """`@bot question` in any chat: the sourced answer (or "not found") as a result to share."""
        query = update.inline_query
        user_id = query.from_user.id
        # Telegram may give cached results to anyone who types the same query, unless they are personal.
        personal = not self._access.open
        if not self._access.allows(user_id, None):
            log.info("Refused inline query of user %s (not on the allowlist)", user_id)
            self._metrics.refusals.labels(reason="allowlist").inc()
            await query.answer([], cache_time=0, is_personal=True,
                               button=InlineQueryResultsButton(texts.INLINE_REFUSAL, start_parameter=texts.INLINE_START))
            return
        question, _ = truncate_input(" ".join(query.query.split()), self._max_input_chars)
        if not await self._latest_inline_query(user_id, query.id):
            return  # the reader typed on: a newer query replaces this one, and Telegram drops its answer
        if len(question) < INLINE_MIN_CHARS:
            await query.answer([], cache_time=0, is_personal=personal,
                               button=InlineQueryResultsButton(texts.INLINE_HINT, start_parameter=texts.INLINE_START))
            return
        answer = self._inline_cache.get(question)
        if answer is not None:
            self._metrics.inline_cache.labels(result="hit").inc()
        else:
            task = self._inline_cache.computing(question)
            if task is not None:
                self._metrics.inline_cache.labels(result="shared").inc()
            else:
                decision = await self._stored(self._limiter.check, user_id)
                if not decision.allowed:
                    self._metrics.refusals.labels(reason="rate_limit").inc()
                    await query.answer([], cache_time=0, is_personal=True, button=InlineQueryResultsButton(
                        texts.inline_rate_limited(decision.retry_in), start_parameter=texts.INLINE_START))
                    return
                self._metrics.inline_cache.labels(result="miss").inc()
                task = self._inline_cache.compute(question, lambda: self._answer_inline(question, user_id))
            try:
                answer = await asyncio.wait_for(asyncio.shield(task), self._inline_deadline)
            except TimeoutError:
                log.info("Inline answer not ready in %.0f s; it will be cached for the next query",
                         self._inline_deadline)
                self._metrics.errors.labels(kind="inline_deadline").inc()
                await query.answer([], cache_time=0, is_personal=True, button=InlineQueryResultsButton(
                    texts.INLINE_STILL_LOOKING, start_parameter=texts.INLINE_START))
                return
        await query.answer(answer_results(question, answer), cache_time=60, is_personal=personal)

    async def _latest_inline_query(self, user_id: int, query_id: str) -> bool:
        """Wait for the reader to stop typing; True if this query is still their latest one."""
        self._inline_latest[user_id] = query_id
        await asyncio.sleep(INLINE_SETTLE)
        if self._inline_latest.get(user_id) != query_id:
            return False
        del self._inline_latest[user_id]
        return True

    async def _answer_inline(self, question: str, user_id: int) -> Answer:
        """One inline question through the answerer (no history: an inline query has no conversation)."""
        question_id = await self._stored(self._state.start_question, "inline", None, user_id)
        token = QUESTION_ID.set(str(question_id))
        started = time.perf_counter()
        self._metrics.questions.labels(via="inline").inc()
        try:
            answer, retrieval = await self._in_worker(lambda: self._answerer.answer(question, []))
        except Exception as error:
            await self._record_failure(question_id, error)
            raise
        finally:
            QUESTION_ID.reset(token)
        await self._record_answer(question_id, "inline", answer, time.perf_counter() - started, retrieval)
        return answer

    # --- errors ---

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log any handler failure with its traceback and tell the user something went wrong."""
        update_id = update.update_id if isinstance(update, Update) else None
        self._metrics.errors.labels(kind=type(context.error).__name__).inc()
        log.error("Failed to handle update %s", update_id, exc_info=context.error)
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(texts.ERROR, show_alert=True)
            elif update.effective_chat is not None:
                message = update.effective_message
                await send_html(context.bot, update.effective_chat.id, texts.ERROR,
                                reply_to=message.message_id if message else None)
        except TelegramError:
            log.warning("Could not tell the user about the error of update %s", update_id, exc_info=True)

    # --- the question flow ---

    async def _answer_question(self, update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message,
                               question: str, *, notice: str | None = None) -> None:
        if not await self._admit(update, context):
            return
        user_id = update.effective_user.id if update.effective_user else message.chat_id
        decision = await self._stored(self._limiter.check, user_id)
        if not decision.allowed:
            self._metrics.refusals.labels(reason="rate_limit").inc()
            if decision.notify:
                await self._reply(update, context, texts.rate_limited(self._limiter.limit, decision.retry_in))
            return
        question, cut = truncate_input(question, self._max_input_chars)
        notices = [n for n in (notice, texts.input_cut(self._max_input_chars) if cut else None) if n]
        chat_id = message.chat_id
        question_id = await self._stored(self._state.start_question, "chat", chat_id, user_id)
        # Not reset: each update runs in its own task (concurrent updates), and the error handler's line,
        # in this same task, must carry the id too.
        QUESTION_ID.set(str(question_id))
        self._metrics.questions.labels(via="chat").inc()
        started = time.perf_counter()
        try:
            async with self._chat_turn(chat_id):
                answered = asyncio.Event()
                # Not cancelled but told to stop: cancelling a request mid-flight would drop its connection.
                context.application.create_task(self._keep_typing(context, chat_id, answered))
                try:
                    history = await self._stored(self._state.history, chat_id, self._history_turns)
                    reply = self._reply_for(context, message)
                    answer, retrieval = await self._run_answerer(question, history, reply.update)
                    answer_id = await self._stored(self._state.save_answer, chat_id, user_id, message.message_id,
                                                   question, answer)
                    # Kept before it is sent: an answer the user has seen is in the history even if the bot dies now.
                    await self._stored(self._state.add_turn, chat_id, question, answer.text, self._history_turns)
                    markup = to_telegram_html(answer, notice=" · ".join(notices) or None,
                                              language=answer_language(question))
                    await reply.finish(markup, answer_keyboard(answer_id, bool(answer.sources)))
                finally:
                    answered.set()
        except Exception as error:  # recorded, then handled by the error handler like any failure
            await self._record_failure(question_id, error)
            raise
        await self._record_answer(question_id, "chat", answer, time.perf_counter() - started, retrieval)

    def _reply_for(self, context: ContextTypes.DEFAULT_TYPE, message: Message) -> Reply:
        """Drafts in a private chat, edit-in-place in groups (where Telegram allows no drafts)."""
        if message.chat.type == ChatType.PRIVATE:
            return DraftReply(context.bot, message.chat_id, message.message_id, draft_id=message.message_id,
                              interval=self._draft_interval, edit_interval=self._stream_interval,
                              on_refused=lambda _: self._metrics.errors.labels(kind="draft_refused").inc())
        return StreamingReply(context.bot, message.chat_id, message.message_id, interval=self._stream_interval)

    async def _record_answer(self, question_id: int, via: str, answer: Answer, seconds: float,
                             retrieval: float | None) -> None:
        outcome = "found" if answer.found else "not_found"
        self._metrics.answers.labels(outcome=outcome).inc()
        self._metrics.answer_seconds.labels(via=via).observe(seconds)
        await self._stored(functools.partial(self._state.finish_question, question_id, outcome,
                                             answer_seconds=seconds, retrieval_seconds=retrieval))
        log.info("Question %s answered via %s (%s) in %.2f s", question_id, via, outcome, seconds)

    async def _record_failure(self, question_id: int, error: BaseException) -> None:
        """The question's failure in the log of questions; the error handler counts and logs it."""
        await self._stored(functools.partial(self._state.finish_question, question_id, "error",
                                             error_kind=type(error).__name__))

    @staticmethod
    async def _stored(work: Callable[..., T], *args: object) -> T:
        """One call to the state (or the rate limiter over it) in a worker thread, with this task's log context:
        a few small statements, but on a disk or across a network, where the event loop must not wait."""
        return await asyncio.to_thread(work, *args)

    async def _in_worker(self, work: Callable[[], T]) -> tuple[T, float | None]:
        """Run `work` in the worker pool (counted in the queue depth, with this task's log context);
        return its result and the time its retrievals took."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        with self._metrics.in_queue():
            result, retrieval = await loop.run_in_executor(self._executor, context.run, run_timed, work)
        return result, retrieval  # type: ignore[return-value]

    async def _run_answerer(self, question: str, history: list[Turn],
                            on_text: Callable[[str], Awaitable[None]]) -> tuple[Answer, float | None]:
        """Iterate the Answerer's stream in the worker pool; show text fragments as they come.

        Returns the checked Answer and the seconds its retrieval took."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def produce() -> Answer:
            try:
                stream = self._answerer.stream(question, history)
                for fragment in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, fragment)
                return stream.final()
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        work = asyncio.ensure_future(self._in_worker(produce))
        text, done = "", False
        while not done:
            items = [await queue.get()]
            while not queue.empty():  # take everything already produced: no draft for a finished answer
                items.append(queue.get_nowait())
            for item in items:
                if item is _DONE:
                    done = True
                else:
                    text += str(item)
            if not done:
                try:
                    await on_text(text)
                except TelegramError as error:  # a draft is cosmetic: the final answer still goes out
                    log.warning("Could not show a draft of a streaming answer: %s", error)
        return await work  # the checked Answer; re-raises whatever the Answerer raised, for the error handler

    async def _reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE, markup: str) -> None:
        """Answer the update's message with HTML, as a reply to it."""
        message = update.effective_message
        await send_html(context.bot, message.chat_id, markup, reply_to=message.message_id)

    async def _articles(self) -> list[ArticleListing]:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._executor, self._list_sources)
        return [ArticleListing(*row) for row in rows]

    async def _keep_typing(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, done: asyncio.Event) -> None:
        """Show "typing…" until `done` is set; it is cosmetic, so a failure is only logged."""
        try:
            while not done.is_set():
                await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
                with suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), TYPING_REFRESH)
        except TelegramError as error:
            log.debug("Typing indicator for chat %s failed: %s", chat_id, error)

    async def _admit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        """Whether this user may use the bot here; refuse politely, once per chat, if not."""
        user = update.effective_user
        chat = update.effective_chat
        if self._access.allows(user.id if user else None, chat.id if chat else None):
            return True
        log.info("Refused user %s in chat %s (not on the allowlist)", user.id if user else None,
                 chat.id if chat else None)
        self._metrics.refusals.labels(reason="allowlist").inc()
        if chat is not None and await self._stored(self._state.first_refusal, chat.id):
            message = update.effective_message
            await send_html(context.bot, chat.id, texts.REFUSAL, reply_to=message.message_id if message else None)
        return False

    @asynccontextmanager
    async def _chat_turn(self, chat_id: int) -> AsyncIterator[None]:
        """One question at a time per chat, here and on every replica; the lock is dropped once nobody waits."""
        lock, users = self._chat_locks.setdefault(chat_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                claimed = await self._claim_chat(chat_id)
                try:
                    yield
                finally:
                    if claimed:
                        await self._stored(self._state.release_chat, chat_id)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._chat_locks[chat_id]

    async def _claim_chat(self, chat_id: int) -> bool:
        """The chat's turn in the shared state, tried until `turn_wait` has passed; False if it never came."""
        deadline = time.monotonic() + self._turn_wait
        while not await self._stored(self._state.claim_chat, chat_id):
            if time.monotonic() >= deadline:
                log.warning("Chat %s: another replica has held its turn for %.0f s; answering without waiting",
                            chat_id, self._turn_wait)
                self._metrics.errors.labels(kind="turn_wait").inc()
                return False
            await asyncio.sleep(TURN_POLL)
        return True
