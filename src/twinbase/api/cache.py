"""A short-lived, per-process cache of rendered GET responses for the hottest reads.

Correctness rules:
- the key always holds the caller's user id, the full query and the headers that shape the body,
  so one user never sees another's answer;
- every committed write in this process bumps ``Database.generation`` and so empties the cache
  at once: a client that writes and then reads always sees its write;
- across worker processes an entry lives at most ``read_cache_seconds`` (default 2 s): that is the
  longest another process may serve a stale read, e.g. after a member was removed.
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


class ResponseCache:
    MAX_ENTRIES = 20_000

    def __init__(self, db: Database, ttl_seconds: float) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._entries: OrderedDict[Hashable, tuple[int, float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            generation, expires, body = hit
            if generation != self.db.generation or expires < time.monotonic():
                del self._entries[key]
                return None
            return body

    def put(self, key: Hashable, generation: int, body: bytes) -> None:
        if self.ttl <= 0 or generation != self.db.generation:
            return  # something was written while this answer was computed: do not keep it
        with self._lock:
            self._entries[key] = (generation, time.monotonic() + self.ttl, body)
            if len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)

    async def respond(self, key: Hashable, compute: Callable[[], Response]) -> Response:
        """The cached body for ``key``, or ``compute()``'s answer (cached if 200).

        ``compute`` must be a short read: it runs on the event loop for SQLite, in a thread otherwise.
        """
        body = self.get(key)
        if body is not None:
            return JSON.from_bytes(body)
        generation = self.db.generation
        if self.db.is_sqlite:
            # A local SQLite read takes well under a millisecond; handing it to a thread costs more
            # than that, and threads then fight the event loop for the GIL.
            response = compute()
        else:
            response = await run_in_threadpool(compute)
        if response.status_code == 200 and isinstance(response, JSON):
            self.put(key, generation, bytes(response.body))
        return response
