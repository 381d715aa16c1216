"""Metric functions agree with independent implementations (scikit-learn, torchmetrics) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from torchmetrics.retrieval import RetrievalMAP, RetrievalRecall

from spectraclip.evaluate import metrics as M
from spectraclip.evaluate import multilabel as ML
from spectraclip.evaluate import retrieval as R

SEEDS = [0, 1, 2, 3, 4]


def _single_label(seed: int, n: int = 200, k: int = 10):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, k))
    labels = rng.integers(0, k, size=n)
    labels[labels == k - 1] = 0  # class k-1 has no true samples (edge case)
    return scores, labels, k


@pytest.mark.parametrize("seed", SEEDS)
def test_single_label_agrees_with_sklearn(seed):
    scores, labels, k = _single_label(seed)
    pred = scores.argmax(1)
    assert abs(M.top_k_accuracy(scores, labels, 1) - skm.accuracy_score(labels, pred)) < 1e-6
    assert abs(M.accuracy(labels, pred) - skm.accuracy_score(labels, pred)) < 1e-6
    ref5 = skm.top_k_accuracy_score(labels, scores, k=5, labels=np.arange(k))
    assert abs(M.top_k_accuracy(scores, labels, 5) - ref5) < 1e-6
    with pytest.warns(UserWarning):  # sklearn warns that y_pred has a class absent from y_true
        ref_bal = skm.balanced_accuracy_score(labels, pred)
    assert abs(M.balanced_accuracy(labels, pred, k) - ref_bal) < 1e-6
    np.testing.assert_array_equal(M.confusion_matrix(labels, pred, k),
                                  skm.confusion_matrix(labels, pred, labels=np.arange(k)))
    rec = skm.recall_score(labels, pred, labels=np.arange(k - 1), average=None, zero_division=0)
    pca = M.per_class_accuracy(labels, pred, k)
    np.testing.assert_allclose(pca[: k - 1], rec, atol=1e-6)
    assert np.isnan(pca[k - 1])


def test_single_label_ties_and_summary():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.5, 0.1, 0.5]])
    labels = np.array([0, 2, 2])
    # ties go to the lowest class index, like argmax
    assert M.top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert M.top_k_accuracy(scores, labels, 2) == pytest.approx(1.0)
    out = M.classification_metrics(scores, labels, ["a", "b", "c"])
    assert out["top5"] is None and out["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [1, 1, 0]]
    assert out["per_class_accuracy"] == {"a": 1.0, "b": None, "c": 0.0}
    assert out["balanced_accuracy"] == pytest.approx(0.5)


def test_predictions_file_round_trip(tmp_path):
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.5, 0.1, 0.9]])
    path = M.write_predictions(tmp_path / "p" / "run.csv", ["x", "y", "z"], scores, [0, 2, 2], ["a", "b", "c"])
    assert path.read_text().splitlines() == ["id,label,predicted,correct,score", "x,a,a,1,1.0000",
                                             "y,c,b,0,2.0000", "z,c,c,1,0.9000"]
    back = M.read_predictions(path)
    assert {k: r["correct"] for k, r in back.items()} == {"x": True, "y": False, "z": True}
    assert back["y"] == {"label": "c", "predicted": "b", "correct": False, "score": 2.0}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nx,a\n")
    with pytest.raises(ValueError, match="bad.csv: not a predictions file"):
        M.read_predictions(bad)


def test_paired_difference_interval():
    rng = np.random.default_rng(1)
    a = (rng.random(54) < 0.75).astype(float)
    b = np.where(rng.random(54) < 0.8, a, 1 - a)  # paired: agrees with a on most images
    mean, lo, hi = M.paired_difference_ci(a, b)
    assert mean == pytest.approx(a.mean() - b.mean()) and lo < mean < hi
    assert (lo, hi) == M.paired_difference_ci(a, b)[1:]  # seeded: the same interval every time
    # 4x the images -> an interval about half as wide
    mean4, lo4, hi4 = M.paired_difference_ci(np.tile(a, 4), np.tile(b, 4))
    assert mean4 == pytest.approx(mean) and 0.35 < (hi4 - lo4) / (hi - lo) < 0.65
    assert M.paired_difference_ci(a, a) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        M.paired_difference_ci([1.0], [0.0])


def test_stratified_bootstrap_chance_keeps_group_shares_and_is_seeded():
    # 30 items of group "a" worth 1 and 10 of group "b" worth 0: every stratified draw of 8 holds 6 a + 2 b
    values, groups = [1.0] * 30 + [0.0] * 10, ["a"] * 30 + ["b"] * 10
    exact = M.stratified_bootstrap_chance(values, groups, 8, 0.75, draws=200)
    assert exact["chance"] == 1.0 and exact["p05"] == exact["p95"] == pytest.approx(0.75)
    assert M.stratified_bootstrap_chance(values, groups, 8, 0.76, draws=200)["chance"] == 0.0
    # spread values: the share of draws reaching a threshold falls as the threshold rises; same seed, same answer
    rng = np.random.default_rng(0)
    noisy, labels = rng.normal(0.15, 0.4, 216), np.repeat(np.arange(10), 22)[:216]
    chance = M.stratified_bootstrap_chance
    low, mid, high = (chance(noisy, labels, 54, t, draws=500)["chance"] for t in (0.0, 0.10, 0.3))
    assert 1.0 >= low > mid > high >= 0.0
    again = [M.stratified_bootstrap_chance(noisy, labels, 54, 0.10, draws=500) for _ in range(2)]
    assert again[0] == again[1] and again[0]["chance"] == mid
    with pytest.raises(ValueError, match="0 < n < 40"):
        M.stratified_bootstrap_chance(values, groups, 40, 0.1)


def _multilabel(seed: int, n: int = 150, k: int = 12):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, k))
    targets = (rng.random((n, k)) < 0.3).astype(int)
    targets[:, 3] = 0  # a class with no positives
    targets[:, 5] = 1  # a class present everywhere
    scores[:, 7] = np.round(scores[:, 7])  # many ties
    return scores, targets


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_agrees_with_sklearn(seed):
    scores, targets = _multilabel(seed)
    k = scores.shape[1]
    neg = np.random.default_rng(seed + 100).normal(size=scores.shape[0])
    for pred in (ML.predict_mean_of_others(scores), ML.predict_negative_class(scores, neg)):
        m = ML.per_class_metrics(pred, targets)
        p, r, f, s = skm.precision_recall_fscore_support(targets, pred.astype(int), average=None,
                                                         zero_division=0)
        np.testing.assert_allclose(m["precision"], p, atol=1e-6)
        np.testing.assert_allclose(m["recall"], r, atol=1e-6)
        np.testing.assert_allclose(m["f1"], f, atol=1e-6)
        np.testing.assert_array_equal(m["support"], s)
        acc = [skm.accuracy_score(targets[:, i], pred[:, i]) for i in range(k)]
        np.testing.assert_allclose(m["accuracy"], acc, atol=1e-6)
        out = ML.multilabel_metrics(scores, targets, [f"c{i}" for i in range(k)])
        mp = ML.per_class_metrics(ML.predict_mean_of_others(scores), targets)
        assert out["mean_of_others"]["macro"]["f1"] == pytest.approx(mp["f1"].mean(), abs=1e-12)
    pm = ML.predict_mean_of_others(scores)
    micro = skm.precision_recall_fscore_support(targets, pm.astype(int), average="micro", zero_division=0)
    out = ML.multilabel_metrics(scores, targets, [f"c{i}" for i in range(k)])
    assert out["mean_of_others"]["micro"]["f1"] == pytest.approx(micro[2], abs=1e-6)
    # full-ranking AP, including a class full of tied scores; class 3 has no positives -> excluded
    mean_ap, ap = ML.mean_average_precision(scores, targets)
    for i in range(k):
        if i == 3:
            assert np.isnan(ap[i])
            continue
        assert abs(ap[i] - skm.average_precision_score(targets[:, i], scores[:, i])) < 1e-6
    valid = [i for i in range(k) if i != 3]
    ref = skm.average_precision_score(targets[:, valid], scores[:, valid], average="macro")
    assert abs(mean_ap - ref) < 1e-6


def test_mean_of_others_rule_by_hand():
    scores = np.array([[0.9, 0.1, 0.2], [0.25, 0.25, 0.25]])
    # row 0: others' means are 0.15, 0.55, 0.5 -> only class 0; row 1: all equal -> none (strict >)
    np.testing.assert_array_equal(ML.predict_mean_of_others(scores), [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(ML.predict_negative_class(scores, [0.15, 0.25]), [[1, 0, 1], [0, 0, 0]])


def _retrieval(seed: int, q: int = 8, n: int = 300):
    rng = np.random.default_rng(seed)
    scores = rng.random((q, n)) + 0.01  # positive: torchmetrics drops items with score <= 0
    relevant = rng.random((q, n)) < rng.uniform(0.02, 0.4, size=(q, 1))
    relevant[2] = False  # a query with no relevant item
    relevant[4] = False
    relevant[4, :3] = True  # very few relevant (< k)
    return scores, relevant


def _torchmetrics(metric_cls, scores, relevant, k, empty):
    q, n = scores.shape
    metric = metric_cls(top_k=k, empty_target_action=empty)
    idx = torch.arange(q).repeat_interleave(n)
    return float(metric(torch.tensor(scores.reshape(-1)), torch.tensor(relevant.reshape(-1)), indexes=idx))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 10, 100])
def test_retrieval_agrees_with_torchmetrics(seed, k):
    scores, relevant = _retrieval(seed)
    for ours, theirs in (("skip", "skip"), ("zero", "neg")):
        got = R.mean_average_precision_at_k(scores, relevant, k, "torchmetrics", empty=ours)
        assert abs(got - _torchmetrics(RetrievalMAP, scores, relevant, k, theirs)) < 1e-6
        out = R.retrieval_metrics(scores, relevant, [f"q{i}" for i in range(8)], k=k, recall_ks=(k,),
                                  empty=ours)
        assert abs(out[f"recall@{k}"] - _torchmetrics(RetrievalRecall, scores, relevant, k, theirs)) < 1e-6
        assert abs(out[f"mAP@{k}_torchmetrics"] - got) < 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_standard_ap_at_k(seed):
    scores, relevant = _retrieval(seed)
    n = scores.shape[1]
    for qi in range(scores.shape[0]):
        s, r = scores[qi], relevant[qi]
        # with k >= N the standard AP@k is the full-ranking AP of scikit-learn
        if r.any():
            ref = skm.average_precision_score(r, s)
            assert abs(R.average_precision_at_k(s, r, n, "standard") - ref) < 1e-6
        # brute force of the stated definition
        order = np.argsort(-s, kind="stable")[:100]
        hits = r[order]
        prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        expected = (prec * hits).sum() / min(100, r.sum()) if r.sum() else 0.0
        assert abs(R.average_precision_at_k(s, r, 100, "standard") - expected) < 1e-9


def test_ap_definitions_differ_and_ties():
    # 3 relevant items; only one in the top 2, at rank 1
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    r = np.array([1, 0, 1, 1, 0], dtype=bool)
    assert R.average_precision_at_k(s, r, 2, "torchmetrics") == pytest.approx(1.0)
    assert R.average_precision_at_k(s, r, 2, "standard") == pytest.approx(0.5)
    assert R.recall_at_k(s, r, 2) == pytest.approx(1 / 3)
    # tied scores keep input order (stable)
    t = np.array([0.5, 0.5, 0.5])
    assert R.average_precision_at_k(t, np.array([0, 1, 0], dtype=bool), 3) == pytest.approx(0.5)
    assert R.average_precision_at_k(t, np.zeros(3, dtype=bool), 3) == 0.0
    with pytest.raises(ValueError, match="definition"):
        R.average_precision_at_k(s, r, 2, "bogus")


def test_where_we_differ_from_sklearn_on_purpose():
    """Kept hand-written where sklearn's definition differs: the numbers below are the measured reason."""
    # top-k ties: ours go to the lower class index (argmax), sklearn's top_k_accuracy_score to the higher one
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.5, 0.1, 0.5]])
    labels = np.array([0, 2, 2])
    assert M.top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert skm.top_k_accuracy_score(labels, scores, k=1, labels=np.arange(3)) == pytest.approx(2 / 3)
    # retrieval AP@k cuts the ranking at k; sklearn's AP always ranks all items
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    r = np.array([1, 0, 1, 1, 0], dtype=bool)
    assert R.average_precision_at_k(s, r, 2, "standard") == pytest.approx(0.5)
    assert skm.average_precision_score(r, s) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # ties: AP@k keeps input order, sklearn's AP groups tied scores into one threshold
    t = np.array([0.5, 0.5, 0.5])
    rel = np.array([0, 1, 0], dtype=bool)
    assert R.average_precision_at_k(t, rel, 3, "standard") == pytest.approx(0.5)
    assert skm.average_precision_score(rel, t) == pytest.approx(1 / 3)
    # a class without positives: ours is NaN (left out of mAP), sklearn warns and returns a number
    assert np.isnan(ML.average_precision(np.array([0.1, 0.2]), np.array([0, 0])))


