"""Which faiss index fits a collection: exact below a size where a scan stays fast, IVF-PQ above it,
with the code size picked from a memory budget (the autofaiss idea, in a few rules).

Exact search is a blocked inner-product scan of the memory-mapped normalised vectors (torch GEMM,
faster than faiss' flat index at default settings). Approximate search is IVF-PQ with 4-bit fast-scan codes
(faiss `PQ{m}x4fs`, SIMD table look-ups: at 100k x 512 and the same 64 bytes per vector, PQ128x4fs returns
500 candidates in 0.09 ms per query against 0.75 ms for 8-bit PQ64, with the same recall after re-ranking).
Its candidates are re-ranked exactly from the memory-mapped vectors, which restores the recall PQ and the
text/image modality gap cost. HNSW is available on request (its graph plus full vectors exceed the raw size,
so the budget rule never picks it).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from spectraclip.index.errors import IndexFormatError

Kind = Literal["flat", "ivfpq", "hnsw"]
# vectors x dimensions below which an exact scan answers one query in a few ms on 2 cores
FLAT_MAX_CELLS = 16_000_000  # ~31k vectors of 512 dims
DEFAULT_MAX_MEMORY = 4 * 1024**3
ID_BYTES = 8
FASTSCAN_MAX_BYTES = 1024**3  # fast-scan codes up to this (16 M vectors at 64 bytes); 8-bit, mapped, above


@dataclass
class IndexPlan:
    """The chosen index and its parameters, written to the index's `info.json`."""

    kind: Kind
    factory: str
    n: int
    dim: int
    params: dict[str, Any] = field(default_factory=dict)
    memory_bytes: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_memory(text: str | int | None) -> int:
    """Bytes from `4G`, `512M`, `2.5GB`, `1000000` (None: the 4 GiB default)."""
    if text is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m:
        raise IndexFormatError(f"--max-memory {text!r}: expected a size such as 512M or 4G")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(float(m.group(1)) * scale)


def _nlist(n: int) -> int:
    """Inverted lists: about 2 sqrt(n), a power of two, with at least ~39 training points per list."""
    target = max(16, 2 * math.sqrt(n))
    nlist = 2 ** int(round(math.log2(target)))
    while nlist > 16 and n < 39 * nlist:
        nlist //= 2
    return nlist


def train_size(n: int, nlist: int) -> int:
    """k-means training samples: 64 per list (at least 50 000), capped at 200 000 to bound the build, but never
    below the ~39 per list k-means needs (faiss warns under that): a 50 M archive's 16 384 lists get 655 360."""
    return min(n, max(64 * nlist, 50_000), max(200_000, 40 * nlist))


def _code_bytes(m: int, bits: int) -> int:
    """Bytes per vector of `m` sub-quantisers of `bits` bits."""
    return (m * bits + 7) // 8


def _pq_codes(dim: int, n: int, budget: int) -> tuple[int, int] | None:
    """(sub-quantisers m, bits) of the largest PQ codes within the budget, exact re-ranking recovering what
    coarser codes lose. 4-bit fast scan (even m, sub-vectors of 4+ dimensions; 4-bit codebooks train fast
    even on 4-dimensional slices) while its codes stay under FASTSCAN_MAX_BYTES: faiss reads fast-scan lists
    into each process's memory, where 8-bit PQ lists are memory-mapped and shared by the service's workers
    through the page cache, so larger archives get 8-bit codes of the same size (sub-vectors of 8+
    dimensions: faiss trains 256-centroid codebooks on 4-dimensional slices ~10x slower)."""
    fast = [(m, 4) for m in (dim // 4, dim // 8, dim // 16, dim // 32) if m >= 2 and m % 2 == 0 and dim % m == 0]
    eight = [(m, 8) for m in (dim // 8, dim // 16, dim // 32) if m >= 2 and dim % m == 0]
    fits = [(m, b) for m, b in fast + eight if n * (_code_bytes(m, b) + ID_BYTES) <= budget]
    if not fits:
        return None
    best = max(_code_bytes(m, b) for m, b in fits)
    fast_best = [c for c in fits if c[1] == 4 and _code_bytes(*c) == best]
    eight_best = [c for c in fits if c[1] == 8 and _code_bytes(*c) == best]
    if fast_best and (n * best <= FASTSCAN_MAX_BYTES or not eight_best):
        return fast_best[0]
    return eight_best[0] if eight_best else fast_best[0]


def choose_index(n: int, dim: int, max_memory: int = DEFAULT_MAX_MEMORY, kind: str = "auto") -> IndexPlan:
    """Pick flat (exact), IVF-PQ or (on request) HNSW from the number of vectors and a memory budget."""
    raw = n * dim * 4
    if kind not in ("auto", "flat", "ivfpq", "hnsw"):
        raise IndexFormatError(f"--kind {kind!r}: expected auto, flat, ivfpq or hnsw")
    if kind == "flat" or (kind == "auto" and n * dim <= FLAT_MAX_CELLS and raw <= max_memory):
        why = "requested" if kind == "flat" else f"{n} x {dim} is small enough for an exact scan"
        return IndexPlan("flat", "exact-ip-mmap", n, dim, {}, raw, why)
    if kind == "hnsw":
        params = {"M": 32, "efConstruction": 80, "efSearch": 128}
        return IndexPlan("hnsw", "HNSW32,Flat", n, dim, params, raw + n * 32 * 2 * 4, "requested")
    codes = _pq_codes(dim, n, max_memory)
    if codes is None:
        raise IndexFormatError(
            f"--max-memory {max_memory} bytes cannot hold even the smallest PQ codes of {n} vectors of "
            f"{dim} dimensions; raise it")
    m, bits = codes
    nlist = _nlist(n)
    params = {"nlist": nlist, "pq_m": m, "pq_bits": bits, "nprobe": max(8, nlist // 16),
              "text_nprobe": max(16, nlist // 8), "refine_factor": 10,
              "train_size": train_size(n, nlist)}
    pq = f"PQ{m}x4fs" if bits == 4 else f"PQ{m}"
    why = ("requested" if kind == "ivfpq" else
           f"{n} x {dim} is too large for a fast exact scan or exceeds the budget; {pq} codes fit "
           f"{max_memory} bytes" + ("" if bits == 4 else " (8-bit: memory-mapped lists, shared by the service's "
                                    "workers; fast-scan lists would be read into each one)"))
    return IndexPlan("ivfpq", f"IVF{nlist},{pq}", n, dim, params,
                     n * (_code_bytes(m, bits) + ID_BYTES) + nlist * dim * 4, why)


__all__ = ["DEFAULT_MAX_MEMORY", "FASTSCAN_MAX_BYTES", "FLAT_MAX_CELLS", "IndexPlan", "Kind", "choose_index",
           "parse_memory", "train_size"]
