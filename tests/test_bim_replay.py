"""Changeset replay (bim/replay.py) on real files, compared with what iTwin.js itself made of them.

- ReadOnlyTest_2018-03: iTwin.js' own file after each of its 3 changesets is in the test data; the replay
  must equal it table by table, row by row (tests/support/bimtables.py), schema SQL and spatial index too.
- imodelhub-SeedFile (17) and imodels-clients-test-imodel (10): the whole chain, ids, element counts, and
  SQLite's own checks.
- Changesets made here by the iTwin.js backend (compat/replay-fixture.mjs, HubMock) on twinbase's empty seed,
  a schema import among them, compared with the pushing briefcase after each one.
- Bad input: wrong parent, twice the same changeset, a failure midway, files that are not (replayable)
  iModels: an error that says why, and the file as it was.
- make_checkpoint: the result opened by the real iTwin.js backend as a checkpoint
  (compat/open-checkpoint.mjs).

The real files are in ``../shared/data/bim`` (never copied into the repository); they are copied to tmp_path
before anything writes to them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest

from conftest import ROOT, SHARED_DATA
from support.bimtables import assert_same_content, change_tracked_tables, content_differences, open_readonly
from test_compat_itwins import _tool, ensure_node_modules
from twinbase.bim import dgnfuncs
from twinbase.bim.changeset import read_changeset
from twinbase.bim.identity import BimFormatError, read_identity, stamp
from twinbase.bim.replay import (
    ReplayError,
    UnsupportedProfileError,
    apply_changeset,
    current_changeset,
    make_checkpoint,
    missing_schema_objects,
    open_for_replay,
    patch_ddl,
    read_for_replay,
    replay,
)
from twinbase.bim.seed import write_empty_seed

BIM = SHARED_DATA / "bim"
CHAINS = BIM / "chains"
CLIENTS = CHAINS / "imodels-clients-test-imodel"
SEEDFILE = CHAINS / "imodelhub-SeedFile"
READONLY = CHAINS / "ReadOnlyTest_2018-03"
COMPAT = ROOT / "compat"


@dataclass(frozen=True)
class Chain:
    baseline: Path
    files: list[Path]
    ids: list[str]


def _exists(path: Path) -> Path:
    assert path.exists(), f"test data missing: {path} (see ../shared/data/README.md)"
    return path


def clients_chain() -> Chain:
    listing = json.loads(_exists(CLIENTS / "changesets.json").read_text())["changesets"]
    by_parent = {c["parentId"]: c for c in listing}
    ordered, parent = [], ""
    while parent in by_parent:  # the order is the parent chain, not the listing's
        ordered.append(by_parent[parent])
        parent = ordered[-1]["id"]
    assert len(ordered) == 10
    return Chain(
        CLIENTS / "baseline.bim", [CLIENTS / c["fileName"] for c in ordered], [c["id"] for c in ordered]
    )


def seedfile_chain() -> Chain:
    files = sorted(_exists(SEEDFILE).glob("*.cs"), key=lambda p: int(p.name.split("_")[0]))
    assert [int(p.name.split("_")[0]) for p in files] == list(range(17))
    baseline = _exists(SEEDFILE / "782ef159-0918-40bc-be40-1d5575130ee8.bim")
    return Chain(baseline, files, [p.stem.split("_", 1)[1] for p in files])


def readonly_chain() -> Chain:
    listing = json.loads(_exists(READONLY / "ReadOnlyTestChangeSets.json").read_text())
    props = sorted((c["properties"] for c in listing), key=lambda p: int(p["Index"]))
    assert [p["ParentId"] for p in props[1:]] == [p["Id"] for p in props[:-1]]
    return Chain(
        READONLY / "0" / "ReadOnlyTest.bim",
        [READONLY / "csets" / p["FileName"] for p in props],
        [p["Id"] for p in props],
    )


CHAINS_BY_NAME = {"clients": clients_chain, "seedfile": seedfile_chain, "readonly": readonly_chain}


def _copy(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_side_files(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(f"{path}{suffix}")
        assert not side.exists(), f"{side} was left behind"


def _element_count(path: Path) -> int:
    db = open_readonly(path)
    try:
        row = db.execute("SELECT count(*) FROM bis_Element").fetchone()
        assert row is not None
        return int(row[0])
    finally:
        db.close()


def _position(path: Path) -> tuple[str, int | None]:
    db = open_readonly(path)
    try:
        return current_changeset(db)
    finally:
        db.close()


def _expected_elements(chain: Chain, upto: int) -> int:
    count = _element_count(chain.baseline)
    for path in chain.files[:upto]:
        with read_changeset(path) as changeset:
            count += len(changeset.summary.elements_inserted) - len(changeset.summary.elements_deleted)
    return count


def _sqlite_checks(path: Path) -> None:
    db = open_readonly(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert missing_schema_objects(db) == []
    finally:
        db.close()


# --- the 2018 chain against iTwin.js' own files ------------------------------------------------------------


def test_readonly_2018_replays_to_what_itwinjs_made_after_each_changeset(tmp_path: Path) -> None:
    """The 2018 profile (ECDb 4.0.0.1, DgnDb 2.0.0.0) replays: every change-tracked table, the schema SQL and
    the spatial index equal iTwin.js' file after each changeset (dgn_SpatialIndex bounds bit for bit)."""
    chain = readonly_chain()
    work = _copy(chain.baseline, tmp_path / "ReadOnlyTest.bim")
    assert _position(work) == ("", 0)
    for index, (path, cs_id) in enumerate(zip(chain.files, chain.ids, strict=True), start=1):
        replay(work, [path], expected_ids=[cs_id])
        assert _position(work) == (cs_id, index)
        assert_same_content(work, READONLY / str(index) / "ReadOnlyTest.bim")
    _no_side_files(work)


