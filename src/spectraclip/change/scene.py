"""Change detection between two dates of a place: `change_scene(model, BEFORE, AFTER, output)`.

Both dates are brought onto one grid (`change.grid`) and read in the same windows. Pass 1 (the
resumable scene job of `map`) blends, per pixel: the window embedding change and the patch-token embedding
change (1 - cosine), the change vector (CVA) of the per-date standardised bands, and, when asked, a few-shot
probe's change probability and each query's similarity change (AFTER minus BEFORE). Pass 2 streams that
intermediate raster once to normalise and combine it (the rule below), threshold it and write the COG.

The unsupervised rule (no labels of the scene mapped): each of the three change measures becomes a robust
z-score over the scene, z = (v - median) / max(1.4826 MAD, 1e-3); the change score is
    score = (1 - w) z_cva + w (z_window + z_token) / 2,
and the change band is score > Otsu's threshold of the score's histogram (`otsu`; `otsu2` applies Otsu again
above the first threshold), or `threshold`. The default (w = 0.25, otsu) is the candidate with the best
pooled F1 over the seven OSCD cities of ../shared/data; the evaluation itself picks each city's rule on the
other six (docs/change.md). With a probe, the change band is its probability > its threshold.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window

from spectraclip.apps.runner import DEFAULT_MAX_SKIPPED, SceneJob, SceneOptions, run_model
from spectraclip.apps.scene_job import JobSummary
from spectraclip.change.features import CHANNELS, ChangeWindows, DateStats, feature_names
from spectraclip.change.grid import ChangeInputError, PairGrid, align_pair, band_stats, shared_bands
from spectraclip.change.probe import PixelSamples
from spectraclip.io.cog import BlockWriter
from spectraclip.io.scene import Scene, open_scene, window_grid
from spectraclip.models.device import model_device

MAD_SCALE = 1.4826
SCALE_FLOOR = 1e-3
CHANGED_WINDOW_SHARE = 0.05  # a window is listed as changed when this share of its pixels is flagged
STAT_SIZE = 1024  # the robust statistics and the Otsu histogram come from a read at most this large
STRIP = 256


@dataclass
class ChangeResult:
    """A written change map: its path, the pair's grid, the rule's statistics, quicklook, windows table."""

    path: Path
    grid: PairGrid
    summary: JobSummary
    threshold: float
    threshold_rule: str
    stats: dict[str, Any]
    quicklook: Path | None = None
    vector: Path | None = None
    changed_windows: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_xarray(self) -> Any:
        """The written raster as an `xarray.DataArray` `(band, y, x)` with band names, coordinates and tags
        (`io.cog.read_xarray`)."""
        from spectraclip.io.cog import read_xarray

        return read_xarray(self.path)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of finite `values` (maximises the between-class variance of a `bins` histogram)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    m0 = m / np.maximum(w0, 1)
    m1 = (m[-1] - m) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between))])


def robust_stats(values: np.ndarray, floor: float = SCALE_FLOOR) -> tuple[float, float]:
    """(median, 1.4826 MAD) of finite values; the scale never below `floor` (differences smaller than that,
    in 1 - cosine or in standard deviations of a band, are numerical noise, not change)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    med = float(np.median(v))
    return med, max(MAD_SCALE * float(np.median(np.abs(v - med))), floor)


@dataclass(frozen=True)
class ChangeRule:
    """How the three change measures become a change flag: the weight of the embedding evidence against the
    change vector, and the threshold method (`otsu`; `otsu2`: Otsu again over the scores above the first
    Otsu threshold, for change that covers a small share of the scene)."""

    embedding_weight: float = 0.5
    method: str = "otsu"

    def __post_init__(self) -> None:
        if not 0.0 <= self.embedding_weight <= 1.0:
            raise ChangeInputError(f"--embedding-weight {self.embedding_weight}: must be within 0..1")
        if self.method not in THRESHOLD_METHODS:
            raise ChangeInputError(f"--threshold-method {self.method!r}: choose one of {', '.join(THRESHOLD_METHODS)}")

    @property
    def name(self) -> str:
        return f"w{self.embedding_weight:g}-{self.method}"

    def threshold(self, scores: np.ndarray) -> float:
        t = otsu_threshold(scores)
        if self.method == "otsu2":
            above = scores[np.isfinite(scores) & (scores > t)]
            t = otsu_threshold(above) if above.size > 1 else t
        return t


