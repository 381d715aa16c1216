"""Text queries through time: `timeseries_stack(model, inputs, output_dir, queries=..., classes=...)`.

The stack (`timeseries.stack`) puts every date on one grid. Each date is one run of the scene runner
(`apps.runner.SceneJob.run`, the head `_DateHead`): the same windows, read by the one window reader with the
date's cloud layer, so a window cloudier than `max_cloud` (or without data) is skipped there and is MISSING at
that date: its row has NaN values and its `status` says why; nothing is filled in. Per window and date the head
keeps the valid (cloud-free) fraction, each query's cosine similarity (texts encoded once), the class
probabilities (`zeroshot.classifier.ZeroShotClassifier`) and, when asked (or for `metric="embedding"`), the
window embedding. A finished date is stored in the parts folder, so a rerun after a kill skips it, and the date
in progress resumes through the runner's own state (`SPECTRACLIP_FAULT_STOP_AFTER_ROWS` stops it in tests).

Per series (each query's similarity; with `metric="embedding"` each date's cosine distance to the window's
reference-period embedding, the seasonal counterpart of `change`), per window: the Theil-Sen slope per year and
the Mann-Kendall p-value, the robust z-score of each date's residual from the window's trend (anomalies:
|z| > 3.5), and change points (ruptures PELT). Outputs in `output_dir`:
- `timeseries.parquet`: GeoParquet long table, one row per window and date (Major TOM columns + `date`);
- `windows.parquet`: GeoParquet, one row per window: per series slope, interval, tau, p-value, dates with a
  value, anomalous dates, change-point dates;
- per series `<name>.tif` (one band per date), `<name>.trend.tif` (slope per year, p-value, tau),
  `<name>.anomaly.tif` (one robust z band per date): float32 COGs on the stack's grid, window values blended with
  the runner's window weight, NaN where no window had a value;
- `trajectories.png` (the series at the `at` places, or at the three strongest trends), `trend.png`, and
  `clouds.png` (each date in natural colour with its cloud layer in red) when a date has one.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectraclip.apps.runner import SceneJob, SceneOptions, check_skipped, run_model
from spectraclip.apps.scene_job import JobSummary
from spectraclip.errors import SpectraclipError
from spectraclip.io.scene import Scene, SceneReader, SceneWindow
from spectraclip.models.device import model_device
from spectraclip.timeseries.stack import Stack, StacSearch, load_stack
from spectraclip.timeseries.trends import ANOMALY_Z, MAD_SCALE, change_points, detrended_z, trend

METRICS: tuple[str, ...] = ("similarity", "embedding")
STATUS_OK = "ok"
STATUS_OUTSIDE = "outside"


class TimeseriesError(SpectraclipError, ValueError):
    """A time-series request that cannot run (nothing to compute, a bad reference period or place)."""


@dataclass
class TimeseriesResult:
    """What a run wrote, and how it went per date."""

    folder: Path
    table: Path
    windows_table: Path
    dates: list[date]
    rasters: dict[str, dict[str, Path]]
    summaries: list[JobSummary]
    series: list[str]
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    resumed_dates: int = 0
    cloud_masks: list[str] = field(default_factory=list)  # per date: the mask used (scl, s2cloudless, none)
    outside: int = 0  # (window, date) pairs beyond a date's footprint (missing)


class _NullWriter:
    """The per-date run writes no raster (the rasters are painted from the table at the end): a marker file
    stands for its partial output, so the runner's resume logic holds."""

    def __init__(self, path: Path) -> None:
        self.partial = path

    def open(self, resume: bool = False) -> _NullWriter:
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        if not (resume and self.partial.exists()):
            self.partial.write_bytes(b"")
        return self

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class _DateHead:
    """Per window batch of one date: summary [valid fraction, similarities, probabilities, (embedding)]."""

    def __init__(self, encoder: Any, scene: Scene, query_emb: torch.Tensor | None, classifier: Any,
                 keep_embedding: bool) -> None:
        self.encoder, self.device = encoder, encoder.device
        self.query_emb = query_emb.to(self.device) if query_emb is not None else None
        self.classifier, self.keep_embedding = classifier, keep_embedding
        self.reader = SceneReader(scene)  # the cloud layer only (the window itself came through the loader)

    def __call__(self, x, present, windows: list[SceneWindow]):
        x = {g: t.to(self.device) for g, t in x.items()}
        present = {g: p.to(self.device) for g, p in present.items()}
        emb = self.encoder.encode_image(x, present if self.encoder.model.config.multi else None).float()
        cols = [np.array([[1.0 - self.reader.cloud_fraction(w)] for w in windows], np.float32)]
        if self.query_emb is not None:
            cols.append((emb @ self.query_emb.T).cpu().numpy())
        if self.classifier is not None:
            cols.append(self.classifier.probabilities(emb))
        if self.keep_embedding:
            cols.append(emb.cpu().numpy())
        return np.zeros((len(windows), 1), np.float32), np.concatenate(cols, 1).astype(np.float32)

    def close(self) -> None:
        self.reader.close()