def test_bimtables_reports_each_difference_readably(tmp_path: Path) -> None:
    """The comparison names table, primary key, column and both values (and is not vacuous)."""
    differences = content_differences(
        READONLY / "0" / "ReadOnlyTest.bim", READONLY / "1" / "ReadOnlyTest.bim"
    )
    assert any(d.startswith("bis_Element pk 2199023255553: missing") for d in differences), differences
    assert any(d.startswith("dgn_SpatialIndex pk 2199023255553: missing") for d in differences), differences
    work = _copy(READONLY / "1" / "ReadOnlyTest.bim", tmp_path / "changed.bim")
    with sqlite3.connect(work) as conn:
        # LastMod set too, or the file's own trigger stamps the time.
        conn.execute("UPDATE bis_Element SET UserLabel='changed', LastMod=1.5 WHERE Id=2199023255553")
    differences = content_differences(work, READONLY / "1" / "ReadOnlyTest.bim")
    assert differences == [
        "bis_Element pk 2199023255553 column LastMod: 1.5 != expected 2458183.9762850115",
        "bis_Element pk 2199023255553 column UserLabel: 'changed' != expected None",
    ]
    db = open_readonly(READONLY / "1" / "ReadOnlyTest.bim")
    try:
        tables = change_tracked_tables(db)
    finally:
        db.close()
    assert "bis_Element" in tables and "ec_Class" in tables and "dgn_fts_content" in tables
    assert not {"be_Local", "dgn_Txns", "dgn_SpatialIndex_node", "dgn_fts_idx_data"} & set(tables)


# --- whole chains -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["seedfile", "clients"])
def test_whole_chain_replays(tmp_path: Path, name: str) -> None:
    chain = CHAINS_BY_NAME[name]()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    done: list[int] = []
    replay(work, chain.files, progress=done.append, expected_ids=chain.ids)
    assert done == list(range(1, len(chain.files) + 1))
    assert _position(work) == (chain.ids[-1], len(chain.ids))
    assert _element_count(work) == _expected_elements(chain, len(chain.files))
    _sqlite_checks(work)
    # The file's own (rollback) journal mode is back, and nothing is left beside it.
    assert work.read_bytes()[18:20] == chain.baseline.read_bytes()[18:20] == b"\x01\x01"
    _no_side_files(work)


def test_ids_are_computed_along_the_chain_without_expected_ids(tmp_path: Path) -> None:
    """The position replay records is the id chain itself: SHA-1 of parent id, prefix and changeset."""
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    for index, path in enumerate(chain.files, start=1):
        replay(work, [path])
        assert _position(work) == (chain.ids[index - 1], index)


# --- changesets made here by iTwin.js, a schema import among them ---------------------------------------


@dataclass(frozen=True)
class Fixture:
    imodel_id: str
    itwin_id: str
    baseline: Path  # twinbase's empty seed stamped with the fixture's ids: what HubMock started from
    changesets: list[dict[str, Any]]


