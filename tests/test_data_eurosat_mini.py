"""The embedded EuroSAT-MS mini archive: complete, identical to the source files, extracted once and atomically."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from spectraclip.data import eurosat_mini as em

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "eurosat-ms-mini"
CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
           "PermanentCrop", "Residential", "River", "SeaLake"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return em.eurosat_mini_root(cache=tmp_path_factory.mktemp("cache"))


def test_archive_ships_with_attribution_and_licence() -> None:
    assert em.ARCHIVE.is_file() and em.ARCHIVE.name.endswith(".tar.xz")
    assert em.ARCHIVE.stat().st_size < 20_000_000
    text = (em.ARCHIVE.parent / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "Helber" in text and "MIT License" in text and "JSTARS" in text


def test_split_and_classes_are_kept(root: Path) -> None:
    for split, n in (("train", 216), ("test", 54)):
        files = sorted((root / split).rglob("*.tif"))
        assert len(files) == n
        assert sorted({f.parent.name for f in files}) == CLASSES
        assert all(f.name.startswith(f.parent.name + "_") for f in files)
    train = {f.name for f in (root / "train").rglob("*.tif")}
    assert not train & {f.name for f in (root / "test").rglob("*.tif")}


def test_extracted_files_are_the_original_geotiffs(root: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared sample data not found at {SHARED}")
    ours = sorted(p.relative_to(root) for p in root.rglob("*.tif"))
    theirs = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*.tif"))
    assert ours == theirs
    for rel in ours[::17]:
        assert hashlib.sha256((root / rel).read_bytes()).digest() == hashlib.sha256(
            (SHARED / rel).read_bytes()).digest()


def test_extracts_once_and_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECTRACLIP_CACHE", str(tmp_path))
    first = em.eurosat_mini_root()
    assert first.is_relative_to(tmp_path / "eurosat-ms-mini")
    marker = next((first / "test").rglob("*.tif"))
    mtime = marker.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: calls.append(a) or pytest.fail("re-extracted"))
    assert em.eurosat_mini_root() == first
    assert marker.stat().st_mtime_ns == mtime and not calls
    assert not [p for p in (tmp_path / "eurosat-ms-mini").iterdir() if p.name.endswith(".tmp")]


def test_damaged_cache_is_replaced(tmp_path: Path) -> None:
    root = em.eurosat_mini_root(cache=tmp_path)
    victim = next((root / "train").rglob("*.tif"))
    victim.unlink()
    again = em.eurosat_mini_root(cache=tmp_path)
    assert again == root and victim.is_file()


def test_broken_archive_is_a_named_error_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.xz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(em.EmbeddedDataError, match="bad.tar.xz"):
        em.eurosat_mini_root(cache=tmp_path / "c", archive=bad)
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    with pytest.raises(em.EmbeddedDataError, match="missing"):
        em.eurosat_mini_root(cache=tmp_path / "c", archive=tmp_path / "absent.tar.xz")


def test_unknown_split_names_the_split() -> None:
    with pytest.raises(ValueError, match="'val'"):
        em.load_eurosat_mini("val")


def test_dataset_reads_embedded_patches_with_labels(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("spectraclip.data.eurosat")
    monkeypatch.setattr(em, "eurosat_mini_root", lambda *a, **k: root)
    ds = em.load_eurosat_mini("test")
    assert len(ds) == 54 and list(ds.classes) == CLASSES and not ds.multilabel
    s = ds[0]
    assert s.pixels.shape == (13, 64, 64) and s.bands.names[-1] == "B8A"
    assert s.meta["labels"][0] in CLASSES and s.meta["labels"][0] in str(s.path)
    assert len(em.load_eurosat_mini("train")) == 216
    rgb = em.load_eurosat_mini("train", bands="rgb")[0]
    assert rgb.bands.names == ("B04", "B03", "B02") and rgb.pixels.shape == (3, 64, 64)


def test_registered_under_its_dataset_name(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = pytest.importorskip("spectraclip.data.registry")
    monkeypatch.setattr(em, "eurosat_mini_root", lambda *a, **k: root)
    assert not registry.needs_root("eurosat-ms-mini")
    ds = registry.load_dataset("eurosat-ms-mini", None, split="test")
    assert len(ds) == 54 and Path(ds[0].path).is_relative_to(root)
