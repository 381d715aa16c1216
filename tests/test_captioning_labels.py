"""Label captioner: varied, deterministic, band-name based statistics, evaluation prompts avoided."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spectraclip.bands import BandSet
from spectraclip.captioning.labels import (
    CaptionError,
    LabelCaptioner,
    caption_rows,
    image_stats,
    write_caption_manifest,
)
from spectraclip.io.sample import Sample

S2 = BandSet.parse("eurosat-ms")


def _sample(kind: str, sid: str = "x", bands: BandSet = S2, size: int = 8) -> Sample:
    """A synthetic patch whose spectrum looks like water, vegetation or bare/built ground (x10000)."""
    spectra = {  # B02, B03, B04, B08, B11 reflectance
        "water": {"B02": 0.08, "B03": 0.07, "B04": 0.05, "B08": 0.02, "B11": 0.01},
        "veg": {"B02": 0.03, "B03": 0.06, "B04": 0.03, "B08": 0.40, "B11": 0.18},
        "urban": {"B02": 0.15, "B03": 0.16, "B04": 0.18, "B08": 0.22, "B11": 0.30},
    }[kind]
    px = np.stack([np.full((size, size), spectra.get(b, 0.1) * 10000, np.float32) for b in bands.names])
    return Sample(px, bands, sid, path=f"/data/{sid}.tif", meta={"labels": ["SeaLake"]})


def test_stats_follow_the_spectra() -> None:
    w, v, u = image_stats(_sample("water")), image_stats(_sample("veg")), image_stats(_sample("urban"))
    assert w.water == 1.0 and w.vegetation == 0.0
    assert v.vegetation == 1.0 and v.water == 0.0
    assert u.builtup == 1.0 and u.water == 0.0 and u.vegetation == 0.0
    assert u.brightness == pytest.approx((0.15 + 0.16 + 0.18) / 3)


def test_stats_use_band_names_not_positions() -> None:
    a = _sample("veg")
    rev = BandSet(tuple(reversed(S2.names)))
    b = Sample(a.pixels[::-1].copy(), rev, "x")
    assert image_stats(a) == image_stats(b)


def test_rgb_only_sample_has_no_indices_but_still_captions() -> None:
    s = _sample("veg").select("rgb")
    st = image_stats(s)
    assert st.water is None and st.vegetation is None and st.builtup is None and st.brightness is not None
    assert len(LabelCaptioner(n=3).caption(s, "Forest")) == 3


def test_same_seed_same_captions_other_seed_differs() -> None:
    s = _sample("water", "p1")
    assert LabelCaptioner(seed=1).caption(s, "SeaLake") == LabelCaptioner(seed=1).caption(s, "SeaLake")
    assert LabelCaptioner(seed=1).caption(s, "SeaLake") != LabelCaptioner(seed=2).caption(s, "SeaLake")


def test_captions_are_varied_and_mention_the_scene() -> None:
    cap = LabelCaptioner(seed=0, n=5)
    all_caps = [c for i in range(40) for c in cap.caption(_sample("water", f"s{i}"), "SeaLake")]
    assert all(len(set(cap.caption(_sample("water", f"s{i}"), "SeaLake"))) == 5 for i in range(3))
    openings = {" ".join(c.split()[:2]) for c in all_caps}
    assert len(set(all_caps)) > 100 and len(openings) >= 12
    assert sum("water" in c for c in all_caps) > 40
    assert sum(("sea lake" in c.lower() or "lake or sea" in c.lower()) for c in all_caps) > len(all_caps) / 3


def test_avoid_list_excludes_evaluation_prompts() -> None:
    s = _sample("water")
    plain = LabelCaptioner(seed=0, n=50, stats_rate=0.0, class_name_rate=1.0).caption(s, "SeaLake")
    banned = plain[:10]
    out = LabelCaptioner(seed=0, n=50, stats_rate=0.0, class_name_rate=1.0,
                         avoid=[b.upper() + "!!" for b in banned]).caption(s, "SeaLake")
    assert not set(out) & set(banned)
    from spectraclip.zeroshot.classes import humanize_classname
    from spectraclip.zeroshot.templates import available_template_sets, load_templates

    prompts = {t.replace("{}", w).replace("{c}", w).lower() for w in (humanize_classname("SeaLake"), "lake or sea")
               for name in available_template_sets() for t in load_templates(name).templates}
    caps = {c.lower() for i in range(30) for c in LabelCaptioner(seed=i, n=5).caption(s, "SeaLake")}
    assert not caps & prompts


def test_unknown_class_uses_its_humanised_name_and_given_wording() -> None:
    caps = LabelCaptioner(n=4, stats_rate=0).caption(_sample("urban"), "SolarFarm")
    assert all("solar farm" in c.lower() for c in caps)
    caps = LabelCaptioner(n=12, stats_rate=0, names={"SolarFarm": "photovoltaic park"}).caption(
        _sample("urban"), "SolarFarm")
    assert any("photovoltaic park" in c for c in caps) and any("solar farm" in c.lower() for c in caps)
    with pytest.raises(CaptionError):
        LabelCaptioner(n=0)


def test_manifest_rows_and_atomic_write(tmp_path: Path) -> None:
    samples = [_sample("water", f"s{i}") for i in range(3)]
    rows = caption_rows(samples, LabelCaptioner(n=2), root="/data", split="train")
    out = write_caption_manifest(tmp_path / "m" / "captions.jsonl", rows)
    back = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in back] == ["s0", "s1", "s2"]
    assert back[0]["path"] == "s0.tif" and back[0]["split"] == "train" and len(back[0]["captions"]) == 2
    assert BandSet.parse(back[0]["bands"]) == S2 and back[0]["label"] == "SeaLake"
    assert back[0]["stats"]["water"] == 1.0
    with pytest.raises(CaptionError):
        write_caption_manifest(out, [{"id": "", "path": "a"}])
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s0", "s1", "s2"]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(CaptionError, match="no label"):
        caption_rows([Sample(samples[0].pixels, S2, "nolab")], LabelCaptioner())


def test_real_patches_statistics_match_their_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("spectraclip.data.eurosat")
    from spectraclip.data.eurosat_mini import load_eurosat_mini

    monkeypatch.setenv("SPECTRACLIP_CACHE", str(tmp_path))
    ds = load_eurosat_mini("train")
    by_class: dict[str, list] = {}
    for i in range(len(ds)):
        s = ds[i]
        by_class.setdefault(s.meta["labels"][0], []).append(image_stats(s))
    assert np.mean([st.water for st in by_class["SeaLake"]]) > 0.8
    assert np.mean([st.vegetation for st in by_class["Forest"]]) > 0.8
    assert np.mean([st.water for st in by_class["Forest"]]) < 0.05
    sea = next(ds[i] for i in range(len(ds)) if ds[i].meta["labels"][0] == "SeaLake")
    caps = LabelCaptioner(seed=0, n=8, stats_rate=1.0).caption(sea, "SeaLake")
    assert sum("water" in c for c in caps) >= 4
