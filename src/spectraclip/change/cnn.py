"""The few-shot change probe as a small fully convolutional Siamese network (FC-Siam-diff-like, after Daudt,
Le Saux and Boulch, ICIP 2018): one encoder shared by both dates (their per-date robust-standardised bands
and three spectral indices), a decoder fed the absolute difference of the two dates' features at every scale,
one change logit per pixel.

Why a network and not the per-pixel probe: OSCD's changes are urban (new buildings, roads), and what tells
them from crop phenology and shadows is their shape and surroundings; the default network's receptive field
is 92 px (920 m), the pixel probe's a few pixels. It is kept small (default 8-16-32-64 channels, 122 k
weights) so it trains on one CPU core in minutes from a handful of labelled scenes.

Training (`fit_cnn_probe`): random crops of the labelled scenes (half of them centred on a change pixel, so
the rare class is seen), flips and 90 degree rotations, class-weighted binary cross-entropy over the labelled
pixels, AdamW for a fixed number of steps, fixed seed (deterministic on a fixed thread count). The decision
threshold is chosen without the scene being mapped: the F1-best one on out-of-scene predictions of the training
scenes (k folds of training scenes, each predicted by a network trained on the others), as the pixel probe
does, jointly with an optional cap on the share of a scene that may be flagged (`choose_threshold`). The
probe's map is the mean of the final network and those inner-fold networks (`ChangeEnsemble`; measured better
leave one city out than the final network alone, docs/change.md), optionally over several seeds.

Prediction (`predict_tiled`) is tile by tile with a context margin, keeping each tile's centre, so memory is
bounded by the tile size for any scene, and the result equals a whole-scene pass (tiles are aligned to the
network's pooling grid and the margin covers its receptive field).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spectraclip.change.grid import ChangeInputError
from spectraclip.change.probe import best_f1_threshold

SEED = 0


@dataclass(frozen=True)
class CnnConfig:
    """Hyper-parameters of the change network and its training (each fixed before the leave-one-city-out run it
    is reported with; docs/change.md)."""

    widths: tuple[int, ...] = (8, 16, 32, 64)  # channels per encoder level (each level halves the resolution)
    steps: int = 600  # optimiser steps
    batch: int = 8  # crops per step
    crop: int = 64  # crop size in pixels (a multiple of 2 ** (len(widths) - 1))
    lr: float = 2e-3
    weight_decay: float = 1e-4
    change_crops: float = 0.5  # share of crops centred on a change pixel
    pos_weight: float | None = None  # BCE weight of change pixels; None: sqrt(no-change / change) of the crops
    dice: float = 0.0  # weight of a soft Dice term added to the BCE
    inner_folds: int = 2  # folds of training scenes for the out-of-scene threshold (1 scene: threshold 0.5)
    indices: bool = True  # add NDVI, NDBI and MNDWI of each date (from its raw bands) to its input
    # candidate caps on the flagged share of a scene, chosen with the threshold on the inner folds
    cap_shares: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05)
    seed: int = SEED
    tta: bool = False  # predict each tile under the 8 flips/rotations of the square and average (8x the cost)
    # radiometric jitter: each crop's date gets a random gain (1 + N(0, jitter)) and offset (N(0, jitter)) per
    # input channel, so the network learns change that survives haze, calibration and season shifts; 0: off
    jitter: float = 0.0
    # the probe's map is the mean probability of the final network and the inner-fold networks (which exist anyway
    # for the threshold): an ensemble of k + 1 networks for the cost of k + 1 predictions
    fold_ensemble: bool = True
    seeds: int = 1  # train everything (inner folds and final network) with this many seeds and average them

    @property
    def factor(self) -> int:
        return 2 ** (len(self.widths) - 1)


def config_with(steps: int | None = None, seeds: int | None = None) -> CnnConfig:
    """The default configuration with the command line's `--probe-steps` / `--probe-seeds` (None: default)."""
    cfg = CnnConfig()
    return replace(cfg, steps=steps or cfg.steps, seeds=seeds or cfg.seeds)


INDICES: tuple[tuple[str, str, str], ...] = (("ndvi", "B08", "B04"), ("ndbi", "B11", "B08"), ("mndwi", "B03", "B11"))


