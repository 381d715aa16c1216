"""The scikit-learn estimators a probe trains, their hyper-parameters, and the metrics of each task."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spectraclip.probe.errors import ProbeError
from spectraclip.probe.labels import Task

MODELS = ("logistic", "random-forest", "knn", "ridge")
METRICS: dict[str, tuple[str, ...]] = {
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1"),
    "multilabel": ("macro_f1", "micro_f1", "subset_accuracy"),
    "regression": ("r2", "mae", "rmse"),
}
HIGHER_IS_BETTER = {"mae": False, "rmse": False}

# Hyper-parameters of the estimators (the equality test against scikit-learn uses the same values).
LOGISTIC_PARAMS: dict[str, Any] = {"C": 1.0, "max_iter": 2000}
FOREST_PARAMS: dict[str, Any] = {"n_estimators": 200, "n_jobs": 1}
KNN_NEIGHBORS = 5
RIDGE_ALPHA = 1.0


def make_estimator(model: str, task: Task, seed: int = 0, n_train: int | None = None):
    """The scikit-learn estimator for `model` on `task` (standardised inputs for linear and k-NN models)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "logistic":
        if task == "regression":
            raise ProbeError("--classifier logistic cannot fit a regression target; use ridge, knn or random-forest")
        clf = LogisticRegression(**LOGISTIC_PARAMS)
        return make_pipeline(StandardScaler(), OneVsRestClassifier(clf) if task == "multilabel" else clf)
    if model == "random-forest":
        cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
        return cls(random_state=seed, **FOREST_PARAMS)
    if model == "knn":
        k = KNN_NEIGHBORS if n_train is None else max(1, min(KNN_NEIGHBORS, n_train))
        cls = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
        return make_pipeline(StandardScaler(), cls(n_neighbors=k))
    if model == "ridge":
        if task == "regression":
            return make_pipeline(StandardScaler(), Ridge(alpha=RIDGE_ALPHA))
        return make_pipeline(StandardScaler(), RidgeClassifier(alpha=RIDGE_ALPHA))
    raise ProbeError(f"--classifier {model!r}: expected one of {', '.join(MODELS)}")


def deterministic(model: str) -> bool:
    """False for estimators whose fit depends on the seed (random forests), which are refit once per draw."""
    return model != "random-forest"


def score(task: Task, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The metrics of `task` (see `METRICS`)."""
    from sklearn import metrics as m

    if task == "multiclass":
        return {
            "accuracy": float(m.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(m.balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(m.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    if task == "multilabel":
        return {
            "macro_f1": float(m.f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "micro_f1": float(m.f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "subset_accuracy": float(m.accuracy_score(y_true, y_pred)),
        }
    return {
        "r2": float(m.r2_score(y_true, y_pred)),
        "mae": float(m.mean_absolute_error(y_true, y_pred)),
        "rmse": float(math.sqrt(m.mean_squared_error(y_true, y_pred))),
    }
