#!/usr/bin/env python3
"""Load benchmark: twinbase ``GET /itwins/{id}`` and ``GET /itwins/?$top=100`` against a bare hello app,
with one uvicorn worker process and with two.

What it does (every loop bounded in time and count, loopback only, one server running at a time):

1. measures these configurations, in this order (``--workers 1,2`` picks the worker counts):

   ============================  =======================================================================
   ``hello x1``                  a tiny FastAPI app, one ``async def`` hello endpoint, served the way
                                 ``twinbase serve`` serves twinbase (uvicorn, same options, app factory;
                                 httptools/uvloop when installed), one worker
   ``twinbase x1``               ``twinbase serve --workers 1`` (embedded SQLite, a temp data dir, a free
                                 port): the per-process read cache is on
   ``hello x2``                  the hello app with ``--workers 2``
   ``twinbase x2 (cache off)``   ``twinbase serve --workers 2`` without Redis: each process would keep its
                                 own read cache, blind to the other's writes, so twinbase turns it off
                                 (see ``TWINBASE_REDIS_URL`` in settings.py)
   ``twinbase x2 +Redis``        ``--workers 2`` with ``TWINBASE_REDIS_URL`` (``--redis-url``, default the
                                 local Redis, db 0) and a ``TWINBASE_REDIS_PREFIX`` unique to the run: the
                                 read cache is on, checked against the deployment's write generation in
                                 Redis, and the rate-limit buckets live in Redis (one ``EVAL`` per
                                 request). The run's keys are deleted afterwards (``SCAN``/``DEL`` on the
                                 prefix). ``--redis-for-one`` adds ``twinbase x1 +Redis``: what Redis
                                 costs apart from the second worker
   ============================  =======================================================================

   Every twinbase configuration serves the same data dir (SQLite database, signing keys), so the token and
   the iTwins are made once, by the first twinbase configuration: ``twinbase token`` and ``--itwins``
   iTwins (default 200) created over the API. twinbase is not modified;
2. for each endpoint of a configuration, from separate load-generator processes, after a ``--warmup``:
   - max throughput: closed loop, ``--connections`` keep-alive connections for ``--duration`` seconds
     (``wrk`` when available, else a uvloop/asyncio raw-HTTP generator);
   - latency at a fixed rate (``--rate``, default 200 requests/s), open loop: request *i* is due at
     ``t0 + i/rate`` whatever happened before, latency counts from that due time (so queueing inside
     the generator or the server is not hidden), on a pool of keep-alive connections;
3. prints one table: per configuration and endpoint req/s (``req/s``), the ratio to hello with the same
   worker count (``/hello``), the ratio to the same app and endpoint with one worker (``/x1``), p50/p99/max
   at the fixed rate, and the cores used during the throughput run by the server (all its processes, its
   workers in brackets), its Redis (``INFO cpu``), the generator, the kernel's interrupt work (``net``:
   irq + softirq, mostly loopback TCP, charged to no process) and every other process (``other``), plus the
   server's cores during the fixed-rate run. A run during which other processes took more than 0.2 cores
   says so in its notes: its figures are skewed. Then it checks the targets.

The server and the generator share the machine: on a 2-core host the generator takes up to a core of
its own, so two server workers cannot both get a full core while it runs (the table's CPU columns show
where the cores went); the ``/x1`` column is what a second worker brings on *this* machine.

The rate limiter stays in the request path but with a ceiling no benchmark reaches (the default,
6000/min per token, would turn most of a 200 req/s run into 429s).

    PYTHONPATH=$PWD/src .venv/bin/python bench/itwins_load.py [--duration 6] [--rate 200] [--workers 1,2]

The default run (5 configurations, 8 endpoint runs of warm-up + throughput + fixed rate) takes about
2.5 minutes.

Targets, checked for twinbase as it may be deployed: one worker (``twinbase x1``, ``x1 +Redis``) and
several workers sharing a Redis (``twinbase xN +Redis``). Several workers without Redis is the fallback
that settings.py describes (Redis is "needed when several processes or hosts serve one deployment"; without
it the read cache is off): shown for what the cache is worth, not checked. For ``GET /itwins/{id}`` and
``GET /itwins/?$top=100`` of each checked configuration, against hello with the same number of workers:

- throughput >= 50% of hello's;
- p99 at the fixed rate < 20 ms;
- no non-200 answer or socket error in any of their runs.

Exit status: 0 when every target is met, 1 otherwise (the missed ones are listed), 2 when a server or
Redis cannot be started.

Internal entry points (used by the script itself): ``--hello-server PORT`` (with ``--hello-workers N``)
and ``--generate JSON``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

LOOPBACK = "127.0.0.1"
TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0
OTHER_BUSY = 0.2  # cores: more than this used elsewhere on the machine during a run is reported with it
CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_DIR = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------ hello server


def hello_app() -> FastAPI:
    """The bare app: one async JSON endpoint. A factory named by import string, because uvicorn can only
    start several workers from one (each worker process imports it afresh)."""
    from fastapi import FastAPI

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def run_hello_server(port: int, workers: int) -> None:
    """Serve :func:`hello_app` the way ``twinbase serve`` serves twinbase."""
    import uvicorn

    # Same options as twinbase.cli.serve: import string + factory, loop/http "auto" (uvloop/httptools when
    # installed), no access log. The module is found through PYTHONPATH (see start_hello).
    uvicorn.run(
        "itwins_load:hello_app",
        factory=True,
        host=LOOPBACK,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )


# ------------------------------------------------------------------------------------ load generator
# Runs in its own process (``--generate``): raw HTTP/1.1 over asyncio streams, uvloop when installed.
# Parsing is minimal (status line, Content-Length, body) so the generator spends its CPU on sockets.


def _request_bytes(path: str, host: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "User-Agent: twinbase-bench"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = _CL.search(head)
        if m is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        length = int(m.group(1))
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(pct / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """``connections`` workers, each sending its next request as soon as the previous answer is read."""
    host, port, duration = spec["host"], spec["port"], float(spec["duration"])
    requests = [_request_bytes(p, f"{host}:{port}", spec["headers"]) for p in spec["paths"]]
    counts = {"ok": 0, "bad": 0, "errors": 0}
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker(offset: int) -> None:
        try:
            conn = await Conn.open(host, port)
        except OSError:
            counts["errors"] += 1
            return
        i = offset
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                status = await asyncio.wait_for(conn.get(requests[i % len(requests)]), timeout=10)
                latencies.append(time.perf_counter() - t)
                counts["ok" if status == 200 else "bad"] += 1
                i += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError):
            counts["errors"] += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker(k * 7) for k in range(int(spec["connections"])))), timeout=duration + 30
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "mode": "closed",
        "elapsed": elapsed,
        "completed": counts["ok"] + counts["bad"],
        "non200": counts["bad"],
        "errors": counts["errors"],
        "rps": (counts["ok"] + counts["bad"]) / elapsed,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
    }


async def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Request ``i`` is due at ``t0 + i / rate``; latency runs from the due time to the last body byte."""
    host, port = spec["host"], spec["port"]
    rate, duration = float(spec["rate"]), float(spec["duration"])
    max_conns = int(spec["max_connections"])
    requests = [_request_bytes(p, f"{host}:{port}", spec["headers"]) for p in spec["paths"]]
    total = int(rate * duration)
    idle: deque[Conn] = deque([await Conn.open(host, port) for _ in range(min(4, max_conns))])
    opened = len(idle)
    freed = asyncio.Condition()
    latencies: list[float] = []
    lags: list[float] = []
    waits: list[float] = []
    counts = {"ok": 0, "bad": 0, "errors": 0}

    async def acquire() -> Conn:
        nonlocal opened
        async with freed:
            while True:
                if idle:
                    # FIFO: every pooled connection keeps being used, so none sits idle long enough for the
                    # server's keep-alive timeout (uvicorn: 5 s) to close it under our feet.
                    return idle.popleft()
                if opened < max_conns:
                    opened += 1
                    break
                await freed.wait()
        return await Conn.open(host, port)

    async def release(conn: Conn | None) -> None:
        nonlocal opened
        async with freed:
            if conn is None:
                opened -= 1
            else:
                idle.append(conn)
            freed.notify()

    async def one(i: int, due: float) -> None:
        conn: Conn | None = None
        lags.append(time.perf_counter() - due)  # how late the generator itself started this request
        try:
            t_acquire = time.perf_counter()
            conn = await acquire()
            waits.append(time.perf_counter() - t_acquire)  # queued for a connection (server is slow)
            status = await asyncio.wait_for(conn.get(requests[i % len(requests)]), timeout=10)
            latencies.append(time.perf_counter() - due)
            counts["ok" if status == 200 else "bad"] += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError):
            counts["errors"] += 1
            if conn is not None:
                conn.close()
                conn = None
            await release(None)
            return
        await release(conn)

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    sent_elapsed = time.perf_counter() - t0
    _done, pending = await asyncio.wait(tasks, timeout=15)
    for t in pending:
        t.cancel()
    for c in idle:
        c.close()
    latencies.sort()
    lags.sort()
    waits.sort()
    return {
        "mode": "open",
        "scheduled": total,
        "completed": counts["ok"] + counts["bad"],
        "non200": counts["bad"],
        "errors": counts["errors"],
        "unanswered": len(pending),  # still waiting 15 s after the last request was due: overload
        "achieved_rate": total / sent_elapsed if sent_elapsed > 0 else float("nan"),
        "connections_used": opened,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p90_ms": _percentile(latencies, 90) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        "start_lag_p99_ms": _percentile(lags, 99) * 1000,
        "conn_wait_p99_ms": _percentile(waits, 99) * 1000,
    }


