"""Who may ask and how often: the allowlist, a per-user rate limit, and the input length cap."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


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


@dataclass(frozen=True)
class RateWindow:
    """One user's recent questions as the state keeps them: when each counted question came (epoch seconds,
    oldest first) and until when the user has been told to wait."""

    asked: tuple[float, ...] = ()
    notified_until: float = 0.0


class RateWindows(Protocol):
    """Where the windows live (the bot's state): `change` runs on the user's window while no other process
    may change it, and what it returns is stored; so a limit holds across replicas sharing one database."""

    def update_rate_window(self, user_id: int,
                           change: Callable[[RateWindow], tuple[RateWindow, RateDecision]]) -> RateDecision: ...


def admit(window: RateWindow, now: float, limit: int, period: float) -> tuple[RateWindow, RateDecision]:
    """The sliding-window rule: count this question if fewer than `limit` came in the last `period` seconds.

    A user over the limit is told once per wait (`notify` the first time), so the notice is not spam itself.
    """
    now = float(now)
    asked = tuple(t for t in window.asked if t > now - period)
    if len(asked) < limit:
        return RateWindow((*asked, now), 0.0), RateDecision(True, 0, False)
    free_at = asked[0] + period
    notify = window.notified_until <= now
    notified_until = free_at if notify else window.notified_until
    return RateWindow(asked, notified_until), RateDecision(False, max(1, math.ceil(free_at - now)), notify)


class RateLimiter:
    """At most `limit` questions per user in any sliding `period` seconds, counted in the shared state.

    Wall-clock time, not a monotonic clock: replicas on several machines compare their times (NTP keeps
    them within milliseconds, nothing next to a window of a minute).
    """

    def __init__(self, limit: int, period: float = 60.0, *, windows: RateWindows,
                 clock: Callable[[], float] = time.time) -> None:
        self._limit = limit
        self._period = period
        self._windows = windows
        self._clock = clock

    @property
    def limit(self) -> int:
        return self._limit

    def check(self, user_id: int) -> RateDecision:
        """Count one question for `user_id` if allowed; otherwise say how long to wait. Blocks on the state:
        call it from a worker thread."""
        now = self._clock()
        return self._windows.update_rate_window(user_id, lambda window: admit(window, now, self._limit, self._period))


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
