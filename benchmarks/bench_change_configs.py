"""Leave-one-city-out runs of change-network configurations on OSCD-mini, keeping every probability map, so that
ensembles (of seeds, of the inner-fold networks) are scored afterwards as averages of the same networks.

`run TAG '{"seed": 1}'` trains, for each held-out city, what `fit_cnn_probe` trains (inner folds i % k of the
other cities, then the final network) with `CnnConfig` plus the JSON overrides, and writes
`OUT/TAG/<city>.npz`: the inner folds' out-of-fold probabilities, the final network's and each inner network's
probabilities on the held-out city. Cities already written are skipped, and a city being run by another
process (its `.lock`) too, so two processes on one TAG share the cities.

`run --variants plain,tta,bnall,bnenc` also saves each network's maps under other prediction variants
(test-time augmentation; test-time BatchNorm adaptation, see `_predict`).

`score SPEC ...` prints per-city and pooled F1 of each SPEC: `TAG`, `TAG1+TAG2` (mean over the tags'
networks, inner-fold predictions averaged the same way), a trailing `^F` (the held-out map also averages
the inner-fold networks: `CnnConfig(fold_ensemble=True)`) and then `@VARIANT` (default `plain`);
threshold and share cap from `choose_threshold` on the inner folds, as the probe does. Session 17's table in
docs/change.md was made this way:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_change_configs.py run C2-s1 '{"seed": 1}'
    PYTHONPATH=src python benchmarks/bench_change_configs.py score C2-s0 C2-s0^F C2-s0+C2-s1^F
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "oscd-mini"


def _arrays(root: Path, checkpoint: str, out: Path) -> dict:
    """The labelled cities as `PairArrays`, cached per root and checkpoint (reading them takes ~1 minute)."""
    key = hashlib.sha256(f"{root.resolve()}|{checkpoint}".encode()).hexdigest()[:12]
    cache = out / f"arrays-{key}.pkl"
    if cache.is_file():
        with cache.open("rb") as f:
            return pickle.load(f)  # our own cache file, written below
    from spectraclip.change.labels import find_pairs
    from spectraclip.change.scene import labelled_arrays
    from spectraclip.models.loading import load_model

    model = load_model(None, checkpoint)
    arrays = {p.name: labelled_arrays(model, p.before, p.after, p.labels, name=p.name, indices=True)
              for p in find_pairs(root)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".partial")
    with tmp.open("wb") as f:
        pickle.dump(arrays, f)
    tmp.rename(cache)
    return arrays


def _predict(net, za: np.ndarray, zb: np.ndarray, variant: str) -> np.ndarray:
    """The probability map of one network under a prediction variant: `plain` (as the probe predicts), `tta`
    (8 flips/rotations), `bnall` / `bnenc` (test-time BatchNorm adaptation: every BN layer, or the encoder's
    only, normalises by the batch statistics of this whole scene, each date's encoder pass by its own)."""
    import copy

    import torch
    from torch import nn

    from spectraclip.change import cnn as cc

    if variant in ("plain", "tta"):
        return cc.predict_arrays(net, za, zb, tta=variant == "tta")
    if variant not in ("bnall", "bnenc"):
        raise SystemExit(f"unknown prediction variant {variant!r}")
    m = copy.deepcopy(net).eval()
    for mod in (m.enc if variant == "bnenc" else m).modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.train()
    factor = 2 ** (len(m.widths) - 1)
    with torch.no_grad():
        a, h, w = cc._pad_to(torch.from_numpy(np.ascontiguousarray(za, np.float32))[None], factor)
        b, _, _ = cc._pad_to(torch.from_numpy(np.ascontiguousarray(zb, np.float32))[None], factor)
        return torch.sigmoid(m(a, b))[0, :h, :w].numpy()


def _without(p, drop: set[str]):
    """A `PairArrays` without the channels of the bands in `drop` (the index channels after the bands stay)."""
    keep = [i for i, b in enumerate(p.bands) if b not in drop] + list(range(len(p.bands), p.za.shape[0]))
    return dataclasses.replace(p, za=p.za[keep], zb=p.zb[keep], bands=[b for b in p.bands if b not in drop])


def _key(variant: str, key: str) -> str:
    return key if variant == "plain" else f"{variant}__{key}"


def run(args: argparse.Namespace) -> int:
    import torch
    from threadpoolctl import threadpool_limits

    from spectraclip.change import cnn as cc

    torch.set_num_threads(1)
    threadpool_limits(1)
    over = json.loads(args.config)
    drop = set(over.pop("drop_bands", []))  # a harness option: these bands leave every input
    for k in ("widths", "cap_shares"):
        if k in over:
            over[k] = tuple(over[k])
    cfg = dataclasses.replace(cc.CnnConfig(), **over)
    arrays = _arrays(args.root, args.checkpoint, args.out)
    if drop:
        arrays = {n: _without(p, drop) for n, p in arrays.items()}
    names = list(arrays)
    out = args.out / args.tag
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**dataclasses.asdict(cfg), "drop_bands": sorted(drop)}))
    for held in names:
        target = out / f"{held}.npz"
        try:
            if target.exists():
                continue
            os.close(os.open(out / f"{held}.lock", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        t0 = time.perf_counter()
        pairs = [arrays[c] for c in names if c != held]
        a, k = arrays[held], cfg.inner_folds
        saved: dict[str, np.ndarray] = {}
        variants = args.variants.split(",")
        for f, (inner_held, inner_train) in enumerate(cc.fold_splits(pairs, k)):
            net, _ = cc.train_net(inner_train, cfg)
            for v in variants:
                saved[_key(v, f"hi_{f}")] = _predict(net, a.za, a.zb, v)[a.known]
                for p in inner_held:
                    saved[_key(v, f"ip_{p.name}")] = _predict(net, p.za, p.zb, v)[p.known]
            for p in inner_held:
                saved[f"iy_{p.name}"] = p.change[p.known]
        net, _ = cc.train_net(pairs, cfg)
        for v in variants:
            saved[_key(v, "held_p")] = _predict(net, a.za, a.zb, v)[a.known]
        saved["held_y"] = a.change[a.known]
        tmp = out / f"{held}.partial.npz"
        np.savez_compressed(tmp, **saved)
        tmp.rename(target)
        print(f"{args.tag} {held}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


def _f1(c: np.ndarray) -> float:
    return float(2 * c[0] / max(1, 2 * c[0] + c[1] + c[2]))


def score(args: argparse.Namespace) -> int:
    from spectraclip.change.cnn import CnnConfig, capped_threshold, choose_threshold

    caps = CnnConfig().cap_shares
    for spec in args.specs:
        spec_tags, _, variant = spec.partition("@")
        variant = variant or "plain"
        fold_ens = spec_tags.endswith("^F")
        tags = spec_tags.removesuffix("^F").split("+")
        cities = sorted(p.stem for p in (args.out / tags[0]).glob("*.npz") if not p.stem.endswith(".partial"))
        tot, row = np.zeros(3, np.int64), []
        for c in cities:
            runs = [np.load(args.out / t / f"{c}.npz") for t in tags]
            keys = [k[3:] for k in runs[0].files if k.startswith("iy_")]
            inner = [np.mean([r[_key(variant, f"ip_{k}")] for r in runs], 0) for k in keys]
            t, _, cap = choose_threshold(inner, [runs[0][f"iy_{k}"] for k in keys], caps)
            held = ["held_p"] + ([k for k in runs[0].files if k.startswith("hi_")] if fold_ens else [])
            p = np.mean([r[_key(variant, k)] for r in runs for k in held], 0)
            y = runs[0]["held_y"]
            pred = p >= capped_threshold(p, t, cap)
            cnt = np.array([(pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()], np.int64)
            tot += cnt
            row.append(f"{c} {_f1(cnt):.3f}")
        prec, rec = tot[0] / max(1, tot[0] + tot[1]), tot[0] / max(1, tot[0] + tot[2])
        print(f"{spec}: {', '.join(row)}; pooled F1 {_f1(tot):.3f} (precision {prec:.2f}, recall {rec:.2f})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--checkpoint", default="/work/demo-bundles/ms")
    ap.add_argument("--out", type=Path, default=Path("/tmp/change_configs"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and save one configuration's maps")
    r.add_argument("tag")
    r.add_argument("config", nargs="?", default="{}", help="JSON overrides of CnnConfig")
    r.add_argument("--variants", default="plain", help="prediction variants saved: plain,tta,bnall,bnenc")
    s = sub.add_parser("score", help="score configurations and ensembles of them")
    s.add_argument("specs", nargs="+")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"no OSCD data at {args.root}", file=sys.stderr)
        return 2
    return run(args) if args.cmd == "run" else score(args)


if __name__ == "__main__":
    raise SystemExit(main())
