"""Per-modality, per-band normalisation statistics computed in one streaming pass over a dataset.

Mean and std are exact (float64, Chan et al.'s parallel update). Nodata never enters them: images are
read with `nodata="ignore"` (never filled) and the pixels a reader marks invalid (`Sample.invalid`: NaN
and each band's declared nodata value) are left out, as are non-finite values.
Percentiles come from a uniform random sample of each band's pixels kept with bottom-k random keys
(`reservoir` values per band): exact while a band has at most `reservoir` valid pixels, an unbiased
estimate beyond. Results are `spectraclip.bands.BandStats` per modality (percentiles, min, max and
counts in `extra`), written as JSON and optionally into a recipe's `normalization:` block.

Statistics are in fixed units per modality (`STATS_RADIOMETRY`, recorded as `extra["radiometry"]`):
Sentinel-2 images whose radiometry is known (tags, metadata or `radiometry=`) are converted to
reflectance x 10000 without offset first, so baseline >= 04.00 products (DN + 1000) and older ones mix
correctly; radar dB and coherence are used as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.bands import BandSet, BandStats
from spectraclip.errors import InputError, SpectraclipError
from spectraclip.io.atomic import atomic_open
from spectraclip.io.radiometry import Radiometry, as_radiometry, convert
from spectraclip.io.sample import Sample

PERCENTILES: tuple[float, ...] = (1, 2, 50, 98, 99)
MANIFEST_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq")
READ_NODATA = "ignore"  # statistics read nodata as it is and mask it out; a filled value would bias them
STATS_RADIOMETRY: dict[str, Radiometry] = {
    "s2": Radiometry(1e-4, 0.0, None, "Sentinel-2 reflectance x 10000, no offset"),
    "s1": Radiometry(1.0, 0.0, None, "backscatter as read (dB)"),
    "coherence": Radiometry(1.0, 0.0, None, "coherence as read"),
}


class StatsError(SpectraclipError, ValueError):
    """Nothing readable to compute statistics from, or a bad statistics/recipe file (names it)."""


class _BandAccumulator:
    """Running count/mean/M2/min/max and a bottom-k reservoir of one band's valid pixels."""

    def __init__(self, reservoir: int, rng: np.random.Generator) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.lo = np.inf
        self.hi = -np.inf
        self.cap = reservoir
        self.rng = rng
        self.values = np.empty(0, np.float32)
        self.keys = np.empty(0, np.float64)

    def update(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)].astype(np.float64, copy=False)
        if x.size == 0:
            return
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        keys = self.rng.random(x.size)
        values = np.concatenate([self.values, x.astype(np.float32)])
        keys = np.concatenate([self.keys, keys])
        if values.size > self.cap:
            keep = np.argpartition(keys, self.cap - 1)[: self.cap]
            values, keys = values[keep], keys[keep]
        self.values, self.keys = values, keys

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        return [float(v) for v in np.percentile(self.values.astype(np.float64), qs)]


class RunningStats:
    """Streaming statistics of many `[C, H, W]` arrays whose bands are named (bands may vary per array)."""

    def __init__(self, reservoir: int = 1_000_000, seed: int = 0) -> None:
        self.reservoir = reservoir
        self.rng = np.random.default_rng(seed)
        self.bands: dict[str, _BandAccumulator] = {}
        self.items = 0

    def update(
        self, pixels: np.ndarray, bands: BandSet | Sequence[str], invalid: np.ndarray | None = None
    ) -> None:
        """Add one `[C, H, W]` array; pixels under the bool mask `invalid` (nodata) and non-finite ones are
        left out."""
        bands = BandSet.parse(bands)
        for i, b in enumerate(bands):
            acc = self.bands.get(b)
            if acc is None:
                acc = self.bands[b] = _BandAccumulator(self.reservoir, self.rng)
            plane = np.asarray(pixels[i])
            acc.update(plane.ravel() if invalid is None else plane[~invalid[i]])
        self.items += 1

    def result(self, source: str = "", percentiles: Sequence[float] = PERCENTILES) -> BandStats:
        """The statistics so far as `BandStats` (bands in catalog order of first appearance)."""
        names = [b for b, a in self.bands.items() if a.n > 0]
        if not names:
            raise StatsError(f"no valid pixels seen{' in ' + source if source else ''}")
        acc = {b: self.bands[b] for b in names}
        pct = {b: a.percentiles(percentiles) for b, a in acc.items()}
        extra: dict[str, Any] = {
            "percentiles": {f"p{q:g}": {b: pct[b][i] for b in names} for i, q in enumerate(percentiles)},
            "min": {b: a.lo for b, a in acc.items()},
            "max": {b: a.hi for b, a in acc.items()},
            "count": {b: a.n for b, a in acc.items()},
            "items": self.items,
            "percentile_method": "exact" if all(a.n <= a.cap for a in acc.values())
            else f"uniform sample of {self.reservoir} pixels per band",
        }
        return BandStats({b: a.mean for b, a in acc.items()},
                         {b: float(np.sqrt(a.m2 / a.n)) for b, a in acc.items()}, source, extra)


