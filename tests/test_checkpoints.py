"""Exact checkpoints at every changeset, made by twinbase's file engine from real changesets.

The ReadOnlyTest chain holds the file as iTwin.js left it after each of its three changesets: the
checkpoint twinbase serves at index k must hold exactly that content (every change-tracked table, row
by row), carry the changeset's id and index where iTwin.js reads them, and be a checkpoint (briefcase
id 0, one self-contained file).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SHARED_DATA, Server, assert_error, new_imodel, new_itwin, running_server
from support.bimtables import assert_same_content
from support.chains import load_chain, make_chain
from support.changesets import make_chain as make_changesets
from twinbase.bim.identity import read_identity, stamp

READONLY = SHARED_DATA / "bim" / "chains" / "ReadOnlyTest_2018-03"


def readonly_chain() -> list[dict[str, Any]]:
    """The three changesets in order: id, parent id, file."""
    items = json.loads((READONLY / "ReadOnlyTestChangeSets.json").read_text())
    chain = []
    for item in sorted(items, key=lambda i: int(i["properties"]["Index"])):
        props = item["properties"]
        chain.append(
            {
                "id": props["Id"],
                "parentId": props.get("ParentId") or "",
                "path": READONLY / "csets" / props["FileName"],
            }
        )
    return chain


def baseline_copy(tmp: Path) -> Path:
    """ReadOnlyTest's version 0 was saved from a briefcase: made a baseline (briefcase id 0) as
    iTwin.js prepares one for upload."""
    copy = tmp / "baseline.bim"
    shutil.copyfile(READONLY / "0" / "ReadOnlyTest.bim", copy)
    stamp(copy, imodel_id=str(uuid.uuid4()), itwin_id=str(uuid.uuid4()))
    return copy


def push_file(client: httpx.Client, imodel_id: str, briefcase: int, cs: dict[str, Any]) -> httpx.Response:
    data = Path(cs["path"]).read_bytes()
    created = client.post(
        f"/imodels/{imodel_id}/changesets",
        json={"id": cs["id"], "parentId": cs["parentId"], "briefcaseId": briefcase, "fileSize": len(data)},
    )
    assert created.status_code == 201, created.text
    links = created.json()["changeset"]["_links"]
    put = httpx.put(links["upload"]["href"], content=data, headers={"x-ms-blob-type": "BlockBlob"})
    assert put.status_code == 201, put.text
    return client.patch(links["complete"]["href"], json={"state": "fileUploaded", "briefcaseId": briefcase})


def wait_checkpoint(client: httpx.Client, url: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        checkpoint = dict(resp.json()["checkpoint"])
        if checkpoint["state"] != "scheduled":
            return checkpoint
        assert checkpoint["_links"]["download"] is None
        assert time.monotonic() < deadline, f"{url} still scheduled after {timeout} s"
        time.sleep(0.2)


def without_links(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint without its download link and container token (each answer signs fresh ones)."""
    found = {k: v for k, v in checkpoint.items() if k != "_links"}
    if found.get("directoryAccessInfo"):
        found["directoryAccessInfo"] = {k: v for k, v in found["directoryAccessInfo"].items() if k != "azure"}
    return found


def download(checkpoint: dict[str, Any], path: Path) -> Path:
    resp = httpx.get(checkpoint["_links"]["download"]["href"], timeout=60)
    assert resp.status_code == 200
    assert len(resp.content) == checkpoint["size"]
    path.write_bytes(resp.content)
    return path


def expected_file(index: int, imodel: dict[str, Any], cs_id: str, tmp: Path) -> Path:
    """iTwin.js' file after changeset ``index``, with this iModel's identity (as twinbase stamps it)."""
    source = READONLY / str(index) / "ReadOnlyTest.bim"
    copy = tmp / f"expected-{index}.bim"
    shutil.copyfile(source, copy)
    stamp(copy, imodel_id=imodel["id"], itwin_id=imodel["iTwinId"], changeset_id=cs_id, changeset_index=index)
    return copy


