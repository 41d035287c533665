"""The full run (``make test``, so CI) covers SQLite and PostgreSQL whatever the shell holds.

``TWINBASE_TEST_DB=sqlite`` is a developer shortcut for a direct pytest run (tests/conftest.py); left
in an environment it must never narrow ``make test``, and a narrowed run must say so.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from conftest import ROOT

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]


def env_with(choice: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TWINBASE_TEST_DB", None)
    if choice is not None:
        env["TWINBASE_TEST_DB"] = choice
    return env


def make_test_pytest_line() -> str:
    """The pytest command ``make test`` runs, as make prints it with a stale ``TWINBASE_TEST_DB=sqlite``."""
    make = shutil.which("make")
    assert make, "make is required (the README's test command)"
    out = subprocess.run(
        [make, "-n", "test"], cwd=ROOT, env=env_with("sqlite"), capture_output=True, text=True, check=True
    ).stdout
    lines = [line for line in out.splitlines() if "pytest" in line]
    assert len(lines) == 1, out
    return lines[0]


def collected(args: list[str], choice: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args, "--collect-only", "-q", "tests/test_itwins.py::test_defaults_and_case_insensitive_enums"],
        cwd=ROOT,
        env=env_with(choice),
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_test_runs_both_backends_despite_a_stale_choice() -> None:
    line = make_test_pytest_line()
    words = shlex.split(line)
    assert words[0] == "TWINBASE_TEST_DB=both", line
    # Run that very command line (collection only) with TWINBASE_TEST_DB=sqlite in the environment.
    proc = subprocess.run(
        ["sh", "-c", f"{line} --collect-only tests/test_itwins.py::test_defaults_and_case_insensitive_enums"],
        cwd=ROOT,
        env=env_with("sqlite"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for backend in ("sqlite", "postgres"):
        assert f"test_defaults_and_case_insensitive_enums[{backend}]" in proc.stdout, proc.stdout
    assert "NOT TESTED" not in proc.stdout


def test_a_narrowed_run_says_so_and_a_typo_is_refused() -> None:
    both = collected(PYTEST, None)
    assert both.returncode == 0, both.stdout + both.stderr
    assert "[sqlite]" in both.stdout and "[postgres]" in both.stdout
    assert "NOT TESTED" not in both.stdout
    header = subprocess.run(
        [*PYTEST, "--collect-only", "tests/test_itwins.py::test_defaults_and_case_insensitive_enums"],
        cwd=ROOT,
        env=env_with(None),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "twinbase metadata backends: sqlite, postgres" in header.stdout, header.stdout

    one = collected(PYTEST, "sqlite")
    assert one.returncode == 0, one.stdout + one.stderr
    assert "[sqlite]" in one.stdout and "[postgres]" not in one.stdout
    # Said at the end of the run, where a reader looks.
    assert "ONLY sqlite RUNS (TWINBASE_TEST_DB=sqlite): postgres IS NOT TESTED" in one.stdout

    typo = collected(PYTEST, "sqlit")
    assert typo.returncode != 0
    assert "TWINBASE_TEST_DB='sqlit': expected both, sqlite or postgres" in typo.stdout + typo.stderr
