"""Image–caption manifests and the map-style dataset the trainer reads them with.

The manifest follows the one caption-manifest schema of `spectraclip.io.manifest` (read there, in any of
its formats): `id`, `path` (or a `{band: file}` mapping), optional `bands`, `captions` (or `caption`; one
is drawn per epoch), optional `split`, and any extra keys as metadata. A manifest in which no row has a
caption field is an error naming the file and the fields it has; single rows marked `"status": "failed"`,
without captions or whose image is missing are skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectraclip.bands import BandSet, MissingBandError
from spectraclip.io.manifest import (
    CAPTION_FIELDS,
    IMAGE_FIELDS,
    ManifestError,
    MissingCaptionFieldError,
    read_manifest_rows,
    read_numbered_rows,
    require_caption_field,
    resolve_path,
    row_captions,
    row_image,
    row_location,
)
from spectraclip.io.sample import RasterError, Sample

log = logging.getLogger(__name__)

_CORE_KEYS = {"id", "bands", "split", *CAPTION_FIELDS, *IMAGE_FIELDS}


@dataclass
class CaptionRecord:
    """One usable manifest row with its paths resolved."""

    id: str
    path: str | dict[str, str]
    captions: list[str]
    bands: str | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SkippedRow:
    """A manifest row the dataset left out, and why."""

    where: str
    reason: str


def parse_manifest(
    path: str | Path, split: str | Sequence[str] | None = None, check_files: bool = True
) -> tuple[list[CaptionRecord], list[SkippedRow]]:
    """Usable records of a manifest (optionally only `split`) and the rows skipped with reasons.

    Raises `MissingCaptionFieldError` when no row has a caption field (not a caption manifest)."""
    path = Path(path)
    base = path.parent
    splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)
    numbered = read_numbered_rows(path)
    require_caption_field((row for _, row in numbered), path)
    records: list[CaptionRecord] = []
    skipped: list[SkippedRow] = []
    for i, (number, row) in enumerate(numbered):
        row_split = row.get("split")
        if splits is not None and (row_split or "train") not in splits:
            continue
        rid = str(row.get("id") or f"row{i}")
        where = f"{row_location(path, number)} (id {rid})"
        if str(row.get("status") or "").lower() == "failed":
            skipped.append(SkippedRow(where, "status is 'failed'"))
            continue
        caps = row_captions(row)
        if not caps:
            skipped.append(SkippedRow(where, "no captions"))
            continue
        raw = row_image(row)
        if raw is None:
            skipped.append(SkippedRow(where, "no image path ('path')"))
            continue
        if isinstance(raw, dict):
            resolved: str | dict[str, str] = {b: str(resolve_path(base, p)) for b, p in raw.items()}
            files = list(resolved.values())
        else:
            resolved = str(resolve_path(base, raw))
            files = [resolved]
        if check_files:
            missing = [f for f in files if not Path(f).exists()]
            if missing:
                skipped.append(SkippedRow(where, f"image not found: {missing[0]}"))
                log.warning("skipping %s: image not found: %s", where, missing[0])
                continue
        meta = {k: v for k, v in row.items() if k not in _CORE_KEYS}
        bands = row.get("bands")
        if isinstance(bands, list):
            bands = ",".join(map(str, bands))
        records.append(CaptionRecord(rid, resolved, caps, bands or None, row_split, meta))
    return records, skipped


def read_record(record: CaptionRecord, bands: BandSet | str | None = None) -> Sample:
    """Read a record's pixels as a `Sample` (per-band files are resampled to the finest grid)."""
    from spectraclip.io.readers import read_sample

    if isinstance(record.path, str):
        sample = read_sample(record.path, record.bands)
    else:
        layers, names = [], []
        for band, file in record.path.items():
            s = read_sample(file, band)
            layers.append(torch.from_numpy(np.ascontiguousarray(s.pixels[0], dtype=np.float32)))
            names.append(band)
        h = max(a.shape[0] for a in layers)
        w = max(a.shape[1] for a in layers)
        stacked = [
            a if a.shape == (h, w) else
            torch.nn.functional.interpolate(a[None, None], size=(h, w), mode="bilinear",
                                            align_corners=False)[0, 0]
            for a in layers
        ]
        sample = Sample(torch.stack(stacked).numpy(), BandSet.parse(names), record.id, str(next(iter(
            record.path.values()))))
    sample.id = record.id
    if bands is not None:
        sample = sample.select(bands)
    return sample


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for one item in one epoch, independent of worker layout and restarts."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class CaptionDataset(torch.utils.data.Dataset):
    """Image–caption pairs from a manifest: `ds[i]` is `{"pixels", "caption", "id", "n_bad"}`.

    `transform(sample, generator) -> Tensor[C,S,S]` turns a `Sample` into model input; the caption and
    the transform's randomness are drawn from a per-(seed, epoch, index) generator, so runs are
    reproducible and resumable whatever the number of workers.
    """

    def __init__(
        self,
        manifest: str | Path,
        *,
        split: str | Sequence[str] | None = None,
        transform: Callable[[Sample, torch.Generator], torch.Tensor] | None = None,
        seed: int = 0,
        check_files: bool = True,
    ) -> None:
        self.manifest = Path(manifest)
        self.records, self.skipped = parse_manifest(self.manifest, split, check_files)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select which caption (and which augmentation) each image gets this epoch."""
        self.epoch = int(epoch)

    def caption(self, index: int, epoch: int | None = None) -> str:
        """The caption drawn for `index` in `epoch` (uniformly among the row's captions)."""
        caps = self.records[index].captions
        if len(caps) == 1:
            return caps[0]
        s = item_seed(self.seed, self.epoch if epoch is None else epoch, index)
        return caps[int(np.random.default_rng(s).integers(len(caps)))]

    def declared_bands(self) -> list[tuple[str, BandSet]]:
        """The distinct `bands` declarations of the rows, each with the first row that uses it."""
        seen: dict[str, str] = {}
        for r in self.records:
            key = r.bands or ""
            if key not in seen:
                seen[key] = r.id
        out = []
        for spec, rid in seen.items():
            if spec:
                out.append((rid, BandSet.parse(spec)))
            else:  # no declaration: the reader decides; read that row once to learn its bands
                rec = next(r for r in self.records if r.id == rid)
                out.append((rid, read_record(rec).bands))
        return out

    def check_bands(self, required: BandSet | str) -> None:
        """Fail early (MissingBandError naming the band and the row) when the data lacks a needed band."""
        required = BandSet.parse(required)
        for rid, have in self.declared_bands():
            missing = have.missing(required)
            if missing:
                raise MissingBandError(missing, have.names, f"manifest {self.manifest} row {rid}")

    def __getitem__(self, index: int) -> dict[str, Any]:
        """`{"pixels", "caption", "id", "n_bad"}`; an unreadable image is logged and replaced by the next
        readable row (deterministically), so batch sizes stay fixed; `n_bad` counts the rows passed over."""
        n_bad = 0
        for k in range(min(len(self.records), 64)):
            i = (index + k) % len(self.records)
            rec = self.records[i]
            try:
                sample = read_record(rec)
            except (RasterError, OSError, ValueError) as exc:
                log.warning("skipping unreadable %s (%s): %s", rec.id, rec.path, exc)
                n_bad += 1
                continue
            gen = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, i) ^ 0x5EED)
            pixels = self.transform(sample, gen) if self.transform else torch.from_numpy(sample.pixels)
            return {"pixels": pixels, "caption": self.caption(i), "id": rec.id, "n_bad": n_bad}
        raise RasterError(self.manifest, f"no readable image among {n_bad} rows from row {index}")


def collate_pairs(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch; `n_bad` sums the unreadable rows passed over while loading them. `captions` are the
    texts the loss sees; items with extra texts (question–answer pairs) keep them as `texts` (one list per item)
    and say where each caption came from (`text_sources`)."""
    batch = {
        "pixels": torch.stack([it["pixels"] for it in items]),
        "captions": [it["caption"] for it in items],
        "ids": [it["id"] for it in items],
        "n_bad": sum(int(it.get("n_bad", 0)) for it in items),
    }
    if any("texts" in it for it in items):
        batch["texts"] = [list(it.get("texts") or []) for it in items]
        batch["text_sources"] = [it.get("text_source", "caption") for it in items]
    return batch


__all__ = [
    "CaptionDataset",
    "CaptionRecord",
    "ManifestError",
    "MissingCaptionFieldError",
    "SkippedRow",
    "collate_pairs",
    "item_seed",
    "parse_manifest",
    "read_manifest_rows",
    "read_record",
]