THRESHOLD_METHODS: tuple[str, ...] = ("otsu", "otsu2")
# The rules the OSCD evaluation chooses among (leave one city out; docs/change.md) and the default, the one
# chosen over all seven cities of ../shared/data/oscd-mini with the demo MS bundle.
RULES: tuple[ChangeRule, ...] = tuple(ChangeRule(w, m) for w in (0.0, 0.25, 0.5) for m in THRESHOLD_METHODS)
DEFAULT_RULE = ChangeRule(0.25, "otsu")


def combine(raw: np.ndarray, stats: dict[str, tuple[float, float]], rule: ChangeRule = DEFAULT_RULE) -> np.ndarray:
    """The unsupervised change score `[n, W]` of raw channels `[K, n, W]`: robust z-scores combined as
    (1 - w) z_cva + w (z_window + z_token) / 2 (see the module doc)."""
    z = {name: (raw[i] - stats[name][0]) / stats[name][1] for i, name in enumerate(CHANNELS[:3])}
    w = rule.embedding_weight
    return ((1.0 - w) * z["cva"] + 0.5 * w * (z["emb_window"] + z["emb_token"])).astype(np.float32)


def _load_pair(model, before: str | Path | Scene, after: str | Path | Scene, work: Path, bands: Any,
               policy: str | None = None, cloud_mask: str = "auto") -> tuple[PairGrid, list[str]]:
    from spectraclip.io.clouds import apply_cloud_mask

    whole = cloud_mask in ("s2cloudless", "auto")  # s2cloudless reads bands the model may not take

    def opened(scene: str | Path | Scene) -> Scene:
        if isinstance(scene, Scene):
            return apply_cloud_mask(scene, cloud_mask, work)
        sc = apply_cloud_mask(open_scene(scene, None if whole else bands), cloud_mask, work)
        return sc.select(bands) if whole and bands is not None else sc

    sb, sa = opened(before), opened(after)
    policy = policy or model.preprocessor().missing_bands
    use, notes = shared_bands(list(model.bands.names), sb, sa, policy)
    pair = align_pair(sb, sa, use, work)
    pair.notes[:0] = notes
    return pair, use


