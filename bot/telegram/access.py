"""Who may ask and how often: the allowlist, a per-user rate limit, and the input length cap."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AccessPolicy:
    """An optional allowlist: with both lists empty everyone may ask.

    A user on the list may ask anywhere; a chat on the list (typically a group) lets all its members ask.
    """

    users: frozenset[int] = frozenset()
    chats: frozenset[int] = frozenset()

    @classmethod
    def from_ids(cls, users: Iterable[int] = (), chats: Iterable[int] = ()) -> AccessPolicy:
        return cls(frozenset(users), frozenset(chats))

    @property
    def open(self) -> bool:
        return not self.users and not self.chats

    def allows(self, user_id: int | None, chat_id: int | None) -> bool:
        """Whether this user, in this chat, may use the bot."""
        if self.open:
            return True
        return (user_id is not None and user_id in self.users) or (chat_id is not None and chat_id in self.chats)


@dataclass(frozen=True)
class RateDecision:
    """The rate limiter's verdict for one question."""

    allowed: bool
    retry_in: int  # whole seconds until the next question is accepted (0 when allowed)
    notify: bool  # tell the user (only the first refusal of a waiting period)


class RateLimiter:
    """At most `limit` questions per user in any sliding `period` seconds.

    Only the event loop calls it, so it needs no lock. A user over the limit is told once per wait
    (`notify` is True the first time), so the notice itself does not become spam.
    """

    def __init__(self, limit: int, period: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._period = period
        self._clock = clock
        self._asked: dict[int, deque[float]] = {}
        self._notified_until: dict[int, float] = {}

    @property
    def limit(self) -> int:
        return self._limit

    def check(self, user_id: int) -> RateDecision:
        """Count one question for `user_id` if allowed; otherwise say how long to wait."""
        now = self._clock()
        times = self._asked.setdefault(user_id, deque())
        while times and times[0] <= now - self._period:
            times.popleft()
        if len(times) < self._limit:
            times.append(now)
            self._notified_until.pop(user_id, None)
            return RateDecision(True, 0, False)
        free_at = times[0] + self._period
        notify = self._notified_until.get(user_id, -math.inf) <= now
        if notify:
            self._notified_until[user_id] = free_at
        return RateDecision(False, max(1, math.ceil(free_at - now)), notify)


def truncate_input(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut over-long input at a word boundary; return the text and whether it was cut."""
    text = text.strip()
    if len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(), True
