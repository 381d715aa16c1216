"""A label captioner: varied, natural sentences from a class name plus simple spectral statistics.

No language model needed: a class name (e.g. EuroSAT's `SeaLake`) is combined with what the pixels
say — water fraction (NDWI), vegetation fraction (NDVI), built-up fraction (NDBI), brightness — in
many sentence patterns, chosen by a seeded generator so the same seed gives the same captions.
Indices are computed from bands looked up BY NAME, and skipped when a band is missing (e.g. RGB).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.errors import SpectraclipError
from spectraclip.io.atomic import atomic_open
from spectraclip.io.sample import Sample

PROMPT_VERSION = "labels-v1"

# Per-class wording: (core names, other phrases). Core names are the class name and the everyday
# wording of it (as in OpenAI CLIP's EuroSAT class names); most captions use one of them.
CLASS_WORDING: dict[str, tuple[list[str], list[str]]] = {
    "AnnualCrop": (["annual crop land", "annual crop"],
                   ["annual crop fields", "arable fields of annual crops", "farmland with seasonal annual crops",
                    "ploughed and sown fields", "cultivated cropland"]),
    "Forest": (["forest"], ["a dense forest", "woodland", "a closed tree canopy", "forested land",
                            "a continuous stretch of forest"]),
    "HerbaceousVegetation": (["herbaceous vegetation", "brushland or shrubland"],
                             ["shrubland", "brushland", "natural herbaceous vegetation",
                              "unmanaged grassy and shrubby vegetation", "scrubland and herbaceous plants"]),
    "Highway": (["highway or road", "highway"], ["a highway", "a motorway", "a major road",
                                                 "a highway cutting through the land", "a multi-lane road"]),
    "Industrial": (["industrial buildings or commercial buildings", "an industrial area"],
                   ["industrial buildings", "commercial buildings", "an industrial zone",
                    "factories and warehouses", "large industrial and commercial roofs"]),
    "Pasture": (["pasture land", "pasture"], ["grazing pasture", "meadows used as pasture", "green pasture fields",
                                              "grassland for grazing"]),
    "PermanentCrop": (["permanent crop land", "permanent crops"],
                      ["orchards and vineyards", "permanent cropland", "rows of orchard trees",
                       "vineyards", "plantations of permanent crops"]),
    "Residential": (["residential buildings or homes or apartments", "a residential area"],
                    ["residential buildings", "homes and apartments", "a residential neighbourhood",
                     "houses and gardens", "a town's residential streets"]),
    "River": (["river", "a river"], ["a river flowing through the land", "a winding river",
                                     "a river and its banks", "a river channel"]),
    "SeaLake": (["lake or sea", "sea lake"], ["a lake", "the sea", "open water of a sea or lake",
                                              "a large body of water", "sea or lake water"]),
}

# Openings deliberately avoid the phrasings of the evaluation template sets ("a satellite image of ...").
_PATTERNS: list[str] = [
    "{P} seen from orbit{S}.",
    "Overhead view of {p}{S}.",
    "Sentinel-2 scene showing {p}{S}.",
    "A bird's-eye view of {p}{S}.",
    "Looking straight down on {p}{S}.",
    "The patch is dominated by {p}{S}.",
    "{P}, as captured by a Sentinel-2 satellite{S}.",
    "In this scene: {p}{S}.",
    "Land use here is {p}{S}.",
    "Top-down satellite view: {p}{S}.",
    "{P} fills most of this patch{S}.",
    "An orbital snapshot of {p}{S}.",
    "This 64 by 64 pixel patch covers {p}{S}.",
    "{P} from above{S}.",
    "A small Sentinel-2 tile of {p}{S}.",
    "Spaceborne view of {p}{S}.",
    "{P} is what this tile mostly contains{S}.",
    "The ground below is {p}{S}.",
]
_STAT_JOINERS = [", with {s}", "; {s}", ", showing {s}", " — {s}", ", where there is {s}", " with {s}"]


class CaptionError(SpectraclipError, ValueError):
    """A captioning input problem (unknown class, empty caption set); the message names the item."""


@dataclass(frozen=True)
class ImageStats:
    """Fractions of pixels that look like water (NDWI>0), vegetation (NDVI>0.4), built-up (NDBI>0),
    and mean visible reflectance; `None` where the bands needed are missing."""

    water: float | None
    vegetation: float | None
    builtup: float | None
    brightness: float | None


def _band(sample: Sample, *names: str) -> np.ndarray | None:
    for name in names:
        if name in sample.bands:
            return sample.pixels[sample.bands.indices([name])[0]].astype(np.float64)
    return None


def _index_fraction(a: np.ndarray | None, b: np.ndarray | None, threshold: float) -> float | None:
    if a is None or b is None:
        return None
    denom = a + b
    valid = np.isfinite(denom) & (np.abs(denom) > 1e-9)
    if not valid.any():
        return None
    idx = (a[valid] - b[valid]) / denom[valid]
    return float((idx > threshold).mean())


def image_stats(sample: Sample) -> ImageStats:
    """Spectral-index statistics of one sample, bands looked up by name (NIR: B08, else B8A)."""
    green, red, blue = _band(sample, "B03"), _band(sample, "B04"), _band(sample, "B02")
    nir, swir = _band(sample, "B08", "B8A"), _band(sample, "B11")
    brightness = None
    visible = [x for x in (red, green, blue) if x is not None]
    if visible:
        v = float(np.nanmean(np.stack(visible)))
        brightness = v / 10000.0 if v > 2.0 else v  # reflectance x10000 (uint16 products) or 0-1
    return ImageStats(
        water=_index_fraction(green, nir, 0.0),
        vegetation=_index_fraction(nir, red, 0.4),
        builtup=_index_fraction(swir, nir, 0.0),
        brightness=brightness,
    )


def _stat_phrases(stats: ImageStats, rng: random.Random) -> list[str]:
    """Short phrases describing the statistics, one per available statistic, in random wording."""
    out: list[str] = []
    w = stats.water
    if w is not None:
        if w > 0.6:
            out.append(rng.choice(["mostly open water", "water covering most of the area", "little but water"]))
        elif w > 0.15:
            out.append(rng.choice(["a band of water", "some open water", "water running through part of it"]))
        elif w > 0.02:
            out.append(rng.choice(["a little water", "a few small patches of water"]))
        elif rng.random() < 0.4:
            out.append(rng.choice(["no visible water", "dry land throughout"]))
    v = stats.vegetation
    if v is not None:
        if v > 0.85:
            out.append(rng.choice(["lush green vegetation everywhere", "dense healthy vegetation",
                                   "vegetation covering almost every pixel"]))
        elif v > 0.5:
            out.append(rng.choice(["plenty of green vegetation", "mostly vegetated ground",
                                   "vegetation over more than half the area"]))
        elif v > 0.15:
            out.append(rng.choice(["some scattered vegetation", "patchy vegetation", "partly green ground"]))
        else:
            out.append(rng.choice(["hardly any vegetation", "sparse vegetation", "little green cover"]))
    b = stats.builtup
    if b is not None:
        if b > 0.6:
            out.append(rng.choice(["largely built-up or bare surfaces", "lots of bare or built surfaces"]))
        elif b > 0.3:
            out.append(rng.choice(["a fair share of bare or built-up ground", "some bare soil or built surfaces"]))
    br = stats.brightness
    if br is not None:
        if br > 0.13:
            out.append(rng.choice(["bright surfaces", "a bright, reflective look", "light-toned ground"]))
        elif br < 0.075:
            out.append(rng.choice(["dark tones", "a dark appearance", "low reflectance"]))
    rng.shuffle(out)
    return out


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).strip()


def humanize(label: str) -> str:
    """`SeaLake` -> "sea lake", `solar_farm` -> "solar farm"."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", re.sub(r"[_\-]+", " ", label)).lower().split()
    if not words:
        raise CaptionError(f"empty class label {label!r}")
    return " ".join(words)


