"""Query parameters shared by every list: bounded integers such as ``$top`` and ``$skip``."""

from __future__ import annotations

from collections.abc import Mapping

from twinbase.errors import ErrorDetail, invalid_value


def bounded_int(
    params: Mapping[str, str], name: str, low: int, high: int | None, default: int, details: list[ErrorDetail]
) -> int:
    """``params[name]`` as an integer in ``low..high`` (``high`` None: no upper bound).

    Absent or empty gives ``default``. A bad value appends an ``InvalidValue`` detail naming the
    parameter and gives ``default``, so the caller can report every problem in one 422.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        details.append(invalid_value(name, f"'{name}' must be an integer."))
        return default
    if value < low or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        details.append(invalid_value(name, f"'{name}' must be {span}."))
        return default
    return value
