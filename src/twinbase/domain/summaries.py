"""Change summaries: what each completed changeset inserted, updated and deleted (elements with their
models, and row counts per table), stored when the changeset completes, for incremental exports and
element comparisons. Functions take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from twinbase.bim.changeset import ChangeSummary
from twinbase.store.models import Changeset, ChangesetElement

_OPS = (("i", "elements_inserted"), ("u", "elements_updated"), ("d", "elements_deleted"))
_IN_CHUNK = 500  # ids per IN (...) list: well under every backend's bound-parameter limit


def _signed(value: int) -> int:
    """An unsigned Id64 as SQLite stores it (and so as the BigInteger column holds it)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def record(
    session: Session, cs: Changeset, summary: ChangeSummary, state_models: Mapping[int, int] | None = None
) -> None:
    """Store what the completed changeset changed: rows per table, and each element with its model.

    An updated element's model is not in its update row. It comes from ``state_models`` (signed ids
    to signed model ids, read from the file the completion made by applying the changeset), else
    from the element's most recent insert earlier in this timeline (BIS never moves an element to
    another model); failing both it stays NULL until a checkpoint is materialized (``fill_models``).
    """
    assert cs.index is not None
    cs.table_changes = {name: [t.inserts, t.updates, t.deletes] for name, t in summary.tables.items()}
    known: dict[int, int] = dict(state_models or {})
    updated = [e for e in (_signed(e) for e in summary.elements_updated) if e not in known]
    for start in range(0, len(updated), _IN_CHUNK):
        chunk = updated[start : start + _IN_CHUNK]
        rows = session.execute(
            select(ChangesetElement.element_id, ChangesetElement.model_id)
            .where(
                ChangesetElement.imodel_id == cs.imodel_id,
                ChangesetElement.element_id.in_(chunk),
                ChangesetElement.model_id.is_not(None),
            )
            .order_by(ChangesetElement.changeset_index)
        )
        known.update(
            {element: model for element, model in rows if model is not None and element not in known}
        )
    models = {_signed(e): _signed(m) for e, m in summary.element_models.items()}
    rows_to_add = [
        {
            "imodel_id": cs.imodel_id,
            "changeset_index": cs.index,
            "element_id": _signed(element),
            "op": op,
            "model_id": models.get(_signed(element), known.get(_signed(element))),
        }
        for op, name in _OPS
        for element in getattr(summary, name)
    ]
    if rows_to_add:
        session.execute(insert(ChangesetElement), rows_to_add)


def fill_models(session: Session, imodel_id: str, models: Mapping[int, int]) -> None:
    """Fill in the models of summary rows still without one, from a materialized file's
    ``bis_Element`` (``models``: signed element id to signed model id).

    One statement executed for all rows (executemany): a hundred changesets of updates to baseline
    elements leave thousands of rows to fill, and one UPDATE call each cost seconds."""
    missing = session.scalars(
        select(ChangesetElement.element_id)
        .where(ChangesetElement.imodel_id == imodel_id, ChangesetElement.model_id.is_(None))
        .distinct()
    ).all()
    rows = [{"element": element, "model": models[element]} for element in missing if element in models]
    if not rows:
        return
    table = cast(Table, ChangesetElement.__table__)
    session.execute(
        update(table)
        .where(
            table.c.imodel_id == imodel_id,
            table.c.element_id == bindparam("element"),
            table.c.model_id.is_(None),
        )
        .values(model_id=bindparam("model")),
        rows,
    )


def element_changes(
    session: Session, imodel_id: str, after_index: int, last_index: int
) -> dict[str, dict[int, int | None]]:
    """The net element changes from the state at ``after_index`` to the state at ``last_index``:
    ``{"inserted"|"updated"|"deleted": {element id (signed): model id or None}}``. An element
    inserted then deleted in the range is absent; inserted then updated is "inserted"."""
    state: dict[int, tuple[str, int | None]] = {}
    rows = session.execute(
        select(ChangesetElement.element_id, ChangesetElement.op, ChangesetElement.model_id)
        .where(
            ChangesetElement.imodel_id == imodel_id,
            ChangesetElement.changeset_index > after_index,
            ChangesetElement.changeset_index <= last_index,
        )
        .order_by(ChangesetElement.changeset_index)
    )
    for element, op, model in rows:
        before = state.get(element)
        if before is None:
            state[element] = (op, model)
        elif before[0] == "i" and op == "d":
            del state[element]
        elif before[0] == "i":
            state[element] = ("i", model if model is not None else before[1])
        elif before[0] == "d" and op == "i":
            state[element] = ("u", model)
        else:
            state[element] = (op, model if model is not None else before[1])
    names = {"i": "inserted", "u": "updated", "d": "deleted"}
    result: dict[str, dict[int, int | None]] = {"inserted": {}, "updated": {}, "deleted": {}}
    for element, (op, model) in state.items():
        result[names[op]][element] = model
    return result
