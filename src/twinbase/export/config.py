"""``tilerConfig``: the key/value items a Mesh Export request may carry, validated and applied.

Seed 001 gives the item schema: 1 to 100 unique ``{key, value}`` items, ``key`` a string of 1 to 256
characters, ``value`` a string (1 to 1000 characters), a number or a boolean. The keys twinbase
understands (matched case-insensitively; anything else is a 422 naming the key):

=====================  ============================================================  ==========
key                    meaning                                                       default
=====================  ============================================================  ==========
``maxTileSize``        largest tile content, in kilobytes (16 to 65536)              1024
``enableCompression``  meshopt compression of tile content (GLB, iMdl)                true (*)
``outputFormat``       tile content format; only ``glb`` is written (IMODEL: iMdl)   glb
``chordTolerance``     finest chord tolerance (leaf tiles, GLTF), in metres          0.001
``angleTolerance``     angle tolerance of curved surfaces, in degrees (1 to 90)      15
``levelsOfDetail``     most levels below the root (1 to 24)                          12
``models``             only these models: comma-separated ids (hex or decimal)       all
``categories``         only these categories: comma-separated ids                    all
=====================  ============================================================  ==========

(*) For tilesets; the whole-model GLTF is compressed only when the key is given (16-bit positions over a
whole model would move points by millimetres).

A number given as a string ("128") is read as the number. The canonical form (``TilerConfig.items``, keys
spelled as above, in that order, only those given) is what an export stores and what "the same
configuration" means when a request is matched to an existing export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from twinbase.errors import ErrorDetail

MAX_ITEMS = 100
KEY_MAX = 256
STRING_MAX = 1000


class TilerConfigError(ValueError):
    """Bad ``tilerConfig`` items; ``details`` are the 422 details (code ``InvalidRequestBody``)."""

    def __init__(self, details: list[ErrorDetail]) -> None:
        super().__init__("; ".join(d.message for d in details))
        self.details = details


@dataclass(frozen=True)
class TilerConfig:
    max_tile_kb: int = 1024
    compression: bool = True
    output_format: str = "glb"
    chord_tolerance: float = 0.001
    angle_tolerance_deg: float = 15.0
    levels_of_detail: int = 12
    models: frozenset[int] | None = None
    categories: frozenset[int] | None = None
    items: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    @property
    def angle_tolerance(self) -> float:
        return math.radians(self.angle_tolerance_deg)

    def wire(self) -> list[dict[str, Any]] | None:
        """The items as stored and answered (None when none were given)."""
        return [{"key": k, "value": v} for k, v in self.items] or None


def _detail(message: str) -> ErrorDetail:
    return ErrorDetail("InvalidRequestBody", message, "tilerConfig")


def _number(key: str, value: Any, low: float, high: float, *, integer: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(f"tilerConfig '{key}' must be a number, not a boolean.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"tilerConfig '{key}' must be a number.") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"tilerConfig '{key}' must be a number.")
    if integer and value != int(value):
        raise ValueError(f"tilerConfig '{key}' must be a whole number.")
    if not low <= value <= high:
        raise ValueError(f"tilerConfig '{key}' must be between {low:g} and {high:g}.")
    return float(value)


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"tilerConfig '{key}' must be true or false.")


def _ids(key: str, value: Any) -> frozenset[int]:
    if not isinstance(value, str):
        raise ValueError(f"tilerConfig '{key}' must be a comma-separated list of ids.")
    out: set[int] = set()
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            number = int(text, 16) if text.lower().startswith("0x") else int(text)
        except ValueError:
            raise ValueError(f"tilerConfig '{key}': '{text}' is not an id.") from None
        if not 0 < number < 2**64:
            raise ValueError(f"tilerConfig '{key}': '{text}' is not an id.")
        out.add(number)
    if not out:
        raise ValueError(f"tilerConfig '{key}' names no id.")
    return frozenset(out)


def _output_format(key: str, value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() != "glb":
        raise ValueError(f"tilerConfig '{key}': only 'glb' is written.")
    return "glb"


# canonical key -> (field, reader)
_KEYS: dict[str, tuple[str, Any]] = {
    "maxTileSize": ("max_tile_kb", lambda k, v: int(_number(k, v, 16, 65536, integer=True))),
    "enableCompression": ("compression", _boolean),
    "outputFormat": ("output_format", _output_format),
    "chordTolerance": ("chord_tolerance", lambda k, v: _number(k, v, 1e-5, 100.0, integer=False)),
    "angleTolerance": ("angle_tolerance_deg", lambda k, v: _number(k, v, 1.0, 90.0, integer=False)),
    "levelsOfDetail": ("levels_of_detail", lambda k, v: int(_number(k, v, 1, 24, integer=True))),
    "models": ("models", _ids),
    "categories": ("categories", _ids),
}
_BY_LOWER = {k.lower(): k for k in _KEYS}


def parse_tiler_config(items: Any) -> TilerConfig:
    """Validate ``tilerConfig`` as sent (None: the defaults). Raises ``TilerConfigError``."""
    if items is None:
        return TilerConfig()
    if not isinstance(items, list):
        raise TilerConfigError([_detail("tilerConfig must be an array of {key, value} items.")])
    if not 1 <= len(items) <= MAX_ITEMS:
        raise TilerConfigError([_detail(f"tilerConfig must hold 1 to {MAX_ITEMS} items.")])
    details: list[ErrorDetail] = []
    values: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"key", "value"}:
            details.append(_detail(f"tilerConfig item {n} must be an object with exactly 'key' and 'value'."))
            continue
        key, value = item["key"], item["value"]
        if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX:
            details.append(
                _detail(f"tilerConfig item {n}: 'key' must be a string of 1 to {KEY_MAX} characters.")
            )
            continue
        if isinstance(value, str) and not 1 <= len(value) <= STRING_MAX:
            details.append(_detail(f"tilerConfig '{key}': a string value has 1 to {STRING_MAX} characters."))
            continue
        if not isinstance(value, str | int | float) or value is None:
            details.append(
                _detail(f"tilerConfig '{key}': the value must be a string, a number or a boolean.")
            )
            continue
        canonical = _BY_LOWER.get(key.lower())
        if canonical is None:
            details.append(
                _detail(f"tilerConfig key '{key}' is not supported; supported keys: {', '.join(_KEYS)}.")
            )
            continue
        if canonical in given:
            details.append(_detail(f"tilerConfig key '{key}' is given more than once."))
            continue
        name, reader = _KEYS[canonical]
        try:
            values[name] = reader(canonical, value)
        except ValueError as exc:
            details.append(_detail(str(exc)))
            continue
        given[canonical] = value
    if details:
        raise TilerConfigError(details)
    ordered = tuple((k, given[k]) for k in _KEYS if k in given)
    return replace(TilerConfig(**values), items=ordered)


def for_export_type(config: TilerConfig, export_type: str) -> TilerConfig:
    """``config`` as the tiles of ``export_type`` are made with: IMODEL tiles are iMdl (meshopt-encoded
    with ``enableCompression``, the default), every other type's GLB."""
    if export_type == "IMODEL":
        return replace(config, output_format="imdl")
    return config


def config_key(config: TilerConfig) -> str:
    """A stable text of the canonical items: two requests with the same key ask for the same output."""
    parts = []
    for key, _ in config.items:
        value = getattr(config, _KEYS[key][0])
        parts.append(f"{key}={sorted(value) if isinstance(value, frozenset) else value!r}")
    return ";".join(parts)
