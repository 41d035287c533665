"""Changeset files (bim/changeset.py): the real chains' ids, their change summaries, and bad input.

Pure library tests: no server. The real files are in ``../shared/data/bim/chains`` (never copied here);
a missing file fails the test.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import random
import sqlite3
import struct
from pathlib import Path
from typing import Any

import apsw
import pytest

from conftest import SHARED_DATA
from twinbase.bim.changeset import (
    ChangesetCompressionError,
    ChangesetFile,
    ChangesetFormatError,
    ChangesetHeaderError,
    ChangesetPrefixError,
    ChangesetTooLargeError,
    InvalidChangesetIdError,
    SessionChangesetError,
    UnsupportedChangesetError,
    changeset_id,
    compute_id,
    hex_id,
    read_changeset,
)

CHAINS = SHARED_DATA / "bim" / "chains"
CLIENTS = CHAINS / "imodels-clients-test-imodel"
SEEDFILE = CHAINS / "imodelhub-SeedFile"
READONLY = CHAINS / "ReadOnlyTest_2018-03"


def _exists(path: Path) -> Path:
    assert path.exists(), f"test data missing: {path} (see ../shared/data/README.md)"
    return path


def clients_chain() -> list[tuple[Path, str, str]]:
    listing = json.loads(_exists(CLIENTS / "changesets.json").read_text())["changesets"]
    chain = [(CLIENTS / c["fileName"], c["parentId"], c["id"]) for c in listing]
    assert len(chain) == 10
    return chain


def seedfile_chain() -> list[tuple[Path, str, str]]:
    files = sorted(_exists(SEEDFILE).glob("*.cs"), key=lambda p: int(p.name.split("_")[0]))
    assert [int(p.name.split("_")[0]) for p in files] == list(range(17))
    chain, parent = [], ""
    for path in files:
        cs_id = path.stem.split("_", 1)[1]
        chain.append((path, parent, cs_id))
        parent = cs_id
    return chain


def readonly_chain() -> list[tuple[Path, str, str]]:
    listing = json.loads(_exists(READONLY / "ReadOnlyTestChangeSets.json").read_text())
    props = sorted((c["properties"] for c in listing), key=lambda p: int(p["Index"]))
    chain = [(READONLY / "csets" / p["FileName"], p["ParentId"], p["Id"]) for p in props]
    assert len(chain) == 3
    return chain


CHAIN_LOADERS = {"clients": clients_chain, "seedfile": seedfile_chain, "readonly": readonly_chain}


@pytest.mark.parametrize("chain", sorted(CHAIN_LOADERS))
def test_real_chains_ids_equal_the_hub_ids(chain: str) -> None:
    """Every changeset of the three real chains hashes to the id the hub gave it (bim-format.md §3.3).

    All three file profiles (2018-2021 writers) are readable, so every id is checked; none is expected
    to raise.
    """
    previous = ""
    for path, parent, expected in CHAIN_LOADERS[chain]():
        assert parent == previous, "the chain's parents link each changeset to the one before"
        assert compute_id(_exists(path), parent) == expected, path.name
        with read_changeset(path) as cs:
            assert changeset_id(parent, cs.prefix, cs.changeset_bytes()) == expected
            assert cs.changeset_id(parent) == expected
            # Another parent gives another id: the parent is part of what is hashed.
            assert cs.changeset_id("f" * 40) != expected
        previous = expected


def test_header_prefix_and_sizes_of_a_real_changeset() -> None:
    listing = json.loads(_exists(READONLY / "ReadOnlyTestChangeSets.json").read_text())
    for item in listing:
        props = item["properties"]
        path = READONLY / "csets" / props["FileName"]
        assert path.stat().st_size == int(props["FileSize"])
        with read_changeset(path) as cs:
            assert cs.header.header_size == 22
            assert cs.header.format_version == 0x10
            assert cs.header.compression == 2
            assert cs.header.dictionary_size == 16 << 20
            assert cs.prefix == b"" and not cs.contains_schema_changes and cs.ddl == ""
            data = cs.changeset_bytes()
            assert cs.uncompressed_size == len(data) > 0
            assert data[:1] == b"T"
            assert b"".join(cs.iter_changeset(7)) == data


def _rows(db: Path, table: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        pk = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0]
        assert pk, table
        cols = ", ".join(f'"{c}"' for c in pk)
        return {
            tuple(r[: len(pk)]): tuple(r[len(pk) :]) for r in conn.execute(f'SELECT {cols}, * FROM "{table}"')
        }
    finally:
        conn.close()


def test_readonly_summaries_match_the_expected_states() -> None:
    """Each changeset's rows and element ids are exactly what differs between the states before and after.

    ``ReadOnlyTest_2018-03/<n>/`` is the file as iTwin.js left it after changeset n; for every table the
    changeset touches, its inserted/updated/deleted primary keys are the rows new in n, changed, or gone.
    """
    for n, (path, _parent, _id) in enumerate(readonly_chain(), start=1):
        before = _exists(READONLY / str(n - 1) / "ReadOnlyTest.bim")
        after = _exists(READONLY / str(n) / "ReadOnlyTest.bim")
        with read_changeset(path) as cs:
            summary = cs.summary
            rows = list(cs.row_changes())
        assert summary.elements_inserted, "each ReadOnlyTest changeset inserts an element"
        assert sum(t.inserts + t.updates + t.deletes for t in summary.tables.values()) == len(rows)
        for table, counts in summary.tables.items():
            old, new = _rows(before, table), _rows(after, table)
            inserted = {r.primary_key for r in rows if r.table == table and r.op == "INSERT"}
            updated = {r.primary_key for r in rows if r.table == table and r.op == "UPDATE"}
            deleted = {r.primary_key for r in rows if r.table == table and r.op == "DELETE"}
            assert inserted == new.keys() - old.keys(), table
            assert deleted == old.keys() - new.keys(), table
            assert updated == {k for k in old.keys() & new.keys() if old[k] != new[k]}, table
            assert (counts.inserts, counts.updates, counts.deletes) == (
                len(inserted),
                len(updated),
                len(deleted),
            )
        element_ids = {k[0] for k in _rows(after, "bis_Element")} - {
            k[0] for k in _rows(before, "bis_Element")
        }
        assert set(summary.elements_inserted) == element_ids
        assert summary.elements_updated == summary.elements_deleted == ()
        assert [hex_id(i) for i in summary.elements_inserted] == [f"0x2000000000{n}"]


@pytest.mark.parametrize("chain", ["clients", "seedfile"])
def test_chain_summaries_insert_new_elements(chain: str) -> None:
    """Inserted element ids are new: absent from the chain's baseline and never inserted twice."""
    baseline = (
        CLIENTS / "baseline.bim"
        if chain == "clients"
        else SEEDFILE / next(p.name for p in _exists(SEEDFILE).glob("*.bim"))
    )
    seen = {k[0] for k in _rows(_exists(baseline), "bis_Element")}
    total = 0
    for path, _parent, _id in CHAIN_LOADERS[chain]():
        with read_changeset(path) as cs:
            summary = cs.summary
        assert summary.tables["bis_Element"].inserts == len(summary.elements_inserted) > 0
        assert not seen & set(summary.elements_inserted)
        assert all(isinstance(i, int) and 0 < i < 1 << 64 for i in summary.elements_inserted)
        seen |= set(summary.elements_inserted)
        total += len(summary.elements_inserted)
        if chain == "clients":
            assert summary.tables["bis_Model"].inserts == 1
    assert total == (10 if chain == "clients" else 17 * 100 + 6 + 6 * 1)


