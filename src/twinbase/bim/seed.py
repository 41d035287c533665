"""The empty seed iModel every "create empty iModel" starts from.

``data/empty.bim.gz`` is made by ``compat/make-seed.mjs`` with the real iTwin.js backend
(``SnapshotDb.createEmpty``, then prepared as a baseline: briefcase id 0, no txns). twinbase stamps
each new iModel's identity into its own copy (``bim.identity.stamp``). Regenerate it with
``make seed`` after upgrading ``@itwin/core-backend``.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

SEED_PATH = Path(__file__).parent / "data" / "empty.bim.gz"


class SeedMissing(RuntimeError):
    """The package was built without ``bim/data/empty.bim.gz``; run ``make seed``."""


def write_empty_seed(dest: Path) -> None:
    if not SEED_PATH.exists():
        raise SeedMissing(str(SEED_PATH))
    with gzip.open(SEED_PATH, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
