"""A short-lived, per-process cache of rendered GET responses for the hottest reads.

Correctness rules:
- the key always holds the caller's user id, the full query and the headers that shape the body,
  so one user never sees another's answer;
- every committed write in this process bumps ``Database.generation`` and so empties the cache
  at once: a client that writes and then reads always sees its write;
- across processes and hosts, with Redis (``store.shared``): every committed write anywhere bumps the
  deployment's generation, and an entry is served only while that generation is the one it was computed
  under (one Redis GET per hit), so no process serves an answer older than the last write, e.g. after a
  member was removed; when Redis cannot answer, nothing cached is served;
- without Redis, the app turns the cache off when ``twinbase serve`` runs several worker processes
  (``app.read_cache_seconds``): another process's write would go unseen for up to ``read_cache_seconds``.
Only 200 answers are cached; errors are always computed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from twinbase.api.http import JSON
from twinbase.store.db import Database
from twinbase.store.shared import SharedState

# (this process's generation, the deployment's or None without Redis)
Generation = tuple[int, int | None]


class ResponseCache:
    MAX_ENTRIES = 20_000

    def __init__(self, db: Database, ttl_seconds: float, shared: SharedState | None = None) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self.shared = shared
        self._entries: OrderedDict[Hashable, tuple[Generation, float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    async def generation(self) -> Generation | None:
        """Now's generation; None when the deployment's cannot be read (then nothing is cached)."""
        local = self.db.generation
        if self.shared is None:
            return (local, None)
        shared = await self.shared.generation_async()
        return None if shared is None else (local, shared)

    def get(self, key: Hashable, now: Generation | None) -> bytes | None:
        """The entry of ``key`` if it was computed under generation ``now``."""
        if self.ttl <= 0 or now is None:
            return None
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            generation, expires, body = hit
            if expires < time.monotonic() or generation != now:
                del self._entries[key]
                return None
            return body

    def put(self, key: Hashable, generation: Generation | None, body: bytes) -> None:
        if self.ttl <= 0 or generation is None or generation[0] != self.db.generation:
            return  # something was written while this answer was computed: do not keep it
        with self._lock:
            self._entries[key] = (generation, time.monotonic() + self.ttl, body)
            if len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)

    async def respond(self, key: Hashable, compute: Callable[[], Response]) -> Response:
        """The cached body for ``key``, or ``compute()``'s answer (cached if 200).

        ``compute`` must be a short read: it runs on the event loop for SQLite, in a thread otherwise.
        """
        generation = await self.generation() if self.ttl > 0 else None
        body = self.get(key, generation)
        if body is not None:
            return JSON.from_bytes(body)
        if self.db.is_sqlite:
            # A local SQLite read takes well under a millisecond; handing it to a thread costs more
            # than that, and threads then fight the event loop for the GIL.
            response = compute()
        else:
            response = await run_in_threadpool(compute)
        if response.status_code == 200 and isinstance(response, JSON):
            self.put(key, generation, bytes(response.body))
        return response