@pytest.fixture(scope="module")
def itwinjs_changesets(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    """Five changesets the iTwin.js backend pushed on twinbase's empty seed, with its briefcase after each."""
    ensure_node_modules()
    work = tmp_path_factory.mktemp("replay-fixture")
    seed = work / "seed.bim"
    write_empty_seed(seed)
    proc = subprocess.run(
        [_tool("node"), str(COMPAT / "replay-fixture.mjs"), "--baseline", str(seed),
         "--out", str(work / "out"), "--changesets", "5", "--elements", "6"],
        cwd=COMPAT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"replay-fixture.mjs failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout)
    assert [c["index"] for c in result["changesets"]] == [1, 2, 3, 4, 5]
    assert [c["changesType"] for c in result["changesets"]][:3] == [0, 1, 0]  # 2 is the schema import
    baseline = _copy(seed, work / "baseline.bim")
    stamp(baseline, imodel_id=result["iModelId"], itwin_id=result["iTwinId"])
    return Fixture(result["iModelId"], result["iTwinId"], baseline, result["changesets"])


def test_itwinjs_changesets_replay_to_the_pushing_briefcase(
    tmp_path: Path, itwinjs_changesets: Fixture
) -> None:
    """Replaying what iTwin.js 5.7 pushed (boxes, a schema with 40 properties and an aspect class, instances,
    moves, deletes) gives its briefcase's content after every changeset, schema changes included."""
    work = _copy(itwinjs_changesets.baseline, tmp_path / "replayed.bim")
    for changeset in itwinjs_changesets.changesets:
        replay(work, [changeset["pathname"]], expected_ids=[changeset["id"]])
        assert_same_content(work, changeset["snapshot"])
        assert _position(work) == (changeset["id"], changeset["index"])
    _sqlite_checks(work)
    db = open_readonly(work)
    try:
        assert db.execute("SELECT count(*) FROM ec_Class WHERE Name='Widget'").fetchone() == (1,)
    finally:
        db.close()
    # The seed is in WAL mode; so is the result, with the WAL folded in.
    assert work.read_bytes()[18:20] == b"\x02\x02"
    _no_side_files(work)


def test_schema_changeset_applies_inside_a_callers_transaction(
    tmp_path: Path, itwinjs_changesets: Fixture
) -> None:
    """apply_changeset nests in an open transaction (a savepoint), the DDL and the ec_* rows included."""
    work = _copy(itwinjs_changesets.baseline, tmp_path / "replayed.bim")
    first, schema = itwinjs_changesets.changesets[:2]
    replay(work, [first["pathname"]])
    with read_changeset(schema["pathname"]) as changeset:
        assert changeset.contains_schema_changes and "ALTER TABLE" in changeset.ddl
        db = open_for_replay(work)
        try:
            db.execute("BEGIN")
            apply_changeset(db, changeset, label="schema")
            db.execute("COMMIT")
        finally:
            db.close()
    assert_same_content(work, schema["snapshot"])


def test_schema_changeset_twice_is_refused_at_its_ddl(tmp_path: Path, itwinjs_changesets: Fixture) -> None:
    """Natively a failing DDL statement is only logged; here it stops the changeset, file untouched."""
    work = _copy(itwinjs_changesets.baseline, tmp_path / "replayed.bim")
    first, schema = itwinjs_changesets.changesets[:2]
    replay(work, [first["pathname"], schema["pathname"]])
    before = _digest(work)
    with pytest.raises(ReplayError, match=r"its DDL does not apply to the file \(duplicate column name: js"):
        replay(work, [schema["pathname"]])
    assert _digest(work) == before


def test_patch_ddl_leaves_out_unchanged_indexes(tmp_path: Path, itwinjs_changesets: Fixture) -> None:
    """PatchSlowDdlChanges: an index whose CREATE equals sqlite_master's is neither dropped nor created."""
    work = _copy(itwinjs_changesets.baseline, tmp_path / "replayed.bim")
    schema = itwinjs_changesets.changesets[1]
    with read_changeset(schema["pathname"]) as changeset:
        ddl = changeset.ddl
    db = open_for_replay(work)
    try:
        before = patch_ddl(db, ddl)
        assert [s for s in before if "INDEX" in s] == [
            "DROP INDEX IF EXISTS [ix_bis_GeometricElement3d_Overflow_ecclassid]",
            "CREATE INDEX [ix_bis_GeometricElement3d_Overflow_ecclassid]"
            " ON [bis_GeometricElement3d_Overflow]([ECClassId])",
        ]
        for sql in before:
            db.execute(sql)
        after = patch_ddl(db, ddl)
    finally:
        db.close()
    assert [s for s in after if "INDEX" in s] == []
    assert len(after) == len(before) - 2


def test_dgn_functions_reproduce_the_native_spatial_index() -> None:
    """DGN_* computed for every element of the sample files gives dgn_SpatialIndex as the native library
    wrote it: same float32 bounds (the native SQLite widens R-tree bounds differently from apsw's)."""
    files = sorted(BIM.glob("*.bim")) + sorted(BIM.glob("*.ibim")) + [READONLY / "3" / "ReadOnlyTest.bim"]
    assert len(files) >= 10
    checked = 0
    for path in files:
        db = open_readonly(path)
        try:
            dgnfuncs.register(db)
            computed = db.execute(
                "SELECT ElementId, DGN_bbox_value(bb,0), DGN_bbox_value(bb,3), DGN_bbox_value(bb,1),"
                " DGN_bbox_value(bb,4), DGN_bbox_value(bb,2), DGN_bbox_value(bb,5) FROM (SELECT ElementId,"
                " DGN_placement_aabb(DGN_placement(DGN_point(Origin_X,Origin_Y,Origin_Z),"
                " DGN_angles(Yaw,Pitch,Roll), DGN_bbox(BBoxLow_X,BBoxLow_Y,BBoxLow_Z,BBoxHigh_X,BBoxHigh_Y,"
                " BBoxHigh_Z))) AS bb FROM bis_GeometricElement3d"
                " WHERE Origin_X IS NOT NULL AND InSpatialIndex=1) ORDER BY ElementId"
            ).fetchall()
            stored = db.execute("SELECT * FROM dgn_SpatialIndex ORDER BY ElementId").fetchall()
        finally:
            db.close()
        assert computed == stored, f"{path.name}: DGN_* bounds differ from the stored spatial index"
        checked += len(stored)
    assert checked > 250


# --- bad input ---------------------------------------------------------------------------------------------


def test_same_changeset_twice_raises_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    replay(work, chain.files[:1])
    before = _digest(work)
    with pytest.raises(ReplayError) as info:
        replay(work, chain.files[:1])
    message = str(info.value)
    assert chain.files[0].name in message
    assert "INSERT of bis_Element row 2199023255553" in message and "already in the file" in message
    assert _digest(work) == before
    _no_side_files(work)


def test_wrong_parent_caught_by_a_conflict(tmp_path: Path) -> None:
    """Changeset 2 onto the baseline: its UPDATE of the repository model expects values the file lacks."""
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    before = _digest(work)
    with pytest.raises(ReplayError) as info:
        replay(work, [chain.files[1]])
    message = str(info.value)
    assert "UPDATE of bis_Model row 1" in message and "column LastMod is None in the file" in message
    assert _digest(work) == before


def test_wrong_parent_caught_by_the_expected_id(tmp_path: Path) -> None:
    """Insert-only changesets onto the wrong parent conflict with nothing: only the id chain catches them,
    as in iTwin.js (the hub's id must be SHA-1 of the file's changeset id, prefix and changeset)."""
    chain = seedfile_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    before = _digest(work)
    with pytest.raises(ReplayError) as info:
        replay(work, [chain.files[1]], expected_ids=[chain.ids[1]])
    assert "is not the one expected after the baseline" in str(info.value)
    assert chain.ids[1] in str(info.value)
    assert _digest(work) == before
    # Without the ids the rows apply (new rows only): what expected_ids are for.
    replay(work, [chain.files[1]])
    assert _element_count(work) == _element_count(chain.baseline) + 100


def test_failure_midway_keeps_the_changesets_before_it(tmp_path: Path) -> None:
    """1, 2, then 2 again: the error names the third; the file is at 2 exactly as a clean replay to 2."""
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    done: list[int] = []
    with pytest.raises(ReplayError) as info:
        replay(work, [chain.files[0], chain.files[1], chain.files[1]], progress=done.append)
    assert str(info.value).startswith(f"changeset 3 ({chain.files[1].name}")
    assert done == [1, 2]
    assert _position(work) == (chain.ids[1], 2)
    clean = _copy(chain.baseline, tmp_path / "clean.bim")
    replay(clean, chain.files[:2])
    assert_same_content(work, clean)
    _no_side_files(work)


def test_dangling_references_are_a_conflict(tmp_path: Path) -> None:
    """Foreign keys are on, as in iTwin.js: an element whose code spec the file lacks aborts the changeset."""
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    with sqlite3.connect(work) as conn:  # foreign keys off here: the file loses the code spec cs 1 uses
        conn.execute("DELETE FROM bis_CodeSpec WHERE Id=29")
    before = _digest(work)
    with pytest.raises(ReplayError, match=r"leaves 1 foreign key violation\(s\)"):
        replay(work, chain.files[:1])
    assert _digest(work) == before


def test_unreadable_changeset_raises_before_touching_the_file(tmp_path: Path) -> None:
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    broken = tmp_path / "broken.cs"
    broken.write_bytes(chain.files[0].read_bytes()[:100])
    before = _digest(work)
    with pytest.raises(ReplayError, match=r"changeset 1 \(broken.cs\) cannot be read: .*truncated"):
        replay(work, [broken])
    assert _digest(work) == before


def test_apply_changeset_failure_rolls_back_only_itself(tmp_path: Path) -> None:
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "replayed.bim")
    db = open_for_replay(work)
    try:
        with read_for_replay(chain.files[0]) as changeset:
            apply_changeset(db, changeset, label="first")
            assert current_changeset(db) == (chain.ids[0], 1)  # recorded, as by replay
            count = db.execute("SELECT count(*) FROM bis_Element").fetchone()
            with pytest.raises(ReplayError, match="changeset again"):
                apply_changeset(db, changeset, label="again")
            assert db.execute("SELECT count(*) FROM bis_Element").fetchone() == count
            assert current_changeset(db) == (chain.ids[0], 1)
            assert not db.in_transaction
    finally:
        db.close()


# --- what can be replayed onto -----------------------------------------------------------------------------


def test_a_file_that_is_no_imodel_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.db"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t(x)")
    with pytest.raises(BimFormatError, match="not an iModel file"):
        open_for_replay(plain)
    with pytest.raises(BimFormatError, match=r"no such \.bim file"):
        open_for_replay(tmp_path / "missing.bim")


