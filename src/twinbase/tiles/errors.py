"""The writers' typed errors."""

from __future__ import annotations


class TileWriteError(ValueError):
    """The content handed to a writer breaks the model's contract (array lengths, index ranges, finiteness).

    Raised before any byte is written, so a caller never gets a file that viewers would reject or misdraw."""
