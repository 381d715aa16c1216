"""Errors of the index: a folder that is not an index, tables that do not fit it, bad queries."""

from __future__ import annotations

from spectraclip.errors import InputError, SpectraclipError


class IndexFormatError(SpectraclipError, ValueError):
    """A folder that is not a usable index, or tables that cannot go into one; names the file."""


class QueryError(InputError, ValueError):
    """A query that cannot be answered (empty, wrong dimension, unknown filter column); names the part at fault."""


class UnknownItemError(InputError, LookupError):
    """An item id that is not in the index."""

    def __init__(self, item_id: str, where: str) -> None:
        super().__init__(f"item {item_id!r} is not in the index {where}")
        self.item_id = item_id

    def __str__(self) -> str:  # LookupError would quote the message again
        return str(self.args[0])


__all__ = ["IndexFormatError", "QueryError", "UnknownItemError"]
