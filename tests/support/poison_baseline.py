"""Makes the real baseline initialization job a poison job: its handler kills its own worker process
on every attempt, while its failure callback stays the real one (``initializationFailed``)."""

from __future__ import annotations

import os
import signal
from typing import Any

from twinbase.domain.imodels import BASELINE_JOB
from twinbase.jobs.context import JobContext


def register(svc: Any) -> None:
    real = svc.jobs.kinds[BASELINE_JOB]

    def die(ctx: JobContext) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    svc.jobs.register(BASELINE_JOB, die, on_failure=real.on_failure)
