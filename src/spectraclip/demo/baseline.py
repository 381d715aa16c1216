"""The demo's supervised yardstick: logistic regression on per-band mean and std of each patch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spectraclip.bands import BandSet


def band_stat_features(dataset, bands: BandSet | str) -> tuple[np.ndarray, list[str]]:
    """Per-band mean and std features (`[N, 2C]`) of a labelled dataset's samples, and their first labels."""
    from spectraclip.probe.baseline import band_stats_features

    want = BandSet.parse(bands)
    feats, labels = [], []
    for i in range(len(dataset)):
        sample = dataset[i].select(want)
        feats.append(band_stats_features(sample.pixels))
        labels.append(sample.meta["labels"][0])
    return np.stack(feats), labels


def band_stats_baseline(train, test, bands: BandSet | str, seed: int = 0) -> dict[str, float]:
    """Fit on `train`, score on `test`: top-1 and balanced accuracy of the standardised logistic regression."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from spectraclip.probe.estimators import make_estimator

    x_tr, y_tr = band_stat_features(train, bands)
    x_te, y_te = band_stat_features(test, bands)
    clf = make_estimator("logistic", "multiclass", seed=seed).fit(x_tr, y_tr)
    pred = clf.predict(x_te)
    return {"top1": float(accuracy_score(y_te, pred)), "balanced_accuracy": float(balanced_accuracy_score(y_te, pred)),
            "n_train": len(y_tr), "n_test": len(y_te), "bands": ",".join(BandSet.parse(bands).names)}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation, as reported for `--seeds N`."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())
