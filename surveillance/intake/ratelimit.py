"""Request rate limits and sign-in lockouts, bounded in memory (least recently seen evicted)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """`allow(key)` spends one token; tokens refill at `per_minute` up to `burst`."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.per_minute = per_minute
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_minute / 60.0)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed

    def retry_after_seconds(self) -> int:
        return max(1, round(60.0 / self.per_minute))


class Lockout:
    """Failed sign-ins per key (an account or a client address), with lockout and backoff.

    After `threshold` failures in a row the key is locked for `base_seconds`; each further
    failure once the lock has run out locks it again for twice as long, up to
    `max_seconds`. While locked, the caller refuses the key without checking its password,
    so a locked-out guesser learns nothing, and those refusals do not count. A success
    clears the key; failures older than `forget_seconds` are forgotten. Bounded in memory
    like `RateLimiter`.
    """

    def __init__(
        self,
        threshold: int,
        base_seconds: float,
        max_seconds: float,
        forget_seconds: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or not 0 < base_seconds <= max_seconds or forget_seconds <= 0:
            raise ValueError("need threshold >= 1 and 0 < base_seconds <= max_seconds")
        self.threshold = threshold
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.forget_seconds = forget_seconds
        self.max_keys = max_keys
        self._clock = clock
        # key -> (failures in a row, locked until, last failure)
        self._state: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """Seconds the key stays locked (0 when it is not)."""
        now = self._clock()
        with self._lock:
            state = self._state.get(key)
        return max(0.0, state[1] - now) if state is not None else 0.0

    def failed(self, key: str) -> float:
        """Count a failure; returns the lockout it starts, in seconds (0 for none)."""
        now = self._clock()
        with self._lock:
            failures, _, last = self._state.pop(key, (0, 0.0, now))
            if now - last > self.forget_seconds:
                failures = 0
            failures += 1
            lock = 0.0
            if failures >= self.threshold:
                doublings = min(60, failures - self.threshold)
                lock = min(self.max_seconds, self.base_seconds * 2.0**doublings)
            self._state[key] = (failures, now + lock, now)
            while len(self._state) > self.max_keys:
                self._state.popitem(last=False)
            return lock

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)
