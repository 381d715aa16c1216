"""Multi-file layouts read into ONE `Sample`: SSL4EO-S12 (S1 + S2 products paired by date), BigEarthNet S1+S2
patches (paired through the S1 labels JSON), and a manifest of per-modality files. Each item's files are read
with `read_sample`, put on the grid of a reference modality and stacked; a band's sensor (and so the model input
group it feeds) comes from the band catalog. Missing modalities are normal: the Sample holds whatever was found
and `meta["modalities"]` says which.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.bands import GROUP_ORDER, BandSet, InputGroupError, check_group, group_of_band
from spectraclip.errors import ManifestError
from spectraclip.io.manifest import read_manifest_rows
from spectraclip.io.sample import RasterError, Sample

MODALITIES = GROUP_ORDER


class MultiSensorLayoutError(RasterError):
    """A folder or manifest that is not a multi-sensor layout this module can read (names the path)."""


def _check_bands(modality: str, bands: BandSet, where: str) -> None:
    wrong = [b for b in bands if group_of_band(b) != modality]
    if wrong:
        raise InputGroupError(f"{where}: band(s) {', '.join(wrong)} do not belong to modality {modality!r}")


# ------------------------------------------------------------------------------------ co-registration
def _same_grid(a: Sample, shape: tuple[int, int], crs: str | None, transform: Sequence[float] | None) -> bool:
    if a.pixels.shape[1:] != tuple(shape):
        return False
    if crs is None or a.crs is None or transform is None or a.transform is None:
        return True
    return a.crs == crs and np.allclose(a.transform[:6], transform[:6], rtol=0, atol=1e-9)


def resample_to_grid(sample: Sample, shape: tuple[int, int], crs: str | None = None,
                     transform: Sequence[float] | None = None) -> tuple[Sample, float]:
    """`sample` on the target grid and the fraction of pixels filled (outside its footprint).

    With georeferencing on both sides the pixels are reprojected (bilinear) onto the target grid;
    target pixels the source does not cover are filled with the band mean. Without georeferencing
    the image is resized (bilinear, antialiased) to `shape`, assuming the same footprint.
    """
    if _same_grid(sample, shape, crs, transform):
        return sample, 0.0
    c = sample.pixels.shape[0]
    if crs and transform and sample.crs and sample.transform:
        from affine import Affine
        from rasterio.warp import Resampling, reproject

        out = np.full((c, *shape), np.nan, dtype=np.float32)
        reproject(np.ascontiguousarray(sample.pixels, dtype=np.float32), out,
                  src_transform=Affine(*sample.transform[:6]), src_crs=sample.crs,
                  dst_transform=Affine(*transform[:6]), dst_crs=crs, resampling=Resampling.bilinear,
                  src_nodata=np.nan, dst_nodata=np.nan)
    else:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(sample.pixels, dtype=np.float32))[None]
        out = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)[0].numpy()
    bad = ~np.isfinite(out)
    filled = float(bad.mean())
    if bad.any():
        for b in range(c):
            if bad[b].all():
                raise RasterError(sample.path or sample.id,
                                  f"band {sample.bands.names[b]} does not overlap the reference grid")
            out[b][bad[b]] = float(out[b][~bad[b]].mean())
    return Sample(out, sample.bands, sample.id, sample.path, crs or sample.crs,
                  tuple(transform) if transform else sample.transform, dict(sample.meta)), filled


def coregister(sample_id: str, samples: Mapping[str, Sample], reference: str | None = None,
               meta: Mapping[str, Any] | None = None) -> Sample:
    """Modality samples on one grid (the `reference` modality's; default the first of s2, s1, coherence),
    stacked into one Sample in s2, s1, coherence order. `meta` records the modalities, the grid, the files
    and the fraction of each modality that had to be filled outside its footprint."""
    samples = {check_group(m): s for m, s in samples.items()}
    if not samples:
        raise InputGroupError(f"sample {sample_id!r}: no modality to co-register")
    ref_name = check_group(reference) if reference else next(m for m in MODALITIES if m in samples)
    if ref_name not in samples:
        raise InputGroupError(f"sample {sample_id!r}: reference modality {ref_name!r} is not present")
    ref = samples[ref_name]
    shape = ref.pixels.shape[1:]
    parts, filled = [], {}
    for m in MODALITIES:
        if m in samples:
            on_grid, filled[m] = resample_to_grid(samples[m], shape, ref.crs, ref.transform)
            parts.append((m, on_grid))
    info = dict(meta or {})
    info["grid"] = ref_name
    info["modalities"] = {m: s.bands.to_list() for m, s in parts}
    info["filled_fraction"] = {m: f for m, f in filled.items() if f > 0}
    info["sources"] = {m: s.path for m, s in samples.items()}
    rad = {m: s.meta["radiometry"] for m, s in parts if s.meta.get("radiometry") is not None}
    if rad:  # each modality keeps its own units; the model converts per input group
        info["radiometry_by_modality"] = rad
    pixels = np.concatenate([s.pixels for _, s in parts], axis=0)
    names = tuple(b for _, s in parts for b in s.bands)
    return Sample(pixels, BandSet(names), sample_id, ref.path, ref.crs, ref.transform, info)


# ------------------------------------------------------------------------------------------ items
@dataclass
class LayoutItem:
    """What to read for one sample of a multi-file layout: per-modality raster paths and band specs."""

    id: str
    paths: dict[str, Path]
    bands: dict[str, str | None] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.id} ({', '.join(f'{m}: {p}' for m, p in self.paths.items())})"

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None) -> Sample:
        """Every modality read and co-registered (`read_item`); each modality reads its own bands, so the run's
        `bands`/`radiometry` do not apply (an `io.items.Item`)."""
        return read_item(self, nodata=nodata)


def read_item(item: LayoutItem, *, modalities: Sequence[str] | None = None, reference: str | None = None,
              nodata: str = "error", exclude_bands: Sequence[str] | None = None) -> Sample:
    """Read every modality of `item` (or only `modalities`), co-register them into one Sample and drop
    `exclude_bands` (by name; leaving no band is an error)."""
    from spectraclip.io.readers import read_sample

    want = [check_group(m) for m in modalities] if modalities else list(item.paths)
    samples = {}
    for m in want:
        if m not in item.paths:
            continue
        s = read_sample(item.paths[m], item.bands.get(m), nodata=nodata)
        _check_bands(m, s.bands, str(item.paths[m]))
        samples[m] = s
    if not samples:
        raise InputGroupError(f"item {item.id!r} has none of the modalities {', '.join(want)}")
    if reference and check_group(reference) not in samples:
        reference = None
    sample = coregister(item.id, samples, reference, item.meta)
    if exclude_bands:
        gone = set(BandSet.parse(list(exclude_bands)).names)
        keep = [b for b in sample.bands if b not in gone]
        if not keep:
            raise InputGroupError(f"item {item.id!r}: dropping {', '.join(sorted(gone))} leaves no band")
        sample = sample.select(BandSet(tuple(keep)))
    return sample


class LayoutDataset:
    """`LayoutItem`s read lazily into Samples (map-style: `len`, `[i]`), as `read_item` reads them."""

    def __init__(self, items: Sequence[LayoutItem], *, modalities: Sequence[str] | None = None,
                 reference: str | None = None, nodata: str = "error", source: str = "",
                 exclude_bands: Sequence[str] | None = None) -> None:
        self.items = list(items)
        self.modalities = [check_group(m) for m in modalities] if modalities else None
        self.reference = reference
        self.nodata = nodata
        self.source = source
        self.exclude_bands = list(BandSet.parse(list(exclude_bands)).names) if exclude_bands else []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        return read_item(self.items[i], modalities=self.modalities, reference=self.reference, nodata=self.nodata,
                         exclude_bands=self.exclude_bands)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


# -------------------------------------------------------------------------------------- SSL4EO-S12
_S1_DATE = re.compile(r"_(\d{8})T\d{6}_")
_S2_DATE = re.compile(r"^(\d{8})T\d{6}")


def _product_date(name: str) -> date | None:
    m = _S1_DATE.search(name) or _S2_DATE.match(name)
    if not m:
        return None
    d = m.group(1)
    return date(int(d[:4]), int(d[4:6]), int(d[6:]))


def _products(folder: Path) -> list[tuple[date | None, Path]]:
    return sorted(((_product_date(p.name), p) for p in folder.iterdir() if p.is_dir()), key=lambda t: t[1].name)


def pair_by_date(a: Sequence[tuple[date | None, Any]], b: Sequence[tuple[date | None, Any]],
                 max_days: int | None = None) -> list[tuple[Any | None, Any | None, int | None]]:
    """One-to-one pairs of two product lists by nearest date (closest pairs first); leftovers stay alone.

    Returns `(a_item | None, b_item | None, day_gap | None)` sorted by the first item's date.
    """
    cands = []
    for i, (da, _) in enumerate(a):
        for j, (db, _) in enumerate(b):
            if da is None or db is None:
                continue
            gap = abs((da - db).days)
            if max_days is None or gap <= max_days:
                cands.append((gap, i, j))
    used_a, used_b, out = set(), set(), []
    for gap, i, j in sorted(cands):
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((a[i], b[j], gap))
    out += [(a[i], None, None) for i in range(len(a)) if i not in used_a]
    out += [(None, b[j], None) for j in range(len(b)) if j not in used_b]

    def key(t):
        first = t[0] or t[1]
        return (first[0] or date.min, str(first[1]))

    out.sort(key=key)
    return [(x[1] if x else None, y[1] if y else None, g) for x, y, g in out]


def ssl4eo_s12_items(root: str | Path, *, s2: str = "s2c", max_days: int | None = None) -> list[LayoutItem]:
    """Items of an SSL4EO-S12 folder (`s1/<loc>/<product>/`, `s2c/...`, `s2a/...`).

    Per location, the S2 products of `s2` (`s2c` = L1C, `s2a` = L2A) and the S1 products are paired
    one-to-one by nearest acquisition date (optionally within `max_days`); a product left without a
    partner is a single-modality item. Ids are `<loc>_<yyyymmdd>` of the S2 (else S1) product.
    """
    root = Path(root)
    if s2 not in ("s2c", "s2a"):
        raise MultiSensorLayoutError(root, f"s2={s2!r}: expected 's2c' (L1C) or 's2a' (L2A)")
    s1_dir, s2_dir = root / "s1", root / s2
    if not s1_dir.is_dir() and not s2_dir.is_dir():
        raise MultiSensorLayoutError(root, f"not an SSL4EO-S12 folder: neither s1/ nor {s2}/ inside")
    locs = sorted({p.name for d in (s1_dir, s2_dir) if d.is_dir() for p in d.iterdir() if p.is_dir()})
    items = []
    for loc in locs:
        opt = _products(s2_dir / loc) if (s2_dir / loc).is_dir() else []
        sar = _products(s1_dir / loc) if (s1_dir / loc).is_dir() else []
        for p2, p1, gap in pair_by_date(opt, sar, max_days):
            anchor = p2 or p1
            d = _product_date(anchor.name)
            paths = {m: p for m, p in (("s2", p2), ("s1", p1)) if p is not None}
            meta = {"dataset": "ssl4eo-s12", "location": loc, "s2_level": "L1C" if s2 == "s2c" else "L2A",
                    "products": {m: p.name for m, p in paths.items()}, "day_gap": gap}
            bands = {"s2": "s2-l1c" if s2 == "s2c" else "s2-l2a", "s1": "s1"}
            items.append(LayoutItem(f"{loc}_{d:%Y%m%d}" if d else f"{loc}_{anchor.name}", paths,
                                   {m: bands[m] for m in paths}, meta))
    if not items:
        raise MultiSensorLayoutError(root, "SSL4EO-S12 folder holds no products")
    return items


# ------------------------------------------------------------------------------- BigEarthNet S1+S2
def _labels_json(folder: Path) -> Path | None:
    cand = sorted(folder.glob("*labels_metadata.json")) or sorted(folder.glob("*.json"))
    return cand[0] if cand else None


@dataclass(frozen=True)
class BigEarthNetS1Patch:
    """One BigEarthNet v1 Sentinel-1 patch folder and its labels JSON (read once)."""

    folder: Path
    info: dict[str, Any]

    @property
    def s2_name(self) -> str | None:
        """The S2 patch this S1 patch was cut to match (`corresponding_s2_patch`), if the JSON names one."""
        return self.info.get("corresponding_s2_patch") or None


def _bigearthnet_patch_dirs(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(S1 patch name -> folder, S2 patch name -> folder) of every `<patch>/*labels_metadata.json` under root."""
    s1_dirs: dict[str, Path] = {}
    s2_dirs: dict[str, Path] = {}
    for j in sorted(root.rglob("*labels_metadata.json")):
        name = j.parent.name
        if name.startswith("S1"):
            s1_dirs[name] = j.parent
        elif name.startswith("S2"):
            s2_dirs[name] = j.parent
    return s1_dirs, s2_dirs


def bigearthnet_s1_patches(root: str | Path) -> dict[str, BigEarthNetS1Patch]:
    """S1 patch name -> its folder and labels JSON, for every `S1*` patch folder anywhere under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise MultiSensorLayoutError(root, "no such folder")
    return _read_s1(_bigearthnet_patch_dirs(root)[0])


def _read_s1(s1_dirs: dict[str, Path]) -> dict[str, BigEarthNetS1Patch]:
    return {name: BigEarthNetS1Patch(folder, json.loads(_labels_json(folder).read_text(encoding="utf-8")))  # type: ignore[union-attr]
            for name, folder in s1_dirs.items()}


def bigearthnet_pairs(s1_root: str | Path) -> dict[str, Path]:
    """S2 patch name -> folder of its S1 partner: the one owner of BigEarthNet v1 S1/S2 pairing, through each
    S1 patch's labels JSON (`corresponding_s2_patch`); S1 patches naming no S2 patch are left out."""
    return {p.s2_name: p.folder for p in bigearthnet_s1_patches(s1_root).values() if p.s2_name}


def bigearthnet_s1s2_items(root: str | Path) -> list[LayoutItem]:
    """Items of BigEarthNet v1 S1+S2 pairs: each S1 patch's labels JSON names its S2 patch
    (`corresponding_s2_patch`); the pair is found anywhere under `root`. Labels come from the JSON.
    An S1 patch whose S2 partner is absent is an S1-only item; an S2 patch with no S1 partner an S2-only item.
    """
    root = Path(root)
    if not root.is_dir():
        raise MultiSensorLayoutError(root, "no such folder")
    s1_dirs, s2_dirs = _bigearthnet_patch_dirs(root)
    s1_patches = _read_s1(s1_dirs)
    if not s1_patches and not s2_dirs:
        raise MultiSensorLayoutError(root, "no BigEarthNet patch folders (<patch>/<patch>_labels_metadata.json)")
    items, paired = [], set()
    for name, patch in sorted(s1_patches.items()):
        info, s2_name = patch.info, patch.s2_name
        paths = {"s1": patch.folder}
        if s2_name and s2_name in s2_dirs:
            paths["s2"] = s2_dirs[s2_name]
            paired.add(s2_name)
        meta = {"dataset": "bigearthnet-s1s2", "labels": list(info.get("labels", [])), "s1_patch": name,
                "s2_patch": s2_name, "acquisition_time": info.get("acquisition_time")}
        items.append(LayoutItem(s2_name or name, paths, {"s2": "s2-l2a", "s1": "s1"}, meta))
    for name, folder in sorted(s2_dirs.items()):
        if name in paired:
            continue
        info = json.loads(_labels_json(folder).read_text(encoding="utf-8"))  # type: ignore[union-attr]
        items.append(LayoutItem(name, {"s2": folder}, {"s2": "s2-l2a"},
                               {"dataset": "bigearthnet-s1s2", "labels": list(info.get("labels", [])),
                                "s2_patch": name}))
    for it in items:
        it.bands = {m: it.bands[m] for m in it.paths}
    return items


# ---------------------------------------------------------------------------------------- manifest
def manifest_items(path: str | Path) -> list[LayoutItem]:
    """Items of a multi-sensor manifest: one row per sample with `id` and per-modality paths.

    Columns: `id`, `s2`, `s1`, `coherence` (raster file or band folder; relative paths resolve
    against the manifest's folder; empty = modality missing), optional band specs `s2_bands`,
    `s1_bands`, `coherence_bands` (or a `bands` object {modality: spec} in JSONL). Other keys are
    kept in `meta` (labels, captions, split, ...).
    """
    path = Path(path)
    if not path.exists():
        raise MultiSensorLayoutError(path, "manifest does not exist")
    items = []
    try:
        rows = read_manifest_rows(path)
    except ManifestError as exc:
        raise MultiSensorLayoutError(path, str(exc)) from exc
    for n, row in enumerate(rows, 1):
        rid = row.get("id")
        if rid in (None, ""):
            raise MultiSensorLayoutError(path, f"row {n} has no id")
        paths, bands = {}, {}
        row_bands = row.get("bands") if isinstance(row.get("bands"), dict) else {}
        for m in MODALITIES:
            val = row.get(m)
            if val in (None, ""):
                continue
            p = Path(str(val))
            paths[m] = p if p.is_absolute() else path.parent / p
            spec = row.get(f"{m}_bands") or row_bands.get(m)
            bands[m] = spec or None
        if not paths:
            raise MultiSensorLayoutError(path, f"row {n} (id {rid!r}) names no modality file ({', '.join(MODALITIES)})")
        skip = set(MODALITIES) | {f"{m}_bands" for m in MODALITIES} | {"id", "bands"}
        meta = {k: v for k, v in row.items() if k not in skip}
        items.append(LayoutItem(str(rid), paths, bands, meta))
    if not items:
        raise MultiSensorLayoutError(path, "manifest has no rows")
    return items


def detect_items(source: str | Path, **kwargs: Any) -> tuple[str, list[LayoutItem]]:
    """Items of a supported layout: a manifest file, an SSL4EO-S12 folder or BigEarthNet S1+S2 folders.
    Returns (layout name, items); anything else is a MultiSensorLayoutError naming the path."""
    src = Path(source)
    if src.is_file() and src.suffix.lower() in (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq"):
        return "manifest", manifest_items(src)
    if src.is_dir() and (src / "s1").is_dir() and ((src / "s2c").is_dir() or (src / "s2a").is_dir()):
        return "ssl4eo-s12", ssl4eo_s12_items(src, **kwargs)
    if src.is_dir() and next(src.rglob("*labels_metadata.json"), None) is not None:
        return "bigearthnet-s1s2", bigearthnet_s1s2_items(src)
    raise MultiSensorLayoutError(source, "not a multi-sensor layout (a manifest .jsonl/.csv/.parquet, an "
                                 "SSL4EO-S12 folder with s1/ and s2c/ or s2a/, or BigEarthNet S1+S2 patches)")


LAYOUTS: tuple[str, ...] = ("auto", "ssl4eo", "bigearthnet-s1s2", "manifest")
_LAYOUT_ALIASES = {"ssl4eo-s12": "ssl4eo", "bigearthnet": "bigearthnet-s1s2", "ben": "bigearthnet-s1s2"}


def layout_items(source: str | Path, layout: str = "auto", **kwargs: Any) -> tuple[str, list[LayoutItem]]:
    """Items of `source` read as `layout` (`ssl4eo`, `bigearthnet-s1s2`, `manifest`, or `auto` to detect).
    Returns (layout name, items); an unknown layout is a MultiSensorLayoutError naming the choices."""
    name = _LAYOUT_ALIASES.get(str(layout).lower(), str(layout).lower())
    if name == "auto":
        return detect_items(source, **kwargs)
    if name == "ssl4eo":
        return "ssl4eo-s12", ssl4eo_s12_items(source, **kwargs)
    if name == "bigearthnet-s1s2":
        return name, bigearthnet_s1s2_items(source)
    if name == "manifest":
        return name, manifest_items(source)
    raise MultiSensorLayoutError(source, f"unknown multi-sensor layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def open_layout(source: str | Path, *, modalities: Sequence[str] | None = None, reference: str | None = None,
                nodata: str = "error", layout: str = "auto", exclude_bands: Sequence[str] | None = None,
                **kwargs: Any) -> LayoutDataset:
    """A `LayoutDataset` over a manifest, SSL4EO-S12 folder or BigEarthNet S1+S2 folder."""
    layout, items = layout_items(source, layout, **kwargs)
    return LayoutDataset(items, modalities=modalities, reference=reference, nodata=nodata,
                         source=f"{layout}:{source}", exclude_bands=exclude_bands)