def test_exact_checkpoints_hold_what_itwinjs_held(server: Server, tmp_path: Path) -> None:
    chain = readonly_chain()
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], path=baseline_copy(tmp_path))
        iid = imodel["id"]
        briefcase = alice.post(f"/imodels/{iid}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
        for index, cs in enumerate(chain, start=1):
            done = push_file(alice, iid, briefcase, cs)
            assert done.status_code == 200, done.text
            assert done.json()["changeset"]["index"] == index

        for index in (3, 1, 2):  # not in order: each is replayed from the nearest stored one
            cs_id = chain[index - 1]["id"]
            by_index = wait_checkpoint(alice, f"/imodels/{iid}/changesets/{index}/checkpoint")
            assert by_index["state"] == "successful", by_index
            assert (by_index["changesetIndex"], by_index["changesetId"]) == (index, cs_id)
            assert by_index["dbName"] == f"{cs_id}.bim"
            assert by_index["directoryAccessInfo"]["baseDirectory"] == f"tb-{iid}"
            by_id = wait_checkpoint(alice, f"/imodels/{iid}/changesets/{cs_id}/checkpoint")
            assert without_links(by_id) == without_links(by_index)
            path = download(by_index, tmp_path / f"{index}.bim")
            identity = read_identity(path)
            assert (identity.imodel_id, identity.itwin_id, identity.briefcase_id) == (iid, itwin["id"], 0)
            assert identity.parent_changeset == {"id": cs_id, "index": index}
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
                assert conn.execute("SELECT COUNT(*) FROM dgn_Txns").fetchone()[0] == 0
            finally:
                conn.close()
            assert_same_content(path, expected_file(index, imodel, cs_id, tmp_path))

        # The baseline is checkpoint 0; the latest (briefcases) is the tip's.
        zero = wait_checkpoint(alice, f"/imodels/{iid}/changesets/0/checkpoint")
        assert (zero["changesetIndex"], zero["changesetId"], zero["state"]) == (0, "", "successful")
        latest = wait_checkpoint(alice, f"/imodels/{iid}/briefcases/checkpoint")
        assert (latest["changesetIndex"], latest["changesetId"]) == (3, chain[2]["id"])

        # A named version schedules its checkpoint at once, at exactly its changeset.
        nv = alice.post(f"/imodels/{iid}/namedversions", json={"name": "v2", "changesetIndex": 2})
        assert nv.status_code == 201, nv.text
        url = f"/imodels/{iid}/namedversions/{nv.json()['namedVersion']['id']}/checkpoint"
        at_nv = wait_checkpoint(alice, url)
        assert (at_nv["changesetIndex"], at_nv["changesetId"]) == (2, chain[1]["id"])
        assert at_nv["state"] == "successful"
        regenerated = alice.put(url)
        assert regenerated.status_code == 200
        assert without_links(regenerated.json()["checkpoint"]) == without_links(at_nv)

        # The change summaries know each element's model.
        listed = alice.get(f"/imodels/{iid}/changesets", headers={"Prefer": "return=representation"})
        assert [c["index"] for c in listed.json()["changesets"]] == [1, 2, 3]


def test_a_changeset_that_does_not_apply_to_its_parent_is_refused(server: Server, tmp_path: Path) -> None:
    """ReadOnlyTest's first changeset (a valid file with the right id) on another iModel's baseline:
    the completion applies it to the parent's state, which fails, so it is refused with the engine's
    message; the timeline, the stored files and the existing checkpoint stay as they were."""
    first = readonly_chain()[0]
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"])  # the sample .bim, not ReadOnlyTest's baseline
        iid = imodel["id"]
        before = wait_checkpoint(alice, f"/imodels/{iid}/changesets/0/checkpoint")
        briefcase = alice.post(f"/imodels/{iid}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
        refused = push_file(alice, iid, briefcase, first)
        err = assert_error(refused, 422, "InvalidiModelsRequest")
        detail = err["details"][0]
        assert detail["code"] == "InvalidChange" and detail["target"] == "file", err
        assert detail["message"].startswith("The Changeset does not apply to the baseline: "), detail
        assert first["id"] in detail["message"]
        got = alice.get(f"/imodels/{iid}/changesets/{first['id']}").json()["changeset"]
        assert got["state"] == "waitingForFile" and got["index"] is None
        assert alice.get(f"/imodels/{iid}/changesets").json()["changesets"] == []
        assert alice.get(f"/imodels/{iid}").json()["iModel"]["lastChangesetPushDateTime"] is None
        assert_error(alice.get(f"/imodels/{iid}/changesets/1/checkpoint"), 404, "ChangesetNotFound")
        after = wait_checkpoint(alice, f"/imodels/{iid}/changesets/0/checkpoint")
        assert without_links(after) == without_links(before)
        stored = sorted(
            p.name for p in (server.data_dir / "blobs" / "imodels" / iid).rglob("*") if p.is_file()
        )
        assert "baseline.bim" in stored and "0.bim" in stored, stored
        assert not [name for name in stored if name.endswith(".cs") or name.startswith("1")], stored


def wait_created(client: httpx.Client, imodel_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = str(client.get(f"/imodels/{imodel_id}/operations/create").json()["createOperation"]["state"])
        if state not in ("scheduled", "waitingForFile"):
            return state
        assert time.monotonic() < deadline, "the copy did not finish in time"
        time.sleep(0.2)


def test_forks_start_at_the_fork_point_and_copies_keep_history(server: Server, tmp_path: Path) -> None:
    chain = readonly_chain()
    with server.user() as alice:
        itwin = new_itwin(alice)
        source = new_imodel(alice, itwin["id"], path=baseline_copy(tmp_path))
        sid = source["id"]
        briefcase = alice.post(f"/imodels/{sid}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
        group = alice.post(f"/imodels/{sid}/changesetgroups", json={"description": "first two"}).json()
        group_id = group["changesetGroup"]["id"]
        for index, cs in enumerate(chain, start=1):
            data = Path(cs["path"]).read_bytes()
            body = {
                "id": cs["id"],
                "parentId": cs["parentId"],
                "briefcaseId": briefcase,
                "fileSize": len(data),
            }
            if index <= 2:
                body["groupId"] = group_id
            created = alice.post(f"/imodels/{sid}/changesets", json=body).json()["changeset"]
            assert httpx.put(created["_links"]["upload"]["href"], content=data).status_code == 201
            done = alice.patch(
                created["_links"]["complete"]["href"],
                json={"state": "fileUploaded", "briefcaseId": briefcase},
            )
            assert done.status_code == 200, done.text
        assert (
            alice.post(f"/imodels/{sid}/namedversions", json={"name": "one", "changesetIndex": 1}).status_code
            == 201
        )

        # A fork (history squashed, the default) at changeset 2: its baseline is the file at 2.
        resp = alice.post(
            f"/imodels/{sid}/fork", json={"iTwinId": itwin["id"], "name": "F", "changesetIndex": 2}
        )
        assert resp.status_code == 202, resp.text
        fork_id = resp.headers["location"].rsplit("/", 1)[1]
        assert wait_created(alice, fork_id) == "successful"
        assert alice.get(f"/imodels/{fork_id}/changesets").json()["changesets"] == []
        assert alice.get(f"/imodels/{fork_id}/namedversions").json()["namedVersions"] == []
        fork = alice.get(f"/imodels/{fork_id}").json()["iModel"]
        zero = wait_checkpoint(alice, f"/imodels/{fork_id}/changesets/0/checkpoint")
        path = download(zero, tmp_path / "fork0.bim")
        identity = read_identity(path)
        assert (identity.imodel_id, identity.briefcase_id) == (fork_id, 0)
        assert identity.parent_changeset == {"id": "", "index": 0}
        expected = expected_file(2, fork, "", tmp_path)
        stamp(expected, imodel_id=fork_id, itwin_id=itwin["id"])
        assert_same_content(path, expected)

        # A fork that preserves history, and a clone: changesets, named versions and groups come along.
        for op, extra in (("fork", {"preserveHistory": True}), ("clone", {})):
            resp = alice.post(
                f"/imodels/{sid}/{op}",
                json={"iTwinId": itwin["id"], "name": f"{op} kept", "changesetIndex": 2, **extra},
            )
            assert resp.status_code == 202, resp.text
            copy_id = resp.headers["location"].rsplit("/", 1)[1]
            assert wait_created(alice, copy_id) == "successful"
            listed = alice.get(
                f"/imodels/{copy_id}/changesets", headers={"Prefer": "return=representation"}
            ).json()["changesets"]
            assert [c["id"] for c in listed] == [chain[0]["id"], chain[1]["id"]]
            groups = alice.get(f"/imodels/{copy_id}/changesetgroups").json()["changesetGroups"]
            assert len(groups) == 1 and groups[0]["id"] != group_id
            assert {c["groupId"] for c in listed} == {groups[0]["id"]}
            named = alice.get(
                f"/imodels/{copy_id}/namedversions", headers={"Prefer": "return=representation"}
            ).json()["namedVersions"]
            assert [(n["name"], n["changesetIndex"]) for n in named] == [("one", 1)]
            at_two = wait_checkpoint(alice, f"/imodels/{copy_id}/changesets/2/checkpoint")
            assert at_two["state"] == "successful", at_two
            copy = alice.get(f"/imodels/{copy_id}").json()["iModel"]
            assert_same_content(
                download(at_two, tmp_path / f"{op}2.bim"), expected_file(2, copy, chain[1]["id"], tmp_path)
            )


def test_itwinjs_made_history_through_the_api(server: Server, tmp_path: Path) -> None:
    """A chain the real iTwin.js backend made (inserts, updates, deletes, geometry and parts, a schema
    import with overflow columns, aspects, a schema upgrade) pushed into twinbase: every completion
    proves its changeset applies and stores the tip's checkpoint, which equals iTwin.js' briefcase
    after the same push, table by table; element summaries carry their models."""
    chain = load_chain(make_chain("features"))
    with server.user() as alice:
        itwin = new_itwin(alice)
        imodel = new_imodel(alice, itwin["id"], path=chain.baseline)
        iid = imodel["id"]
        briefcase = alice.post(f"/imodels/{iid}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
        for entry in chain.changesets:
            cs = {"id": entry.id, "parentId": entry.parent_id, "path": entry.path}
            done = push_file(alice, iid, briefcase, cs)
            assert done.status_code == 200, done.text
            assert done.json()["changeset"]["index"] == entry.index
        for entry in chain.changesets:
            checkpoint = wait_checkpoint(alice, f"/imodels/{iid}/changesets/{entry.index}/checkpoint")
            assert checkpoint["state"] == "successful", checkpoint
            assert (checkpoint["changesetIndex"], checkpoint["changesetId"]) == (entry.index, entry.id)
            path = download(checkpoint, tmp_path / f"{entry.index}.bim")
            assert read_identity(path).parent_changeset == {"id": entry.id, "index": entry.index}
            if entry.expected is not None:
                expected = tmp_path / f"expected-{entry.index}.bim"
                shutil.copyfile(entry.expected, expected)
                stamp(
                    expected,
                    imodel_id=iid,
                    itwin_id=itwin["id"],
                    changeset_id=entry.id,
                    changeset_index=entry.index,
                )
                assert_same_content(path, expected)


def test_checkpoints_beyond_the_budget_are_evicted_and_made_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Budget 0: only the pinned checkpoints (baseline, every 2nd here, named versions) and the tip
    stay; an evicted one is made again on request, from the nearest pinned one."""
    with (
        running_server(
            "sqlite", tmp_path_factory, TWINBASE_CHECKPOINT_BUDGET_BYTES="0", TWINBASE_CHECKPOINT_INTERVAL="2"
        ) as server,
        server.user() as alice,
    ):
        itwin = new_itwin(alice)
        iid = alice.post("/imodels", json={"iTwinId": itwin["id"], "name": "budget"}).json()["iModel"]["id"]
        briefcase = alice.post(f"/imodels/{iid}/briefcases", json={}).json()["briefcase"]["briefcaseId"]
        made = make_changesets(5)
        for one in made:
            created = alice.post(
                f"/imodels/{iid}/changesets",
                json={
                    "id": one.id,
                    "parentId": one.parent_id,
                    "briefcaseId": briefcase,
                    "fileSize": len(one.data),
                },
            ).json()["changeset"]
            assert httpx.put(created["_links"]["upload"]["href"], content=one.data).status_code == 201
            done = alice.patch(
                created["_links"]["complete"]["href"],
                json={"state": "fileUploaded", "briefcaseId": briefcase},
            )
            assert done.status_code == 200, done.text
        stored = sorted(
            p.name for p in (server.data_dir / "blobs" / "imodels" / iid / "checkpoints").iterdir()
        )
        # 0 (baseline), 2 and 4 (pinned), 5 (the tip); 1 and 3 were evicted when the next came.
        assert [name.split("-")[0].removesuffix(".bim") for name in stored] == ["0", "2", "4", "5"], stored
        first = alice.get(f"/imodels/{iid}/changesets/3/checkpoint").json()["checkpoint"]
        assert first["state"] == "scheduled" and first["_links"]["download"] is None
        again = wait_checkpoint(alice, f"/imodels/{iid}/changesets/3/checkpoint")
        assert (again["state"], again["changesetIndex"], again["changesetId"]) == (
            "successful",
            3,
            made[2].id,
        )
        path = download(again, tmp_path_factory.mktemp("evicted") / "3.bim")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {
                row[0] for row in conn.execute("SELECT Name FROM be_Prop WHERE Namespace='twinbase-test'")
            }
        finally:
            conn.close()
        assert len(names) == 3  # the rows of changesets 1..3, not 4 and 5


def test_an_imodel_waiting_for_its_baseline_has_no_checkpoint(server: Server) -> None:
    """Asking for a checkpoint before the baseline is in: 404, and nothing is scheduled."""
    with server.user() as alice:
        itwin = new_itwin(alice)
        made = alice.post(
            "/imodels", json={"iTwinId": itwin["id"], "name": "No file yet", "baselineFile": {"size": 10}}
        )
        assert made.status_code == 201, made.text
        iid = made.json()["iModel"]["id"]
        for path in (f"/imodels/{iid}/changesets/0/checkpoint", f"/imodels/{iid}/briefcases/checkpoint"):
            for _ in range(2):  # the first ask must not have scheduled anything either
                assert_error(alice.get(path), 404, "CheckpointNotFound")