@pytest.mark.parametrize("seed", SEEDS)
def test_sklearn_backed_functions_match_on_random_data(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 6, 80), rng.integers(0, 6, 80)
    assert M.accuracy(y, p) == pytest.approx(float(np.mean(y == p)))
    cm = M.confusion_matrix(y, p, 7)  # class 6 occurs nowhere: a zero row and column
    assert cm.shape == (7, 7) and cm.dtype == np.int64 and cm[6].sum() == 0 and cm.sum() == 80
    pca = M.per_class_accuracy(y, p, 7)
    assert np.isnan(pca[6]) and M.balanced_accuracy(y, p, 7) == pytest.approx(np.nanmean(pca))
    assert np.isnan(M.accuracy([], [])) and np.isnan(M.balanced_accuracy([], []))
    targets = rng.random((50, 4)) < 0.4
    pred = rng.random((50, 4)) < 0.5
    m = ML.per_class_metrics(pred, targets)
    np.testing.assert_array_equal(m["tp"], (pred & targets).sum(0))
    np.testing.assert_array_equal(m["fp"], (pred & ~targets).sum(0))
    np.testing.assert_array_equal(m["fn"], (~pred & targets).sum(0))
    np.testing.assert_allclose(m["accuracy"], (pred == targets).mean(0))