# ------------------------------------------------------------------------------------- sources
def iter_modality_samples(sources: Sequence[str | Path], *, bands: str | None = None,
                          on_error: Callable[[Path, Exception], None] | None = None
                          ) -> Iterator[tuple[str, Sample]]:
    """(modality, Sample) for every modality of every item of `sources`, one item in memory at a time,
    read with `nodata="ignore"` so nodata pixels are marked (`Sample.invalid`), never filled.

    A source is a multi-sensor manifest / SSL4EO-S12 folder / BigEarthNet S1+S2 folder (each modality
    read at its own resolution), a caption manifest (`path` + optional `bands` per row), or raster
    files and folders (each raster split into modalities by band name, `bands` naming their order).
    """
    from spectraclip.bands import split_by_group as split_bands
    from spectraclip.io.layouts import MultiSensorLayoutError, detect_items
    from spectraclip.io.readers import iter_samples, read_sample

    report = on_error or (lambda p, e: None)

    def split(sample: Sample) -> Iterator[tuple[str, Sample]]:
        for m, bs in split_bands(sample.bands).items():
            yield m, sample.select(bs)

    for src in map(Path, sources):
        layout = None
        try:
            _, items = detect_items(src)
            layout = "multi"
        except MultiSensorLayoutError:
            items = []
        if layout is None and src.is_file() and src.suffix.lower() in MANIFEST_SUFFIXES:
            yield from _caption_manifest(src, split, report, READ_NODATA)
            continue
        if layout is None:
            for sample in iter_samples([src], bands, nodata=READ_NODATA, on_error=report):
                yield from split(sample)
            continue
        for it in items:
            for m, path in it.paths.items():
                try:
                    sample = read_sample(path, it.bands.get(m), nodata=READ_NODATA)
                except InputError as exc:  # bad items are reported and skipped
                    report(path, exc)
                    continue
                for mod, part in split(sample):
                    if mod != m:
                        report(path, ValueError(f"bands {part.bands} are not {m} bands"))
                        continue
                    yield mod, part


def _caption_manifest(src: Path, split, report, nodata: str) -> Iterator[tuple[str, Sample]]:
    from spectraclip.io.manifest import read_manifest_rows
    from spectraclip.io.readers import read_sample

    rows = read_manifest_rows(src)
    if rows and "path" not in rows[0]:
        raise StatsError(f"{src}: manifest rows need per-modality columns (s2, s1, coherence) or a 'path'")
    for row in rows:
        p = Path(str(row["path"]))
        p = p if p.is_absolute() else src.parent / p
        try:
            sample = read_sample(p, row.get("bands") or None, nodata=nodata)
        except InputError as exc:  # bad items are reported and skipped
            report(p, exc)
            continue
        yield from split(sample)


