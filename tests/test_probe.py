"""Few-shot probes: labels, stratified sampling, curves equal scikit-learn on the same split, reports, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from spectraclip.embeddings import write_embeddings
from spectraclip.probe.curves import parse_ks, run_probe
from spectraclip.probe.errors import ProbeError
from spectraclip.probe.labels import labels_from_columns, labels_from_paths, read_labels
from spectraclip.probe.report import markdown_table, write_report
from spectraclip.probe.sampling import make_split, sample_k
from spectraclip.probe.tables import EmbeddingSet, load_embeddings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _blobs(n_per_class: int = 30, n_classes: int = 4, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centers[y] + rng.normal(0, 2.0, size=(len(y), dim))
    ids = [f"item{i:04d}" for i in range(len(y))]
    return ids, x.astype(np.float32), [f"class{c}" for c in y]


def test_probe_equals_sklearn_on_the_same_split():
    ids, x, names = _blobs()
    labels = labels_from_columns(ids, names)
    res = run_probe([EmbeddingSet("a", ids, x)], labels, models=["logistic", "knn"], ks=[8, 20, None],
                    draws=3, test_size=0.25, seed=3)
    # the split is the seeded stratified split of scikit-learn
    from sklearn.model_selection import train_test_split

    y = labels.y
    pool, test = train_test_split(np.arange(len(ids)), test_size=0.25, random_state=3, stratify=y)
    pool, test = np.sort(pool), np.sort(test)
    assert res.test_ids == [ids[i] for i in test]
    for series, make in (
        (res.series[0], lambda n: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))),
        (res.series[1], lambda n: make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=min(5, n)))),
    ):
        for point in series.points:
            assert len(point.train_indices) == (1 if point.k is None else 3)
            for d, idx in enumerate(point.train_indices):
                tr = pool[np.array(idx)]
                pred = make(len(tr)).fit(x[tr], y[tr]).predict(x[test])
                assert point.scores["accuracy"][d] == accuracy_score(y[test], pred)
                assert point.scores["balanced_accuracy"][d] == balanced_accuracy_score(y[test], pred)
                assert point.scores["macro_f1"][d] == f1_score(y[test], pred, average="macro")
    full = res.series[0].full
    assert full is not None and full.n_train == len(pool)
    assert full.mean("accuracy") > 0.7  # separable blobs: the probe really learns


def test_regression_probe_equals_ridge_with_given_split():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    target = x @ np.array([0.3, -0.2, 0.1, 0.0, 0.05]) + 0.5 + rng.normal(0, 0.01, 60)
    ids = [str(i) for i in range(60)]
    split = ["test" if i % 4 == 0 else "train" for i in range(60)]
    labels = labels_from_columns(ids, [f"{v:.6f}" for v in target], split=split)
    assert labels.task == "regression"
    res = run_probe([EmbeddingSet("r", ids, x)], labels, models=["ridge"], ks=[10, "all"], draws=2)
    pool, test = make_split(labels)
    assert list(test) == [i for i in range(60) if i % 4 == 0]
    for point in res.series[0].points:
        for d, idx in enumerate(point.train_indices):
            tr = pool[np.array(idx)]
            pred = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x[tr], labels.y[tr]).predict(x[test])
            assert point.scores["r2"][d] == r2_score(labels.y[test], pred)
            assert point.scores["mae"][d] == mean_absolute_error(labels.y[test], pred)
    assert res.series[0].full.mean("r2") > 0.9
    with pytest.raises(ProbeError, match="logistic"):
        run_probe([EmbeddingSet("r", ids, x)], labels, models=["logistic"])


def test_sample_k_is_stratified_and_reproducible():
    y = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    idx = sample_k("multiclass", y, 20, np.random.default_rng(0))
    assert len(idx) == len(set(idx)) == 20
    counts = np.bincount(y[idx], minlength=4)
    assert counts.tolist() == [10, 6, 3, 1]
    # at least one per class even when proportional share rounds to zero
    small = sample_k("multiclass", y, 4, np.random.default_rng(0))
    assert sorted(y[small].tolist()) == [0, 1, 2, 3]
    # fewer than classes: distinct classes
    two = sample_k("multiclass", y, 2, np.random.default_rng(5))
    assert len(set(y[two].tolist())) == 2
    assert np.array_equal(idx, sample_k("multiclass", y, 20, np.random.default_rng(0)))
    # regression: spread over quantile bins
    t = np.linspace(0, 1, 100)
    r = sample_k("regression", t, 10, np.random.default_rng(0))
    assert np.histogram(t[r], bins=5, range=(0, 1))[0].tolist() == [2, 2, 2, 2, 2]


def test_multilabel_sampling_and_probe():
    rng = np.random.default_rng(2)
    ids = [f"p{i}" for i in range(80)]
    tags = [";".join(t for t, on in zip(("forest", "water", "urban"), rng.random(3) < [0.5, 0.3, 0.05],
                                         strict=True) if on) or "forest" for _ in ids]
    labels = labels_from_columns(ids, tags)
    assert labels.task == "multilabel" and labels.classes == ["forest", "urban", "water"]
    idx = sample_k("multilabel", labels.y, 5, np.random.default_rng(0))
    assert labels.y[idx].any(axis=0).all()  # every label seen, even the rare one
    x = (labels.y @ rng.normal(size=(3, 6)) + rng.normal(0, 0.1, (80, 6))).astype(np.float32)
    res = run_probe([EmbeddingSet("m", ids, x)], labels, models=["random-forest"], ks=[10, None], draws=2)
    assert res.metrics == ("macro_f1", "micro_f1", "subset_accuracy")
    assert len(res.series[0].full.scores["micro_f1"]) == 2  # random forests: several seeds at 'all'


def test_read_labels_csv_and_parquet(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label,split,frac\n0001,Forest,train,0.25\n0002,River,test,0.5\n0003,Forest,,1.0\n")
    lab = read_labels(csv, split_column="split")
    assert lab.ids == ["0001", "0002", "0003"] and lab.classes == ["Forest", "River"]
    assert lab.y.tolist() == [0, 1, 0] and lab.split == ["train", "test", "train"]
    assert read_labels(csv, label_column="frac").task == "regression"
    with pytest.raises(ProbeError, match="no column 'klass'"):
        read_labels(csv, label_column="klass")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b"], "label": [["x", "y"], ["y"]]}), tmp_path / "l.parquet")
    ml = read_labels(tmp_path / "l.parquet")
    assert ml.task == "multilabel" and ml.y.tolist() == [[1, 1], [0, 1]]


def test_labels_from_paths_and_parse_ks():
    lab = labels_from_paths(["a", "b"], ["/d/train/Forest/a.tif", "/d/test/River/b.tif"])
    assert lab.classes == ["Forest", "River"] and lab.split == ["train", "test"]
    assert parse_ks("10, 25,all") == [10, 25, None]
    with pytest.raises(ProbeError, match="--train-sizes 1"):
        parse_ks("1")


def test_tables_are_aligned_by_id_and_reports_written(tmp_path):
    ids, x, names = _blobs(n_per_class=12, n_classes=3, dim=4)
    write_embeddings(tmp_path / "a.parquet", ids, x)
    rev = list(reversed(range(len(ids))))
    write_embeddings(tmp_path / "b.parquet", [ids[i] for i in rev], x[rev] * 2.0)  # same data, shuffled rows
    labels = labels_from_columns(ids, names)
    sets = [load_embeddings(tmp_path / "a.parquet"), load_embeddings(tmp_path / "b.parquet")]
    res = run_probe(sets, labels, ks=[6, 12, 500, None], draws=2)
    a, b = res.series
    for pa_, pb in zip(a.points, b.points, strict=True):  # scaling-invariant model, same rows -> same scores
        assert pa_.scores == pb.scores
    assert res.skipped_ks == [500]
    table = markdown_table(res)
    assert "| a | b |" in table and "± " in table
    paths = write_report(res, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["series"][0]["points"][-1]["k"] == "all"
    assert paths["plot"].stat().st_size > 1000


def test_no_common_ids_is_an_error():
    ids, x, names = _blobs(n_per_class=3, n_classes=2)
    labels = labels_from_columns([f"other{i}" for i in range(len(ids))], names)
    with pytest.raises(ProbeError, match="check that the id columns match"):
        run_probe([EmbeddingSet("a", ids, x)], labels)


def test_cli_probe_with_baseline_stats_on_eurosat(tmp_path):
    root = DATA / "eurosat-ms-mini"
    if not root.exists():
        pytest.skip(f"real data folder {root} not present")
    pytest.importorskip("spectraclip.io.readers")
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    classes = ["Forest", "River", "SeaLake"]
    paths = [str(root / split / c) for split in ("train", "test") for c in classes]
    out = tmp_path / "probe"
    opts = [a for path in paths for a in ("--baseline-stats", path)]
    result = CliRunner().invoke(app, ["probe", *opts,
                                      "--bands", "eurosat-ms", "--labels-from-path", "--train-sizes", "5,10",
                                      "--train-sizes", "all", "--draws", "2", "--classifier", "logistic",
                                      "--classifier", "knn", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "probe.json").read_text())
    assert data["n_test"] == sum(len(list((root / "test" / c).glob("*.tif"))) for c in classes)
    assert data["config"]["split"] == "column"
    assert data["config"]["models"] == ["logistic", "knn"] and data["config"]["ks"] == [5, 10, "all"]  # both forms
    full = next(p for p in data["series"][0]["points"] if p["k"] == "all")
    assert full["mean"]["accuracy"] > 0.8  # band means separate forest from water well
    assert (out / "probe.png").exists() and (out / "baseline_band_stats.parquet").exists()


def test_baseline_ids_match_the_ids_embed_gives(tmp_path):
    """The per-band statistics baseline keys rows like `spectraclip embed` (path under the common folder)."""
    import numpy as np

    from spectraclip.embeddings import read_embeddings
    from spectraclip.inference import item_ids
    from spectraclip.io.readers import find_items
    from spectraclip.probe.baseline import baseline_stats_table

    for split in ("train", "test"):
        (tmp_path / split / "Forest").mkdir(parents=True)
        np.save(tmp_path / split / "Forest" / "Forest_1.npy", np.ones((3, 8, 8), np.float32))
    t = read_embeddings(baseline_stats_table([tmp_path], tmp_path / "b.parquet", bands="rgb", progress=False))
    assert t.ids == item_ids(find_items([tmp_path])) == ["test/Forest/Forest_1", "train/Forest/Forest_1"]


# ------------------------------------------------------------------ fingerprints: merged parts and --clip-checkpoint
def _probe_inputs(tmp_path, fps):
    """Two halves of one blob set as separate tables (fingerprints `fps[0]`, `fps[1]`) and their labels CSV."""
    ids, x, names = _blobs(n_per_class=10, n_classes=3)
    half = len(ids) // 2
    order = np.random.default_rng(0).permutation(len(ids))
    a, b = order[:half], order[half:]
    ta = write_embeddings(tmp_path / "part-a.parquet", [ids[i] for i in a], x[a], fingerprints=fps[0])
    tb = write_embeddings(tmp_path / "part-b.parquet", [ids[i] for i in b], x[b], fingerprints=fps[1])
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{n}\n" for i, n in zip(ids, names, strict=True)))
    return ta, tb, labels, len(ids)


def _probe_cli(*args):
    from typer.testing import CliRunner

    from spectraclip.cli.main import app

    result = CliRunner().invoke(app, ["probe", *map(str, args), "--train-sizes", "6,all", "--draws", "1"])
    return result, " ".join(result.output.split())


def test_tables_under_one_name_merge_only_from_one_embedding_space(tmp_path):
    from spectraclip.identity import Fingerprints

    same, other = Fingerprints("a" * 16, "p" * 16), Fingerprints("b" * 16, "p" * 16)
    ta, tb, labels, n = _probe_inputs(tmp_path, (same, same))
    ok, _ = _probe_cli(ta, tb, "--name", "MS", "--name", "MS", "--labels", labels, "--output", tmp_path / "o1")
    assert ok.exit_code == 0, ok.output
    data = json.loads((tmp_path / "o1" / "probe.json").read_text())
    assert [s["name"] for s in data["series"]] == ["MS"] and data["n_train_pool"] + data["n_test"] == n

    b_set = load_embeddings(tb)
    tc = write_embeddings(tmp_path / "part-c.parquet", b_set.ids, b_set.vectors, fingerprints=other)
    refused, text = _probe_cli(ta, tc, "--name", "MS", "--name", "MS", "--labels", labels, "--output", tmp_path / "o2")
    assert refused.exit_code == 2
    assert "different embedding spaces" in text and "a" * 16 in text and "b" * 16 in text and "part-c" in text
    forced, _ = _probe_cli(ta, tc, "--name", "MS", "--name", "MS", "--labels", labels, "--output", tmp_path / "o2",
                           "--force")
    assert forced.exit_code == 0, forced.output
    # tables of different models under different names are compared (paired), not mixed: no refusal
    a_set = load_embeddings(ta)
    td = write_embeddings(tmp_path / "other-model.parquet", a_set.ids, a_set.vectors[:, ::-1], fingerprints=other)
    compared, _ = _probe_cli(ta, td, "--name", "A", "--name", "D", "--labels", labels, "--output", tmp_path / "o3")
    assert compared.exit_code == 0, compared.output
    assert [s["name"] for s in json.loads((tmp_path / "o3" / "probe.json").read_text())["series"]] == ["A", "D"]


def test_probe_checks_tables_against_the_clip_model_given(tmp_path):
    import torch
    from fixtures_models import randomize

    from spectraclip.identity import Fingerprints
    from spectraclip.models.checkpoints import save_bundle
    from spectraclip.models.loading import load_model

    torch.set_num_threads(1)
    b1, b2 = (save_bundle(randomize(load_model("tiny-test", bands="eurosat-ms"), seed=s), tmp_path / f"b{s}")
              for s in (1, 2))
    fp1 = Fingerprints.of(randomize(load_model("tiny-test", bands="eurosat-ms"), seed=1))
    ta, tb, labels, _ = _probe_inputs(tmp_path, (fp1, fp1))
    ok, _ = _probe_cli(ta, "--labels", labels, "--clip-checkpoint", b1, "--output", tmp_path / "o1")
    assert ok.exit_code == 0, ok.output
    refused, text = _probe_cli(ta, "--labels", labels, "--clip-checkpoint", b2, "--output", tmp_path / "o2")
    assert refused.exit_code == 2 and fp1.model in text and "part-a.parquet" in text and "b2" in text
    forced, _ = _probe_cli(ta, "--labels", labels, "--clip-checkpoint", b2, "--force", "--output", tmp_path / "o2")
    assert forced.exit_code == 0, forced.output