# --- Changesets made here with SQLite's session extension (updates, deletes, large ones) ---------------


def _session_changeset(tmp_path: Path, *, blob_size: int = 10) -> bytes:
    db = apsw.Connection(str(tmp_path / "made.db"))
    db.execute("CREATE TABLE bis_Element(Id INTEGER PRIMARY KEY, CodeValue TEXT, Blob BLOB)")
    db.execute("CREATE TABLE bis_Model(Id INTEGER PRIMARY KEY, Name TEXT)")
    db.execute("INSERT INTO bis_Element VALUES (16, 'kept', NULL), (17, 'changed', NULL), (18, 'gone', NULL)")
    db.execute("INSERT INTO bis_Model VALUES (1, 'm')")
    session = apsw.Session(db, "main")
    session.attach()
    high = -(1 << 63) + 5  # an Id64 with the high bit set is a negative SQLite integer
    db.execute(
        "INSERT INTO bis_Element VALUES (?, 'new', ?), (?, 'high', NULL)", (32, b"x" * blob_size, high)
    )
    db.execute("UPDATE bis_Element SET CodeValue='changed2' WHERE Id=17")
    db.execute("DELETE FROM bis_Element WHERE Id=18")
    db.execute("UPDATE bis_Model SET Name='m2' WHERE Id=1")
    data = session.changeset()
    session.close()
    db.close()
    return data


