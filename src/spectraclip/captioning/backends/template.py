"""Offline, deterministic captions from map tags and spectral statistics, for when no model server exists.

Cover fractions come from normalised-difference indices computed by band NAME (each pixel gets the first
class that fits, in this order):
- snow: NDSI = (B03 − B11)/(B03 + B11) > 0.4 and B03 reflectance > 0.10 (Dozier);
- water: NDWI = (B03 − NIR)/(B03 + NIR) > 0 (McFeeters), NIR = B08 (else B8A);
- dense vegetation: NDVI = (NIR − B04)/(NIR + B04) > 0.5; sparse vegetation: NDVI in (0.2, 0.5];
- built-up or bare: NDBI = (B11 − NIR)/(B11 + NIR) > 0 (Zha et al.), i.e. the rest that reflects more SWIR
  than NIR.
A fraction whose bands are absent is `None` and not mentioned. Wording variants are chosen from a hash of
the image id, so output depends only on the inputs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from spectraclip.captioning.backends import CaptionInput, CaptionOutcome
from spectraclip.io.sample import Sample

TEMPLATE_VERSION = "template-v1"
SNOW_NDSI, SNOW_MIN_GREEN = 0.4, 1000.0
WATER_NDWI, DENSE_NDVI, SPARSE_NDVI, BUILT_NDBI = 0.0, 0.5, 0.2, 0.0
LABELS = {
    "snow": "snow or ice",
    "water": "open water",
    "dense_vegetation": "dense vegetation",
    "sparse_vegetation": "sparse vegetation",
    "built_bare": "built-up or bare ground",
}


def _band(sample: Sample, *names: str) -> np.ndarray | None:
    for name in names:
        if name in sample.bands:
            return sample.pixels[sample.bands.indices([name])[0]].astype(np.float32)
    return None


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - b) / (a + b)


def spectral_fractions(sample: Sample, scale: float = 10000.0) -> dict[str, float | None]:
    """Fractions of valid pixels that are snow, water, dense/sparse vegetation, built-up/bare (by band name).
    `scale` is the digital number of reflectance 1.0 (10000 for Sentinel-2 L1C/L2A)."""
    green, red = _band(sample, "B03"), _band(sample, "B04")
    nir, swir = _band(sample, "B08", "B8A"), _band(sample, "B11")
    shape = sample.pixels.shape[1:]
    valid = np.isfinite(sample.pixels).all(axis=0)
    assigned = ~valid
    out: dict[str, float | None] = {}
    n_valid = max(int(valid.sum()), 1)

    def take(key: str, mask: np.ndarray | None) -> None:
        nonlocal assigned
        if mask is None:
            out[key] = None
            return
        mask = np.nan_to_num(mask, nan=False).astype(bool) & ~assigned
        assigned = assigned | mask
        out[key] = float(mask.sum()) / n_valid

    take("snow", (_nd(green, swir) > SNOW_NDSI) & (green > SNOW_MIN_GREEN * scale / 10000.0)
         if green is not None and swir is not None else None)
    take("water", _nd(green, nir) > WATER_NDWI if green is not None and nir is not None else None)
    ndvi = _nd(nir, red) if nir is not None and red is not None else None
    take("dense_vegetation", ndvi > DENSE_NDVI if ndvi is not None else None)
    take("sparse_vegetation", ndvi > SPARSE_NDVI if ndvi is not None else None)
    take("built_bare", _nd(swir, nir) > BUILT_NDBI if swir is not None and nir is not None else None)
    out["valid"] = float(valid.sum()) / float(np.prod(shape))
    return out


def _pick(options: list[str], seed: int, k: int) -> str:
    return options[(seed >> (4 * k)) % len(options)]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _tag_phrase(tag: dict[str, Any]) -> str:
    what = str(tag.get("class") or tag.get("subtype") or tag.get("overture_type")).replace("_", " ")
    kind = tag.get("overture_type")
    if kind == "segment":
        what = f"{what} {str(tag.get('subtype') or 'road').replace('_', ' ')}" if tag.get("subtype") else what
    flags = [f.removeprefix("is_").replace("_", " ") for f in tag.get("flags") or [] if f.startswith("is_")]
    if flags:
        what = f"{' '.join(flags)} {what}"
    if tag.get("name"):
        what += f' ("{tag["name"]}")'
    return what


def template_caption(item: CaptionInput) -> tuple[str, list[dict[str, str]], dict[str, Any]]:
    """Caption, three question–answer pairs and the statistics used, for one image (deterministic)."""
    seed = int(hashlib.sha256(item.id.encode()).hexdigest()[:12], 16)
    fr = spectral_fractions(item.sample)
    cover = sorted(((LABELS[k], v) for k, v in fr.items() if k in LABELS and v), key=lambda kv: -kv[1])
    main = [(label, v) for label, v in cover if v >= 0.05]
    if main and main[0][1] >= 0.6:
        lead = _pick(["dominated by", "mostly covered by", "largely showing"], seed, 0)
        land = f"{lead} {main[0][0]} ({main[0][1]:.0%})"
        rest = [f"some {label}" for label, _ in main[1:3]]
        if rest:
            land += f", with {_join(rest)}"
    elif main:
        land = _pick(["showing a mix of", "with a mosaic of", "covered by a mix of"], seed, 0) + " " + _join(
            [f"{label} ({v:.0%})" for label, v in main[:3]])
    else:
        land = "with no dominant surface type"
    subject = _pick(["A Sentinel-2 satellite image", "A satellite scene", "An optical satellite image"], seed, 1)
    sentences = [f"{subject} {land}."]
    areal = [t for t in item.tags if t.get("geometry_kind") in ("polygon", "line")][:3]
    if areal:
        sentences.append(_pick(["Map data lists", "Mapped features include", "The map shows"], seed, 2) + " "
                         + _join([_tag_phrase(t) for t in areal]) + ".")
    places = [t for t in item.tags if t.get("geometry_kind") == "point" and t.get("name")][:2]
    if places:
        sentences.append("Named places: " + _join([f'"{t["name"]}"' for t in places]) + ".")
    caption = " ".join(sentences)
    water_snow = [f"{label} covers {v:.0%}" for label, v in cover if label in (LABELS["water"], LABELS["snow"])]
    qa = [
        {"q": "What is the main surface type?",
         "a": f"{main[0][0]} ({main[0][1]:.0%} of the image)" if main else "no single type dominates"},
        {"q": "Is there water or snow?", "a": "; ".join(water_snow) if water_snow else "none detected"},
        {"q": "Which mapped features are present?",
         "a": _join([_tag_phrase(t) for t in item.tags[:5]]) if item.tags else "no map features are known"},
    ]
    return caption, qa, {"fractions": fr}


class TemplateBackend:
    """The `template` backend: no model, no network; same inputs give the same caption."""

    name = "template"
    model = TEMPLATE_VERSION
    prompt_version = TEMPLATE_VERSION

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)

    async def caption(self, item: CaptionInput) -> CaptionOutcome:
        try:
            caption, qa, stats = template_caption(item)
        except Exception as exc:  # noqa: BLE001 - a bad item is reported, not fatal
            return CaptionOutcome("failed", attempts=1, error=f"template: {exc}")
        return CaptionOutcome("ok", [caption], qa, attempts=1, tags_used=list(item.tags[:20]), extra=stats)

    async def aclose(self) -> None:
        return None