def slug(name: str) -> str:
    """A file-name-safe form of a series name (`sim:flooded fields` -> `sim_flooded_fields`)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:60] or "series"


def _skip_reason(message: str) -> str:
    return "cloud" if "cloud" in message else "nodata" if "nodata" in message else "error"


def _run_date(model, stack: Stack, i: int, parts: Path, opts: SceneOptions, head_key: dict[str, Any],
              encoder: Any, query_emb, classifier, keep_embedding: bool, width: int
              ) -> tuple[np.ndarray, np.ndarray, dict[int, str], JobSummary | None]:
    """One date through the scene runner (resumed when its state is there); a finished date is read back.
    Returns (window indices, summaries [N, width], skipped window -> reason, the run's summary or None)."""
    from spectraclip.io.atomic import atomic_path

    done = parts / f"date_{i:03d}.npz"
    ds = stack.dates[i]
    job = SceneJob.open(model, ds.scene, parts / f"date_{i:03d}", opts, select_bands=False)
    names = {w.name: w.index for w in job.windows}
    if done.is_file():
        with np.load(done, allow_pickle=False) as z:
            skipped = {int(k): str(v) for k, v in json.loads(str(z["skipped"])).items()}
            return z["idx"], z["val"], skipped, None
    head = _DateHead(encoder, ds.scene, query_emb, classifier, keep_embedding)
    key = job.key("timeseries", {**head_key, "date": ds.date.isoformat()})
    try:
        summary = job.run(head, 1, _NullWriter(job.parts / "records.partial"), lambda *a: None, key, check=False)
    finally:
        head.close()
    idx, val = summary.records if summary.records is not None else (np.zeros(0, np.int64),
                                                                     np.zeros((0, width), np.float32))
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order].reshape(len(idx), width)
    skipped = {names[n]: _skip_reason(msg) for n, msg in summary.skipped_windows if n in names}
    import io

    buf = io.BytesIO()
    np.savez(buf, idx=idx, val=val, skipped=np.array(json.dumps(skipped)))
    with atomic_path(done) as tmp:
        tmp.write_bytes(buf.getvalue())
    shutil.rmtree(job.parts, ignore_errors=True)
    return idx, val, skipped, summary


