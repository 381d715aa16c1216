"""SSL4EO-S12 v1.1 (Zarr v2 zip files of 64 locations × 4 seasons) with the Llama3-SSL4EO-S12-v1.1 captions, for
training, read in place (one chunk per sample and season; nothing is extracted).

Layout (github.com/DLR-MF-DAS/SSL4EO-S12-v1.1 README; see docs/archives.md):
`{split}/{S2L1C|S2L2A|S1GRD|S2RGB}/ssl4eos12_{split}_seasonal_data_NNNNNN.zarr.zip`, each with `bands`
(sample, time, band, y, x) int16, `cloud_mask` (sample, time, y, x) uint8 (S2 only; 0 = clear), `band` names,
`sample` ids, `center_lat`/`center_lon`/`crs` per sample, `time_`/`file_id`/`sample_id` per sample and time, and
the UTM coordinates `x_`/`y_` per sample. The captions (huggingface.co/datasets/ibm-esa-geospatial/
Llama3-SSL4EO-S12-v1.1-captions) are one CSV per zarr file (`{split}/<name>.csv`) or one `{split}.parquet`, a row
per (file, sample_id, time_id) with `caption`, `question_1..3` (a question and its answer), classes, tags, names.

`Ssl4eoV11Dataset` is map-style with one index per location, so the trainer's `GlobalBatchSampler` shards it
across DDP ranks, starts it mid-epoch on resume and lets DataLoader workers read in parallel (each worker opens
the zip files it needs itself). Per epoch each location gets ONE of its four seasons (as Llama3-MS-CLIP trains:
a sample is a location at one timestamp), drawn from (seed, epoch, location); a season whose cloud mask covers
more than `max_cloud` is passed over for the location's next season; when all four are cloudy the location is
skipped (`cloud_policy: skip`, counted with the unreadable items) or its least cloudy season is used and flagged
(`cloud_policy: flag`, the item's `cloudy` is True).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectraclip.bands import BandSet, MissingBandError
from spectraclip.errors import SpectraclipError
from spectraclip.io.sample import Sample

log = logging.getLogger(__name__)

LEVELS = ("S2L2A", "S2L1C")
QUESTIONS = ("question_1", "question_2", "question_3")


class Ssl4eoV11Error(SpectraclipError, ValueError):
    """SSL4EO-S12 v1.1 files or captions that cannot be used as asked; the message names the file."""


def zarr_files(root: str | Path, level: str) -> list[Path]:
    """The `*.zarr.zip` files of one modality under a split folder (`root/level/`), or `root` itself if it is
    already the modality folder."""
    if level not in LEVELS:
        raise Ssl4eoV11Error(f"SSL4EO-S12 v1.1 level {level!r}: choose one of {', '.join(LEVELS)}")
    root = Path(root)
    folder = root / level if (root / level).is_dir() else root
    files = sorted(Path(p) for p in glob.glob(str(folder / "*.zarr.zip")))
    if not files:
        raise Ssl4eoV11Error(f"no {level} *.zarr.zip files under {root}")
    return files


def is_ssl4eo_v11(spec: str) -> bool:
    p = Path(spec)
    return p.is_dir() and any(any((p / lv).glob("*.zarr.zip")) for lv in LEVELS if (p / lv).is_dir())


def open_group(path: str | Path) -> Any:
    """The consolidated Zarr v2 group of one zip file, read in place."""
    import warnings

    import zarr
    from zarr.storage import ZipStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zarr.open_consolidated(ZipStore(path, mode="r"), zarr_format=2, mode="r")


def split_qa(text: str) -> tuple[str, str]:
    """`"What ...? Answer."` → (question, answer); text without a `?` is all answer."""
    text = str(text).strip()
    if "?" in text:
        q, a = text.split("?", 1)
        return q.strip() + "?", a.strip()
    return "", text


@dataclass
class CaptionRow:
    caption: str
    qa: list[tuple[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def load_captions(spec: str | Path, split: str | None = None) -> dict[tuple[str, int, int], CaptionRow]:
    """Captions keyed by (zarr file name, int sample id, time id) from a `.parquet`/`.csv` file or a folder of them
    (`spec/{split}/*.csv`, `spec/{split}.parquet`, or `spec/*.csv`)."""
    import pandas as pd

    p = Path(spec)
    if p.is_dir():
        cands = [p / f"{split}.parquet"] if split else []
        files = [c for c in cands if c.exists()]
        if not files:
            folder = p / split if split and (p / split).is_dir() else p
            files = sorted(folder.glob("*.csv")) or sorted(folder.glob("*.parquet"))
    else:
        files = [p]
    if not files:
        raise Ssl4eoV11Error(f"no captions (.csv or .parquet) found at {spec}")
    frames = [pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in files]
    df = pd.concat(frames, ignore_index=True)
    missing = [c for c in ("caption", "file", "sample_id", "time_id") if c not in df.columns]
    if missing:
        raise Ssl4eoV11Error(f"captions {spec}: column(s) {', '.join(missing)} missing")
    out: dict[tuple[str, int, int], CaptionRow] = {}
    for rec in df.to_dict("records"):
        qa = [split_qa(rec[q]) for q in QUESTIONS if q in rec and isinstance(rec[q], str) and rec[q].strip()]
        extra = {k: rec[k] for k in ("classes", "tags", "names") if k in rec and isinstance(rec[k], str)}
        out[(str(rec["file"]), int(rec["sample_id"]), int(rec["time_id"]))] = CaptionRow(str(rec["caption"]), qa, extra)
    return out


@dataclass(frozen=True)
class Ssl4eoV11Item:
    """One location and season of a zarr file (the item protocol: `id`, `read(...) -> Sample`)."""

    path: str
    sample: int
    time: int
    id: str

    def __str__(self) -> str:
        return f"{self.path}[{self.sample},{self.time}]"

    def read(self, *, bands: BandSet | None = None, nodata: str = "error", radiometry: Any = None,
             group: Any = None) -> Sample:
        g = group if group is not None else open_group(self.path)
        names = [str(b) for b in g["band"][:]]
        px = np.asarray(g["bands"][self.sample, self.time], dtype=np.float32)
        x = g["x_"][self.sample, :2] if "x_" in g else None
        y = g["y_"][self.sample, :2] if "y_" in g else None
        transform = None
        if x is not None and y is not None:
            dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
            transform = (dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2)
        crs = f"EPSG:{int(g['crs'][self.sample])}" if "crs" in g else None
        meta: dict[str, Any] = {"time_id": self.time, "source": "ssl4eo-s12-v1.1"}
        if "time_" in g:
            meta["timestamp"] = str(np.datetime_as_string(g["time_"][self.sample, self.time], unit="s"))
        if "center_lat" in g:
            meta["lat"], meta["lon"] = float(g["center_lat"][self.sample]), float(g["center_lon"][self.sample])
        if "cloud_mask" in g:
            meta["cloud_fraction"] = float((np.asarray(g["cloud_mask"][self.sample, self.time]) > 0).mean())
        sample = Sample(px, BandSet(tuple(names)), self.id, self.path, crs, transform, meta)
        return sample.select(bands) if bands is not None else sample


TEXT_CHOICES = ("caption", "qa", "both")


class Ssl4eoV11Dataset(torch.utils.data.Dataset):
    """Locations of SSL4EO-S12 v1.1 with captions: `ds[i]` is `{"pixels", "caption", "texts", "text_source", "id",
    "n_bad", "cloudy"}`. `texts`: the caption's question–answer pairs as "question answer" strings. `caption` is the
    text the contrastive loss sees, chosen by `texts` (the argument): caption (the Llama3 caption), qa (one of the
    pairs) or both (one of caption + pairs), drawn per item and epoch from (seed, epoch, location), so a resumed
    run sees the same texts; `text_source` says which (caption or qa)."""

    def __init__(self, root: str | Path, *, captions: str | Path | None = None, split: str | None = None,
                 level: str = "S2L2A", max_cloud: float = 1.0, cloud_policy: str = "skip",
                 transform: Callable[[Sample, torch.Generator], torch.Tensor] | None = None, seed: int = 0,
                 texts: str = "caption") -> None:
        if texts not in TEXT_CHOICES:
            raise Ssl4eoV11Error(f"texts {texts!r}: choose caption, qa or both")
        self.texts = texts
        self.root = Path(root)
        self.files = [str(f) for f in zarr_files(root, level)]
        self.level, self.max_cloud, self.cloud_policy = level, float(max_cloud), cloud_policy
        if cloud_policy not in ("skip", "flag"):
            raise Ssl4eoV11Error(f"cloud_policy {cloud_policy!r}: choose skip or flag")
        self.transform, self.seed, self.epoch = transform, seed, 0
        self._groups: dict[str, Any] = {}
        self.locations: list[tuple[int, int]] = []
        self.sample_ids: list[list[str]] = []
        self.n_times: list[int] = []
        for fi, f in enumerate(self.files):
            g = self._group(f)
            ids = [str(s) for s in g["sample"][:]]
            self.sample_ids.append(ids)
            self.n_times.append(int(g["bands"].shape[1]))
            self.locations += [(fi, s) for s in range(len(ids))]
        split = split or self.root.name
        self.captions = load_captions(captions, split) if captions else {}
        self.has_captions = bool(self.captions)
        if captions and not self.has_captions:
            raise Ssl4eoV11Error(f"captions {captions} hold no row")
        self.skipped: list[Any] = []

    # --- pickling: each DataLoader worker opens its own zip handles
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_groups"] = {}
        return state

    def _group(self, path: str) -> Any:
        g = self._groups.get(path)
        if g is None:
            g = self._groups[path] = open_group(path)
        return g

    @property
    def records(self) -> list[tuple[int, int]]:
        return self.locations

    def __len__(self) -> int:
        return len(self.locations)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def bands(self) -> BandSet:
        return BandSet(tuple(str(b) for b in self._group(self.files[0])["band"][:]))

    def check_bands(self, required: BandSet | str) -> None:
        required = BandSet.parse(required)
        have = self.bands()
        missing = have.missing(required)
        if missing:
            raise MissingBandError(missing, have.names, f"SSL4EO-S12 v1.1 {self.level} {self.files[0]}")

    def item(self, index: int, time: int) -> Ssl4eoV11Item:
        fi, s = self.locations[index]
        return Ssl4eoV11Item(self.files[fi], s, time, f"{self.sample_ids[fi][s]}_{time}")

    def caption_row(self, index: int, time: int) -> CaptionRow | None:
        fi, s = self.locations[index]
        name = Path(self.files[fi]).name
        return self.captions.get((name, int(self.sample_ids[fi][s]), time))

    def choose_season(self, index: int, epoch: int | None = None) -> tuple[int | None, bool]:
        """(season, cloudy) for `index` this epoch: the first season of a seeded order whose cloud fraction is at
        most `max_cloud`; else None (skip) or the least cloudy one, flagged."""
        from spectraclip.data.captions import item_seed

        fi, s = self.locations[index]
        rng = np.random.default_rng(item_seed(self.seed, self.epoch if epoch is None else epoch, index))
        order = rng.permutation(self.n_times[fi]).tolist()
        if self.captions:  # a season without a caption cannot be a training pair
            order = [t for t in order if self.caption_row(index, t) is not None] or order
        g = self._group(self.files[fi])
        if "cloud_mask" not in g or self.max_cloud >= 1.0:
            return order[0], False
        fracs = {}
        for t in order:
            fracs[t] = float((np.asarray(g["cloud_mask"][s, t]) > 0).mean())
            if fracs[t] <= self.max_cloud:
                return t, False
        if self.cloud_policy == "skip":
            return None, True
        return min(order, key=lambda t: fracs[t]), True

    def choose_text(self, index: int, caption: str | None, qa: list[str]) -> tuple[str | None, str]:
        """(the text the loss sees, "caption" or "qa") for location `index` this epoch (see the class docstring);
        a location without pairs keeps its caption."""
        from spectraclip.data.captions import item_seed

        pool = [("caption", caption)] if caption is not None and self.texts != "qa" else []
        if self.texts != "caption":
            pool += [("qa", t) for t in qa]
        if not pool:
            return caption, "caption"
        rng = np.random.default_rng(item_seed(self.seed, self.epoch, index) ^ 0x7E475)
        source, text = pool[int(rng.integers(len(pool)))]
        return text, source

    def __getitem__(self, index: int) -> dict[str, Any]:
        from spectraclip.data.captions import item_seed

        n_bad = 0
        for k in range(min(len(self), 64)):
            i = (index + k) % len(self)
            t, cloudy = self.choose_season(i)
            if t is None:
                n_bad += 1
                continue
            it = self.item(i, t)
            sample = it.read(group=self._group(it.path))
            row = self.caption_row(i, t)
            caption = row.caption if row else None
            if self.captions and caption is None:
                n_bad += 1
                continue
            texts = [f"{q} {a}".strip() for q, a in row.qa] if row else []
            text, source = self.choose_text(i, caption, texts)
            g = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, i) ^ 0x5EED)
            pixels = self.transform(sample, g) if self.transform else torch.from_numpy(sample.pixels)
            return {"pixels": pixels, "caption": text, "texts": texts, "text_source": source, "id": it.id,
                    "n_bad": n_bad, "cloudy": cloudy}
        raise Ssl4eoV11Error(f"{self.root}: no usable location among {n_bad} from {index} (all cloudy or uncaptioned)")


def qa_texts(items: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The question–answer texts of a batch's items."""
    return [list(it.get("texts", [])) for it in items]


__all__ = ["LEVELS", "TEXT_CHOICES", "Ssl4eoV11Dataset", "Ssl4eoV11Error", "Ssl4eoV11Item", "is_ssl4eo_v11",
           "load_captions", "open_group", "split_qa", "zarr_files"]
