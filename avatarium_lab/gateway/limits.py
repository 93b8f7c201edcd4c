"""Rate limits: user messages per minute per API key (a sliding one-minute window, on an injectable clock).

Kept in process memory: with several replicas behind a load balancer each enforces its own window, so the
effective limit is per replica (sticky sessions by conversation keep a client on one replica; see the README).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 60.0


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count one message for ``key``; None if allowed, else the seconds until one is (``Retry-After``)."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(0.001, hits[0] + WINDOW - now)
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle keys so the table stays bounded
                for k in [k for k, v in self._hits.items() if not v or v[-1] <= now - WINDOW]:
                    del self._hits[k]
            return None
