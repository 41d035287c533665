"""Real changeset chains made by the real iTwin.js backend (``compat/make-chain.mjs``), cached on disk.

``make_chain(profile)`` runs ``node compat/make-chain.mjs`` once and keeps its output under
``.cache/chains/<profile>-<key>`` in the repository root (git-ignored), where ``key`` hashes everything the
output depends on: the generator script, the installed ``@itwin/core-backend`` and native library
versions, and the version0 file (twinbase's own seed, ``src/twinbase/bim/data/empty.bim.gz``, gunzipped, so
the chain starts from the very file twinbase serves as a new iModel's baseline). Repeated test runs and
the benchmark reuse it; a change to any of those makes a new one (older ones of the profile are removed).

Generation is serialized by a file lock (pytest-xdist workers may ask at once) and written to a partial
folder that is renamed into place only when complete, so a killed run never leaves a half chain behind.

No pytest import here: ``bench/replay.py`` uses it too.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "compat"
SCRIPT = COMPAT / "make-chain.mjs"
SEED = ROOT / "src" / "twinbase" / "bim" / "data" / "empty.bim.gz"
DEFAULT_CACHE = ROOT / ".cache" / "chains"
PROFILES = ("features", "bench", "bench-small")
GENERATION_TIMEOUT = 900


class ChainError(RuntimeError):
    """A chain could not be made or read; the message says why (with the generator's output)."""


@dataclass(frozen=True)
class ChainEntry:
    index: int
    id: str
    parent_id: str
    changes_type: int
    description: str
    path: Path
    expected: Path | None  # the pushing briefcase right after this changeset, when the profile kept it


@dataclass(frozen=True)
class Chain:
    root: Path
    baseline: Path
    changesets: tuple[ChainEntry, ...]
    generator: dict[str, object]

    def expected(self, index: int) -> Path:
        entry = self.changesets[index - 1]
        if entry.expected is None:
            raise ChainError(f"{self.root}: no expected state kept for changeset {index}")
        return entry.expected


def _package_version(name: str) -> str:
    manifest = COMPAT / "node_modules" / name / "package.json"
    if not manifest.exists():
        raise ChainError(f"{manifest} is missing: run 'npm ci' in compat/ (or 'make test')")
    version = json.loads(manifest.read_text())["version"]
    return str(version)


def cache_key(profile: str) -> str:
    """What a chain depends on, hashed: script, backend versions, seed, profile."""
    digest = hashlib.sha256()
    digest.update(SCRIPT.read_bytes())
    for package in ("@itwin/core-backend", "@bentley/imodeljs-native"):
        digest.update(f"\0{package}={_package_version(package)}".encode())
    digest.update(b"\0seed=" + hashlib.sha256(SEED.read_bytes()).digest())
    digest.update(f"\0profile={profile}".encode())
    return digest.hexdigest()[:16]


def make_chain(profile: str, out_dir: Path | None = None) -> Path:
    """The folder of the ``profile`` chain (made now if not cached): ``baseline.bim``, ``changesets/``,
    ``chain.json``, ``expected/``, ``generator.json``. ``out_dir`` is the cache root (default
    ``.cache/chains`` in the repository root, or ``$TWINBASE_CHAIN_CACHE``)."""
    if profile not in PROFILES:
        raise ChainError(f"unknown chain profile {profile!r} (one of {', '.join(PROFILES)})")
    cache = Path(out_dir or os.environ.get("TWINBASE_CHAIN_CACHE") or DEFAULT_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(profile)
    final = cache / f"{profile}-{key}"
    if (final / "chain.json").exists():
        return final
    with open(cache / f".{profile}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "chain.json").exists():  # made by another process while this one waited
            return final
        # Older chains of this profile (another script or backend) and partial folders of killed runs;
        # exact names only, since "bench-small-..." also starts with "bench-".
        mine = re.compile(rf"\.?{re.escape(profile)}-[0-9a-f]{{16}}(\.partial-\d+)?")
        for old in cache.iterdir():
            if old.is_dir() and mine.fullmatch(old.name):
                shutil.rmtree(old, ignore_errors=True)
        partial = cache / f".{final.name}.partial-{os.getpid()}"
        try:
            _generate(profile, partial)
            partial.rename(final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


def _generate(profile: str, target: Path) -> None:
    node = shutil.which("node")
    if node is None:
        raise ChainError("'node' is required to make changeset chains with iTwin.js and is not on PATH")
    target.mkdir(parents=True)
    version0 = target.parent / f".{target.name}.version0.bim"
    try:
        with gzip.open(SEED, "rb") as src, open(version0, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        # The generator's size knobs are not in the cache key: never let them leak in from the caller.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "CHAIN_", "EXPECTED_"))}
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [node, str(SCRIPT), str(target), profile, str(version0)],
                cwd=COMPAT,
                env=env,
                capture_output=True,
                text=True,
                timeout=GENERATION_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ChainError(
                f"compat/make-chain.mjs {profile} did not finish in {GENERATION_TIMEOUT} s"
            ) from exc
        if proc.returncode != 0 or not (target / "chain.json").exists():
            raise ChainError(
                f"compat/make-chain.mjs {profile} exited {proc.returncode} after "
                f"{time.monotonic() - started:.1f} s:\n{proc.stdout}\n{proc.stderr}"
            )
    finally:
        version0.unlink(missing_ok=True)


def load_chain(root: Path) -> Chain:
    """The chain in ``root`` (as written by make-chain.mjs), checked for a complete, linked sequence."""
    try:
        listing = json.loads((root / "chain.json").read_text())
        generator = json.loads((root / "generator.json").read_text())
    except (OSError, ValueError) as exc:
        raise ChainError(f"{root}: not a complete chain ({exc})") from exc
    entries = []
    parent = ""
    for n, item in enumerate(listing, start=1):
        if item["index"] != n or item["parentId"] != parent:
            raise ChainError(f"{root}: changeset {n} is out of order or not linked to its parent")
        path = root / item["file"]
        if not path.exists():
            raise ChainError(f"{root}: {item['file']} is missing")
        expected = root / item["expected"] if item.get("expected") else None
        entries.append(
            ChainEntry(
                index=n,
                id=item["id"],
                parent_id=parent,
                changes_type=int(item["changesType"]),
                description=str(item.get("description", "")),
                path=path,
                expected=expected,
            )
        )
        parent = item["id"]
    baseline = root / "baseline.bim"
    if not baseline.exists():
        raise ChainError(f"{root}: baseline.bim is missing")
    return Chain(root=root, baseline=baseline, changesets=tuple(entries), generator=generator)
