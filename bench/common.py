"""Helpers the benchmark scripts share (each script runs as ``python bench/<name>.py``, so this
module is importable as ``common``)."""

from __future__ import annotations

import json
import socket
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(
    base: str, token: str, method: str, path: str, body: dict[str, object] | None = None
) -> dict[str, object]:
    """One JSON call to the API with a bearer token; the decoded answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as resp:
        payload: dict[str, object] = json.loads(resp.read() or b"{}")
        return payload
