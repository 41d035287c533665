"""iTwins export jobs (placeholder until the exports module lands)."""

from __future__ import annotations

from typing import Any


def register(svc: Any) -> None:
    """Register the export job handler with the service's job queue."""