def _records_table(path: Path, pair: PairGrid, windows, records, per_window: dict[int, tuple[float, float, float]],
                   classes: Sequence[str] | None, queries: Sequence[str] | None, probe: bool,
                   skipped: Sequence[tuple[str, str]] | None = None) -> int:
    """The GeoParquet of changed windows, ranked by their mean change score (best first; `status` ok), then the
    missing windows (`status` cloud / nodata / error, `missing_at` before / after, no score). Returns the number
    of changed windows."""
    import geopandas as gpd
    from shapely.geometry import box

    from spectraclip.io.atomic import atomic_path

    idx, vals = records
    by_index = {w.index: w for w in windows}
    aff = pair.before.affine
    k = len(classes or [])
    rows, geoms = [], []
    for i, v in zip(idx.tolist(), vals, strict=True):
        score, share, prob = per_window.get(i, (float("nan"), 0.0, float("nan")))
        if share < CHANGED_WINDOW_SHARE:
            continue
        w = by_index[i]
        x0, y0 = aff @ (w.col, w.row)
        x1, y1 = aff @ (w.col + w.width, w.row + w.height)
        geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        row: dict[str, Any] = {"window": i, "row": w.row + pair.offset[0], "col": w.col + pair.offset[1],
                               "size": w.height, "score": score, "changed_share": share,
                               "emb_change": float(v[0]), "token_change": float(v[1]), "cva": float(v[2]),
                               "after_valid": float(v[3])}
        if probe:
            row["probe_probability"] = prob
        if k:
            pb, pa = v[4:4 + k], v[4 + k:4 + 2 * k]
            row.update({"from": classes[int(np.argmax(pb))], "to": classes[int(np.argmax(pa))],
                        "p_from": float(pb.max()), "p_to": float(pa.max())})
            row["from_to"] = f"{row['from']} → {row['to']}"
        for q, d in zip(queries or [], v[4 + 2 * k:], strict=False):
            row[f"query_change:{q}"] = float(d)
        rows.append(row)
    for row in rows:
        row["status"] = "ok"
    order = sorted(range(len(rows)), key=lambda j: -rows[j]["score"] if math.isfinite(rows[j]["score"]) else 0)
    for rank, j in enumerate(order, start=1):
        rows[j]["rank"] = rank
    by_name = {w.name: w for w in windows}
    for name, message in skipped or []:  # missing windows (cloud or no data at either date): no score, no rank
        w = by_name.get(name)
        if w is None:
            continue
        x0, y0 = aff @ (w.col, w.row)
        x1, y1 = aff @ (w.col + w.width, w.row + w.height)
        geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        reason = "cloud" if "cloud" in message else "nodata" if "nodata" in message or "no data" in message \
            else "error"
        rows.append({"window": w.index, "row": w.row + pair.offset[0], "col": w.col + pair.offset[1],
                     "size": w.height, "score": float("nan"), "changed_share": float("nan"), "status": reason,
                     "missing_at": "after" if message.startswith("AFTER") else "before", "message": message})
        order.append(len(rows) - 1)
    gdf = gpd.GeoDataFrame([rows[j] for j in order], geometry=[geoms[j] for j in order], crs=pair.before.crs)
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp)
    return sum(r["status"] == "ok" for r in rows)


def change_scene(model, before: str | Path | Scene, after: str | Path | Scene, output: str | Path, *,
                 classes: Sequence[Any] | None = None, queries: Sequence[str] | None = None, probe=None,
                 threshold: float | None = None, rule: ChangeRule = DEFAULT_RULE, templates: str | None = None,
                 tile: int | None = None, stride: int | None = None, weight: str = "hann",
                 vector: str | Path | None = "auto", quicklook: bool = True, bands: Any = None,
                 nodata: str = "fill", precision: str | None = "fp32", batch_size: int | None = None,
                 num_workers: int = 0, device: str | None = None, progress: bool = True, checkpoint_rows: int = 512,
                 keep_raw: bool = False, missing_bands: str | None = None,
                 radiometry: str | None = None, max_skipped: float = DEFAULT_MAX_SKIPPED, cloud_mask: str = "auto",
                 options: SceneOptions | None = None) -> ChangeResult:
    """Change map of BEFORE -> AFTER into `output` (COG): band 1 the change score, band 2 the change flag
    (1 changed, 0 not), then the probe's probability (with `probe`) and each query's similarity change; a PNG
    quicklook (before / after / change) and a GeoParquet of changed windows (`vector`, default beside the map).
    Resumable: a rerun after a kill continues and writes the same file. Pass 1 is the scene runner's
    (`apps.runner`: the same shared options as `map_scene`, the same refusal of a run that skipped more than
    `max_skipped` of its windows; the model is not changed)."""
    opts = options or SceneOptions(tile=tile, stride=stride, weight=weight, bands=bands, nodata=nodata,
                                   batch_size=batch_size, num_workers=num_workers, device=device,
                                   precision=precision, progress=progress, checkpoint_rows=checkpoint_rows,
                                   missing_bands=missing_bands,
                                   radiometry=radiometry, max_skipped=max_skipped, cloud_mask=cloud_mask)
    with run_model(model, opts.device) as net:
        return _change(net, before, after, output, opts, classes=classes, queries=queries, probe=probe,
                       threshold=threshold, rule=rule, templates=templates, vector=vector, quicklook=quicklook,
                       keep_raw=keep_raw)