def compute_stats(sources: Sequence[str | Path], *, modalities: Sequence[str] | None = None,
                  bands: str | None = None, max_items: int | None = None, reservoir: int = 1_000_000,
                  seed: int = 0, on_error: Callable[[Path, Exception], None] | None = None,
                  progress: bool = True, radiometry: str | Radiometry | None = None) -> dict[str, BandStats]:
    """Per-modality `BandStats` (mean, std, percentiles 1/2/50/98/99, min, max, counts) in one streaming pass.

    `max_items` stops after that many modality images (a quick estimate on large datasets). `radiometry`
    (a `--radiometry` value) says what the Sentinel-2 inputs are, overriding their tags; statistics are in
    the units of `STATS_RADIOMETRY`. Nodata pixels never count.
    """
    from spectraclip.bands import GROUP_ORDER as MODALITIES
    from spectraclip.bands import check_group as check_modality

    want = {check_modality(m) for m in modalities} if modalities else None
    override = as_radiometry(radiometry)
    running: dict[str, RunningStats] = {}
    it = iter_modality_samples(sources, bands=bands, on_error=on_error)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="statistics", unit="image", total=max_items)
    seen = 0
    for m, sample in it:
        if want is not None and m not in want:
            continue
        rs = running.setdefault(m, RunningStats(reservoir, seed + MODALITIES.index(m)))
        rs.update(_in_stats_units(m, sample, override), sample.bands, sample.invalid)
        seen += 1
        if max_items is not None and seen >= max_items:
            break
    if not running:
        names = ", ".join(map(str, sources))
        raise StatsError(f"no readable images{' of ' + ', '.join(sorted(want)) if want else ''} in {names}")
    src = ", ".join(map(str, sources))
    out = {m: running[m].result(f"{m} statistics of {src}") for m in MODALITIES if m in running}
    for m, st in out.items():
        st.extra["radiometry"] = STATS_RADIOMETRY[m].to_dict()
    return out


def _in_stats_units(modality: str, sample: Sample, override: Radiometry | None) -> np.ndarray:
    """The sample's pixels in `STATS_RADIOMETRY[modality]` units (as read when their radiometry is unknown);
    nodata pixels keep their values (they are masked out anyway)."""
    have = override if override is not None and modality == "s2" else sample.meta.get("radiometry")
    if not isinstance(have, Radiometry):
        return sample.pixels
    return convert(sample.pixels, have, STATS_RADIOMETRY[modality], bands=sample.bands.names, invalid=sample.invalid)


# ----------------------------------------------------------------------------------------- files
def stats_to_json(stats: dict[str, BandStats]) -> dict[str, Any]:
    """`{modality: BandStats.to_dict()}`."""
    return {m: s.to_dict() for m, s in stats.items()}


def stats_from_json(data: dict[str, Any], source: str = "") -> dict[str, BandStats]:
    """Inverse of `stats_to_json` (also accepts a recipe's `normalization:` block)."""
    out = {}
    for m, d in data.items():
        if not isinstance(d, dict) or "mean" not in d or "std" not in d:
            raise StatsError(f"{source or 'statistics'}: entry {m!r} has no mean/std per band")
        extra = {k: v for k, v in d.items() if k not in ("mean", "std", "source")}
        out[m] = BandStats({k: float(v) for k, v in d["mean"].items()}, {k: float(v) for k, v in d["std"].items()},
                           d.get("source", source), extra)
    return out


def write_stats(stats: dict[str, BandStats], path: str | Path) -> Path:
    """Write the statistics JSON atomically."""
    with atomic_open(path) as fh:
        json.dump(stats_to_json(stats), fh, indent=1)
    return Path(path)


def load_stats(path: str | Path) -> dict[str, BandStats]:
    """Read statistics from a `spectraclip stats` JSON or a recipe YAML's `normalization:` block."""
    path = Path(path)
    if not path.exists():
        raise StatsError(f"statistics file {path} does not exist")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = (yaml.safe_load(path.read_text()) or {}).get("normalization")
        if not data:
            raise StatsError(f"recipe {path} has no normalization: block")
    else:
        data = json.loads(path.read_text())
    return stats_from_json(data, str(path))


def write_recipe_normalization(recipe: str | Path, stats: dict[str, BandStats]) -> Path:
    """Set the `normalization:` block of a recipe YAML (created if absent; other keys kept, comments not)."""
    import yaml

    recipe = Path(recipe)
    data: dict[str, Any] = {}
    if recipe.exists():
        loaded = yaml.safe_load(recipe.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise StatsError(f"recipe {recipe} is not a YAML mapping")
        data = loaded or {}
    data["normalization"] = stats_to_json(stats)
    with atomic_open(recipe) as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return recipe
