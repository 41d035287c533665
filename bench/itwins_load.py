#!/usr/bin/env python3
"""Load benchmark: twinbase ``GET /itwins/{id}`` and ``GET /itwins/?$top=100`` against a bare hello app.

What it does (every loop bounded in time and count, loopback only):

1. starts ``twinbase serve`` (embedded SQLite, a temp data dir, a free port) and, beside it, a tiny
   FastAPI app with one ``async def`` hello endpoint on the same stack (uvicorn, one worker, the same
   uvicorn options as ``twinbase serve``; httptools/uvloop when installed). twinbase is not modified;
2. mints a token with ``twinbase token`` and creates ``--itwins`` iTwins (default 200);
3. from separate load-generator processes measures, for each endpoint,
   - max throughput: closed loop, ``--connections`` keep-alive connections for ``--duration`` seconds
     (``wrk`` when available, else a uvloop/asyncio raw-HTTP generator);
   - latency at a fixed rate (``--rate``, default 200 requests/s), open loop: request *i* is due at
     ``t0 + i/rate`` whatever happened before, latency counts from that due time (so queueing inside
     the generator or the server is not hidden), on a pool of keep-alive connections;
4. prints a table (req/s, p50/p99 at the fixed rate, ratio to hello) with the CPU used by the server
   and by the generator during each run, and checks the targets.

The rate limiter stays in the request path but with a ceiling no benchmark reaches (the default,
6000/min per token, would turn most of a 200 req/s run into 429s).

    /tmp/tbvenv/bin/python bench/itwins_load.py [--duration 10] [--rate 200] [--connections 32]

Exit status: 0 when every target is met (twinbase GET one and list >= 50% of hello's throughput, p99 < 20 ms
at the fixed rate), 1 otherwise.

Internal entry points (used by the script itself): ``--hello-server PORT`` and ``--generate JSON``.
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
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------ hello server


def run_hello_server(port: int) -> None:
    """A bare FastAPI app, one async JSON endpoint, served like ``twinbase serve`` serves twinbase."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    # Same options as twinbase.cli.serve: one worker, loop/http "auto" (uvloop/httptools when installed).
    uvicorn.run(
        app, host=LOOPBACK, port=port, workers=1, log_level="warning", access_log=False, proxy_headers=True
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


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and its reaped threads) from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> tuple[float, float]:
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / CLK_TCK, sum(parts) / CLK_TCK


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _log_file(path: Path) -> int:
    """A file descriptor for a child's output; the child keeps its own copy, ours is closed after spawn."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


@contextmanager
def services(work: Path, rate_ceiling: int) -> Iterator[tuple[Service, Service, Path]]:
    data_dir = work / "data"
    env = {
        **os.environ,
        "TWINBASE_RATE_LIMIT_PER_MINUTE": str(rate_ceiling),
        "TWINBASE_RATE_LIMIT_BURST": str(rate_ceiling),
    }
    for name in ("TWINBASE_CONFIG", "TWINBASE_DATABASE_URL", "TWINBASE_DATA_DIR", "TWINBASE_PUBLIC_URL"):
        env.pop(name, None)
    started: list[Service] = []
    try:
        tb_port = free_port()
        tb_log = work / "twinbase.log"
        tb_fd = _log_file(tb_log)
        tb = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twinbase",
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                str(tb_port),
                "--data-dir",
                str(data_dir),
            ],
            env=env,
            stdout=tb_fd,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        os.close(tb_fd)
        started.append(Service("twinbase", tb, tb_port, tb_log))
        hello_port = free_port()
        hello_log = work / "hello.log"
        hello_fd = _log_file(hello_log)
        hello = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--hello-server", str(hello_port)],
            env=env,
            stdout=hello_fd,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        os.close(hello_fd)
        started.append(Service("hello", hello, hello_port, hello_log))
        wait_http(f"http://{LOOPBACK}:{tb_port}/health", tb, tb_log)
        wait_http(f"http://{LOOPBACK}:{hello_port}/hello", hello, hello_log)
        yield started[0], started[1], data_dir
    finally:
        for svc in reversed(started):
            svc.stop()


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
    rps: float = float("nan")
    tool: str = ""
    detail: str = ""
    server_cpu: float = float("nan")  # cores (CPU seconds per wall second)
    gen_cpu: float = float("nan")
    machine_cpu: float = float("nan")
    fixed: dict[str, Any] = field(default_factory=dict)
    fixed_server_cpu: float = float("nan")
    fixed_gen_cpu: float = float("nan")


def _run_measured(
    cmd: list[str], server_pid: int, timeout: float
) -> tuple[str, float, float, float, float, int]:
    """Run ``cmd``; answer (stdout, wall, server CPU s, generator CPU s, machine busy s, returncode)."""
    s0 = proc_cpu_seconds(server_pid)
    m0, _ = machine_busy_seconds()
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
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{out}\n{err}")
    s1 = proc_cpu_seconds(server_pid)
    m1, _ = machine_busy_seconds()
    return out, wall, s1 - s0, usage.ru_utime + usage.ru_stime, m1 - m0, proc.returncode


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
    target: Target, server_pid: int, args: argparse.Namespace, work: Path, wrk: str | None
) -> RunResult:
    res = RunResult()
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
        out, wall, scpu, gcpu, mcpu, _ = _run_measured(cmd, server_pid, args.duration + 60)
        m = re.search(r"Requests/sec:\s*([\d.]+)", out)
        if not m:
            raise RuntimeError(f"cannot read wrk output:\n{out}")
        res.rps = float(m.group(1))
        res.tool = f"wrk -t{args.wrk_threads} -c{args.connections}"
        problems = []
        if (bad := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)) is not None:
            problems.append(f"{bad.group(1)} non-2xx")
        if (sock := re.search(r"Socket errors:(.*)", out)) is not None:
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
        out, wall, scpu, gcpu, mcpu, _ = _run_measured(generator_cmd(spec), server_pid, args.duration + 60)
        data = json.loads(out.strip().splitlines()[-1])
        res.rps = data["rps"]
        res.tool = f"python asyncio -c{args.connections}"
        if data["non200"] or data["errors"]:
            res.detail = f"{data['non200']} non-200, {data['errors']} errors"
    res.server_cpu, res.gen_cpu, res.machine_cpu = scpu / wall, gcpu / wall, mcpu / wall
    return res


def fixed_rate(target: Target, server_pid: int, args: argparse.Namespace, res: RunResult) -> None:
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
    out, wall, scpu, gcpu, _mcpu, _ = _run_measured(generator_cmd(spec), server_pid, args.duration + 60)
    res.fixed = json.loads(out.strip().splitlines()[-1])
    res.fixed_server_cpu, res.fixed_gen_cpu = scpu / wall, gcpu / wall


def warm_up(target: Target, server_pid: int, seconds: float) -> None:
    spec = {
        "mode": "closed",
        "host": LOOPBACK,
        "port": target.port,
        "paths": target.paths,
        "headers": target.headers,
        "connections": 8,
        "duration": seconds,
    }
    _run_measured(generator_cmd(spec), server_pid, seconds + 60)


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per endpoint (default 2)")
    ap.add_argument(
        "--rate", type=float, default=200.0, help="fixed request rate for latency (default 200/s)"
    )
    ap.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    ap.add_argument("--itwins", type=int, default=200, help="iTwins to create (default 200)")
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
    ap.add_argument("--no-health", action="store_true", help="skip the informational twinbase /health row")
    ap.add_argument("--hello-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hello_server:
        run_hello_server(args.hello_server)
        return 0
    if args.generate:
        run_generator(args.generate)
        return 0
    if not (
        1 <= args.duration <= 300
        and 1 <= args.rate <= 10_000
        and 1 <= args.connections <= 1024
        and 100 <= args.itwins <= 5000
    ):
        ap.error("out of range: duration 1..300 s, rate 1..10000/s, connections 1..1024, itwins 100..5000")

    wrk = find_wrk(args)
    work = Path(tempfile.mkdtemp(prefix="twinbase-bench-"))
    print(f"cpus: {os.cpu_count()}  python: {sys.version.split()[0]}  work dir: {work}", flush=True)
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (other processes on this machine skew the figures)",
        flush=True,
    )
    results: dict[str, RunResult] = {}
    try:
        with services(work, rate_ceiling=1_000_000_000) as (tb, hello, data_dir):
            token = mint_token(data_dir)
            t = time.perf_counter()
            ids = create_itwins(f"http://{LOOPBACK}:{tb.port}", token, args.itwins)
            print(f"created {len(ids)} iTwins in {time.perf_counter() - t:.1f} s", flush=True)
            auth = {"Authorization": f"Bearer {token}"}
            targets = [
                (Target(ONE, tb.port, [f"/itwins/{i}" for i in ids], auth), tb),
                (Target(LIST, tb.port, ["/itwins/?$top=100"], auth), tb),
                (Target(HELLO, hello.port, ["/hello"]), hello),
            ]
            if not args.no_health:
                # Informational: twinbase's own async /health (no auth, no database) shows what the twinbase
                # app's middleware and routing cost before any endpoint work.
                targets.append((Target(HEALTH, tb.port, ["/health"]), tb))
            for target, svc in targets:
                print(
                    f"-- {target.label}: warm-up {args.warmup:g} s, throughput {args.duration:g} s, "
                    f"{args.rate:g} req/s for {args.duration:g} s",
                    flush=True,
                )
                warm_up(target, svc.proc.pid, args.warmup)
                res = throughput(target, svc.proc.pid, args, work, wrk)
                fixed_rate(target, svc.proc.pid, args, res)
                results[target.label] = res
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    failures = report(results, args)
    if args.json:
        args.json.write_text(json.dumps({k: vars(v) for k, v in results.items()}, indent=2, default=str))
    return 0 if not failures else 1


ONE = "GET /itwins/{id}"
LIST = "GET /itwins/?$top=100"
HELLO = "hello (bare FastAPI)"
HEALTH = "twinbase GET /health"


def report(results: dict[str, RunResult], args: argparse.Namespace) -> list[str]:
    hello_rps = results[HELLO].rps
    print()
    print(
        f"{'endpoint':<22} {'req/s':>7} {'ratio':>6} | {'p50 ms':>7} {'p99 ms':>8} {'max ms':>8} "
        f"| {'CPU at max: srv gen other':>26} | {'CPU at rate: srv gen':>20} | notes"
    )
    for label, r in results.items():
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
        if label == HEALTH:
            notes.append("informational")
        other = max(0.0, r.machine_cpu - r.server_cpu - r.gen_cpu)
        print(
            f"{label:<22} {r.rps:>7.0f} {r.rps / hello_rps:>6.2f} | {f['p50_ms']:>7.2f} {f['p99_ms']:>8.2f} "
            f"{f['max_ms']:>8.2f} | {r.server_cpu:>10.2f} {r.gen_cpu:>6.2f} {other:>7.2f}  "
            f"| {r.fixed_server_cpu:>11.2f} {r.fixed_gen_cpu:>6.2f}  | {'; '.join(notes)}"
        )
    first = next(iter(results.values()))
    print(
        f"\nthroughput: {first.tool}, {args.duration:g} s each.  latency: open loop at {args.rate:g} "
        f"req/s for {args.duration:g} s, up to {args.connections} keep-alive connections, timed from each "
        "request's due time (queueing included)."
    )
    print(
        f"CPU: cores used (CPU seconds per wall second) by the server process, the generator process and "
        f"everything else on the machine ({os.cpu_count()} cores) during the run."
    )
    lag = max(r.fixed.get("start_lag_p99_ms", 0.0) for r in results.values())
    print(f"generator start lag at {args.rate:g} req/s: p99 <= {lag:.2f} ms over all runs.")

    failures = []
    for label in (ONE, LIST):
        r = results[label]
        if r.rps < TARGET_RATIO * hello_rps:
            failures.append(f"{label}: {r.rps:.0f} req/s is {r.rps / hello_rps:.0%} of hello (target >= 50%)")
        if not r.fixed["p99_ms"] < TARGET_P99_MS:
            failures.append(
                f"{label}: p99 {r.fixed['p99_ms']:.1f} ms at {args.rate:g} req/s (target < 20 ms)"
            )
        if r.fixed.get("non200") or r.detail:
            failures.append(f"{label}: non-200 answers or socket errors during the runs")
    print()
    print("targets: " + ("all met" if not failures else "MISSED\n  " + "\n  ".join(failures)))
    return failures


if __name__ == "__main__":
    sys.exit(main())
