"""Checkpoints: a whole .bim at a changeset. Index 0 is the baseline.

Until the file engine produces exact checkpoints at every changeset, a request for changeset k
answers the nearest preceding checkpoint that exists (reference §5.4, §7.1), with a working
download link, so clients replay the changesets after it.
"""

from __future__ import annotations

import bisect
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from twinbase.errors import CheckpointNotFound
from twinbase.store.models import Checkpoint


def at_or_before(session: Session, imodel_id: str, index: int) -> Checkpoint:
    """The newest successful checkpoint at or before ``index``; 404 ``CheckpointNotFound`` if none."""
    checkpoint = session.scalar(
        select(Checkpoint)
        .where(
            Checkpoint.imodel_id == imodel_id,
            Checkpoint.changeset_index <= index,
            Checkpoint.state == "successful",
        )
        .order_by(Checkpoint.changeset_index.desc())
        .limit(1)
    )
    if checkpoint is None:
        raise CheckpointNotFound()
    return checkpoint


def successful_indexes(session: Session, imodel_id: str) -> list[int]:
    """Indexes of the iModel's successful checkpoints, ascending (for many look-ups in one list page)."""
    return list(
        session.scalars(
            select(Checkpoint.changeset_index)
            .where(Checkpoint.imodel_id == imodel_id, Checkpoint.state == "successful")
            .order_by(Checkpoint.changeset_index)
        )
    )


def nearest(indexes: list[int], index: int) -> int | None:
    """The greatest of the ascending ``indexes`` that is ``<= index``; None when there is none."""
    pos = bisect.bisect_right(indexes, index)
    return indexes[pos - 1] if pos else None


def to_wire(checkpoint: Checkpoint, download: dict[str, str] | None) -> dict[str, Any]:
    """``directoryAccessInfo`` stays null: twinbase serves plain (V1) .bim checkpoints, not CloudSqlite."""
    return {
        "changesetId": checkpoint.changeset_id,
        "changesetIndex": checkpoint.changeset_index,
        "size": checkpoint.size,
        "state": checkpoint.state,
        "dbName": f"{checkpoint.changeset_id or 'baseline'}.bim",
        "directoryAccessInfo": None,
        "containerAccessInfo": None,
        "_links": {"download": download},
    }
