"""Query parameters shared by every list: bounded integers such as ``$top`` and ``$skip``."""

from __future__ import annotations

from collections.abc import Mapping

from twinbase.errors import ErrorDetail, invalid_value

# The largest value any integer parameter takes: databases store 64-bit integers, and an offset past
# two billion rows is a mistake rather than a page.
MAX_INT = 2**31 - 1


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
    high = MAX_INT if high is None else high
    if value < low or value > high:
        span = f"between {low} and {high}"
        details.append(invalid_value(name, f"'{name}' must be {span}."))
        return default
    return value
