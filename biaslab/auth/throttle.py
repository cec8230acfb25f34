"""Limits on failed sign-ins, per user name and per client address, in a sliding window."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

# Bounds the memory that attempts with made-up user names or many addresses can take.
# When more keys are tracked, the least recently failed one is forgotten.
MAX_TRACKED_KEYS = 10_000


@dataclass(frozen=True)
class ThrottleLimits:
    failures_per_user: int
    failures_per_address: int
    window_seconds: float


class SignInThrottle:
    """Counts failed sign-ins and blocks a user name or address that reached its limit.

    A key is blocked while its failures within the last `window_seconds` reach its
    limit. It is free again once the oldest of them leaves the window.
    A successful sign-in clears the user's failures but not the address's.
    NOTE: the counts live in this process's memory, so they restart with the
    server and are not shared between several API processes.
    """

    def __init__(self, limits: ThrottleLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, user_name: str, address: str) -> int | None:
        """Return the whole seconds to wait before the next attempt, or None when it is allowed."""
        now = self._clock()
        with self._lock:
            waits = [
                self._wait(("user", user_name), self._limits.failures_per_user, now),
                self._wait(("address", address), self._limits.failures_per_address, now),
            ]
        longest = max(waits)
        return math.ceil(longest) if longest > 0 else None

    def record_failure(self, user_name: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (("user", user_name), ("address", address)):
                times = self._failures.pop(key, None) or deque()
                self._prune(times, now)
                times.append(now)
                self._failures[key] = times
            while len(self._failures) > MAX_TRACKED_KEYS:
                self._failures.popitem(last=False)

    def record_success(self, user_name: str) -> None:
        with self._lock:
            self._failures.pop(("user", user_name), None)

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        self._prune(times, now)
        if len(times) < limit:
            return 0.0
        # The attempt is allowed once enough failures have left the window to go below the limit.
        return times[len(times) - limit] + self._limits.window_seconds - now

    def _prune(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self._limits.window_seconds:
            times.popleft()
