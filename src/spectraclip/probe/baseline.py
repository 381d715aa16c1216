"""The no-model baseline: per-band mean and std of each raster, written as an embeddings table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from spectraclip.probe.errors import ProbeError


def band_stats_features(pixels: np.ndarray) -> np.ndarray:
    """Per-band mean then per-band std of a `[C, H, W]` array (NaN ignored): a `[2C]` float32 vector."""
    flat = pixels.reshape(pixels.shape[0], -1).astype(np.float64)
    return np.concatenate([np.nanmean(flat, axis=1), np.nanstd(flat, axis=1)]).astype(np.float32)


def baseline_stats_table(paths: Sequence[str | Path], out: str | Path, bands: str | None = None,
                         on_error: Callable[[Path, Exception], None] | None = None,
                         progress: bool = True) -> Path:
    """Write an embeddings table whose vectors are per-band mean and std of each raster (a no-model baseline).
    Ids are those `spectraclip embed` gives the same rasters (path relative to their common folder)."""
    from spectraclip.bands import BandSet
    from spectraclip.embeddings import write_embeddings
    from spectraclip.inference import item_ids
    from spectraclip.io.readers import find_items, iter_samples

    band_set = BandSet.parse(bands) if bands else None
    items = find_items([Path(p) for p in paths])
    id_of = {str(Path(p).resolve()): i for p, i in zip(items, item_ids(items), strict=True)}
    ids, vecs, src, names = [], [], [], None
    it = iter_samples(items, bands=band_set, on_error=on_error)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(items), desc="per-band statistics", unit="item")
    for sample in it:
        if names is None:
            names = sample.bands.to_list()
        elif sample.bands.to_list() != names:
            sample = sample.select(names)
        ids.append(id_of.get(str(Path(sample.path).resolve()), sample.id) if sample.path else sample.id)
        vecs.append(band_stats_features(sample.pixels))
        src.append(sample.path)
    if not vecs:
        raise ProbeError(f"no readable rasters in {', '.join(map(str, paths))} for the per-band statistics baseline")
    write_embeddings(out, ids, np.stack(vecs), columns={"path": src})
    return Path(out)
