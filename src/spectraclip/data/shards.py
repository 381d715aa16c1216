"""WebDataset shards for large caption corpora: a writer that packs a manifest into `.tar` shards
(`pixels.npy` float16/int16 band array, `captions.json`, `meta.json` per sample) and a streaming
reader with shard + sample shuffling, resampling and per-rank / per-worker splitting."""

from __future__ import annotations

import glob
import io
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectraclip.bands import BandSet, MissingBandError
from spectraclip.errors import SpectraclipError
from spectraclip.io.atomic import atomic_open
from spectraclip.io.sample import RasterError, Sample

log = logging.getLogger(__name__)

INDEX_NAME = "shards.json"
_DTYPES = {"float16": np.float16, "int16": np.int16, "float32": np.float32}


class ShardError(SpectraclipError, ValueError):
    """Shards that cannot be written or read as asked; the message names the shard or option."""


@dataclass
class ShardWriteResult:
    """What `write_shards` produced: shard files, sample count and the rows it skipped (with reasons)."""

    shards: list[str]
    n_samples: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    index: str = ""


def _key(rid: str, i: int) -> str:
    # webdataset splits keys on the first dot of the file name; keep keys dot-free and unique.
    return f"{i:09d}_" + re.sub(r"[^A-Za-z0-9_-]+", "-", rid)[:80]


def _encode(pixels: np.ndarray, dtype: str, where: str) -> np.ndarray:
    np_dtype = _DTYPES[dtype]
    if dtype == "int16":
        if np.any(pixels < -32768) or np.any(pixels > 32767) or not np.all(np.isfinite(pixels)):
            raise RasterError(where, "values do not fit int16; use --dtype float16 or float32")
        return np.rint(pixels).astype(np_dtype)
    if dtype == "float16" and np.nanmax(np.abs(pixels), initial=0) > 65504:
        raise RasterError(where, "values overflow float16; use --dtype int16 or float32")
    return pixels.astype(np_dtype)


def write_shards(
    manifest: str | Path,
    output: str | Path,
    *,
    split: str | Sequence[str] | None = None,
    bands: BandSet | str | None = None,
    dtype: str = "float16",
    maxcount: int = 1000,
    maxsize: float = 1e9,
    prefix: str = "shard",
    progress: bool = True,
) -> ShardWriteResult:
    """Pack the readable rows of a caption manifest into WebDataset shards under `output`.

    `bands` selects/reorders bands by name (default: each file's own bands); unreadable rows are skipped
    and listed. An index `shards.json` (bands, dtype, counts, shard names) is written atomically at the end.
    """
    import webdataset as wds

    from spectraclip.data.captions import parse_manifest, read_record

    if dtype not in _DTYPES:
        raise ShardError(f"dtype {dtype!r} not supported; choose one of {', '.join(_DTYPES)}")
    want = BandSet.parse(bands) if bands is not None else None
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    records, skipped_rows = parse_manifest(manifest, split)
    skipped = [(s.where, s.reason) for s in skipped_rows]
    n, band_sets = 0, set()
    pattern = str(out / f"{prefix}-%06d.tar")
    from rich.progress import Progress

    with wds.ShardWriter(pattern, maxcount=maxcount, maxsize=maxsize, verbose=0) as sink, \
            Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("writing shards", total=len(records))
        for i, rec in enumerate(records):
            bar.advance(task)
            try:
                sample = read_record(rec, want)
                arr = _encode(np.asarray(sample.pixels), dtype, str(rec.path))
            except (RasterError, OSError, ValueError) as exc:
                skipped.append((rec.id, str(exc)))
                log.warning("skipping %s: %s", rec.id, exc)
                continue
            buf = io.BytesIO()
            np.save(buf, arr)
            meta = {"id": rec.id, "bands": sample.bands.to_list(), "split": rec.split,
                    "path": rec.path, "crs": sample.crs,
                    "transform": list(sample.transform) if sample.transform else None, **rec.meta}
            sink.write({"__key__": _key(rec.id, i), "pixels.npy": buf.getvalue(),
                        "captions.json": json.dumps(rec.captions).encode(),
                        "meta.json": json.dumps(meta, default=str).encode()})
            band_sets.add(tuple(sample.bands.to_list()))
            n += 1
    shards = sorted(Path(p).name for p in glob.glob(str(out / f"{prefix}-*.tar")))
    index = {"shards": shards, "n_samples": n, "dtype": dtype, "manifest": str(manifest),
             "bands": [list(b) for b in sorted(band_sets)], "n_skipped": len(skipped)}
    with atomic_open(out / INDEX_NAME) as fh:
        json.dump(index, fh, indent=2)
    return ShardWriteResult([str(out / s) for s in shards], n, skipped, str(out / INDEX_NAME))