def class_wording(label: str, names: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(core names, other phrases) for a class: built-in EuroSAT wording, else the humanised label;
    `names` (e.g. a dataset's `prompt_names`) adds that wording to the core names."""
    core, other = CLASS_WORDING.get(label, ([humanize(label)], []))
    core = list(core)
    extra = (names or {}).get(label)
    if extra and extra not in core:
        core.append(extra)
    return core, list(other)


class LabelCaptioner:
    """Seeded captioner: `caption(sample, label)` returns `n` distinct sentences for one image.

    `class_name_rate` is the share of captions using a core class name (else another phrase),
    `stats_rate` the share carrying a spectral-statistics clause; `avoid` holds sentences that must
    never be produced (e.g. the filled evaluation prompts), compared case- and punctuation-blind.
    """

    def __init__(self, seed: int = 0, n: int = 5, class_name_rate: float = 0.6, stats_rate: float = 0.7,
                 avoid: Collection[str] = (), names: Mapping[str, str] | None = None) -> None:
        if n < 1:
            raise CaptionError(f"captions per image must be >= 1, got {n}")
        self.seed, self.n = seed, n
        self.class_name_rate, self.stats_rate = class_name_rate, stats_rate
        self.avoid = {_normalise(a) for a in avoid}
        self.names = dict(names or {})

    def _one(self, rng: random.Random, pattern: str, wording: tuple[list[str], list[str]],
             stats: ImageStats) -> str:
        core, other = wording
        phrase = rng.choice(core) if (not other or rng.random() < self.class_name_rate) else rng.choice(other)
        stat = ""
        if rng.random() < self.stats_rate:
            found = _stat_phrases(stats, rng)
            if found:
                stat = rng.choice(_STAT_JOINERS).format(s=_join(found[: rng.randint(1, min(2, len(found)))]))
        text = pattern.format(p=phrase, P=phrase[0].upper() + phrase[1:], S=stat)
        return text[0].upper() + text[1:]

    def caption(self, sample: Sample, label: str, n: int | None = None) -> list[str]:
        """`n` (default `self.n`) distinct captions for `sample` labelled `label`; same seed+id, same text."""
        want = n or self.n
        rng = random.Random(f"{self.seed}:{sample.id}:{label}")
        wording, stats = class_wording(label, self.names), image_stats(sample)
        out: list[str] = []
        patterns: list[str] = []
        for _ in range(want * 20):
            if not patterns:  # every pattern once before any repeats
                patterns = rng.sample(_PATTERNS, len(_PATTERNS))
            text = self._one(rng, patterns.pop(), wording, stats)
            if text not in out and _normalise(text) not in self.avoid:
                out.append(text)
                if len(out) == want:
                    break
        if not out:
            raise CaptionError(f"no caption for {sample.id!r} ({label}) avoids the excluded sentences")
        return out


def caption_rows(samples: Iterable[Sample], captioner: LabelCaptioner, *, root: str | os.PathLike[str] | None = None,
                 split: str | None = None, label_key: str = "labels") -> list[dict[str, Any]]:
    """Manifest rows for labelled samples (label = first of `sample.meta[label_key]`); paths relative to `root`."""
    rows = []
    for s in samples:
        labels = s.meta.get(label_key) or []
        if isinstance(labels, str):
            labels = [labels]
        if not labels:
            raise CaptionError(f"{s.path or s.id}: no label in meta[{label_key!r}] to caption from")
        path = s.path or s.id
        if root is not None and s.path:
            try:
                path = os.path.relpath(Path(s.path).resolve(), Path(root).resolve())
            except ValueError:  # different drive on Windows
                path = str(Path(s.path).resolve())
        stats = image_stats(s)
        row: dict[str, Any] = {"id": s.id, "path": str(path), "bands": ",".join(s.bands.names),
                               "captions": captioner.caption(s, labels[0]), "label": labels[0],
                               "stats": {k: (None if v is None else round(v, 4)) for k, v in asdict(stats).items()},
                               "backend": "labels", "prompt_version": PROMPT_VERSION, "status": "ok"}
        if split is not None:
            row["split"] = split
        rows.append(row)
    return rows


def write_caption_manifest(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write manifest rows as JSONL atomically (a reader never sees half a file); returns the path."""
    target = Path(path)
    with atomic_open(target, "w", encoding="utf-8") as fh:
        for row in rows:
            if not row.get("id") or not row.get("path"):
                raise CaptionError(f"manifest row without id/path: {dict(row)!r}")
            fh.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
    return target