@pytest.mark.parametrize(
    ("namespace", "version", "words"),
    [
        ("ec_Db", '{"major":3,"minor":2,"sub1":0,"sub2":0}', "ECDb profile 3.2.0.0, older than the 4.0.x.x"),
        (
            "dgn_Db",
            '{"major":3,"minor":0,"sub1":0,"sub2":0}',
            "DgnDb profile 3.0.0.0, newer than the 2.0.x.x",
        ),
        ("be_Db", None, "no BeSQLite profile version"),
    ],
)
def test_unsupported_profiles_are_refused_with_a_reason(
    tmp_path: Path, namespace: str, version: str | None, words: str
) -> None:
    work = _copy(clients_chain().baseline, tmp_path / "profile.bim")
    with sqlite3.connect(work) as conn:
        if version is None:
            conn.execute("DELETE FROM be_Prop WHERE Namespace=? AND Name='SchemaVersion'", (namespace,))
        else:
            conn.execute(
                "UPDATE be_Prop SET StrData=? WHERE Namespace=? AND Name='SchemaVersion'",
                (version, namespace),
            )
    with pytest.raises(UnsupportedProfileError, match=words):
        replay(work, clients_chain().files[:1])


# --- checkpoints -------------------------------------------------------------------------------------------


def _open_with_itwinjs(path: Path, imodel_id: str, itwin_id: str, cs_id: str, index: int) -> dict[str, Any]:
    ensure_node_modules()
    proc = subprocess.run(
        [_tool("node"), str(COMPAT / "open-checkpoint.mjs"), "--file", str(path), "--imodel", imodel_id,
         "--itwin", itwin_id, "--changeset", cs_id, "--index", str(index)],
        cwd=COMPAT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"open-checkpoint.mjs failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _checkpoint_facts(path: Path) -> Iterator[tuple[str, object]]:
    db = open_readonly(path)
    try:
        yield "journal", path.read_bytes()[18:20]
        yield "txns", db.execute("SELECT count(*) FROM dgn_Txns").fetchone()
        yield "merge", db.execute("SELECT count(*) FROM be_Local WHERE Name='pull_merge_conf'").fetchone()
    finally:
        db.close()


def test_make_checkpoint_of_a_2020_chain_opens_in_itwinjs(tmp_path: Path) -> None:
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "checkpoint.bim")
    replay(work, chain.files, expected_ids=chain.ids)
    imodel_id, itwin_id = str(uuid.uuid4()), str(uuid.uuid4())
    make_checkpoint(
        work, imodel_id=imodel_id, itwin_id=itwin_id, changeset_id=chain.ids[-1], changeset_index=10
    )
    identity = read_identity(work)
    assert (identity.imodel_id, identity.itwin_id, identity.briefcase_id) == (imodel_id, itwin_id, 0)
    assert identity.parent_changeset == {"id": chain.ids[-1], "index": 10}
    assert dict(_checkpoint_facts(work)) == {"journal": b"\x01\x01", "txns": (0,), "merge": (0,)}
    _no_side_files(work)
    before = _digest(work)
    opened = _open_with_itwinjs(work, imodel_id, itwin_id, chain.ids[-1], 10)
    assert _digest(work) == before  # opened read-only in place
    elements = _expected_elements(chain, 10)
    assert opened["attach"] == {
        "readonly": True,
        "iModelId": imodel_id,
        "iTwinId": itwin_id,
        "changeset": {"id": chain.ids[-1], "index": 10},
        "elements": {"sqlite": elements, "ecsql": elements},
    }
    assert opened["download"]["changeset"] == {"id": chain.ids[-1], "index": 10}
    assert opened["download"]["briefcaseId"] == 0


