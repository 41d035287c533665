"""The one error type the tessellators raise."""

from __future__ import annotations


class TessellationError(ValueError):
    """Input that cannot be turned into a mesh or a polyline (bad shapes, bad indices, bad knots).

    The message names the primitive and what was wrong, so the caller can report it for the one
    element that carried it and go on with the others.
    """