def expand_shard_urls(spec: str | Path | Sequence[str]) -> list[str]:
    """Shard files from a folder (its `shards.json` or `*.tar`), a glob, a brace pattern or a list."""
    if not isinstance(spec, (str, Path)):
        return [str(s) for s in spec]
    p = Path(spec)
    if p.is_dir():
        idx = p / INDEX_NAME
        if idx.exists():
            return [str(p / s) for s in json.loads(idx.read_text())["shards"]]
        found = sorted(glob.glob(str(p / "*.tar")))
    elif "{" in str(spec):
        import braceexpand

        found = list(braceexpand.braceexpand(str(spec)))
    else:
        found = sorted(glob.glob(str(spec)))
    if not found:
        raise ShardError(f"no .tar shards found at {spec}")
    return found


def shard_bands(spec: str | Path | Sequence[str]) -> list[BandSet]:
    """Band sets present in shards (from the index when there is one, else from the first sample)."""
    p = Path(spec) if isinstance(spec, (str, Path)) else None
    if p is not None and p.is_dir() and (p / INDEX_NAME).exists():
        return [BandSet.parse(b) for b in json.loads((p / INDEX_NAME).read_text())["bands"]]
    import webdataset as wds

    first = next(iter(wds.WebDataset(expand_shard_urls(spec), shardshuffle=False, empty_check=False)))
    return [BandSet.parse(json.loads(first["meta.json"])["bands"])]


class ShardDataset(torch.utils.data.IterableDataset):
    """Stream `{"pixels", "caption", "id"}` items from shards; split across ranks and loader workers.

    `resampled=True` draws shards with replacement forever (for very large corpora; bound the epoch with
    `samples_per_epoch` in the loop); otherwise shards are shuffled per epoch (deterministically from
    `seed` + epoch) and each rank reads a disjoint subset. Samples are shuffled in a buffer of `shuffle`.
    """

    def __init__(
        self,
        urls: str | Path | Sequence[str],
        *,
        transform: Callable[[Sample, torch.Generator], torch.Tensor] | None = None,
        shuffle: int = 1000,
        resampled: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = urls
        self.urls = expand_shard_urls(urls)
        self.transform = transform
        self.shuffle = shuffle
        self.resampled = resampled
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle shards and samples, and redraw captions, for `epoch`."""
        self.epoch = int(epoch)

    def check_bands(self, required: BandSet | str) -> None:
        """Fail early when the shards lack a band the model needs."""
        required = BandSet.parse(required)
        for have in shard_bands(self.spec):
            missing = have.missing(required)
            if missing:
                raise MissingBandError(missing, have.names, f"shards {self.spec}")

    def _pipeline(self):
        import webdataset as wds

        seed = self.seed * 1_000_003 + self.epoch
        if self.resampled:
            ds = wds.WebDataset(self.urls, resampled=True, nodesplitter=None, seed=seed, empty_check=False)
        else:
            ds = wds.WebDataset(self.urls, shardshuffle=len(self.urls), detshuffle=True, seed=seed,
                                nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker,
                                empty_check=False)
        if self.shuffle > 1:
            ds = ds.shuffle(self.shuffle, initial=min(self.shuffle, 100), seed=seed)
        return ds

    def decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        """One raw tar sample to `{"pixels", "caption", "id"}` (caption drawn per epoch)."""
        meta = json.loads(raw["meta.json"])
        captions = json.loads(raw["captions.json"])
        arr = np.load(io.BytesIO(raw["pixels.npy"])).astype(np.float32)
        sample = Sample(arr, BandSet.parse(meta["bands"]), meta["id"], meta.get("path"), meta.get("crs"),
                        tuple(meta["transform"]) if meta.get("transform") else None, meta)
        s = int(np.random.SeedSequence([self.seed, self.epoch, zlib.crc32(raw["__key__"].encode())])
                .generate_state(1)[0])
        caption = captions[int(np.random.default_rng(s).integers(len(captions)))]
        gen = torch.Generator().manual_seed(s ^ 0x5EED)
        pixels = self.transform(sample, gen) if self.transform else torch.from_numpy(arr)
        return {"pixels": pixels, "caption": caption, "id": meta["id"]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for raw in self._pipeline():
            try:
                yield self.decode(raw)
            except (KeyError, ValueError, RasterError) as exc:
                log.warning("skipping shard sample %s: %s", raw.get("__key__"), exc)
