"""Replaying real iTwin.js changesets with twinbase (``twinbase.bim.replay``) gives what iTwin.js holds.

The "features" chain is made by the real backend (``compat/make-chain.mjs`` through
``tests/support/chains.py``, cached in ``.cache/chains``) on top of twinbase's own seed: models,
categories, a geometry part, boxes, spheres, cones, meshes, a 2D drawing, project extents, updates of
placement, geometry, label and jsonProperties, deletes, subcategory appearances, a code spec, a link-table
relationship, an ECSchema import whose 40 properties overflow the shared columns (DDL in the changeset),
aspects, a schema upgrade of tables that already hold rows, and later updates and deletes of all of them.
After each push, the generator kept the pushing briefcase (closed, WAL folded) as ``expected/<index>.bim``.

Node.js and the compat packages are required: without them the test fails, it never skips.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from support.bimtables import assert_same_content
from support.chains import Chain, load_chain, make_chain
from test_compat_imodels import ensure_native_modules
from twinbase.bim.changeset import compute_id, read_changeset
from twinbase.bim.replay import replay

# Changeset types as the hub reports them (bim-format.md §3.2).
REGULAR, SCHEMA = 0, 1


@pytest.fixture(scope="session")
def features_chain() -> Chain:
    ensure_native_modules()  # npm ci when compat/node_modules is missing or stale
    return load_chain(make_chain("features"))


@pytest.fixture
def replayed(features_chain: Chain, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the chain's baseline to replay onto."""
    target = tmp_path / "replayed.bim"
    shutil.copyfile(features_chain.baseline, target)
    yield target


def test_the_features_chain_is_what_the_profile_promises(features_chain: Chain) -> None:
    """The generator did what the replay test relies on: 7 linked changesets, two of them schema
    changesets whose prefix carries DDL (an overflow table, then columns added to it), and an expected
    state after every one."""
    chain = features_chain.changesets
    assert [c.index for c in chain] == list(range(1, 8))
    assert [c.changes_type for c in chain] == [REGULAR, REGULAR, SCHEMA, REGULAR, REGULAR, SCHEMA, REGULAR]
    for entry in chain:
        assert entry.expected is not None and entry.expected.exists(), entry
        with read_changeset(entry.path) as cs:
            assert cs.contains_schema_changes == (entry.changes_type == SCHEMA), entry.description
            if entry.index == 3:
                assert "CREATE TABLE [bis_GeometricElement3d_Overflow]" in cs.ddl, cs.ddl
                assert "ALTER TABLE [bis_GeometricElement3d] ADD COLUMN" in cs.ddl, cs.ddl
            elif entry.index == 6:
                assert "ALTER TABLE [bis_GeometricElement3d_Overflow] ADD COLUMN" in cs.ddl, cs.ddl
            else:
                assert cs.ddl == ""
            tables = cs.summary.tables
            if entry.index == 4:  # instances with aspects, an overflow row, a relationship, a code spec
                for table in (
                    "bis_GeometricElement3d_Overflow",
                    "bis_ElementUniqueAspect",
                    "bis_ElementMultiAspect",
                    "bis_ElementRefersToElements",
                    "bis_CodeSpec",
                ):
                    assert tables[table].inserts > 0, (table, tables)
            if entry.index == 5:  # and their updates and deletes
                assert tables["bis_GeometricElement3d_Overflow"].updates > 0, tables
                assert tables["bis_ElementUniqueAspect"].deletes > 0, tables
                assert tables["bis_ElementMultiAspect"].deletes > 0, tables
                assert tables["bis_ElementRefersToElements"].deletes > 0, tables


def test_changeset_ids_equal_the_hub_ids(features_chain: Chain) -> None:
    """Each file hashes, with its parent's id, to the id iTwin.js's hub gave it (bim-format.md §3.3)."""
    for entry in features_chain.changesets:
        assert compute_id(entry.path, entry.parent_id) == entry.id, entry.description


def test_expected_states_are_clean_briefcases_at_their_changeset(features_chain: Chain) -> None:
    """What iTwin.js holds after each push: a WAL-mode file with nothing left in a WAL or in dgn_Txns,
    recording the changeset it is at in be_Local (the form the replay is compared with)."""
    for entry in features_chain.changesets:
        assert entry.expected is not None
        header = entry.expected.read_bytes()[:100]
        assert header[18:20] == b"\x02\x02", "expected files are in WAL mode"
        db = apsw.Connection(
            f"file:{entry.expected}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        )
        try:
            local = dict(db.execute("SELECT Name, Val FROM be_Local").fetchall())
            assert local["ParentChangeSetId"] == entry.id
            assert local["parentChangeset"] == f'{{"id":"{entry.id}","index":{entry.index}}}'
            assert db.execute("SELECT count(*) FROM dgn_Txns").fetchone() == (0,)
        finally:
            db.close()


def test_replay_after_each_changeset_equals_itwinjs(features_chain: Chain, replayed: Path) -> None:
    """Applied one at a time onto the baseline, every change-tracked table equals iTwin.js's briefcase
    after the same changeset, row by row."""
    for entry in features_chain.changesets:
        replay(replayed, [entry.path])
        assert_same_content(replayed, features_chain.expected(entry.index))


def test_replay_of_the_whole_chain_at_once_equals_itwinjs(features_chain: Chain, replayed: Path) -> None:
    replay(replayed, [entry.path for entry in features_chain.changesets])
    assert_same_content(replayed, features_chain.expected(len(features_chain.changesets)))