def date_input(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, bands: Sequence[str], indices: bool = False
               ) -> np.ndarray:
    """One date's network input `[C (+3), h, w]` from its raw bands `[C, h, w]`: each band standardised by the
    date's robust statistics (median, 1.4826 MAD: season and illumination largely cancel), then with `indices`
    the normalised differences NDVI, NDBI and MNDWI (x3, about unit spread), which keep what standardising
    removes: whether a pixel is vegetation, built-up or water. An index whose bands are missing is 0."""
    z = (raw - mean[:, None, None]) / std[:, None, None]
    if not indices:
        return z.astype(np.float32)
    extra = []
    for _, a, b in INDICES:
        if a in bands and b in bands:
            va, vb = raw[list(bands).index(a)].astype(np.float32), raw[list(bands).index(b)].astype(np.float32)
            extra.append(3.0 * (va - vb) / np.maximum(np.abs(va + vb), 1e-3))
        else:
            extra.append(np.zeros(raw.shape[1:], np.float32))
    return np.concatenate([z, np.stack(extra)]).astype(np.float32)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SiamDiffNet(nn.Module):
    """FC-Siam-diff-like U-Net: shared encoder per date, decoder on |features(after) - features(before)| at every
    level. Symmetric in the two dates by construction. Input `[B, C, H, W]` twice, H and W multiples of
    `2 ** (levels - 1)`; output change logits `[B, H, W]`."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (8, 16, 32, 64)) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        enc, cin = [], in_channels
        for w in self.widths:
            enc.append(_block(cin, w))
            cin = w
        self.enc = nn.ModuleList(enc)
        dec = []
        for lo, hi in zip(self.widths[:-1][::-1], self.widths[1:][::-1], strict=True):
            dec.append(nn.ModuleDict({"up": nn.ConvTranspose2d(hi, lo, 2, stride=2), "conv": _block(2 * lo, lo)}))
        self.dec = nn.ModuleList(dec)
        self.head = nn.Conv2d(self.widths[0], 1, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self._encode(a), self._encode(b)
        diffs = [(y - x).abs() for x, y in zip(fa, fb, strict=True)]
        x = diffs[-1]
        for d, skip in zip(self.dec, diffs[:-1][::-1], strict=True):
            x = d["conv"](torch.cat([d["up"](x), skip], 1))
        return self.head(x)[:, 0]


class ChangeEnsemble(nn.Module):
    """Several `SiamDiffNet`s of the same shape as one: the logit of their mean change probability, so every
    prediction path (tiles, test-time augmentation) treats it as one network."""

    def __init__(self, members: Sequence[SiamDiffNet]) -> None:
        super().__init__()
        if not members or len({m.widths for m in members}) > 1:
            raise ValueError("an ensemble needs one or more networks of the same widths")
        self.members = nn.ModuleList(members)
        self.widths = members[0].widths

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(a, b)) for m in self.members]).mean(0)
        return torch.logit(p, eps=1e-7)


ChangeNet = SiamDiffNet | ChangeEnsemble


def in_channels(net: ChangeNet) -> int:
    """Input channels of a change network or ensemble."""
    first = net.members[0] if isinstance(net, ChangeEnsemble) else net
    return int(first.enc[0][0].in_channels)


@dataclass
class PairArrays:
    """One labelled pair on its common grid: both dates' standardised bands `[C, H, W]`, the change mask and
    the labelled ("known") pixels `[H, W]` (pixels without data in both dates are not known)."""

    name: str
    za: np.ndarray
    zb: np.ndarray
    change: np.ndarray
    known: np.ndarray
    bands: list[str] = field(default_factory=list)


def _pad_to(x: torch.Tensor, factor: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % factor, (-w) % factor
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w


def _probabilities(net: ChangeNet, a: torch.Tensor, b: torch.Tensor, tta: bool) -> torch.Tensor:
    """Change probabilities `[B, H, W]` of padded inputs; with `tta` the mean over the 8 symmetries of the square
    (each input flipped/rotated, its output turned back), which the training augmentations make equally valid."""
    if not tta:
        return torch.sigmoid(net(a, b))
    acc = torch.zeros(a.shape[0], *a.shape[-2:])
    for k in range(4):
        for flip in (False, True):
            ta, tb = torch.rot90(a, k, (-2, -1)), torch.rot90(b, k, (-2, -1))
            if flip:
                ta, tb = ta.flip(-1), tb.flip(-1)
            p = torch.sigmoid(net(ta, tb))
            if flip:
                p = p.flip(-1)
            acc += torch.rot90(p, -k, (-2, -1))
    return acc / 8


def predict_tiled(net: ChangeNet, read: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]],
                  height: int, width: int, *, tile: int = 256, margin: int = 64, tta: bool = False
                  ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Change probabilities of a `height` x `width` scene tile by tile: `read(r0, r1, c0, c1)` gives both dates'
    standardised bands over those rows/cols; yields `(row, col, prob [h, w])` per tile. Each tile is predicted
    with `margin` pixels of context around it (clipped at the scene edge) and only its centre is kept, so
    memory is bounded by (tile + 2 margin)^2 and the result equals one pass over the whole scene (`tta`:
    averaged over the 8 flips/rotations of each padded tile)."""
    factor = 2 ** (len(net.widths) - 1)
    tile = max(factor, tile // factor * factor)
    margin = -(-margin // factor) * factor  # context offsets stay on the pooling grid
    net.eval()
    for r in range(0, height, tile):
        for c in range(0, width, tile):
            r0, c0 = max(0, r - margin), max(0, c - margin)
            r1, c1 = min(height, r + tile + margin), min(width, c + tile + margin)
            za, zb = read(r0, r1, c0, c1)
            with torch.inference_mode():
                a, h, w = _pad_to(torch.from_numpy(np.ascontiguousarray(za, np.float32))[None], factor)
                b, _, _ = _pad_to(torch.from_numpy(np.ascontiguousarray(zb, np.float32))[None], factor)
                p = _probabilities(net, a, b, tta)[0, :h, :w].numpy()
            th, tw = min(tile, height - r), min(tile, width - c)
            yield r, c, p[r - r0:r - r0 + th, c - c0:c - c0 + tw].astype(np.float32)


def predict_arrays(net: ChangeNet, za: np.ndarray, zb: np.ndarray, *, tile: int = 256, margin: int = 64,
                   tta: bool = False) -> np.ndarray:
    """`predict_tiled` over in-memory arrays `[C, H, W]`: the probability map `[H, W]`."""
    h, w = za.shape[1:]
    out = np.zeros((h, w), np.float32)
    for r, c, p in predict_tiled(net, lambda r0, r1, c0, c1: (za[:, r0:r1, c0:c1], zb[:, r0:r1, c0:c1]), h, w,
                                 tile=tile, margin=margin, tta=tta):
        out[r:r + p.shape[0], c:c + p.shape[1]] = p
    return out


def crop_sampler(pairs: Sequence[PairArrays], cfg: CnnConfig, rng: np.random.Generator):
    """The training crops of the change network: a function drawing (za, zb, change, known) crops of `cfg.crop`
    pixels (smaller scenes are padded as unknown), `cfg.change_crops` of them centred near a change pixel, each
    date's channels jittered by `cfg.jitter` (a gain and an offset per channel, from its own random stream, so
    the crops are the same with or without jitter)."""
    s = cfg.crop
    padded = []
    for p in pairs:
        h, w = p.change.shape
        ph, pw = max(0, s - h), max(0, s - w)
        pad3, pad2 = ((0, 0), (0, ph), (0, pw)), ((0, ph), (0, pw))
        padded.append((np.pad(p.za, pad3), np.pad(p.zb, pad3), np.pad(p.change & p.known, pad2),
                       np.pad(p.known, pad2)))
    sizes = np.array([p.known.sum() for p in pairs], np.float64)
    pick_p = sizes / sizes.sum()
    change_idx = [np.flatnonzero(c) for _, _, c, _ in padded]
    with_change = [i for i, ci in enumerate(change_idx) if len(ci)]
    n_change = np.array([len(change_idx[i]) for i in with_change], np.float64)
    jrng = np.random.default_rng([cfg.seed, 1])  # its own stream: the same crops with or without jitter

    def draw() -> tuple[np.ndarray, ...]:
        if with_change and rng.random() < cfg.change_crops:
            i = with_change[rng.choice(len(with_change), p=n_change / n_change.sum())]
            w = padded[i][2].shape[1]
            k = change_idx[i][rng.integers(len(change_idx[i]))]
            cy, cx = divmod(int(k), w)
            h = padded[i][2].shape[0]
            r = int(np.clip(cy - s // 2 + rng.integers(-s // 4, s // 4 + 1), 0, h - s))
            c = int(np.clip(cx - s // 2 + rng.integers(-s // 4, s // 4 + 1), 0, w - s))
        else:
            i = int(rng.choice(len(padded), p=pick_p))
            h, w = padded[i][2].shape
            r, c = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        za, zb, ch, kn = padded[i]
        out = [za[:, r:r + s, c:c + s], zb[:, r:r + s, c:c + s], ch[r:r + s, c:c + s], kn[r:r + s, c:c + s]]
        k90 = int(rng.integers(4))
        flip = bool(rng.integers(2))
        for j, x in enumerate(out):
            x = np.rot90(x, k90, axes=(-2, -1))
            if flip:
                x = x[..., ::-1]
            out[j] = np.ascontiguousarray(x)
        if cfg.jitter:
            for j in (0, 1):
                n = out[j].shape[0]
                gain = 1.0 + cfg.jitter * jrng.standard_normal(n)
                off = cfg.jitter * jrng.standard_normal(n)
                out[j] = (out[j] * gain[:, None, None] + off[:, None, None]).astype(np.float32)
        return tuple(out)

    return draw


def train_net(pairs: Sequence[PairArrays], cfg: CnnConfig = CnnConfig(), *,
              log: Callable[[str], None] | None = None) -> tuple[SiamDiffNet, list[float]]:
    """Train a `SiamDiffNet` on the pairs' labelled pixels (crops, flips/rotations, class-weighted BCE, AdamW
    with a one-cycle learning rate, `cfg.steps` steps); returns the network (eval mode) and the loss of
    every step. Deterministic for a seed on a fixed thread count."""
    if not any(p.change[p.known].any() for p in pairs):
        raise ChangeInputError("the training label masks hold no change pixel at all: a change network needs some "
                               f"(scenes: {', '.join(p.name for p in pairs)})")
    if cfg.crop % cfg.factor:
        raise ChangeInputError(f"crop {cfg.crop} is not a multiple of {cfg.factor} (the network's pooling)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SiamDiffNet(pairs[0].za.shape[0], cfg.widths)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # one-cycle: 10 % warm-up, cosine decay (at least 2 warm-up steps: torch divides by their count - 1)
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                 pct_start=max(0.1, 2 / cfg.steps)) if cfg.steps >= 3 else None)
    draw = crop_sampler(pairs, cfg, rng)
    losses: list[float] = []
    pos_w = cfg.pos_weight
    net.train()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        crops = [draw() for _ in range(cfg.batch)]
        a, b, y, k = (torch.from_numpy(np.stack([c[j] for c in crops])) for j in range(4))
        y, k = y.float(), k.float()
        logit = net(a.float(), b.float())
        if pos_w is None:
            npos = float((y * k).sum())
            weight_pos = float(np.sqrt(max(float(k.sum()) - npos, 1.0) / max(npos, 1.0)))
        else:
            weight_pos = float(pos_w)
        wts = k * (1.0 + (weight_pos - 1.0) * y)
        loss = (F.binary_cross_entropy_with_logits(logit, y, reduction="none") * wts).sum() / wts.sum().clamp_min(1)
        if cfg.dice:
            p = torch.sigmoid(logit) * k
            loss = loss + cfg.dice * (1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * k).sum() + 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.detach()))
        if log and (step + 1) % max(1, cfg.steps // 5) == 0:
            log(f"  step {step + 1}/{cfg.steps}: loss {np.mean(losses[-50:]):.4f} ({time.perf_counter() - t0:.0f} s)")
    net.eval()
    return net, losses


def capped_threshold(prob: np.ndarray, threshold: float, max_share: float | None) -> float:
    """`threshold`, raised to the (1 - max_share) quantile of a scene's finite probabilities when a cap is set."""
    v = prob[np.isfinite(prob)]
    if max_share is None or v.size == 0:
        return float(threshold)
    return max(float(threshold), float(np.quantile(v, 1.0 - max_share)))


@dataclass
class CnnProbe:
    """A trained change network, its decision threshold and what it was trained on. `kind` tells
    `change_scene` to predict it tile by tile over the whole pair (not per pixel feature vector)."""

    net: ChangeNet
    threshold: float
    bands: list[str]
    scenes: list[str]
    config: CnnConfig
    n_train: int
    inner_f1: float | None = None
    train_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    max_share: float | None = None  # flag at most this share of a scene (its highest probabilities); None: no cap
    kind: str = "cnn"

    def scene_threshold(self, prob: np.ndarray) -> float:
        """The threshold for one scene's probabilities: the probe's, raised to the scene's (1 - max_share)
        quantile when a share cap was chosen (a season change lighting up a third of a scene stays capped)."""
        return capped_threshold(prob, self.threshold, self.max_share)

    def fingerprint(self) -> str:
        buf = io.BytesIO()
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, buf)
        return hashlib.sha256(buf.getvalue() + repr(self.threshold).encode()).hexdigest()[:16]

    def predict_arrays(self, za: np.ndarray, zb: np.ndarray, tile: int = 256, margin: int = 64) -> np.ndarray:
        """The probability map `[H, W]` of in-memory standardised bands `[C, H, W]` (tiled)."""
        return predict_arrays(self.net, za, zb, tile=tile, margin=margin, tta=self.config.tta)

    def describe(self) -> dict[str, Any]:
        return {"kind": "cnn", "threshold": self.threshold, "max_share": self.max_share, "scenes": self.scenes,
                "n_train": self.n_train,
                "inner_f1": self.inner_f1, "train_seconds": round(self.train_seconds, 1),
                "config": asdict(self.config), "notes": self.notes}

    def to_state(self) -> dict[str, Any]:
        members = len(self.net.members) if isinstance(self.net, ChangeEnsemble) else 0
        return {"kind": "cnn", "state_dict": self.net.state_dict(), "in_channels": in_channels(self.net),
                "members": members,
                "threshold": self.threshold, "bands": self.bands, "scenes": self.scenes,
                "config": asdict(self.config), "n_train": self.n_train, "inner_f1": self.inner_f1,
                "train_seconds": self.train_seconds, "notes": self.notes, "max_share": self.max_share}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CnnProbe:
        cfg = CnnConfig(**{**state["config"], "widths": tuple(state["config"]["widths"]),
                           "cap_shares": tuple(state["config"].get("cap_shares", ()))})
        n, members = int(state["in_channels"]), int(state.get("members", 0))
        net: ChangeNet = (ChangeEnsemble([SiamDiffNet(n, cfg.widths) for _ in range(members)]) if members
                          else SiamDiffNet(n, cfg.widths))
        net.load_state_dict(state["state_dict"])
        net.eval()
        return cls(net, float(state["threshold"]), list(state["bands"]), list(state["scenes"]), cfg,
                   int(state["n_train"]), state.get("inner_f1"), float(state.get("train_seconds", 0.0)),
                   list(state.get("notes", [])), state.get("max_share"))


def choose_threshold(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], cap_shares: Sequence[float] = ()
                     ) -> tuple[float, float, float | None]:
    """(threshold, pooled F1, share cap or None) F1-best over out-of-scene probabilities of several scenes: the
    threshold on a grid of 99, jointly with a cap on each scene's flagged share among `cap_shares` (a scene
    flags at most that share, its highest probabilities) or no cap."""
    y = np.concatenate(labels)
    ones = np.ones(len(y))
    t, f1 = best_f1_threshold(np.concatenate(probs), y, ones)
    best: tuple[float, float, float | None] = (t, f1, None)
    for q in cap_shares:
        capped = [np.where(p >= np.quantile(p, 1.0 - q), p, 0.0) for p in probs]
        t, f1 = best_f1_threshold(np.concatenate(capped), y, ones)
        if f1 > best[1]:
            best = (t, f1, float(q))
    return best


def fold_splits(pairs: Sequence[PairArrays], k: int) -> Iterator[tuple[list[PairArrays], list[PairArrays]]]:
    """The (held, train) scenes of the k inner folds (scene i is held in fold i % k)."""
    for f in range(k):
        yield ([p for i, p in enumerate(pairs) if i % k == f], [p for i, p in enumerate(pairs) if i % k != f])


def _as_one(nets: Sequence[SiamDiffNet]) -> ChangeNet:
    return nets[0] if len(nets) == 1 else ChangeEnsemble(nets)


def fit_cnn_probe(pairs: Sequence[PairArrays], cfg: CnnConfig = CnnConfig(), *,
                  log: Callable[[str], None] | None = None) -> CnnProbe:
    """Train the change network on all `pairs`; its threshold is the F1-best one on out-of-scene predictions
    (`cfg.inner_folds` folds of the training scenes, each predicted by a network trained on the others; 0.5
    with a single scene). A scene without change pixels trains as no-change only (noted)."""
    notes = [f"{p.name}: its label mask has no change pixel; its pixels train as no-change only"
             for p in pairs if not p.change[p.known].any()]
    if not pairs or not any(p.change[p.known].any() for p in pairs):
        raise ChangeInputError("the training label masks hold no change pixel at all: a change network needs some "
                               f"(scenes: {', '.join(p.name for p in pairs)})")
    if len({tuple(p.bands) for p in pairs}) > 1 or len({p.za.shape[0] for p in pairs}) > 1:
        raise ChangeInputError("the labelled pairs are read with different bands: "
                               + "; ".join(f"{p.name}: {', '.join(p.bands)}" for p in pairs))
    want = len(pairs[0].bands) + (len(INDICES) if cfg.indices else 0)
    if pairs[0].bands and pairs[0].za.shape[0] != want:
        raise ChangeInputError(f"the labelled pairs have {pairs[0].za.shape[0]} input channels, the configuration "
                               f"wants {want} ({len(pairs[0].bands)} bands{' + 3 indices' if cfg.indices else ''}): "
                               "read them with labelled_arrays(..., indices=config.indices)")
    t0 = time.perf_counter()
    threshold, inner, max_share = 0.5, None, None
    seeds = [cfg.seed + i for i in range(max(1, cfg.seeds))]

    def trained(train: Sequence[PairArrays], what: str) -> list[SiamDiffNet]:
        nets = []
        for sd in seeds:
            if log:
                seed = f" (seed {sd})" if len(seeds) > 1 else ""
                log(f"{what}: train on {', '.join(p.name for p in train)}{seed}")
            nets.append(train_net(train, replace(cfg, seed=sd), log=log)[0])
        return nets

    fold_nets: list[SiamDiffNet] = []
    k = min(cfg.inner_folds, len(pairs))
    if k >= 2:
        ps, ys = [], []
        for f, (held, train) in enumerate(fold_splits(pairs, k)):
            if not any(p.change[p.known].any() for p in train):
                continue
            nets = trained(train, f"inner fold {f + 1}/{k}")
            for p in held:
                prob = predict_arrays(_as_one(nets), p.za, p.zb, tta=cfg.tta)
                ps.append(prob[p.known])
                ys.append(p.change[p.known])
            fold_nets += nets if cfg.fold_ensemble else []
        if ps:
            threshold, inner, max_share = choose_threshold(ps, ys, cfg.cap_shares)
    net = _as_one(trained(pairs, f"final network on {len(pairs)} scenes") + fold_nets)
    n = int(sum(p.known.sum() for p in pairs))
    return CnnProbe(net, threshold, list(pairs[0].bands), [p.name for p in pairs], cfg, n, inner,
                    time.perf_counter() - t0, notes, max_share)


__all__ = ["ChangeEnsemble", "ChangeNet", "CnnConfig", "CnnProbe", "PairArrays", "SiamDiffNet", "capped_threshold",
           "choose_threshold", "config_with", "crop_sampler", "date_input", "fit_cnn_probe", "fold_splits",
           "in_channels", "predict_arrays", "predict_tiled", "train_net"]
