"""What is computed for one window of a pair of dates: embedding change (1 - cosine) of the whole window and
of each patch token, the spectral change vector (CVA) of each pixel, text-guided scores, and the per-pixel
features the few-shot change probe reads.

The window function reads both dates itself (raw band values, for the change vector; the job's DataLoader
only hands it BEFORE's model input), so the two dates are always read in exactly the same windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.windows import Window as RWindow

from spectraclip.io.scene import Scene, SceneReader

# blended raster channels before the optional ones (probe probability, then one per query)
CHANNELS: tuple[str, ...] = ("emb_window", "emb_token", "cva", "after_valid")
SMOOTH_SIGMAS: tuple[float, ...] = (1.5, 3.0, 6.0)


@dataclass(frozen=True)
class DateStats:
    """Per-band centre and spread of one date (the change vector's per-date standardisation)."""

    mean: np.ndarray
    std: np.ndarray

    def standardise(self, px: np.ndarray) -> np.ndarray:
        return (px - self.mean[:, None, None]) / self.std[:, None, None]


def change_vector(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """CVA magnitude `[h, w]` of standardised bands `[C, h, w]`: the norm of AFTER minus BEFORE over sqrt(C)."""
    d = zb - za
    return np.sqrt((d * d).sum(0) / d.shape[0]).astype(np.float32)


def pixel_features(za: np.ndarray, zb: np.ndarray, emb_window: float, emb_token: np.ndarray) -> np.ndarray:
    """Per-pixel features `[F, h, w]` of one window for the change probe: both dates' standardised bands,
    their difference, the difference smoothed (sigma 3 px), the change vector unsmoothed and smoothed at sigma
    1.5, 3 and 6 px, and the window's and the patch token's embedding change (4C + 6 channels)."""
    from scipy.ndimage import gaussian_filter

    d = zb - za
    cva = change_vector(za, zb)
    smooth_d = np.stack([gaussian_filter(x, 3.0, mode="reflect") for x in d])
    smooth_cva = [gaussian_filter(cva, s, mode="reflect") for s in SMOOTH_SIGMAS]
    emb = np.full_like(cva, emb_window)
    return np.concatenate([za, zb, d, smooth_d, np.stack([cva, *smooth_cva, emb, emb_token])]).astype(np.float32)


def feature_names(bands: Sequence[str]) -> list[str]:
    """Names of the `pixel_features` channels, in order."""
    return ([f"before_{b}" for b in bands] + [f"after_{b}" for b in bands] + [f"diff_{b}" for b in bands]
            + [f"diff_{b}_s3" for b in bands] + ["cva"] + [f"cva_s{s:g}" for s in SMOOTH_SIGMAS]
            + ["emb_window", "emb_token"])


class ChangeWindows:
    """The window function of `change_scene`: per window the blended channels `[K, h, w]` (CHANNELS, then the
    probe's change probability, then each query's similarity change) and a summary row (window embedding
    change, mean token change, mean CVA, share of AFTER with data, class probabilities before and after,
    window-level query change)."""

    def __init__(self, model, encoder, before: Scene, after: Scene, stats: tuple[DateStats, DateStats], *,
                 device: torch.device, class_emb: torch.Tensor | None = None, query_emb: torch.Tensor | None = None,
                 probe=None, reader_options: dict | None = None, sampler=None,
                 probe_map: str | Path | None = None, prepare: Any = None) -> None:
        from spectraclip.apps.dense import DenseEncoder, DenseUnsupportedError, patch_grid
        from spectraclip.zeroshot.classifier import logit_scale

        self.model, self.encoder, self.device, self.stats = model, encoder, device, stats
        self.class_emb = class_emb.to(device) if class_emb is not None else None
        self.query_emb = query_emb.to(device) if query_emb is not None else None
        self.probe, self.scale = probe, logit_scale(model)
        opts = dict(reader_options or {})
        self.before_reader = SceneReader(before, **opts)
        self.after_reader = SceneReader(after, **opts)
        self.prepare = prepare if prepare is not None else model.preprocessor()  # the run's (apps.runner)
        try:
            patch_grid(model)
            self.dense = DenseEncoder(model, "fp32", device)  # patch tokens in fp32, whatever the window mode
        except DenseUnsupportedError:
            self.dense = None  # no patch tokens: the token change is the window change
        self.sampler = sampler  # called with (window, features [F, h, w], valid [h, w]): probe training pixels
        # a scene-level probe (the change network) is predicted over the whole pair beforehand: its probability
        # raster is read per window; a pixel probe reads each window's pixel features
        self.probe_map = rasterio.open(probe_map) if probe_map is not None else None
        self.pixel_probe = probe if probe is not None and probe_map is None else None

    @property
    def channels(self) -> int:
        return len(CHANNELS) + (1 if self.probe is not None else 0) + (len(self.query_emb) if self.query_emb
                                                                           is not None else 0)

    def close(self) -> None:
        self.before_reader.close()
        self.after_reader.close()
        if self.probe_map is not None:
            self.probe_map.close()
            self.probe_map = None

    def _after_inputs(self, x, present, windows):
        """AFTER's model input for the windows; a window AFTER has no data in gets BEFORE's (no change) and is
        flagged; a window cloudy in AFTER is listed in `after_skips` (the head skips it: missing, not compared)."""
        from spectraclip.errors import InputError
        from spectraclip.models.inputs import collate_inputs

        items, raws, ok = [], [], []
        self.after_skips: list[tuple[str, str] | None] = []
        for w in windows:
            got = self.after_reader.read(w)
            self.after_skips.append((got.skipped, f"AFTER: {got.message or got.skipped}") if got.skipped == "cloud"
                                    else None)
            item = None
            if got.sample is not None:
                try:
                    item = self.prepare(got.sample)
                except InputError:
                    item = None
            items.append(item)
            ok.append(got.valid if item is not None and got.valid is not None else np.zeros((w.height, w.width),
                                                                                            bool))
            raws.append(got.sample.pixels if item is not None else None)
        good = [it for it in items if it is not None]
        if not good:
            return x, present, raws, ok
        xa, pa = collate_inputs(good, list(x))
        if len(good) != len(items):  # fill the windows AFTER lacks with BEFORE's input
            idx = [i for i, it in enumerate(items) if it is not None]
            full = {g: t.clone() for g, t in x.items()}
            fullp = {g: p.clone() for g, p in present.items()}
            for g in full:
                if g in xa:
                    full[g][idx] = xa[g].to(full[g].dtype)
                    fullp[g][idx] = pa[g]
            return full, fullp, raws, ok
        return {g: t.to(x[g].dtype) for g, t in xa.items()}, pa, raws, ok

    def __call__(self, x, present, windows):
        x = {g: t.to(self.device) for g, t in x.items()}
        present = {g: p.to(self.device) for g, p in present.items()}
        xa, pa, raw_after, after_ok = self._after_inputs(x, present, windows)
        xa = {g: t.to(self.device) for g, t in xa.items()}
        pa = {g: p.to(self.device) for g, p in pa.items()}
        eb = self.encoder.encode_image(x, present)
        ea = self.encoder.encode_image(xa, pa)
        emb_win = (1.0 - (eb * ea).sum(-1)).clamp_min(0).cpu().numpy()
        h, w = windows[0].height, windows[0].width
        if self.dense is not None:
            tb, ta = self.dense.window_features(x, present), self.dense.window_features(xa, pa)
            tok = (1.0 - (tb * ta).sum(1, keepdim=True)).clamp_min(0)
            tok_up = F.interpolate(tok, size=(h, w), mode="bilinear", align_corners=False)[:, 0].cpu().numpy()
        else:
            tb = ta = None
            tok_up = np.broadcast_to(emb_win[:, None, None], (len(windows), h, w)).copy()
        q_pix = q_win = None
        if self.query_emb is not None:
            q_win = ((ea - eb) @ self.query_emb.T).cpu().numpy()
            if tb is not None:
                dq = torch.einsum("bdhw,qd->bqhw", ta - tb, self.query_emb)
                q_pix = F.interpolate(dq, size=(h, w), mode="bilinear", align_corners=False).cpu().numpy()
            else:
                q_pix = np.broadcast_to(q_win[:, :, None, None], (len(windows), q_win.shape[1], h, w)).copy()
        pb = pa_ = None
        if self.class_emb is not None:
            pb = (self.scale * eb @ self.class_emb.T).softmax(-1).cpu().numpy()
            pa_ = (self.scale * ea @ self.class_emb.T).softmax(-1).cpu().numpy()
        sb, sa = self.stats
        values = np.zeros((len(windows), self.channels, h, w), np.float32)
        summaries = []
        for i, win in enumerate(windows):
            got = self.before_reader.read(win)
            za = sb.standardise(got.sample.pixels) if got.sample is not None else None
            ok = after_ok[i] & (got.valid if got.valid is not None else True)
            zb = sa.standardise(raw_after[i]) if raw_after[i] is not None and za is not None else za
            cva = change_vector(za, zb) if za is not None else np.zeros((h, w), np.float32)
            values[i, 0] = emb_win[i]
            values[i, 1] = tok_up[i]
            values[i, 2] = cva
            values[i, 3] = ok
            k = len(CHANNELS)
            if self.probe_map is not None:
                values[i, k] = self.probe_map.read(1, window=RWindow(win.col, win.row, w, h), boundless=True,
                                                   fill_value=0.0)
                k += 1
            elif self.pixel_probe is not None or self.sampler is not None:
                feats = pixel_features(za, zb, float(emb_win[i]), tok_up[i]) if za is not None else None
                if self.sampler is not None and feats is not None:
                    self.sampler(win, feats, ok)
                if self.pixel_probe is not None:
                    if feats is not None:
                        p = self.pixel_probe.predict_proba(feats.reshape(feats.shape[0], -1).T)
                        values[i, k] = p.reshape(h, w)
                    k += 1
            if q_pix is not None:
                values[i, k:k + q_pix.shape[1]] = q_pix[i]
            row = [float(emb_win[i]), float(tok_up[i].mean()), float(cva.mean()), float(ok.mean())]
            if pb is not None:
                row += pb[i].tolist() + pa_[i].tolist()
            if q_win is not None:
                row += q_win[i].tolist()
            summaries.append(row)
        # a window cloudy in AFTER is missing (skipped with the reason `cloud`), never compared with BEFORE's input
        return values, np.asarray(summaries, np.float32), list(self.after_skips)


__all__ = ["CHANNELS", "ChangeWindows", "DateStats", "change_vector", "feature_names", "pixel_features"]
