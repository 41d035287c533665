"""The real iTwin.js backend (``@itwin/core-backend`` 5.7.3 and its native library) with twinbase as its hub.

``compat/backend-e2e.mjs`` starts ``IModelHost`` with the adapter in
``compat/lib/twinbase-imodels-access.cjs``, creates an iModel from a local .bim, downloads two briefcases
(checkpoints come from twinbase as plain .bim files), pushes inserts, updates and deletes from one and pulls
them into the other, checks a lock conflict between them, downloads a third briefcase that catches up from
a checkpoint, pushes and pulls on an empty iModel twinbase made from its seed, then releases everything
and deletes the iModels. Node.js and npm are required: without them
the test fails, it never skips.
"""

from __future__ import annotations

from conftest import Server
from test_compat_imodels import run_compat_script


def test_backend_push_pull_locks_with_twinbase_as_hub(server: Server) -> None:
    run_compat_script(server, "backend-e2e.mjs")


def test_backend_with_azure_blob_storage(azure_server: Server) -> None:
    """The same run with the Azure backend (Azurite): checkpoints, changesets and the baseline move
    between iTwin.js and the blob service through SAS URLs, never through twinbase."""
    run_compat_script(azure_server, "backend-e2e.mjs")