def _change(model, before: str | Path | Scene, after: str | Path | Scene, output: str | Path, opts: SceneOptions,
            *, classes: Sequence[Any] | None, queries: Sequence[str] | None, probe, threshold: float | None,
            rule: ChangeRule, templates: str | None, vector: str | Path | None, quicklook: bool,
            keep_raw: bool) -> ChangeResult:
    from spectraclip.models.precision import prepare_for_inference
    from spectraclip.zeroshot.classifier import ZeroShotClassifier
    from spectraclip.zeroshot.text import encode_texts

    out = Path(output)
    parts = out.with_name(out.name + ".parts")
    dev = model_device(model)
    policy = opts.missing_bands or model.preprocessor().missing_bands
    pair, use = _load_pair(model, before, after, parts / "grid", opts.bands, policy, opts.cloud_mask)
    job = SceneJob.open(model, pair.before, out, opts, select_bands=False)
    sc, tile, stride, windows = job.scene, job.tile, job.stride, job.windows
    stats = (DateStats(*band_stats(pair.before, use)), DateStats(*band_stats(pair.after, use)))
    encoder = prepare_for_inference(model, opts.precision, dev, job.options.batch_size)
    mode = encoder.mode
    specs = list(classes or [])
    names = [getattr(c, "name", str(c)) for c in specs]
    zs = ZeroShotClassifier.build(model, specs, templates) if specs else None
    class_emb = zs.class_emb if zs is not None else None
    qs = [q.strip() for q in (queries or []) if q and q.strip()]
    query_emb = None
    if qs:
        query_emb = torch.from_numpy(encode_texts(model, qs))
    reader_options = opts.reader_options()
    probe_map = None
    if getattr(probe, "kind", None) == "cnn":  # the change network: predicted over the pair tile by tile first
        probe_map = parts / "probe.tif"
        if not probe_map.is_file():
            _predict_probe_map(probe, pair, use, stats, probe_map, reader_options)
    fn = ChangeWindows(model, encoder, pair.before, pair.after, stats, device=dev, class_emb=class_emb,
                       query_emb=query_emb, probe=probe, reader_options=reader_options, probe_map=probe_map,
                       prepare=job.prepare)
    k = fn.channels
    key = job.key("change", {
        "after": pair.after.to_dict(), "classes": names, "prompts": [getattr(c, "prompt", str(c)) for c in specs],
        "queries": qs, "probe": probe.fingerprint() if probe is not None else None,
        "templates": zs.templates.templates.name if zs else None, "precision": mode})
    raw = BlockWriter(out.with_name(out.name + ".raw"), height=sc.height, width=sc.width, count=k,
                      dtype="float32", crs=sc.crs, transform=sc.transform, nodata=float("nan"))

    def on_strip(top: int, values: np.ndarray, wsum: np.ndarray) -> None:
        raw.write(top, np.where(wsum[None] > 0, values, np.nan).astype(np.float32))

    try:
        summary = job.run(fn, k, raw, on_strip, key, reader_options)
    finally:
        fn.close()
    res = _finish(raw.partial, out, pair, windows, summary, names, qs, probe, threshold, rule, model, mode, tile,
                  stride, vector, quicklook, zs.metadata() if zs is not None else None)
    if keep_raw:  # the job is done (a rerun starts over); the raster and the grid's VRTs stay for the caller
        (parts / "state.npz").unlink(missing_ok=True)
        res.extra["raw"] = str(raw.partial)
    else:
        raw.partial.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    return res


