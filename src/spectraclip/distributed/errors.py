"""Errors of the distributed engines: a missing engine, bad shard specs, parts that do not merge."""

from __future__ import annotations

from spectraclip.errors import SpectraclipError


class DistributedError(SpectraclipError):
    """A distributed run that cannot start or finish as asked (engine not installed, cluster unreachable)."""


class ShardError(SpectraclipError, ValueError):
    """A bad `--shard I/N`, or parts that do not make one table (mixed models, duplicates, missing shards)."""


__all__ = ["DistributedError", "ShardError"]