def run_generator(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    coro = closed_loop(spec) if spec["mode"] == "closed" else open_loop(spec)
    result = asyncio.run(coro)
    print(json.dumps(result))


# ------------------------------------------------------------------------------------ orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        return fh.read().rsplit(")", 1)[1].split()


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """User + system CPU seconds of ``root`` and of every live descendant, by pid. uvicorn's workers are
    children of its supervisor: the supervisor's own counters would not include them until they exit."""
    parent_of: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except OSError:  # gone meanwhile
            continue
        parent_of[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent_of.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: cpu[pid] for pid in tree if pid in cpu}


@dataclass
class CpuDelta:
    total: float  # CPU seconds of the whole server tree
    busiest: list[float]  # CPU seconds of its busiest processes, one per worker, busiest first


def cpu_delta(before: dict[int, float], after: dict[int, float], workers: int) -> CpuDelta:
    per_pid = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    return CpuDelta(sum(per_pid.values()), sorted(per_pid.values(), reverse=True)[:workers])


@dataclass
class MachineCpu:
    """CPU seconds the whole machine spent, from /proc/stat."""

    processes: float  # user + nice + system: every process's own time
    interrupts: float  # irq + softirq: mostly the kernel's loopback TCP work, charged to no process
    steal: float  # taken by the hypervisor for other guests

    def __sub__(self, other: MachineCpu) -> MachineCpu:
        return MachineCpu(
            self.processes - other.processes, self.interrupts - other.interrupts, self.steal - other.steal
        )


def machine_cpu_seconds() -> MachineCpu:
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fh.readline().split()[1:9])
    return MachineCpu((user + nice + system) / CLK_TCK, (irq + softirq) / CLK_TCK, steal / CLK_TCK)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{url}: process exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ServiceError(f"{url} did not answer within {timeout} s")


