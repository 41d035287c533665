"""State every process and host of one deployment shares, in Redis (``TWINBASE_REDIS_URL``).

Without Redis each process keeps its own (``api.limits.TokenBucket``, ``api.cache.ResponseCache``), which
is exact for one process. With several processes or hosts they must agree:

- **rate limits**: one token bucket per caller for the whole deployment (``take``), an atomic Lua script
  on Redis' own clock, so hosts whose clocks drift still share one budget;
- **the read cache's generation**: every committed write anywhere bumps one counter (``bump``), and a
  cached answer is served only while the counter is what it was when the answer was computed
  (``generation``). A member removed on one host is seen by the next read on every other.

Redis failing is not an outage: ``take`` answers None (the caller falls back to its own bucket) and
``generation`` answers None (the caller serves no cached answer), each logged once a minute at most.
Keys are ``<prefix>:...`` (``TWINBASE_REDIS_PREFIX``), so deployments may share a Redis.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

import redis
import redis.asyncio as aredis

log = logging.getLogger("twinbase.shared")

# KEYS[1] the bucket, KEYS[2] the generation; ARGV rate (tokens per second), burst. Answers the seconds
# to wait ("0": taken) and the deployment's generation: a request's one round trip to Redis serves both
# its rate limit and its read cache.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = t
end
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
elseif rate > 0 then
  wait = (1 - tokens) / rate
else
  wait = 60
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(t))
local ttl = 60000
if rate > 0 then
  ttl = math.ceil(burst / rate * 1000) + 1000
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {tostring(wait), redis.call('GET', KEYS[2]) or '0'}
"""

#: The generation the current request's ``take`` read along (each request is one task: a context
#: variable is the request's own).
_REQUEST_GENERATION: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "twinbase_request_generation", default=None
)

#: Seconds a Redis call may take before the caller goes on without it.
TIMEOUT = 0.5
_COMPLAIN_EVERY = 60.0


class SharedState:
    """One deployment's shared state on the Redis at ``url``."""

    def __init__(self, url: str, prefix: str = "twinbase") -> None:
        self.url = url
        self.prefix = prefix
        options: dict[str, Any] = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
        self._sync = redis.Redis.from_url(url, **options)
        self._async: aredis.Redis | None = None
        self._async_loop: Any = None
        self._options = options
        self._generation_key = f"{prefix}:generation"
        # EVALSHA: the script's text crosses the wire once per connection pool, not on every request.
        self._take_sync = self._sync.register_script(_TAKE)
        self._take_async: Any = None
        self._complained = 0.0
        self._lock = threading.Lock()

    # -- read cache generation (``bump``: from the commit hook, in request threads)

    def bump(self) -> None:
        """A write was committed in this process: every process's cached answers are stale."""
        try:
            self._sync.incr(self._generation_key)
        except redis.RedisError as exc:
            self._complain("bump the shared generation", exc)

    async def generation_async(self) -> int | None:
        """The deployment's write counter, or None when Redis cannot say (serve nothing cached): what this
        request's ``take`` read along, else a read."""
        along = _REQUEST_GENERATION.get()
        if along is not None:
            return along
        try:
            value = await self._async_client().get(self._generation_key)
        except (redis.RedisError, OSError) as exc:
            self._complain("read the shared generation", exc)
            return None
        return int(value) if value is not None else 0

    # -- rate limits (async: called on the event loop by the edge middleware)

    async def take(self, client: str, per_second: float, burst: float) -> float | None:
        """Take one token from ``client``'s bucket: 0, or the seconds to wait; None when Redis failed."""
        try:
            self._async_client()
            wait, generation = await self._take_async(
                keys=[f"{self.prefix}:rate:{client}", self._generation_key],
                args=[repr(per_second), repr(burst)],
            )
        except (redis.RedisError, OSError) as exc:
            self._complain("take a rate-limit token", exc)
            return None
        _REQUEST_GENERATION.set(int(generation))
        return float(wait)

    def take_sync(self, client: str, per_second: float, burst: float) -> float | None:
        """As ``take``, from a thread."""
        try:
            wait, _ = self._take_sync(
                keys=[f"{self.prefix}:rate:{client}", self._generation_key],
                args=[repr(per_second), repr(burst)],
            )
        except (redis.RedisError, OSError) as exc:
            self._complain("take a rate-limit token", exc)
            return None
        return float(wait)

    def _async_client(self) -> aredis.Redis:
        import asyncio

        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            # A connection pool belongs to the event loop that made it (each uvicorn worker has one).
            self._async = aredis.Redis.from_url(self.url, **self._options)
            self._async_loop = loop
            self._take_async = self._async.register_script(_TAKE)
        return self._async

    def _complain(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._complained < _COMPLAIN_EVERY:
                return
            self._complained = now
        log.warning("Redis at %s: cannot %s (%s); going on without it", self.url, what, exc)

    def ping(self) -> None:
        """Raise when Redis is unreachable (``serve`` checks it once at start)."""
        self._sync.ping()

    def close(self) -> None:
        self._sync.close()