def test_make_checkpoint_refuses_a_changeset_the_file_is_not_at(tmp_path: Path) -> None:
    chain = clients_chain()
    work = _copy(chain.baseline, tmp_path / "checkpoint.bim")
    replay(work, chain.files[:2])
    before = _digest(work)
    ids = {"imodel_id": str(uuid.uuid4()), "itwin_id": str(uuid.uuid4())}
    with pytest.raises(
        BimFormatError, match=f"is at changeset {chain.ids[1]} \\(index 2\\), not at changeset"
    ):
        make_checkpoint(work, **ids, changeset_id=chain.ids[2], changeset_index=3)
    with pytest.raises(BimFormatError, match="not at changeset"):
        make_checkpoint(work, **ids, changeset_id=chain.ids[1], changeset_index=5)
    assert _digest(work) == before
    # Index 0 makes a baseline of any file: here the one at changeset 2 (a fork squashing its history).
    make_checkpoint(work, **ids, changeset_id="", changeset_index=0)
    assert read_identity(work).parent_changeset == {"id": "", "index": 0}


def test_make_checkpoint_of_a_modern_file_opens_in_itwinjs(
    tmp_path: Path, itwinjs_changesets: Fixture
) -> None:
    """A WAL-mode 5.x file (twinbase's seed) becomes a self-contained rollback-journal checkpoint."""
    fixture = itwinjs_changesets
    work = _copy(fixture.baseline, tmp_path / "checkpoint.bim")
    last = fixture.changesets[-1]
    replay(
        work, [c["pathname"] for c in fixture.changesets], expected_ids=[c["id"] for c in fixture.changesets]
    )
    make_checkpoint(
        work,
        imodel_id=fixture.imodel_id,
        itwin_id=fixture.itwin_id,
        changeset_id=last["id"],
        changeset_index=5,
    )
    assert dict(_checkpoint_facts(work)) == {"journal": b"\x01\x01", "txns": (0,), "merge": (0,)}
    assert_same_content(work, last["snapshot"])
    opened = _open_with_itwinjs(work, fixture.imodel_id, fixture.itwin_id, last["id"], 5)
    assert opened["attach"]["changeset"] == {"id": last["id"], "index": 5}
    assert opened["attach"]["elements"]["ecsql"] == _element_count(Path(last["snapshot"]))
    assert opened["download"]["changeset"] == {"id": last["id"], "index": 5}


def test_apsw_connection_type_is_what_open_for_replay_returns(tmp_path: Path) -> None:
    work = _copy(clients_chain().baseline, tmp_path / "x.bim")
    db = open_for_replay(work)
    try:
        assert isinstance(db, apsw.Connection)
        assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        db.close()
