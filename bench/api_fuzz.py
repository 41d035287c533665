#!/usr/bin/env python3
"""The OpenAPI document against the running server: schemathesis generates requests from
``/openapi.json`` and checks every answer against it, as a member (a user with an iTwin and an
iModel of their own, so lists and links have something to walk).

Counted, each must be 0: server errors, undocumented status codes, answers that break their schema,
wrong content types or headers, a 405 without ``Allow``, and an operation that ignores a missing or
bad token. Prints the number of generated cases and each failure class.

    .venv/bin/python bench/api_fuzz.py [--examples 60]              # starts its own server (SQLite)
    .venv/bin/python bench/api_fuzz.py --base-url URL --token JWT   # against a running server

Exit status 0 when nothing was found. ``tests/test_openapi.py`` runs it with a small budget on every
backend; the issue's measurement is ``--examples 60`` (over 10,000 cases).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import api, free_port

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "unsupported_method",
        "ignored_auth",
    )
)


def seed_member(base: str, token: str, workdir: Path) -> Path:
    """An iTwin and an empty iModel owned by the token's user, and a schemathesis config that uses
    their ids for half of the generated ids: random ids alone only ever reach the 404 branch."""
    project = {"class": "Endeavor", "subClass": "Project", "displayName": "Fuzz"}
    itwin_id = str(api(base, token, "POST", "/itwins", project)["iTwin"]["id"])  # type: ignore[index]
    imodel = api(base, token, "POST", "/imodels", {"iTwinId": itwin_id, "name": "Fuzzed iModel"})
    imodel_id = str(imodel["iModel"]["id"])  # type: ignore[index]
    config = workdir / "schemathesis.toml"
    config.write_text(
        f"""
[dictionaries.itwins]
values = ["{itwin_id}"]

[dictionaries.imodels]
values = ["{imodel_id}"]

[parameters]
"path.itwin_id" = {{ dictionary = "itwins", probability = 0.5 }}
"query.iTwinId" = {{ dictionary = "itwins", probability = 0.5 }}
"path.imodel_id" = {{ dictionary = "imodels", probability = 0.5 }}
"query.iModelId" = {{ dictionary = "imodels", probability = 0.5 }}
"""
    )
    return config


def run(
    base: str, token: str, examples: int, workdir: Path, seed: int | None, config: Path
) -> dict[str, int]:
    """Run schemathesis; answer ``{"cases": N, "<failure class>": count, ...}``."""
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{base}/openapi.json",
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--no-color",
        "--warnings",
        "off",
        "--request-timeout",
        "30",
    ]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=3600)
    (workdir / "schemathesis.txt").write_text(out.stdout + out.stderr)
    counts: dict[str, int] = {}
    generated = re.search(r"(\d+) generated", out.stdout)
    counts["cases"] = int(generated.group(1)) if generated else 0
    summary = out.stdout.split("SUMMARY", 1)[-1]
    for name, n in re.findall(r"❌ (ST\d+ [^:\n]+): (\d+)", summary):
        counts[name] = int(n)
    errors = (
        re.search(r"🚫 ([^:\n]+): (\d+)", summary.split("Errors:", 1)[-1]) if "Errors:" in summary else None
    )
    if errors:
        counts[f"error: {errors.group(1)}"] = int(errors.group(2))
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=60, help="schemathesis --max-examples per operation")
    parser.add_argument("--base-url")
    parser.add_argument("--token")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twinbase-fuzz-") as tmp:
        work = Path(tmp)
        server = None
        base, token = args.base_url, args.token
        if base is None:
            port = free_port()
            data = work / "data"
            env = {**os.environ, "TWINBASE_RATE_LIMIT_PER_MINUTE": "0"}
            server = subprocess.Popen(
                [sys.executable, "-m", "twinbase", "serve", "--port", str(port), "--data-dir", str(data)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            token = subprocess.run(
                [sys.executable, "-m", "twinbase", "token", "--user", "fuzzer", "--data-dir", str(data)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        assert token, "--token is required with --base-url"
        try:
            config = seed_member(base, token, work)
            started = time.monotonic()
            counts = run(base, token, args.examples, work, args.seed, config)
            elapsed = time.monotonic() - started
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
        failures = {k: v for k, v in counts.items() if k != "cases"}
        if args.json:
            print(json.dumps({**counts, "seconds": round(elapsed, 1)}))
        else:
            print(f"schemathesis: {counts['cases']} generated cases in {elapsed:.0f} s, as a member")
            for name, n in sorted(failures.items()):
                print(f"  {name}: {n}")
            if not failures:
                print("  no failures: 0 server errors, 0 undocumented statuses, 0 schema violations")
        if failures:
            print((work / "schemathesis.txt").read_text()[-20000:], file=sys.stderr)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
