"""README documents every setting and the two commands."""

from __future__ import annotations

from pathlib import Path

from twinbase.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [name for name in Settings.model_fields if f"TWINBASE_{name.upper()}" not in README]
    assert not missing, f"settings missing from README.md: {missing}"


def test_two_commands_are_shown() -> None:
    assert "make serve" in README and "make test" in README
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
