"""Rate limits: token buckets per caller, this process's own or the deployment's (Redis).

``Limiter`` is what the API uses: with ``TWINBASE_REDIS_URL`` every process and host takes from one bucket
per caller (``store.shared``); without it, or while Redis fails, each process keeps its own
(``TokenBucket``), which is exact for one process.
"""

from __future__ import annotations

import heapq
import threading
import time

from twinbase.store.shared import SharedState


class TokenBucket:
    """Per-client token buckets; ``take`` answers 0 or the seconds to wait.

    The table is bounded by ``max_clients``. When a new client finds it full, buckets that have
    refilled are dropped first (a fresh bucket is the same thing), then the fullest ones, down to 90%:
    a client that has spent its budget keeps its bucket however many others come and go, and the
    table is never cleared at once (which would hand everyone a fresh burst)."""

    def __init__(self, per_minute: int, burst: int, max_clients: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self.max_clients = max(max_clients, 1)
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._state.get(client)
            if state is None:
                if len(self._state) >= self.max_clients:
                    self._make_room(now)
                state = (self.burst, now)
            tokens = self._level(state, now)
            if tokens >= 1.0:
                self._state[client] = (tokens - 1.0, now)
                return 0.0
            self._state[client] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0

    def __len__(self) -> int:
        return len(self._state)

    def _level(self, state: tuple[float, float], now: float) -> float:
        tokens, last = state
        return min(self.burst, tokens + (now - last) * self.rate)

    def _make_room(self, now: float) -> None:
        keep = min(self.max_clients - 1, self.max_clients * 9 // 10)
        levels = {client: self._level(state, now) for client, state in self._state.items()}
        for client, level in levels.items():
            if level >= self.burst:
                del self._state[client]
        excess = len(self._state) - keep
        if excess > 0:
            for client in heapq.nlargest(excess, self._state, key=levels.__getitem__):
                del self._state[client]


class Limiter:
    """A named rate limit: ``per_minute`` tokens a minute, up to ``burst`` at once, per caller."""

    def __init__(
        self, name: str, per_minute: int, burst: int, max_clients: int, shared: SharedState | None
    ) -> None:
        self.name = name
        self.per_second = per_minute / 60.0
        self.burst = float(max(burst, 1))
        self.local = TokenBucket(per_minute, burst, max_clients)
        self.shared = shared

    async def take(self, client: str) -> float:
        """0, or the seconds ``client`` must wait (on the event loop)."""
        if self.shared is not None:
            wait = await self.shared.take(f"{self.name}:{client}", self.per_second, self.burst)
            if wait is not None:
                return wait
        return self.local.take(client)

    def take_now(self, client: str) -> float:
        """As ``take``, from a request thread."""
        if self.shared is not None:
            wait = self.shared.take_sync(f"{self.name}:{client}", self.per_second, self.burst)
            if wait is not None:
                return wait
        return self.local.take(client)