class ServiceError(RuntimeError):
    """A server or Redis could not be started: exit status 2, not a missed target."""


@dataclass(frozen=True)
class Config:
    """One server setup to measure."""

    app: str  # "hello" or "twinbase"
    workers: int
    redis: bool = False

    @property
    def gated(self) -> bool:
        """Whether the targets apply: twinbase as it may be deployed, one process or several sharing a
        Redis (several without one is a fallback, shown for what the read cache is worth)."""
        return self.app == "twinbase" and (self.workers == 1 or self.redis)

    @property
    def label(self) -> str:
        if self.app == "hello":
            return f"hello x{self.workers}"
        if self.redis:
            return f"twinbase x{self.workers} +Redis"
        return f"twinbase x{self.workers}" + (" (cache off)" if self.workers > 1 else "")


@dataclass
class Service:
    config: Config
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    redis_url: str = ""  # the Redis it uses, whose CPU is then measured with the server's

    def stop(self) -> None:
        # SIGINT: uvicorn's supervisor then stops its workers and waits for them.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _log_file(path: Path) -> int:
    """A file descriptor for a child's output; the child keeps its own copy, ours is closed after spawn."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def server_env(rate_ceiling: int) -> dict[str, str]:
    env = {
        **os.environ,
        "TWINBASE_RATE_LIMIT_PER_MINUTE": str(rate_ceiling),
        "TWINBASE_RATE_LIMIT_BURST": str(rate_ceiling),
    }
    # The benchmark decides these; a developer's own settings must not leak into the figures.
    for name in (
        "TWINBASE_CONFIG",
        "TWINBASE_DATABASE_URL",
        "TWINBASE_DATA_DIR",
        "TWINBASE_PUBLIC_URL",
        "TWINBASE_WORKERS",
        "TWINBASE_REDIS_URL",
        "TWINBASE_REDIS_PREFIX",
        "TWINBASE_READ_CACHE_SECONDS",
        "TWINBASE_KEYS_DIR",
        "TWINBASE_SIGNING_KEY_FILE",
        "TWINBASE_URL_SIGNING_KEY_FILE",
    ):
        env.pop(name, None)
    return env


@contextmanager
def start_service(config: Config, work: Path, data_dir: Path, env: dict[str, str]) -> Iterator[Service]:
    port = free_port()
    log = work / f"{config.label.replace(' ', '_').replace('(', '').replace(')', '')}.log"
    if config.app == "twinbase":
        cmd = [sys.executable, "-m", "twinbase", "serve", "--host", LOOPBACK, "--port", str(port)]
        cmd += ["--data-dir", str(data_dir), "--workers", str(config.workers)]
        health = f"http://{LOOPBACK}:{port}/health"
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--hello-server", str(port)]
        cmd += ["--hello-workers", str(config.workers)]
        # uvicorn's worker processes import the app by name: make this script's folder importable.
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))}
        health = f"http://{LOOPBACK}:{port}/hello"
    fd = _log_file(log)
    proc = subprocess.Popen(cmd, env=env, stdout=fd, stderr=subprocess.STDOUT, cwd=work)
    os.close(fd)
    service = Service(config, proc, port, log, env.get("TWINBASE_REDIS_URL", ""))
    try:
        wait_http(health, proc, log)
        wait_workers(service)
        yield service
    finally:
        service.stop()


def wait_workers(service: Service, timeout: float = 90) -> None:
    """Until every worker process of ``service`` has started: the supervisor answers as soon as the first
    worker listens, and a run begun before the second one has imported the app would measure one worker.
    A worker counts as started once its CPU time stops growing (the import and startup are done)."""
    if service.config.workers == 1:
        return
    deadline = time.monotonic() + timeout
    last: dict[int, float] = {}
    while time.monotonic() < deadline:
        cpu = tree_cpu_seconds(service.proc.pid)
        workers = {pid: s for pid, s in cpu.items() if pid != service.proc.pid and _is_spawned_worker(pid)}
        settled = all(s - last.get(pid, -1.0) < 0.05 for pid, s in workers.items())
        if len(workers) >= service.config.workers and settled:
            return
        last = workers
        time.sleep(0.5)
    raise ServiceError(f"{service.config.label}: {service.config.workers} workers not up in {timeout} s")


def _is_spawned_worker(pid: int) -> bool:
    """uvicorn starts its workers with multiprocessing's spawn; this tells them from the supervisor's
    other helpers (multiprocessing's resource tracker)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"spawn_main" in fh.read()
    except OSError:
        return False


def mint_token(data_dir: Path) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinbase",
            "token",
            "--user",
            "bench-user",
            "--email",
            "bench@example.com",
            "--name",
            "Bench User",
            "--expires",
            "7200",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def create_itwins(base: str, token: str, count: int) -> list[str]:
    import httpx

    ids: list[str] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        for i in range(count):
            resp = c.post(
                "/itwins/",
                json={
                    "class": "Endeavor",
                    "subClass": "Project",
                    "displayName": f"Bench project {i:04d}",
                    "number": f"BENCH-{i:04d}",
                },
            )
            if resp.status_code != 201:
                raise RuntimeError(f"create iTwin {i}: {resp.status_code} {resp.text}")
            ids.append(resp.json()["iTwin"]["id"])
        # Sanity checks on what is about to be measured.
        one = c.get(f"/itwins/{ids[0]}")
        assert one.status_code == 200 and one.json()["iTwin"]["id"] == ids[0], one.text
        page = c.get("/itwins/", params={"$top": "100"})
        assert page.status_code == 200 and len(page.json()["iTwins"]) == 100, page.text[:500]
    return ids


@dataclass
class Target:
    label: str
    port: int
    paths: list[str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    config: str
    app: str
    workers: int
    endpoint: str
    gated: bool = False  # checked against the targets
    rps: float = float("nan")
    tool: str = ""
    detail: str = ""
    server_cpu: float = float("nan")  # cores (CPU seconds per wall second), every process of the server
    server_split: list[float] = field(default_factory=list)  # cores, its busiest processes
    redis_cpu: float = 0.0  # cores: the Redis the server uses
    gen_cpu: float = float("nan")
    other_cpu: float = float("nan")  # cores: processes other than the server and the generator (Redis too)
    kernel_cpu: float = float("nan")  # cores: irq + softirq (the loopback network)
    steal_cpu: float = float("nan")
    fixed_other_cpu: float = float("nan")
    fixed: dict[str, Any] = field(default_factory=dict)
    fixed_server_cpu: float = float("nan")
    fixed_redis_cpu: float = 0.0
    fixed_gen_cpu: float = float("nan")


@dataclass
class Measured:
    out: str
    wall: float
    server: CpuDelta
    gen_cpu: float  # CPU seconds of the generator
    machine: MachineCpu
    redis_cpu: float  # CPU seconds of the Redis the server uses (0 without one)

    def cores(self) -> tuple[float, float, float, float, float, float]:
        """Cores used by: the server, its Redis, the generator, other processes, interrupts, the
        hypervisor."""
        other = max(0.0, self.machine.processes - self.server.total - self.redis_cpu - self.gen_cpu)
        w = self.wall
        return (
            self.server.total / w,
            self.redis_cpu / w,
            self.gen_cpu / w,
            other / w,
            self.machine.interrupts / w,
            self.machine.steal / w,
        )


def _run_measured(cmd: list[str], service: Service, timeout: float) -> Measured:
    """Run the generator ``cmd`` against ``service``, measuring the CPU each side used meanwhile."""
    s0 = tree_cpu_seconds(service.proc.pid)
    r0 = redis_cpu_seconds(service.redis_url)
    m0 = machine_cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    s1 = tree_cpu_seconds(service.proc.pid)
    m1 = machine_cpu_seconds()
    r1 = redis_cpu_seconds(service.redis_url)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{out}\n{err}")
    return Measured(
        out,
        wall,
        cpu_delta(s0, s1, service.config.workers),
        usage.ru_utime + usage.ru_stime,
        m1 - m0,
        r1 - r0,
    )


def generator_cmd(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--generate", json.dumps(spec)]


def wrk_script(target: Target, work: Path) -> Path:
    lua = work / f"wrk-{abs(hash(target.label))}.lua"
    paths = ", ".join(json.dumps(p) for p in target.paths)
    hdrs = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items())
    lua.write_text(
        f"local paths = {{{paths}}}\nlocal n = 0\n{hdrs}\n"
        'request = function()\n  n = n + 1\n  return wrk.format("GET", paths[(n % #paths) + 1])\nend\n'
    )
    return lua


def throughput(
    target: Target, service: Service, args: argparse.Namespace, work: Path, wrk: str | None
) -> RunResult:
    cfg = service.config
    res = RunResult(
        cfg.label, cfg.app, cfg.workers, target.label, gated=cfg.gated and target.label in (ONE, LIST)
    )
    if wrk:
        cmd = [
            wrk,
            "-t",
            str(args.wrk_threads),
            "-c",
            str(args.connections),
            "-d",
            f"{args.duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(wrk_script(target, work)),
            f"http://{LOOPBACK}:{target.port}/",
        ]
        m = _run_measured(cmd, service, args.duration + 60)
        rps = re.search(r"Requests/sec:\s*([\d.]+)", m.out)
        if not rps:
            raise RuntimeError(f"cannot read wrk output:\n{m.out}")
        res.rps = float(rps.group(1))
        res.tool = f"wrk -t{args.wrk_threads} -c{args.connections}"
        problems = []
        if (bad := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", m.out)) is not None:
            problems.append(f"{bad.group(1)} non-2xx")
        if (sock := re.search(r"Socket errors:(.*)", m.out)) is not None:
            problems.append(f"socket errors:{sock.group(1)}")
        res.detail = "; ".join(problems)
    else:
        spec = {
            "mode": "closed",
            "host": LOOPBACK,
            "port": target.port,
            "paths": target.paths,
            "headers": target.headers,
            "connections": args.connections,
            "duration": args.duration,
        }
        m = _run_measured(generator_cmd(spec), service, args.duration + 60)
        data = json.loads(m.out.strip().splitlines()[-1])
        res.rps = data["rps"]
        res.tool = f"python asyncio -c{args.connections}"
        if data["non200"] or data["errors"]:
            res.detail = f"{data['non200']} non-200, {data['errors']} errors"
    res.server_cpu, res.redis_cpu, res.gen_cpu, res.other_cpu, res.kernel_cpu, res.steal_cpu = m.cores()
    res.server_split = [s / m.wall for s in m.server.busiest]
    return res


def fixed_rate(target: Target, service: Service, args: argparse.Namespace, res: RunResult) -> None:
    spec = {
        "mode": "open",
        "host": LOOPBACK,
        "port": target.port,
        "paths": target.paths,
        "headers": target.headers,
        "rate": args.rate,
        "duration": args.duration,
        "max_connections": args.connections,
    }
    m = _run_measured(generator_cmd(spec), service, args.duration + 60)
    res.fixed = json.loads(m.out.strip().splitlines()[-1])
    res.fixed_server_cpu, res.fixed_redis_cpu, res.fixed_gen_cpu, res.fixed_other_cpu, _, _ = m.cores()


def warm_up(target: Target, service: Service, seconds: float) -> None:
    spec = {
        "mode": "closed",
        "host": LOOPBACK,
        "port": target.port,
        "paths": target.paths,
        "headers": target.headers,
        "connections": 8,
        "duration": seconds,
    }
    _run_measured(generator_cmd(spec), service, seconds + 60)


def find_wrk(args: argparse.Namespace) -> str | None:
    if args.generator == "python":
        return None
    wrk = shutil.which("wrk")
    if wrk is None and args.install_wrk and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found; trying 'apt-get install -y wrk' ...", flush=True)
        with suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, timeout=180, check=False)
        wrk = shutil.which("wrk")
    if wrk is None and args.generator == "wrk":
        raise SystemExit("--generator wrk: wrk is not installed")
    if wrk is None:
        print("wrk not available: using the Python asyncio generator for throughput", flush=True)
    return wrk


# ------------------------------------------------------------------------------------ Redis


def redis_check(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceError(
            f"Redis at {url} cannot be reached ({exc}); --redis-url '' skips that run"
        ) from None
    finally:
        client.close()


def redis_cpu_seconds(url: str) -> float:
    """The CPU seconds Redis reports having used (user + system, all its threads); 0 without ``url``."""
    if not url:
        return 0.0
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def redis_cleanup(url: str, prefix: str) -> int:
    """Delete the keys twinbase made under this run's prefix; how many there were."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


# ------------------------------------------------------------------------------------ main


ONE = "GET /itwins/{id}"
LIST = "GET /itwins/?$top=100"
HELLO = "GET /hello"
HEALTH = "GET /health"


def configurations(worker_counts: list[int], redis_url: str, redis_for_one: bool) -> list[Config]:
    configs: list[Config] = []
    for n in worker_counts:
        configs += [Config("hello", n), Config("twinbase", n)]
        if redis_url and (n > 1 or redis_for_one):
            configs.append(Config("twinbase", n, redis=True))
    return configs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per measurement (default 6)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per endpoint (default 2)")
    ap.add_argument(
        "--rate", type=float, default=200.0, help="fixed request rate for latency (default 200/s)"
    )
    ap.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    ap.add_argument("--itwins", type=int, default=200, help="iTwins to create (default 200)")
    ap.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated uvicorn worker counts to measure, each for hello and twinbase (default 1,2)",
    )
    ap.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="Redis for the 'twinbase xN +Redis' runs (worker counts > 1); '' skips them",
    )
    ap.add_argument(
        "--redis-for-one",
        action="store_true",
        help="also measure 'twinbase x1 +Redis' (one worker with Redis)",
    )
    ap.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="throughput load generator (default: wrk when installed)",
    )
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument(
        "--no-install-wrk",
        dest="install_wrk",
        action="store_false",
        help="never try 'apt-get install wrk' (tried only as root when wrk is missing)",
    )
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dir (and server logs)")
    ap.add_argument(
        "--health", action="store_true", help="also measure twinbase's /health in each twinbase configuration"
    )
    ap.add_argument("--hello-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hello-workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hello_server:
        run_hello_server(args.hello_server, args.hello_workers)
        return 0
    if args.generate:
        run_generator(args.generate)
        return 0
    try:
        worker_counts = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        ap.error("--workers: comma-separated integers, e.g. 1,2")
    if not (
        1 <= args.duration <= 300
        and 1 <= args.rate <= 10_000
        and 1 <= args.connections <= 1024
        and 100 <= args.itwins <= 5000
        and worker_counts
        and all(1 <= w <= 16 for w in worker_counts)
    ):
        ap.error(
            "out of range: duration 1..300 s, rate 1..10000/s, connections 1..1024, itwins 100..5000, "
            "workers 1..16"
        )

    wrk = find_wrk(args)
    configs = configurations(worker_counts, args.redis_url, args.redis_for_one)
    work = Path(tempfile.mkdtemp(prefix="twinbase-bench-"))
    data_dir = work / "data"
    # Unique to this run, so its keys are told apart from any other user of the same Redis and removed.
    redis_prefix = f"twinbase-bench-{uuid.uuid4().hex[:12]}"
    print(f"cpus: {os.cpu_count()}  python: {sys.version.split()[0]}  work dir: {work}", flush=True)
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (other processes on this machine skew the figures)",
        flush=True,
    )
    started = time.perf_counter()
    results: list[RunResult] = []
    token = ""
    ids: list[str] = []
    try:
        if any(c.redis for c in configs):
            redis_check(args.redis_url)
        for cfg in configs:
            env = server_env(rate_ceiling=1_000_000_000)
            if cfg.redis:
                env |= {"TWINBASE_REDIS_URL": args.redis_url, "TWINBASE_REDIS_PREFIX": redis_prefix}
            try:
                with start_service(cfg, work, data_dir, env) as svc:
                    targets = []
                    if cfg.app == "hello":
                        targets.append(Target(HELLO, svc.port, ["/hello"]))
                    else:
                        if not ids:  # the first twinbase configuration; the others share its data dir
                            token = mint_token(data_dir)
                            t = time.perf_counter()
                            ids = create_itwins(f"http://{LOOPBACK}:{svc.port}", token, args.itwins)
                            print(f"created {len(ids)} iTwins in {time.perf_counter() - t:.1f} s", flush=True)
                        auth = {"Authorization": f"Bearer {token}"}
                        targets.append(Target(ONE, svc.port, [f"/itwins/{i}" for i in ids], auth))
                        targets.append(Target(LIST, svc.port, ["/itwins/?$top=100"], auth))
                        if args.health:
                            # Informational: twinbase's own async /health (no auth, no database) shows what
                            # the twinbase app's middleware and routing cost before any endpoint work.
                            targets.append(Target(HEALTH, svc.port, ["/health"]))
                    for target in targets:
                        print(
                            f"-- {cfg.label}, {target.label}: warm-up {args.warmup:g} s, throughput "
                            f"{args.duration:g} s, {args.rate:g} req/s for {args.duration:g} s",
                            flush=True,
                        )
                        warm_up(target, svc, args.warmup)
                        res = throughput(target, svc, args, work, wrk)
                        fixed_rate(target, svc, args, res)
                        results.append(res)
            finally:
                if cfg.redis:
                    try:
                        removed = redis_cleanup(args.redis_url, redis_prefix)
                        print(f"removed {removed} Redis keys under {redis_prefix}:", flush=True)
                    except Exception as exc:  # report it, and keep the run's own error if there is one
                        print(f"could not remove the Redis keys under {redis_prefix}: ({exc})", flush=True)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}; run took {time.perf_counter() - started:.0f} s")
    failures = report(results, args)
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in results], indent=2, default=str))
    return 0 if not failures else 1


def _find(results: list[RunResult], app: str, workers: int, endpoint: str) -> RunResult | None:
    for r in results:
        if r.app == app and r.workers == workers and r.endpoint == endpoint and "Redis" not in r.config:
            return r
    return None


def report(results: list[RunResult], args: argparse.Namespace) -> list[str]:
    print()
    print(
        f"{'configuration':<24} {'endpoint':<21} {'req/s':>6} {'/hello':>6} {'/x1':>5} | {'p50 ms':>6} "
        f"{'p99 ms':>7} {'max ms':>7} | {'CPU at max: srv (workers)':<25} {'redis':>5} {'gen':>4} {'net':>4} "
        f"{'other':>5} | {'srv@rate':>8} | notes"
    )
    for r in results:
        f = r.fixed
        notes = []
        if r.detail:
            notes.append(r.detail)
        if f.get("non200") or f.get("errors"):
            notes.append(f"@rate: {f['non200']} non-200, {f['errors']} connection errors")
        if f.get("unanswered"):
            notes.append(
                f"@rate: {f['unanswered']} of {f['scheduled']} unanswered (p50/p99 cover answered only)"
            )
        if f.get("achieved_rate", args.rate) < 0.98 * args.rate:
            notes.append(f"@rate: generator reached only {f['achieved_rate']:.0f}/s")
        if f.get("conn_wait_p99_ms", 0) > 1:
            notes.append(
                f"@rate: overloaded, queued up to {f['conn_wait_p99_ms']:.0f} ms (p99) for one of "
                f"{f['connections_used']} connections"
            )
        if max(r.other_cpu, r.fixed_other_cpu) > OTHER_BUSY:
            notes.append(
                f"machine not quiet: other processes took {r.other_cpu:.2f} cores at max, "
                f"{r.fixed_other_cpu:.2f} at rate"
            )
        if r.steal_cpu > OTHER_BUSY:
            notes.append(f"hypervisor steal {r.steal_cpu:.2f} cores at max")
        if r.app == "twinbase" and not r.gated:
            notes.append(
                "informational" if r.endpoint == HEALTH else "not checked: several workers need Redis"
            )
        hello = _find(results, "hello", r.workers, HELLO)
        ratio = f"{r.rps / hello.rps:>6.2f}" if hello else f"{'-':>6}"
        one = _find(results, r.app, 1, r.endpoint)
        scale = f"{r.rps / one.rps:>5.2f}" if one and r.workers > 1 else f"{'':>5}"
        split = " (" + "+".join(f"{c:.2f}" for c in r.server_split) + ")" if r.workers > 1 else ""
        redis_cores = f"{r.redis_cpu:>5.2f}" if r.config.endswith("Redis") else f"{'':>5}"
        print(
            f"{r.config:<24} {r.endpoint:<21} {r.rps:>6.0f} {ratio} {scale} | {f['p50_ms']:>6.2f} "
            f"{f['p99_ms']:>7.2f} {f['max_ms']:>7.2f} | {f'{r.server_cpu:.2f}{split}':<25} {redis_cores} "
            f"{r.gen_cpu:>4.2f} {r.kernel_cpu:>4.2f} {r.other_cpu:>5.2f} | {r.fixed_server_cpu:>8.2f} | "
            f"{'; '.join(notes)}"
        )
    tool = results[0].tool if results else ""
    print(
        f"\nthroughput: {tool}, {args.duration:g} s each, after {args.warmup:g} s of warm-up.  latency: open "
        f"loop at {args.rate:g} req/s for {args.duration:g} s, up to {args.connections} keep-alive "
        "connections, timed from each request's due time (queueing included)."
    )
    print(
        "/hello: req/s over hello's with the same workers.  /x1: req/s over the same app and endpoint with "
        "one worker."
    )
    print(
        f"CPU (of {os.cpu_count()} cores): cores used (CPU seconds per wall second) during the throughput "
        "run by the server (all its processes; in brackets its workers), its Redis (INFO cpu), the "
        "generator, the kernel's interrupt work (irq + softirq: mostly the loopback TCP) and the other "
        "processes on the machine; srv@rate: the server during the fixed-rate run."
    )
    lag = max((r.fixed.get("start_lag_p99_ms", 0.0) for r in results), default=0.0)
    print(f"generator start lag at {args.rate:g} req/s: p99 <= {lag:.2f} ms over all runs.")

    failures = []
    for r in results:
        if not r.gated:
            continue
        hello = _find(results, "hello", r.workers, HELLO)
        what = f"{r.config}, {r.endpoint}"
        if hello is not None and r.rps < TARGET_RATIO * hello.rps:
            failures.append(
                f"{what}: {r.rps:.0f} req/s is {r.rps / hello.rps:.0%} of hello x{r.workers} (target >= 50%)"
            )
        if not r.fixed["p99_ms"] < TARGET_P99_MS:
            failures.append(f"{what}: p99 {r.fixed['p99_ms']:.1f} ms at {args.rate:g} req/s (target < 20 ms)")
        if r.fixed.get("non200") or r.fixed.get("errors") or r.detail:
            failures.append(f"{what}: non-200 answers or socket errors during the runs")
    print()
    print("targets: " + ("all met" if not failures else "MISSED\n  " + "\n  ".join(failures)))
    return failures


if __name__ == "__main__":
    sys.exit(main())
