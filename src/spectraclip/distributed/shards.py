"""`embed --shard I/N`: shard I of N takes a deterministic slice of the items, for job arrays without Ray.

The rule: sort the item ids; shard I (1-based) takes the I-th of N contiguous blocks, position `p` of `n`
going to shard `p * N // n + 1`. Contiguous blocks rather than a hash of the id because they are balanced
to one item, keep the windows of one scene (ids `<scene>:<k>`) in one job so each job opens its scenes
once, and make the merged table (shards 1..N in order) come out sorted by id. The price is that every job
must list the same items; each part records a digest of the whole sorted id list, and `embed-merge`
refuses parts of different listings.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spectraclip.distributed.errors import ShardError

SHARD_KEYS = ("shard", "shard_index", "shard_count", "shard_items", "items_total", "items_digest")


@dataclass(frozen=True)
class ShardSpec:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """`"I/N"` with 1 <= I <= N; a ShardError saying what is wrong otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ShardError(f"--shard {text!r}: expected I/N, e.g. 1/4 (shard numbers start at 1)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--shard {text}: I must be between 1 and N (N >= 1); SLURM arrays often start at 0, "
                         f"so use --array=1-{max(n, 1)} or --shard $((SLURM_ARRAY_TASK_ID + 1))/{max(n, 1)}")
    return ShardSpec(i, n)


def items_digest(ids: Sequence[str]) -> str:
    """A digest of the sorted id list: equal in every job of one array iff they listed the same items."""
    h = hashlib.sha256("\n".join(sorted(ids)).encode())
    return h.hexdigest()[:16]


def shard_ids(ids: Sequence[str], spec: ShardSpec) -> list[str]:
    """The ids of shard `spec`: its contiguous block of the sorted ids (see the module docstring)."""
    ordered = sorted(ids)
    n = len(ordered)
    return [id_ for p, id_ in enumerate(ordered) if p * spec.count // n + 1 == spec.index] if n else []


def shard_metadata(spec: ShardSpec, ids: Sequence[str], mine: Sequence[str]) -> dict[str, Any]:
    """The table metadata of a shard's part: which shard, how many items it and the whole listing hold."""
    return {"shard": str(spec), "shard_index": spec.index, "shard_count": spec.count, "shard_items": len(mine),
            "items_total": len(ids), "items_digest": items_digest(ids)}


__all__ = ["SHARD_KEYS", "ShardSpec", "items_digest", "parse_shard", "shard_ids", "shard_metadata"]