def _predict_probe_map(probe, pair: PairGrid, use: list[str], stats: tuple[DateStats, DateStats], path: Path,
                       reader_options: dict[str, Any]) -> None:
    """The change network's probability over the common grid, tile by tile (bounded memory), as a float32
    GeoTIFF at `path` (written to a temporary name, then renamed: a killed run never leaves half a map)."""
    from spectraclip.change.cnn import date_input, predict_tiled
    from spectraclip.io.scene import SceneReader, SceneWindow

    if list(probe.bands) and list(probe.bands) != list(use):
        raise ChangeInputError(f"the change network was trained on bands {', '.join(probe.bands)}, but this pair "
                               f"is read with {', '.join(use)}")
    sc = pair.before
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.tif")
    readers = (SceneReader(pair.before, **reader_options), SceneReader(pair.after, **reader_options))

    def read(r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for reader, st in zip(readers, stats, strict=True):
            got = reader.read(SceneWindow(0, r0, c0, r1 - r0, c1 - c0, 0, 0))
            px = got.sample.pixels if got.sample is not None else np.broadcast_to(
                st.mean[:, None, None], (len(use), r1 - r0, c1 - c0))  # no data: the median (no change)
            out.append(date_input(px, st.mean, st.std, use, probe.config.indices))
        return out[0], out[1]

    profile = {"driver": "GTiff", "height": sc.height, "width": sc.width, "count": 1, "dtype": "float32",
               "crs": sc.crs, "transform": sc.transform, "tiled": True, "blockxsize": 256, "blockysize": 256}
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            for r, c, p in predict_tiled(probe.net, read, sc.height, sc.width, tta=probe.config.tta):
                ds.write(p[None], window=Window(c, r, p.shape[1], p.shape[0]))
    finally:
        for reader in readers:
            reader.close()
    tmp.replace(path)


def _read_reduced(path: Path, max_size: int = STAT_SIZE) -> np.ndarray:
    with rasterio.open(path) as ds:
        f = max(1.0, max(ds.height, ds.width) / max_size)
        shape = (ds.count, max(1, round(ds.height / f)), max(1, round(ds.width / f)))
        return ds.read(out_shape=shape, resampling=Resampling.nearest)


def _finish(raw_path: Path, out: Path, pair: PairGrid, windows, summary: JobSummary, names: list[str],
            queries: list[str], probe, threshold: float | None, crule: ChangeRule, model, mode: str, tile: int,
            stride: int,
            vector: str | Path | None, quicklook: bool, zeroshot: dict[str, Any] | None = None) -> ChangeResult:
    """Pass 2: statistics from a reduced read, then the COG strip by strip, per-window scores, table, PNG."""
    red = _read_reduced(raw_path)
    ok = np.isfinite(red[0]) & (red[3] >= 0.5)
    stats = {name: robust_stats(red[i][ok]) for i, name in enumerate(CHANNELS[:3])}
    score_red = np.where(ok, combine(red, stats, crule), np.nan)
    if threshold is not None:
        score_thr, score_rule = float(threshold), "given (--threshold)"
    else:
        score_thr, score_rule = crule.threshold(score_red), crule.method
    if probe is not None and hasattr(probe, "scene_threshold"):  # the network's threshold, capped per scene
        thr = probe.scene_threshold(red[len(CHANNELS)][ok])
        rule = "probe (threshold chosen on the training scenes" + (
            f"; at most {100 * probe.max_share:g} % of the scene flagged)" if probe.max_share is not None else ")")
    elif probe is not None:
        thr, rule = float(probe.threshold), "probe (threshold chosen on the training scenes)"
    else:
        thr, rule = score_thr, score_rule
    sc = pair.before
    has_probe = probe is not None
    descriptions = ["change_score", "change", *(["probe_probability"] if has_probe else []),
                    *[f"query_change:{q}" for q in queries]]
    tags = {"spectraclip_change": json.dumps({
        "rule": f"score = {1 - crule.embedding_weight:g} z_cva + {crule.embedding_weight:g} (z_window + z_token)/2, "
                "z = (v - median)/(1.4826 MAD) per scene", "embedding_weight": crule.embedding_weight,
        "threshold": thr, "threshold_rule": rule, "score_threshold": score_thr, "stats": stats, "tile": tile,
        "stride": stride,
        "precision": mode, "model": model.config.arch, "before": pair.before.path, "after": pair.after.path,
        "grid": pair.to_dict(), "zeroshot": zeroshot}, default=str), "queries": json.dumps(queries)}
    writer = BlockWriter(out, height=sc.height, width=sc.width, count=len(descriptions), dtype="float32",
                         crs=sc.crs, transform=sc.transform, nodata=float("nan"), descriptions=descriptions, tags=tags)
    writer.open()
    by_row: dict[int, list] = {}
    for w in windows:
        by_row.setdefault(w.row, []).append(w)
    acc: dict[int, list[float]] = {}  # window -> [score sum, changed count, prob sum, n]
    try:
        with rasterio.open(raw_path) as ds:
            for top in range(0, sc.height, STRIP):
                n = min(STRIP, sc.height - top)
                r = ds.read(window=Window(0, top, sc.width, n))
                valid = np.isfinite(r[0]) & (r[3] >= 0.5)
                score = np.where(valid, combine(r, stats, crule), np.nan)
                if has_probe:
                    prob = r[len(CHANNELS)]
                    flag = prob > thr
                else:
                    prob = None
                    flag = score > score_thr
                change = np.where(valid, flag.astype(np.float32), np.nan)
                bands_out = [score, change]
                if has_probe:
                    bands_out.append(np.where(valid, prob, np.nan))
                for qi in range(len(queries)):
                    bands_out.append(np.where(valid, r[len(CHANNELS) + int(has_probe) + qi], np.nan))
                writer.write(top, np.stack(bands_out).astype(np.float32))
                for row0, ws in by_row.items():
                    if row0 + tile <= top or row0 >= top + n:
                        continue
                    a, b = max(row0, top) - top, min(row0 + tile, top + n) - top
                    for w in ws:
                        sl = (slice(a, b), slice(w.col, w.col + w.width))
                        v = valid[sl]
                        t = acc.setdefault(w.index, [0.0, 0.0, 0.0, 0.0])
                        t[0] += float(np.nansum(score[sl]))
                        t[1] += float((flag[sl] & v).sum())
                        t[2] += float(np.nansum(prob[sl])) if prob is not None else 0.0
                        t[3] += float(v.sum())
    finally:
        writer.close()
    writer.finish(resampling="average")
    per_window = {i: (t[0] / t[3], t[1] / t[3], t[2] / t[3] if has_probe else float("nan"))
                  for i, t in acc.items() if t[3] > 0}
    vec_path, n_changed = None, 0
    if vector is not None and summary.records is not None:
        vec_path = out.with_suffix(".windows.parquet") if vector == "auto" else Path(vector)
        n_changed = _records_table(vec_path, pair, windows, summary.records, per_window, names, queries, has_probe,
                                   summary.skipped_windows)
    ql = None
    if quicklook:
        from spectraclip.change.quicklook import change_quicklook

        ql = change_quicklook(pair, out, out.with_suffix(".png"), title=f"{sc.id} → {pair.after.id}: "
                              f"{model.config.arch}{' (probe)' if has_probe else ''}")
    stats_out = {name: {"median": m, "scale": sc_} for name, (m, sc_) in stats.items()}
    return ChangeResult(out, pair, summary, thr, rule, stats_out, ql, vec_path, n_changed, list(pair.notes),
                        {"score_threshold": score_thr, "score_threshold_rule": score_rule, "raw_stats": stats,
                         "rule": crule.name, "zeroshot": zeroshot})


def labelled_samples(model, before: str | Path | Scene, after: str | Path | Scene, labels: str | Path, *,
                     name: str | None = None, tile: int | None = None, stride: int | None = None,
                     bands: Any = None, nodata: str = "fill", precision: str | None = "fp32", batch_size: int = 32,
                     device: str | None = None, work_dir: str | Path | None = None,
                     cloud_mask: str = "auto") -> PixelSamples:
    """Probe training pixels of one labelled pair (mask on BEFORE's 10 m grid), from the same windows and
    features `change_scene` uses: every change pixel and a fixed share of the others, per window. `device` None:
    the model's; like the scene runner, the caller's model is not changed (`apps.runner.run_model`)."""
    import tempfile

    from spectraclip.change.labels import read_change_mask
    from spectraclip.change.probe import PixelSampler
    from spectraclip.models.inputs import collate_inputs
    from spectraclip.models.precision import prepare_for_inference

    with run_model(model, device) as net:
        dev = model_device(net)
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            pair, use = _load_pair(net, before, after, Path(tmp), bands, cloud_mask=cloud_mask)
            change, known = read_change_mask(labels, pair.before_shape)
            r0, c0 = pair.offset
            h, w = pair.before.height, pair.before.width
            sampler = PixelSampler(change[r0:r0 + h, c0:c0 + w], known[r0:r0 + h, c0:c0 + w])
            tile = int(tile or net.image_size)
            windows = window_grid(h, w, tile, int(stride or max(1, tile // 2)))
            stats = (DateStats(*band_stats(pair.before, use)), DateStats(*band_stats(pair.after, use)))
            encoder = prepare_for_inference(net, precision, dev, batch_size)
            fn = ChangeWindows(net, encoder, pair.before, pair.after, stats, device=dev, sampler=sampler,
                               reader_options={"nodata": nodata})
            prepare = net.preprocessor()
            try:
                with torch.inference_mode():
                    for i in range(0, len(windows), batch_size):
                        batch = []
                        for win in windows[i:i + batch_size]:
                            got = fn.before_reader.read(win)
                            if got.sample is not None:
                                batch.append((win, prepare(got.sample)))
                        if batch:
                            x, present = collate_inputs([b[1] for b in batch], net.groups)
                            fn({g: t.float() for g, t in x.items()}, present, [b[0] for b in batch])
            finally:
                fn.close()
    return sampler.samples(name or str(labels))


def labelled_arrays(model, before: str | Path | Scene, after: str | Path | Scene, labels: str | Path, *,
                    name: str | None = None, bands: Any = None, nodata: str = "fill", indices: bool = False,
                    work_dir: str | Path | None = None, cloud_mask: str = "auto"):
    """One labelled pair as whole-scene arrays for the change network (`change.cnn.PairArrays`): both
    dates' bands on the common grid, each standardised by its own date's robust statistics (as the change
    vector; with `indices` also NDVI/NDBI/MNDWI, `change.cnn.date_input`), and the mask. Labelled scenes
    are read whole (OSCD cities are ~500 x 500 px). Pixels the cloud mask (`cloud_mask`, `io.clouds`) marks at
    either date are unknown: never labelled change or no change."""
    import tempfile

    from spectraclip.change.cnn import PairArrays, date_input
    from spectraclip.change.labels import read_change_mask
    from spectraclip.io.scene import SceneReader, SceneWindow

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        pair, use = _load_pair(model, before, after, Path(tmp), bands, cloud_mask=cloud_mask)
        change, known = read_change_mask(labels, pair.before_shape)
        r0, c0 = pair.offset
        h, w = pair.before.height, pair.before.width
        change, known = change[r0:r0 + h, c0:c0 + w], known[r0:r0 + h, c0:c0 + w]
        stats = (DateStats(*band_stats(pair.before, use)), DateStats(*band_stats(pair.after, use)))
        zs = []
        whole = SceneWindow(0, 0, 0, h, w, 0, 0)
        for scene, st in zip((pair.before, pair.after), stats, strict=True):
            # the whole scene is one window: a cloudy share never skips it; its cloudy pixels become unknown
            with SceneReader(scene, nodata=nodata, max_cloud=1.0) as reader:
                got = reader.read(whole)
                cloud = reader.cloud_mask(whole)
            if got.sample is None:
                raise ChangeInputError(f"{scene.path}: {got.message or 'no data'}")
            zs.append(date_input(got.sample.pixels, st.mean, st.std, use, indices))
            known = known & got.valid
            if cloud is not None:
                known = known & ~cloud[:h, :w]
    return PairArrays(name or str(labels), zs[0], zs[1], change & known, known, list(use))


__all__ = ["CHANGED_WINDOW_SHARE", "DEFAULT_RULE", "RULES", "THRESHOLD_METHODS", "ChangeInputError", "ChangeResult",
           "ChangeRule", "change_scene", "combine", "feature_names", "labelled_arrays", "labelled_samples",
           "otsu_threshold", "robust_stats"]