def _changeset_file(path: Path, content: bytes, *, dict_prop: int = 24) -> Path:
    """A file in the format the native library writes: header, dictionary byte, raw LZMA2."""
    header = struct.pack("<H", 22) + b"ChangeSetLzma".ljust(16, b"\0") + struct.pack("<HH", 0x10, 2)
    # A smaller encoder dictionary than the header announces is valid (and keeps the tests quick).
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]
    path.write_bytes(header + bytes([dict_prop]) + lzma.compress(content, lzma.FORMAT_RAW, filters=filters))
    return path


def _content(prefix: bytes, changeset: bytes) -> bytes:
    return struct.pack(">I", len(prefix)) + prefix + changeset


def test_updates_deletes_and_high_ids_in_a_made_changeset(tmp_path: Path) -> None:
    session = _session_changeset(tmp_path)
    path = _changeset_file(tmp_path / "made.cs", _content(b"", session))
    with read_changeset(path) as cs:
        summary = cs.summary
        assert cs.changeset_bytes() == session
        assert cs.changeset_id("") == hashlib.sha1(b"\0" * 20 + session).hexdigest()
    assert summary.elements_inserted == (32, (1 << 63) + 5)
    assert summary.elements_updated == (17,)
    assert summary.elements_deleted == (18,)
    assert [hex_id(i) for i in summary.elements_inserted] == ["0x20", "0x8000000000000005"]
    assert summary.tables["bis_Element"].inserts == 2
    assert (summary.tables["bis_Model"].updates, summary.tables["bis_Model"].inserts) == (1, 0)
    assert hex_id(0) == "0"


def test_schema_prefix_is_parsed_and_hashed(tmp_path: Path) -> None:
    session = _session_changeset(tmp_path)
    prefix = json.dumps({"ContainsSchemaChanges": True, "DDL": "ALTER TABLE t ADD COLUMN c"}).encode() + b"\0"
    path = _changeset_file(tmp_path / "schema.cs", _content(prefix, session))
    parent = "ab" * 20
    with read_changeset(path) as cs:
        assert cs.contains_schema_changes and cs.ddl == "ALTER TABLE t ADD COLUMN c"
        assert cs.prefix == prefix
        assert cs.uncompressed_size == len(session)
        expected = hashlib.sha1(bytes.fromhex(parent) + prefix + session).hexdigest()
        assert cs.changeset_id(parent) == changeset_id(parent, prefix, session) == expected
    assert compute_id(path, parent) == expected


def test_large_changeset_spools_and_streams(tmp_path: Path) -> None:
    """A changeset larger than the in-memory spool (16 MiB) decodes, hashes and summarizes the same."""
    session = _session_changeset(tmp_path, blob_size=24 << 20)
    path = _changeset_file(tmp_path / "large.cs", _content(b"", session))
    with read_changeset(path, spool_dir=tmp_path) as cs:
        assert cs.uncompressed_size == len(session)
        assert cs.changeset_id("") == hashlib.sha1(b"\0" * 20 + session).hexdigest()
        assert cs.summary.elements_inserted == (32, (1 << 63) + 5)
    with pytest.raises(ChangesetTooLargeError, match="exceeds the 1048576-byte limit"):
        read_changeset(path, max_uncompressed_size=1 << 20)


# --- Bad input: always a ChangesetFormatError, never another exception, never a result ----------------