def _load_date(parts: Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(window indices, values [N, width]) of a finished date from its part file."""
    with np.load(parts / f"date_{i:03d}.npz", allow_pickle=False) as z:
        return z["idx"], z["val"]


def _outside(windows: Sequence[SceneWindow], footprint: tuple[int, int, int, int] | None) -> np.ndarray:
    """Bool `[W]`: windows not wholly inside `footprint` (row0, row1, col0, col1 on the stack's grid)."""
    if footprint is None:
        return np.zeros(len(windows), bool)
    r0, r1, c0, c1 = footprint
    return np.array([not (w.row >= r0 and w.row + w.height <= r1 and w.col >= c0 and w.col + w.width <= c1)
                     for w in windows], bool)


def meta_dates(dates: Sequence[date]) -> list[str]:
    return [d.isoformat() for d in dates]


def _years(dates: Sequence[date]) -> np.ndarray:
    return np.array([(d - dates[0]).days / 365.25 for d in dates], np.float64)


def _reference_mask(dates: Sequence[date], reference: tuple[date, date] | None) -> np.ndarray:
    if reference is None:
        return np.arange(len(dates)) == 0
    mask = np.array([reference[0] <= d <= reference[1] for d in dates])
    if not mask.any():
        raise TimeseriesError(f"--reference {reference[0]}/{reference[1]}: no date of the stack in it (dates: "
                              f"{', '.join(d.isoformat() for d in dates)})")
    return mask


def embedding_distance(emb: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`[W, T]` cosine distance of each window's date embedding `[W, T, D]` to the normalised mean of its
    embeddings at the reference dates (`reference` bool `[T]`); NaN where either is missing."""
    ref = np.nanmean(np.where(reference[None, :, None], emb.astype(np.float64), np.nan), axis=1)
    ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return (1.0 - np.einsum("wtd,wd->wt", emb.astype(np.float64), ref)).astype(np.float32)


def series_stats(series: np.ndarray, dates: Sequence[date]) -> dict[str, Any]:
    """Per window of `series` `[W, T]`: trend (slope, low, high, tau, p, n), robust z `[W, T]` of the detrended
    values, anomalies (|z| > ANOMALY_Z) and change points (date indexes)."""
    t = _years(dates)
    W, T = series.shape
    trends = [trend(t, series[w]) for w in range(W)]
    slopes = np.array([tr.slope for tr in trends])
    resid = series - np.where(np.isfinite(slopes), slopes, 0.0)[:, None] * t[None]
    mads = []
    for w in range(W):
        r = resid[w][np.isfinite(resid[w])]
        if r.size >= 3:
            mads.append(MAD_SCALE * np.median(np.abs(r - np.median(r))))
    # a window's spread counts as at least the typical window's (scale-free: similarities and embedding
    # distances live on very different scales), so a nearly flat window does not turn noise into anomalies
    floor = max(float(np.median(mads)) if mads else 0.0, 1e-12)
    z = np.stack([detrended_z(t, series[w], slopes[w], floor) for w in range(W)]) if W else np.zeros((0, T))
    scale = floor
    cps = [change_points(series[w], scale=scale) for w in range(W)]
    return {"trends": trends, "z": z.astype(np.float32), "anomaly": np.abs(z) > ANOMALY_Z, "changepoints": cps,
            "floor": floor}


def timeseries_stack(model, inputs: Sequence[str | Path], output_dir: str | Path, *,
                     queries: Sequence[str] | None = None, classes: Sequence[Any] | None = None,
                     metric: str = "similarity", reference: tuple[date, date] | None = None,
                     at: Sequence[tuple[float, float]] = (), embeddings: bool = False, templates: str | None = None,
                     plots: bool = True, options: SceneOptions | None = None,
                     search: StacSearch | None = None) -> TimeseriesResult:
    """Run the time series of `inputs` (a stack of dated scenes of one area) into `output_dir` (see the module
    doc). The shared scene options (`apps.runner.SceneOptions`, incl. `cloud_mask` and `max_cloud`) apply to
    every date; `max_skipped` is checked over the whole stack (a wholly cloudy date is missing, not an error).
    `search` (a STAC API search) adds its items to `inputs`. Resumable; the model is not changed."""
    opts = options or SceneOptions()
    if metric not in METRICS:
        raise TimeseriesError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    qs = [q.strip() for q in (queries or []) if q and q.strip()]
    if not qs and not classes and metric != "embedding":
        raise TimeseriesError("nothing to follow through time: give --query (repeatable), --classes or "
                              "--metric embedding")
    with run_model(model, opts.device) as net:
        return _timeseries(net, inputs, Path(output_dir), qs, list(classes or []), metric, reference, list(at),
                           embeddings, templates, plots, opts, search)


def _timeseries(model, inputs, out: Path, qs: list[str], classes: list[Any], metric: str,
                reference: tuple[date, date] | None, at: list[tuple[float, float]], embeddings: bool,
                templates: str | None, plots: bool, opts: SceneOptions, search: StacSearch | None = None
                ) -> TimeseriesResult:
    from spectraclip.models.precision import prepare_for_inference
    from spectraclip.zeroshot.classifier import ZeroShotClassifier
    from spectraclip.zeroshot.text import encode_texts

    t0 = time.perf_counter()
    parts = out / "timeseries.parts"
    policy = opts.missing_bands or model.preprocessor().missing_bands
    stack = load_stack(inputs, list(model.bands.names), parts, bands=opts.bands, cloud_mask=opts.cloud_mask,
                       missing_policy=policy, search=search)
    dates = [d.date for d in stack.dates]
    ref_mask = _reference_mask(dates, reference)
    first = SceneJob.open(model, stack.grid, parts / "grid_job", opts, select_bands=False)
    opts = first.options  # the batch size fitted once, for every date
    windows = first.windows
    encoder = prepare_for_inference(model, opts.precision, model_device(model), opts.batch_size)
    query_emb = torch.from_numpy(encode_texts(model, qs)) if qs else None  # encoded once for every date
    zs = ZeroShotClassifier.build(model, classes, templates) if classes else None
    keep_emb = embeddings or metric == "embedding"
    dim = int(getattr(model, "embed_dim", 0) or 0)
    if keep_emb and dim == 0:
        dim = int(encoder.encode_image(*_probe_input(first)).shape[-1])
    nq, nc = len(qs), len(zs.names) if zs else 0
    width = 1 + nq + nc + (dim if keep_emb else 0)
    head_key = {"queries": qs, "classes": zs.names if zs else [], "prompts": [c.prompt for c in zs.classes] if zs
                else [], "templates": zs.metadata()["templates"] if zs else None, "embedding": keep_emb,
                "precision": encoder.mode, "stack": stack.bands}
    W, T = len(windows), len(dates)
    small = 1 + nq + nc  # valid fraction, similarities, probabilities: kept for every date (W x T x small)
    vals = np.full((W, T, small), np.nan, np.float32)
    status = np.full((W, T), "missing", dtype=object)
    ref_sum = np.zeros((W, dim), np.float64) if metric == "embedding" else None  # the reference, streamed
    ref_n = np.zeros(W, np.int64)
    summaries: list[JobSummary] = []
    masks: list[str] = []
    resumed = 0
    for i in range(T):
        idx, val, skipped, summary = _run_date(model, stack, i, parts, opts, head_key, encoder, query_emb, zs,
                                               keep_emb, width)
        if summary is None:
            resumed += 1
        else:
            summary.records = None  # stored in the date's part file; not kept for every date
            summaries.append(summary)
        vals[idx, i] = val[:, :small]
        status[idx, i] = STATUS_OK
        for w, reason in skipped.items():
            status[w, i] = reason
        outside = _outside(windows, stack.dates[i].footprint)
        status[outside, i] = STATUS_OUTSIDE  # beyond this date's footprint: missing, whatever was read there
        vals[outside, i] = np.nan
        masks.append(stack.dates[i].cloud_mask)
        if ref_sum is not None and ref_mask[i]:
            e = val[:, small:].astype(np.float64)
            good = (status[idx, i] == STATUS_OK) & np.isfinite(e).all(1)
            ref_sum[idx[good]] += e[good]
            ref_n[idx[good]] += 1
    n_outside = int((status == STATUS_OUTSIDE).sum())
    total = JobSummary(windows=W * T - n_outside, encoded=int((status == STATUS_OK).sum()))
    for s in summaries:
        total.skipped_windows += s.skipped_windows
    total.skipped = {r: int((status == r).sum()) for r in ("cloud", "nodata", "error") if (status == r).any()}
    check_skipped(total, opts.max_skipped, f"the stack of {T} dates ({stack.grid.path} ...)")
    series: dict[str, np.ndarray] = {f"sim:{q}": vals[:, :, 1 + k] for k, q in enumerate(qs)}
    reference_emb = None
    if ref_sum is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            reference_emb = ref_sum / ref_n[:, None]
            reference_emb /= np.linalg.norm(reference_emb, axis=-1, keepdims=True)
        dist = np.full((W, T), np.nan, np.float32)
        for i in range(T):  # one date's embeddings in memory at a time
            idx, val = _load_date(parts, i)
            ok = status[idx, i] == STATUS_OK
            with np.errstate(invalid="ignore"):
                d = 1.0 - np.einsum("wd,wd->w", val[:, small:].astype(np.float64), reference_emb[idx])
            dist[idx[ok], i] = d[ok].astype(np.float32)
        series["embedding_distance"] = dist
    stats = {name: series_stats(s, dates) for name, s in series.items()}
    if "embedding_distance" in stats:  # ~0 at the reference dates by construction: not an anomaly there
        st = stats["embedding_distance"]
        st["z"][:, ref_mask] = np.nan
        st["anomaly"][:, ref_mask] = False
    out.mkdir(parents=True, exist_ok=True)
    from spectraclip.identity import Fingerprints
    from spectraclip.timeseries.outputs import long_table_part, merge_long_table, paint_series, write_windows_table

    meta = {"dates": [d.isoformat() for d in dates], "stack": stack.to_dict(), "queries": qs,
            "classes": zs.names if zs else [], "cloud_masks": dict(zip(meta_dates(dates), masks, strict=True)),
            **Fingerprints.of(model).to_metadata()}
    derived = {n: s for n, s in series.items() if not n.startswith("sim:")}
    long_parts = []
    for i in range(T):  # the long table streams: one part file per date, merged at the end
        emb_i = None
        if embeddings:
            idx, val = _load_date(parts, i)
            emb_i = np.full((W, dim), np.nan, np.float32)
            emb_i[idx] = val[:, small:]
            emb_i[status[:, i] != STATUS_OK] = np.nan
        long_parts.append(long_table_part(parts / f"long_{i:03d}.parquet", stack.grid, windows, dates[i],
                                          status[:, i], vals[:, i], qs, zs.names if zs else [],
                                          {n: s[:, i] for n, s in derived.items()}, emb_i, meta))
    table = merge_long_table(long_parts, out / "timeseries.parquet")
    wtable = write_windows_table(out / "windows.parquet", stack, windows, dates, series, stats)
    tags = {"spectraclip_timeseries": json.dumps({
        "dates": [d.isoformat() for d in dates], "model": model.config.arch, "precision": encoder.mode,
        "tile": first.tile, "stride": first.stride, "cloud_mask": opts.cloud_mask, "max_cloud": opts.max_cloud,
        "metric": metric, "reference": [d.isoformat() for d, m in zip(dates, ref_mask, strict=True) if m],
        "cloud_masks": masks})}
    rasters = {name: paint_series(out, slug(name), stack.grid, windows, dates, series[name], stats[name],
                                  opts.weight, tags) for name in series}
    result = TimeseriesResult(out, table, wtable, dates, rasters, summaries, list(series), notes=list(stack.notes),
                              resumed_dates=resumed, cloud_masks=masks, outside=n_outside)
    if plots and series:
        from spectraclip.timeseries.plot import plot_trajectories, plot_trend

        result.plots["trajectories"] = plot_trajectories(out / "trajectories.png", stack.grid, windows, dates,
                                                         series, stats, at)
        first_series = "embedding_distance" if "embedding_distance" in series else next(iter(series))
        result.plots["trend"] = plot_trend(out / "trend.png", rasters[first_series]["trend"], stack.grid, at,
                                           title=f"Theil-Sen slope per year: {first_series}")
    if plots:
        from spectraclip.timeseries.plot import plot_cloud_masks

        clouds = plot_cloud_masks(out / "clouds.png", stack)
        if clouds is not None:
            result.plots["clouds"] = clouds
    shutil.rmtree(parts, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    return result


def _probe_input(job: SceneJob):
    """A one-window input of the job (to learn the embedding size of a model that does not declare it)."""
    from spectraclip.models.inputs import collate_inputs

    with SceneReader(job.scene) as reader:
        got = reader.read(job.windows[0])
    x, present = collate_inputs([job.prepare(got.sample)], job.model.groups)
    return x, present


def parse_reference(value: str | None) -> tuple[date, date] | None:
    """`--reference START/END` (ISO dates; one date means that day) -> the period."""
    if not value:
        return None
    a, _, b = value.partition("/")
    try:
        start = date.fromisoformat(a.strip())
        end = date.fromisoformat(b.strip()) if b.strip() else start
    except ValueError as exc:
        raise TimeseriesError(f"--reference {value!r}: give START/END as ISO dates, e.g. 2020-01-01/2020-12-31") \
            from exc
    return start, end


def parse_place(value: str) -> tuple[float, float]:
    """`--at lon,lat` -> (lon, lat)."""
    try:
        lon, lat = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise TimeseriesError(f"--at {value!r}: give lon,lat in degrees, e.g. 2.35,48.85") from exc
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise TimeseriesError(f"--at {value!r}: lon must be within -180..180 and lat within -90..90")
    return lon, lat


__all__ = ["METRICS", "TimeseriesError", "TimeseriesResult", "embedding_distance", "parse_place",
           "parse_reference", "series_stats", "slug", "timeseries_stack"]