def _real() -> bytes:
    return _exists(READONLY / "csets" / "9f7f9612720be2bb999301407b999139392bd552.cs").read_bytes()


def _read(path: Path, data: bytes) -> ChangesetFile:
    path.write_bytes(data)
    return read_changeset(path)


def test_every_truncation_of_a_real_changeset_is_refused(tmp_path: Path) -> None:
    data = _real()
    path = tmp_path / "cut.cs"
    for length in range(len(data)):
        expected = ChangesetHeaderError if length < 23 else ChangesetCompressionError
        with pytest.raises(expected) as err:
            _read(path, data[:length])
        assert ("truncated" in str(err.value)) or length == 0, (length, err.value)


def test_header_defects(tmp_path: Path) -> None:
    data = _real()
    path = tmp_path / "bad.cs"
    cases: list[tuple[bytes, type[ChangesetFormatError], str]] = [
        (b"", ChangesetHeaderError, "truncated changeset header"),
        (b"SQLite format 3\0" + data[16:], ChangesetHeaderError, "not a changeset file"),
        (data[:2] + b"changesetlzma" + data[15:], ChangesetHeaderError, "not a changeset file"),
        (struct.pack("<H", 24) + data[2:], ChangesetHeaderError, "header size is 24"),
        (data[:18] + struct.pack("<H", 0x11) + data[20:], UnsupportedChangesetError, "format version 0x0011"),
        (data[:20] + struct.pack("<H", 1) + data[22:], UnsupportedChangesetError, "compression type 1"),
        (data[:22] + bytes([41]) + data[23:], UnsupportedChangesetError, "dictionary property 41"),
        (data[:22] + bytes([29]) + data[23:], UnsupportedChangesetError, "exceeds the 67108864-byte limit"),
        (
            data[:22] + bytes([40]) + data[23:],
            UnsupportedChangesetError,
            "dictionary of 4294967295 bytes exceeds the 67108864-byte limit",
        ),
        (data + b"\0", ChangesetCompressionError, "after the end of the LZMA2 stream"),
        (data + b"garbage", ChangesetCompressionError, "after the end of the LZMA2 stream"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            _read(path, bad)


def test_garbage_after_a_valid_header_is_refused(tmp_path: Path) -> None:
    header = _real()[:23]
    path = tmp_path / "garbage.cs"
    for seed in range(200):
        rng = random.Random(seed)
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
        with pytest.raises(ChangesetFormatError):
            _read(path, header + garbage)
    with pytest.raises(ChangesetCompressionError, match="corrupt"):
        _read(path, header + b"\xff" * 100)


def test_flipped_bits_are_refused_or_change_the_id(tmp_path: Path) -> None:
    """Raw LZMA2 has no checksum: a damaged stream is refused, or decodes to other bytes and another id.

    Observed on this file: all but one of the 2,032 single-bit flips in the stream are refused; the other
    flips a redundant reset flag and decodes to the identical bytes, hence (correctly) the same id.
    """
    path = _exists(CLIENTS / "ec06481a0775ea0120275b1daeed97871fe429e5.cs")
    data = path.read_bytes()
    with read_changeset(path) as cs:
        original = cs.changeset_bytes()
    real_id = "ec06481a0775ea0120275b1daeed97871fe429e5"
    bad = tmp_path / "flipped.cs"
    outcomes = {"refused": 0, "other id": 0, "identical bytes": 0}
    for offset in range(23, len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[offset] ^= 1 << bit
            try:
                cs = _read(bad, bytes(flipped))
            except ChangesetFormatError:
                outcomes["refused"] += 1
                continue
            with cs:
                if cs.changeset_bytes() == original:
                    assert cs.changeset_id("") == real_id
                    outcomes["identical bytes"] += 1
                else:
                    assert cs.changeset_id("") != real_id
                    outcomes["other id"] += 1
    assert sum(outcomes.values()) == (len(data) - 23) * 8
    assert outcomes["refused"] >= outcomes["identical bytes"] + outcomes["other id"], outcomes


def test_prefix_and_session_defects(tmp_path: Path) -> None:
    session = _session_changeset(tmp_path)
    cases: list[tuple[bytes, type[ChangesetFormatError], str]] = [
        (b"", ChangesetPrefixError, "too short for its 4-byte prefix length"),
        (b"\0\0\0", ChangesetPrefixError, "too short for its 4-byte prefix length"),
        (struct.pack(">I", 1000) + b"{}", ChangesetPrefixError, "prefix length 1000 exceeds the 2 bytes"),
        (struct.pack(">I", 0xFFFFFFFF), ChangesetPrefixError, "exceeds the 67108864-byte limit"),
        (_content(b"not json\0", session), ChangesetPrefixError, "not UTF-8 JSON"),
        (_content(b"\xff\xfe\0", session), ChangesetPrefixError, "not UTF-8 JSON"),
        (_content(b"[1, 2]\0", session), ChangesetPrefixError, "not an object"),
        (_content(b'{"DDL": 5}\0', session), ChangesetPrefixError, "non-string DDL"),
        (_content(b"", b"P" + session[1:]), SessionChangesetError, "does not start with a changeset table"),
        (_content(b"", session[: len(session) // 2]), SessionChangesetError, "malformed"),
        (_content(b"", b"T" + bytes(range(256)) * 4), SessionChangesetError, "malformed"),
    ]
    for index, (content, error, message) in enumerate(cases):
        with pytest.raises(error, match=message):
            read_changeset(_changeset_file(tmp_path / f"case{index}.cs", content))


def test_truncations_of_the_session_changeset(tmp_path: Path) -> None:
    """A session changeset cut inside a record is malformed; cut between records it is a shorter changeset.

    SQLite's changeset format has no length or end marker, so a cut at a record boundary is a valid
    changeset with fewer rows (the id, which hashes every byte, is what tells it apart). In a real file
    such a cut cannot come from truncating the file: the LZMA2 end marker is then missing (refused above).
    """
    session = _session_changeset(tmp_path)
    path = tmp_path / "cut.cs"
    with read_changeset(_changeset_file(path, _content(b"", session))) as whole:
        all_rows = sum(t.inserts + t.updates + t.deletes for t in whole.summary.tables.values())
        whole_id = whole.changeset_id("")
    shorter = []
    for length in range(1, len(session)):
        try:
            cs = read_changeset(_changeset_file(path, _content(b"", session[:length])))
        except SessionChangesetError:
            continue
        with cs:
            rows = sum(t.inserts + t.updates + t.deletes for t in cs.summary.tables.values())
            assert rows < all_rows
            assert cs.changeset_id("") != whole_id
            shorter.append(length)
    # One table header, then the end of each of the first five records of this 6-row changeset.
    assert len(shorter) == 6 < len(session) // 10


def test_element_rows_without_an_integer_id_are_refused(tmp_path: Path) -> None:
    db = apsw.Connection(str(tmp_path / "odd.db"))
    db.execute("CREATE TABLE bis_Element(Id TEXT PRIMARY KEY, CodeValue TEXT)")
    session = apsw.Session(db, "main")
    session.attach()
    db.execute("INSERT INTO bis_Element VALUES ('0x20', 'text id')")
    data = session.changeset()
    session.close()
    db.close()
    with pytest.raises(SessionChangesetError, match="is not one integer Id"):
        read_changeset(_changeset_file(tmp_path / "odd.cs", _content(b"", data)))


def test_empty_session_changeset_has_an_empty_summary(tmp_path: Path) -> None:
    with read_changeset(_changeset_file(tmp_path / "empty.cs", _content(b"", b""))) as cs:
        assert cs.uncompressed_size == 0
        assert cs.summary.tables == {} and cs.summary.elements_inserted == ()
        assert cs.changeset_id("") == hashlib.sha1(b"\0" * 20).hexdigest()


def test_parent_id_must_be_empty_or_forty_hex_digits(tmp_path: Path) -> None:
    for parent in ("abc", "g" * 40, "a" * 41, " " + "a" * 39):
        with pytest.raises(InvalidChangesetIdError):
            changeset_id(parent, b"", b"")
    assert changeset_id("AB" * 20, b"", b"") == changeset_id("ab" * 20, b"", b"")
