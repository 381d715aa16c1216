"""The Python face of spectraclip: the main jobs as one call each, with the CLI's defaults.

```python
import spectraclip as sc

model = sc.load_model("Llama3-MS-CLIP-Base")
result = sc.classify(model, "tiles/", ["forest", "river", "industrial area"])
result.to_pandas()
```

Every function here calls the library function that does the work (`models.loading.load_model`,
`inference.encode_images` / `embed_to_table`, `zeroshot.classifier.ZeroShotClassifier`,
`index.query.search_vectors` / `search_texts`, `apps.maps.map_scene`, `apps.heatmap.heatmap_scene`,
`change.scene.change_scene`, `evaluate.runner.evaluate`, `train.loop.train`), and the CLI commands `classify`,
`embed` and `search` call these functions, so a table written from Python is the table the CLI writes. The
defaults are the CLI's: `device="auto"` (CUDA when present), `precision="auto"` (the device's fastest mode that
passes the accuracy gate), `batch_size=None` (fitted to the model and device), `nodata="fill"`, `workers=1`.

Heavy modules (torch, open_clip, rasterio) are imported inside the functions, so `import spectraclip` stays fast.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectraclip.errors import InputError, SpectraclipError
from spectraclip.io.sample import Sample

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from spectraclip.apps.heatmap import HeatmapResult
    from spectraclip.apps.maps import MapResult
    from spectraclip.change.scene import ChangeResult
    from spectraclip.embeddings import EmbeddingsTable
    from spectraclip.evaluate.runner import EvaluationResult
    from spectraclip.index.filters import Filters
    from spectraclip.models.spectral_clip import SpectralCLIP
    from spectraclip.train.config import Recipe
    from spectraclip.train.loop import TrainResult
    from spectraclip.zeroshot.classes import ClassSpec

PathLike = str | Path
#: What the functions that read images take: a path (file, band folder, folder, glob), a `Sample`, a numpy array or
#: torch tensor `[C, H, W]` (named by `bands=`), or a list of these.
Inputs = PathLike | Sample | np.ndarray | Any | Sequence[PathLike | Sample | np.ndarray | Any]

DEVICE = "auto"
PRECISION = "auto"
NODATA = "fill"
WORKERS = 1


class FaceError(SpectraclipError, ValueError):
    """A call of the Python face that cannot be done as given; the message says what to give instead."""


def _quiet(where: str, message: str) -> None:
    """Failed items are returned (`.failed`), not logged twice."""


# -- devices and models ----------------------------------------------------------------------------------------

def resolve_device(device: str | None) -> str:
    """The device a run uses: `"auto"` (or None) picks CUDA when present, else CPU; anything else is kept.

    Args:
        device: `"auto"`, `"cpu"`, `"cuda"`, `"cuda:1"`, ...

    Returns:
        The torch device string.
    """
    if device not in (None, "auto"):
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name_or_checkpoint: PathLike | None = None, *, name: str | None = None,
               checkpoint: PathLike | None = None,
               bands: str | Sequence[str] | None = None, device: str = DEVICE, missing_bands: str | None = None,
               resize: bool = False) -> SpectralCLIP:
    """Load a model by registry name, open_clip architecture, `hf-hub:` id or checkpoint path.

    Args:
        name_or_checkpoint: a registry name (`sc.list_models()`), `openclip:ARCH`, `hf-hub:org/repo`, or the path of
            a checkpoint (a bundle folder, an open_clip state dict, the published Llama3-MS-CLIP file).
        name: a model name, never taken for a path (as `--model`).
        checkpoint: a checkpoint path (as `--checkpoint`); with a name, the name is the architecture it belongs to.
        bands: build or extend the model for these bands (`--model-bands`: tiny or RGB models).
        device: `"auto"` (CUDA when present, else CPU), `"cpu"`, `"cuda"`, ...
        missing_bands: `"error"` or `"fill"`: overrides the model's declared missing-band policy.
        resize: squeeze rasters larger than twice the model input into one input instead of refusing them.

    Returns:
        The model (fp32, eval mode, on `device`).

    Raises:
        FaceError: nothing to load was named.
        SpectraclipError: an unknown name, a bad checkpoint, or weights neither cached nor downloadable.
    """
    if checkpoint is None and name is None and name_or_checkpoint is not None:
        text = os.fspath(name_or_checkpoint)
        if isinstance(name_or_checkpoint, Path) or Path(text).exists():
            checkpoint = text
        else:
            name = text
    elif name_or_checkpoint is not None and name is None:
        name = os.fspath(name_or_checkpoint)
    if not name and checkpoint is None:
        raise FaceError("give a model name or a checkpoint (sc.list_models() lists the names)")
    from spectraclip.models.registry import check_weights_available

    if checkpoint is None and name is not None:
        check_weights_available(name)  # before torch loads: weights not cached and no Hub fail at once
    from spectraclip.models.loading import load_model as _load  # imports torch (seconds): after the check
    bandspec = ",".join(bands) if bands is not None and not isinstance(bands, str) else bands
    net = _load(name or None, checkpoint, device=resolve_device(device), bands=bandspec)
    vars(net)["loaded_from"] = {"model": name or "", "checkpoint": str(checkpoint or "")}  # recorded in tables
    return net.set_input_options(missing_bands=missing_bands, allow_resize=resize or None)


def list_models() -> list[str]:
    """The registry's model names (what `spectraclip models` lists).

    Returns:
        The names, sorted.
    """
    from spectraclip.models.registry import list_models as _list

    return sorted(_list())


# -- inputs ------------------------------------------------------------------------------------------------------

def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "detach") and hasattr(x, "shape"))


def _expand(path: PathLike) -> list[Path]:
    text = os.fspath(path)
    if not Path(text).exists() and glob.has_magic(text):
        found = sorted(glob.glob(text, recursive=True))
        if not found:
            raise FaceError(f"{text}: the pattern matches no file")
        return [Path(p) for p in found]
    return [Path(text)]


def _is_stac_item(x: Any) -> bool:
    """A STAC Item: a `pystac.Item`, its dict form, or a `.json` file holding one."""
    if isinstance(x, dict):
        return x.get("type") == "Feature" and "assets" in x
    if type(x).__name__ == "Item" and hasattr(x, "to_dict") and hasattr(x, "assets"):
        return True
    if isinstance(x, (str, Path)) and str(x).lower().endswith(".json") and Path(x).is_file():
        try:
            return _is_stac_item(json.loads(Path(x).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return False
    return False


def stac_sample(item: Any, bands: str | Sequence[str] | None = None) -> Sample:
    """A STAC Item (a `.json` file, its dict or a `pystac.Item`) read whole as one `Sample`: its single-band assets
    matched to bands by `eo:bands` names, common names or keys (`io.scene.open_scene`), brought onto the finest
    band's grid. Asset hrefs must be absolute unless the item is a file (relative to it) or has a self link."""
    import tempfile

    from spectraclip.io.scene import SceneReader, SceneWindow, open_scene

    # An in-memory item is written to a temporary file for `open_scene`, removed once its pixels are read.
    with tempfile.TemporaryDirectory(prefix="spectraclip-stac-") as tmpdir:
        if isinstance(item, (str, Path)):
            scene, name = open_scene(Path(item), _read_bands(bands)), str(item)
        else:
            data = item.to_dict() if not isinstance(item, dict) else dict(item)
            if not isinstance(item, dict) and item.get_self_href():
                data = item.clone().make_asset_hrefs_absolute().to_dict()  # relative hrefs resolved against it
            item_id = data.get("id", "item")
            path = Path(tmpdir) / f"{item_id}.json"
            path.write_text(json.dumps(data), encoding="utf-8")
            scene, name = open_scene(path, _read_bands(bands)), f"{item_id} (given in memory)"
        with SceneReader(scene, max_cloud=1.0) as reader:
            got = reader.read(SceneWindow(0, 0, 0, scene.height, scene.width, 0, 0))
    if got.sample is None:
        raise FaceError(f"STAC item {name}: {got.message}")
    return got.sample


def as_inputs(inputs: Inputs, bands: str | Sequence[str] | None = None) -> list[Any]:
    """The items a run reads: paths (files, band folders, folders searched recursively, globs) expanded as the CLI
    does (`io.readers.find_items`), `Sample`s kept, arrays and tensors made `Sample`s named by `bands`, STAC Items
    (`pystac.Item`, their dicts, `.json` files) read whole (`stac_sample`).

    Args:
        inputs: one input or a list of inputs (see `Inputs`).
        bands: the band names of arrays (required for them), as in `Sample.from_array`.

    Returns:
        The items, paths first (sorted), then Samples in the order given.

    Raises:
        RasterError: an array without `bands`, or with a wrong number of them.
        FaceError: a glob that matches nothing; nothing given.
    """
    from spectraclip.io.readers import find_items

    if isinstance(inputs, (str, Path, Sample, dict)) or _is_array(inputs) or _is_stac_item(inputs):
        inputs = [inputs]
    paths: list[Path] = []
    samples: list[Sample] = []
    for i, x in enumerate(inputs):
        if isinstance(x, Sample):
            samples.append(x)
        elif _is_stac_item(x):
            samples.append(stac_sample(x, bands))
        elif _is_array(x):
            samples.append(Sample.from_array(x, bands, id=f"array_{i}"))
        elif isinstance(x, (str, Path)):
            paths += _expand(x)
        else:
            raise FaceError(f"input {i}: {type(x).__name__} is not a path, Sample, numpy array or tensor")
    if not paths and not samples:
        raise FaceError("no inputs given")
    return [*(find_items(paths) if paths else []), *samples]


def _class_specs(classes: str | Sequence[str] | Sequence[ClassSpec] | None) -> list[ClassSpec]:
    """Classes as `ClassSpec`s: parsed ones kept, names and `--classes` strings parsed (`zeroshot.classes`)."""
    from spectraclip.zeroshot.classes import ClassSpec, parse_classes

    if classes and not isinstance(classes, str) and all(isinstance(c, ClassSpec) for c in classes):
        return [c for c in classes if isinstance(c, ClassSpec)]
    if classes is None or isinstance(classes, str):
        return parse_classes(classes)
    return parse_classes([c for c in classes if isinstance(c, str)])


def _read_bands(bands: str | Sequence[str] | None) -> str | None:
    return ",".join(bands) if bands is not None and not isinstance(bands, str) else bands


# -- classify ----------------------------------------------------------------------------------------------------

@dataclass
class ClassifyResult:
    """Zero-shot probabilities of items over classes, with what made them (templates, logit scale).

    Attributes:
        ids: the item ids (paths relative to their common folder, or the Samples' ids).
        paths: each item's path (None for arrays).
        classes: the class names, in column order.
        probabilities: `[items, classes]` softmax probabilities under the model's logit scale.
        templates: the name of the template set used.
        logit_scale: the logit scale of the probabilities.
        samples_meta: per item what the reader and the preprocessor recorded (filled bands, nodata, georeference).
        failed: `(item, message)` of the items that could not be read (skipped).
        description: the classes and templates in words, as the CLI prints them.
    """

    ids: list[str]
    paths: list[str | None]
    classes: list[str]
    probabilities: np.ndarray
    templates: str
    logit_scale: float
    samples_meta: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    description: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def top_class(self) -> list[str]:
        """The most probable class of each item."""
        return [self.classes[int(j)] for j in self.probabilities.argmax(1)]

    @property
    def top_probability(self) -> list[float]:
        """The probability of each item's top class."""
        return [float(v) for v in self.probabilities.max(1)]

    def columns(self) -> dict[str, list[Any]]:
        """The output table's columns (`spectraclip classify -o` writes exactly these): id, path, top class and
        its probability, filled bands, the nodata share (when any), `p_<class>` per class, templates, logit scale.
        """
        metas = self.samples_meta or [{} for _ in self.ids]
        cols: dict[str, list[Any]] = {"id": list(self.ids), "path": list(self.paths), "top_class": self.top_class,
                                      "top_probability": self.top_probability,
                                      "filled_bands": [m.get("filled_bands") or "" for m in metas]}
        if any(m.get("nodata_fraction") for m in metas):
            cols["nodata_fraction"] = [float(m.get("nodata_fraction") or 0.0) for m in metas]
        cols.update({f"p_{c}": self.probabilities[:, j].tolist() for j, c in enumerate(self.classes)})
        cols["templates"] = [self.templates] * len(self.ids)  # what made these probabilities, per row
        cols["logit_scale"] = [self.logit_scale] * len(self.ids)
        return cols

    def to_pandas(self) -> pd.DataFrame:
        """The result as a pandas DataFrame (the columns of `columns()`).

        Returns:
            One row per item.
        """
        import pandas as pd

        return pd.DataFrame(self.columns())

    def write(self, path: PathLike) -> Path:
        """Write the result to `.csv` or `.parquet` (atomically), as `spectraclip classify -o` does.

        Args:
            path: the output file.

        Returns:
            The path written.
        """
        from spectraclip.results import write_table

        return write_table(path, self.columns())

    def plot(self, item: int | str | None = None, *, top: int = 5, ax: Any = None) -> Figure:
        """A bar chart: one item's `top` most probable classes, or (no `item`, several items) how many items each
        class won.

        Args:
            item: an index or id; default the only item, or all items.
            top: how many classes one item's chart shows.
            ax: a matplotlib axes to draw into (default: a new figure).

        Returns:
            The matplotlib figure.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 3))
        else:
            fig = ax.figure
        if item is None and len(self.ids) == 1:
            item = 0
        if item is not None:
            i = self.ids.index(item) if isinstance(item, str) else int(item)
            order = self.probabilities[i].argsort()[::-1][:top]
            ax.barh([self.classes[j] for j in order][::-1], self.probabilities[i, order][::-1], color="tab:green")
            ax.set_xlim(0, 1)
            ax.set_xlabel("probability")
            ax.set_title(f"{self.ids[i]} ({self.templates} templates)", fontsize=9)
        else:
            wins = np.bincount(self.probabilities.argmax(1), minlength=len(self.classes))
            order = wins.argsort()[::-1]
            ax.barh([self.classes[j] for j in order][::-1], wins[order][::-1], color="tab:green")
            ax.set_xlabel("items whose top class it is")
            ax.set_title(f"{len(self.ids)} items ({self.templates} templates)", fontsize=9)
        fig.tight_layout()
        return fig


def classify(model: SpectralCLIP, inputs: Inputs, classes: str | Sequence[str] | Sequence[ClassSpec],
             templates: str | Sequence[str] | None = None, *, bands: str | Sequence[str] | None = None,
             batch_size: int | None = None, device: str = DEVICE, workers: int = WORKERS, nodata: str = NODATA,
             radiometry: str | None = None, precision: str = PRECISION, progress: bool = True) -> ClassifyResult:
    """Zero-shot classify images into classes (template-ensemble prompts; what `spectraclip classify` runs).

    Args:
        model: a loaded model (`sc.load_model`).
        inputs: paths, folders, globs, Samples, or arrays/tensors `[C, H, W]` named by `bands`.
        classes: class names: a list, a `--classes` string (`"forest,river"`, `"eurosat"`, `"water=open water"`),
            or parsed `ClassSpec`s.
        templates: a template set name (`"clip-satellite"`, `"msclip"`, ...) or several; default the model's own.
        bands: the band order of the inputs (files without band descriptions; arrays).
        batch_size: images per forward pass; default fitted to the model and device.
        device: `"auto"` (CUDA when present), `"cpu"`, `"cuda"`, ...
        workers: DataLoader worker processes reading the inputs.
        nodata: `"fill"` (nodata pixels take the band mean; recorded per item) or `"error"` (skip such items).
        radiometry: what the files' values are when they do not say (`--radiometry`).
        precision: `"auto"`, `"fp32"`, `"bf16"` or `"int8"`.
        progress: show a progress bar.

    Returns:
        The probabilities per item and class, with `.to_pandas()`, `.write(path)` and `.plot()`.

    Raises:
        ClassesError: fewer than two classes, or a bad class string.
        InputError: no input could be read (the first failure is named).
    """
    from spectraclip.inference import encode_images
    from spectraclip.zeroshot.classes import describe_classes
    from spectraclip.zeroshot.classifier import ZeroShotClassifier

    specs = _class_specs(classes)
    enc = encode_images(model, as_inputs(inputs, bands), bands=_read_bands(bands), nodata=nodata,
                        batch_size=batch_size, num_workers=workers, device=resolve_device(device), on_error=_quiet,
                        radiometry=radiometry, precision=precision, progress=progress)
    if not enc.ids:
        first = f" (first: {enc.failed[0][0]}: {enc.failed[0][1]})" if enc.failed else ""
        raise InputError(f"no input could be read{first}")
    tnames = ",".join(templates) if templates is not None and not isinstance(templates, str) else templates
    zs = ZeroShotClassifier.build(model, specs, tnames)
    return ClassifyResult(ids=list(enc.ids), paths=[m.get("path") for m in enc.samples_meta], classes=list(zs.names),
                          probabilities=np.asarray(zs.probabilities(enc.vectors)),
                          templates=zs.templates.templates.name, logit_scale=float(zs.scale),
                          samples_meta=enc.samples_meta, failed=list(enc.failed),
                          description=[f"classes: {describe_classes(specs)}", zs.describe()])


# -- embed -------------------------------------------------------------------------------------------------------

@dataclass
class EmbedResult:
    """A written embeddings table.

    Attributes:
        path: the table (GeoParquet).
        table: its contents (ids, `[N, D]` vectors, columns, metadata).
        failed: `(item, message)` of the items skipped.
        resumed: how many rows an earlier run had already written.
        notes: what the run reports beside the table (e.g. the shard it embedded).
    """

    path: Path
    table: EmbeddingsTable
    failed: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    notes: list[str] = field(default_factory=list)

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (`id`, `vector` and the other columns).

        Returns:
            One row per embedded item.
        """
        import pandas as pd

        return pd.DataFrame({"id": self.table.ids, "vector": list(self.table.vectors), **self.table.columns})

    def to_geopandas(self) -> Any:
        """The table as a GeoDataFrame (its WGS84 footprints as geometry), as `geopandas.read_parquet` opens it.

        Returns:
            One row per embedded item, with the table's columns.
        """
        import geopandas as gpd

        return gpd.read_parquet(self.path)


def _layout_items(model: SpectralCLIP, paths: Sequence[PathLike], layout: str, modalities: Sequence[str] | None,
                  drop_bands: Sequence[str] | None, bands: str | None, nodata: str) -> Any:
    """The multi-file items of `paths` read as `layout`, restricted to `modalities`, without `drop_bands`;
    `bands` overrides each modality's band order (split by sensor)."""
    from spectraclip.bands import check_group, split_by_group
    from spectraclip.io.layouts import LayoutDataset, layout_items

    mods = [check_group(m) for m in modalities or ()] or list(model.groups)
    unknown = [m for m in mods if m not in model.groups]
    if unknown and model.config.multi:
        raise FaceError(f"the model has no {unknown[0]!r} input group; it takes {', '.join(model.groups)}")
    override = {m: ",".join(bs.names) for m, bs in split_by_group(bands).items()} if bands else {}
    items = []
    for src in paths:
        _, found = layout_items(src, layout)
        for it in found:
            it.bands.update({m: override[m] for m in it.paths if m in override})
        items += found
    return LayoutDataset(items, modalities=mods, nodata=nodata, source=f"{layout}:{','.join(map(str, paths))}",
                         exclude_bands=list(drop_bands) if drop_bands else None)


def embed(model: SpectralCLIP, inputs: Inputs, output: PathLike, *, bands: str | Sequence[str] | None = None,
          batch_size: int | None = None, device: str = DEVICE, workers: int = WORKERS, nodata: str = NODATA,
          radiometry: str | None = None, precision: str = PRECISION, layout: str | None = None,
          modalities: Sequence[str] | None = None, drop_bands: Sequence[str] | None = None, windows: bool = False,
          tile: int | None = None, stride: int | None = None, engine: str = "local", address: str | None = None,
          num_gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0, shard: str | None = None,
          major_tom_metadata: PathLike | None = None, progress: bool = True) -> EmbedResult:
    """Write the embeddings table of images, scene windows or multi-file items (what `spectraclip embed` runs;
    resumable: call it again after an interruption and it continues).

    Args:
        model: a loaded model (`sc.load_model`); its name or checkpoint is recorded in the table.
        inputs: paths, folders, globs, Samples or arrays (named by `bands`); scenes with `windows=True`; dataset
            folders with `layout`.
        output: the table to write (`.parquet`).
        bands: the band order of the inputs.
        batch_size: images per forward pass; default fitted to the model and device.
        device: `"auto"` (CUDA when present), `"cpu"`, `"cuda"`, ...
        workers: DataLoader worker processes (with `engine="ray"`: encoding actors).
        nodata: `"fill"` or `"error"`.
        radiometry: what the files' values are when they do not say.
        precision: `"auto"`, `"fp32"`, `"bf16"` or `"int8"`.
        layout: read multi-file items (`"auto"`, `"ssl4eo"`, `"bigearthnet-s1s2"`, `"manifest"`), or `"majortom"`:
            rows of Major TOM Core shards (detected without `layout` when every input is one), written in the Major
            TOM embedding layout beside ours.
        modalities: with `layout`: read only these modalities.
        drop_bands: with `layout`: leave these bands out of the inputs.
        windows: treat each input as a scene and embed one row per window of a grid over it.
        tile: with `windows`: window size (default the model's input size).
        stride: with `windows`: pixels between windows (default `tile`).
        engine: `"local"` or `"ray"` (a Ray Data pipeline; needs `spectraclip[distributed]`).
        address: with `engine="ray"`: the cluster to join.
        num_gpus_per_worker: with `engine="ray"`: GPUs per encoding actor.
        cpus_per_worker: with `engine="ray"`: CPUs per encoding actor.
        shard: `"I/N"`: embed only shard I of N (merge the parts with `spectraclip embed-merge`).
        major_tom_metadata: with Major TOM shards: the dataset's `metadata.parquet` (timestamps, grid row/column).
        progress: show a progress bar.

    Returns:
        The table written, the items skipped and how many rows were kept from an earlier run.

    Raises:
        FaceError: contradicting options (`windows` with `layout`, an unknown engine).
        EmbeddingsTableError: `output` holds parts of a run with another model.
        InputError: nothing could be embedded (all items failed).
    """
    from spectraclip.inference import embed_to_table

    if engine not in ("local", "ray"):
        raise FaceError(f"engine {engine!r}: choose local or ray")
    if engine == "ray":  # say what to install before reading anything
        from spectraclip.distributed.ray_engine import import_ray

        import_ray()
    read_bands = _read_bands(bands)
    src = getattr(model, "loaded_from", {})
    meta: dict[str, Any] = {"model": src.get("model", ""), "checkpoint": src.get("checkpoint", ""),
                            "model_config": model.config.arch}
    notes: list[str] = []
    sources: list[Any] = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    items: Any
    major_tom = _is_major_tom(sources, layout)
    if major_tom:
        if windows or modalities or drop_bands:
            raise FaceError("layout majortom reads whole Core rows: windows, modalities and drop_bands do not apply")
        from spectraclip.distributed.majortom import major_tom_items

        items = major_tom_items([Path(p) for p in sources], major_tom_metadata)
        read_bands = read_bands or ",".join(model.bands.names)  # each row holds every band: read the model's
        meta.update({"layout": "majortom", "sources": [str(p) for p in sources]})
    elif major_tom_metadata is not None:
        raise FaceError("major_tom_metadata goes with Major TOM Core shards (layout majortom)")
    elif windows:
        if layout is not None:
            raise FaceError("windows and layout are two kinds of item; give one")
        from spectraclip.io.window_items import window_items

        items = window_items(sources, tile or model.image_size, stride, read_bands)
        meta.update({"windows": {"tile": tile or model.image_size, "stride": stride or tile or model.image_size},
                     "sources": [str(p) for p in sources]})
    elif layout is not None or modalities or drop_bands:
        items = _layout_items(model, sources, layout or "auto", modalities, drop_bands, read_bands, nodata)
        meta.update({"layout": layout or "auto", "sources": [str(p) for p in sources],
                     "modalities_requested": list(items.modalities or model.groups),
                     "excluded_bands": list(items.exclude_bands)})
    else:
        items = as_inputs(inputs, bands)
    skip: set[str] = set()
    if shard is not None:
        from spectraclip.distributed.shards import parse_shard, shard_ids, shard_metadata
        from spectraclip.inference import list_items

        spec = parse_shard(shard)
        _, ids = list_items(items)
        mine = shard_ids(ids, spec)
        skip = set(ids) - set(mine)
        meta.update(shard_metadata(spec, ids, mine))
        notes.append(f"shard {spec}: {len(mine)} of {len(ids)} items")
    if engine == "ray":
        from spectraclip.distributed.ray_engine import embed_with_ray

        table, failed, resumed = embed_with_ray(
            model, items, output, bands=read_bands, nodata=nodata, batch_size=batch_size, workers=max(1, workers),
            num_gpus_per_worker=num_gpus_per_worker, cpus_per_worker=cpus_per_worker, device=device,
            address=address, metadata=meta, radiometry=radiometry, precision=precision, skip_ids=skip)
    else:
        table, failed, resumed = embed_to_table(
            model, items, output, bands=read_bands, nodata=nodata, batch_size=batch_size, num_workers=workers,
            device=resolve_device(device), metadata=meta, on_error=_quiet, radiometry=radiometry,
            precision=precision, skip_ids=skip, progress=progress)
    if not len(table) and failed:
        raise InputError(f"nothing could be embedded: all {len(failed)} items failed (first: {failed[0][0]}: "
                         f"{failed[0][1]})")
    if major_tom:
        from spectraclip.distributed.majortom import finish_major_tom
        from spectraclip.embeddings import read_embeddings

        finish_major_tom(output, items)
        table = read_embeddings(output)
    return EmbedResult(Path(output), table, list(failed), int(resumed), notes)


def _is_major_tom(paths: Sequence[Any], layout: str | None) -> bool:
    """`layout="majortom"`, or no layout (or auto) and every input a Major TOM Core shard."""
    if layout == "majortom":
        return True
    if layout not in (None, "auto") or not paths or not all(isinstance(p, (str, Path)) for p in paths):
        return False
    from spectraclip.distributed.majortom import is_core_shard

    return all(is_core_shard(Path(p)) for p in paths)


# -- search ------------------------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    """Ranked hits per query.

    Attributes:
        rows: the hits as columns: query, rank, id, score, path (and timestamp, lon, lat for an index).
        source: what was searched, in words (e.g. `"flat index, 270 items"`).
    """

    rows: dict[str, list[Any]]
    source: str = ""

    def __len__(self) -> int:
        return len(self.rows["id"])

    def hits(self, query: str | None = None) -> list[dict[str, Any]]:
        """The hits as dicts, of one query or of all.

        Args:
            query: a query's text (or its label for example queries); default all.

        Returns:
            One dict per hit, best first within each query.
        """
        keys = list(self.rows)
        out = [dict(zip(keys, vals, strict=True)) for vals in zip(*self.rows.values(), strict=True)]
        return [h for h in out if query is None or h["query"] == query]

    def to_pandas(self) -> pd.DataFrame:
        """The hits as a pandas DataFrame.

        Returns:
            One row per hit.
        """
        import pandas as pd

        return pd.DataFrame(self.rows)

    def write(self, path: PathLike) -> Path:
        """Write the hits to `.csv` or `.parquet`, as `spectraclip search -o` does.

        Args:
            path: the output file.

        Returns:
            The path written.
        """
        from spectraclip.results import write_table

        return write_table(path, self.rows)


def _texts(text: str | Sequence[str] | None) -> list[str]:
    return [text] if isinstance(text, str) else list(text or [])


def search(table_or_index: Inputs | EmbeddingsTable, text: str | Sequence[str] | None = None, *,
           like: str | Sequence[str] | None = None, unlike: str | Sequence[str] | None = None,
           like_file: PathLike | Sequence[PathLike] | None = None, model: SpectralCLIP | None = None, k: int = 10,
           filters: Filters | Sequence[str] | None = None, force: bool = False,
           bands: str | Sequence[str] | None = None, batch_size: int | None = None, device: str = DEVICE,
           workers: int = WORKERS, nodata: str = NODATA, radiometry: str | None = None, precision: str = PRECISION,
           published: bool = False, progress: bool = True) -> SearchResult:
    """Rank items by similarity to free text or to examples (what `spectraclip search` runs).

    Args:
        table_or_index: an index folder (`spectraclip index build`), embeddings tables (`.parquet`, or an
            `EmbeddingsTable`), or images (paths, folders, globs, Samples, arrays) encoded on the fly.
        text: one query or several.
        like: index only: ids of positive examples.
        unlike: index only: ids of negative examples.
        like_file: index only: rasters encoded on the fly as positive examples.
        model: the model that made the embeddings (it encodes the text); needed for text and images.
        k: hits per query.
        filters: index only: `index.filters.Filters`, or strings `bbox=W,S,E,N`, `start=DATE`, `end=DATE`,
            `COLUMN=VALUE`.
        force: search tables even when their fingerprints say another model or preprocessing made them.
        bands: the band order of images searched directly.
        batch_size: images per forward pass (images only); default fitted.
        device: `"auto"`, `"cpu"`, `"cuda"`, ...
        workers: DataLoader worker processes (images only).
        nodata: `"fill"` or `"error"` (images only).
        radiometry: what the images' values are when they do not say.
        precision: `"auto"`, `"fp32"`, `"bf16"` or `"int8"` (images only).
        published: search published Major TOM embedding files (they carry no fingerprint of ours) as made by
            `model`: declared by you, not verified.
        progress: show a progress bar.

    Returns:
        The ranked hits, with `.to_pandas()`, `.hits()` and `.write(path)`.

    Raises:
        FaceError: no query; examples without an index; tables mixed with images; no model where one is needed.
        FingerprintMismatchError: a table or index made by another model (unless `force`).
    """
    from spectraclip.embeddings import EmbeddingsTable, is_embeddings_table, read_embeddings
    from spectraclip.index.store import is_index_dir

    texts = _texts(text)
    likes, unlikes = _texts(like), _texts(unlike)
    like_files = [like_file] if isinstance(like_file, (str, Path)) else list(like_file or [])
    if isinstance(table_or_index, (str, Path)) and is_index_dir(table_or_index):
        return _search_index(Path(table_or_index), texts, likes, unlikes, like_files, model, k, filters, force,
                             _read_bands(bands), precision)
    if likes or unlikes or like_files or filters:
        raise FaceError("like, like_file, unlike and filters need an index folder (spectraclip index build)")
    if not texts:
        raise FaceError("give a text query")
    if model is None:
        raise FaceError("give model=: the model that made the embeddings encodes the text")
    from spectraclip.data.majortom import PUBLISHED_HINT, is_published_embeddings, read_published_embeddings

    given = table_or_index if isinstance(table_or_index, (list, tuple)) else [table_or_index]
    tables = [t for t in given if isinstance(t, EmbeddingsTable) or (isinstance(t, (str, Path)) and (
        is_embeddings_table(t) or is_published_embeddings(t)))]
    if tables and len(tables) != len(given):
        raise FaceError("give either images or embeddings tables, not both")
    if tables:
        from spectraclip.identity import check_fingerprints

        ids: list[str] = []
        vecs: list[np.ndarray] = []
        src: list[str | None] = []
        label = str(getattr(model, "loaded_from", {}).get("checkpoint") or
                    getattr(model, "loaded_from", {}).get("model") or "the model given")
        for t in tables:
            if isinstance(t, (str, Path)) and is_published_embeddings(t):
                if not published:
                    raise FaceError(f"{t} is a published Major TOM embedding file: {PUBLISHED_HINT}")
                t_ids, t_vecs, _ = read_published_embeddings(t, label)
                ids += t_ids
                vecs.append(t_vecs)
                src += [str(t)] * len(t_ids)
                continue
            emb = t if isinstance(t, EmbeddingsTable) else read_embeddings(Path(t))
            where = str(t) if not isinstance(t, EmbeddingsTable) else "the table given"
            if not force and emb.metadata.get("bands") and emb.metadata["bands"] != ",".join(model.bands.names):
                raise FaceError(f"{where}: embedded with bands {emb.metadata['bands']}, the model uses "
                                f"{','.join(model.bands.names)}")
            check_fingerprints(emb.fingerprints, model, where, force=force, model_label=label)
            ids += emb.ids
            vecs.append(emb.vectors)
            src += emb.columns.get("path", [None] * len(emb))
        vectors = np.concatenate(vecs)
        source = f"{len(tables)} table(s), {len(ids)} items"
    else:
        from spectraclip.inference import encode_images

        enc = encode_images(model, as_inputs(table_or_index, bands), bands=_read_bands(bands), nodata=nodata,
                            batch_size=batch_size, num_workers=workers, device=resolve_device(device),
                            on_error=_quiet, radiometry=radiometry, precision=precision, progress=progress)
        ids, vectors, src = enc.ids, enc.vectors, [m.get("path") for m in enc.samples_meta]
        source = f"{len(ids)} images" + (f" ({len(enc.failed)} unreadable)" if enc.failed else "")
    if not ids:
        raise InputError("nothing to search")
    if vectors.shape[1] != model.config.arch_config.get("embed_dim", vectors.shape[1]):
        raise FaceError(f"embeddings have dimension {vectors.shape[1]}, which this model does not produce")
    from spectraclip.index.query import search_vectors

    hits = search_vectors(model, vectors, ids, texts, top_k=k, paths=src)
    rows: dict[str, list[Any]] = {"query": [], "rank": [], "id": [], "score": [], "path": []}
    for q, qhits in hits.items():
        for h in qhits:
            for key, v in zip(rows, (q, h.rank, h.id, h.score, h.path), strict=True):
                rows[key].append(v)
    return SearchResult(rows, source)


def _search_index(index_dir: Path, texts: list[str], like: list[str], unlike: list[str], like_file: list[PathLike],
                  model: SpectralCLIP | None, k: int, filters: Filters | Sequence[str] | None, force: bool,
                  bands: str | None, precision: str) -> SearchResult:
    from spectraclip.index.filters import Filters, parse_filters
    from spectraclip.index.query import encode_raster, search_texts
    from spectraclip.index.store import open_index

    if not texts and not like and not like_file:
        raise FaceError("give a text query, like= ids or like_file= rasters")
    if (texts or like_file) and model is None:
        raise FaceError("give model=: text queries and like_file rasters are encoded by the index's model")
    index = open_index(index_dir)
    if model is not None and not force:
        index.check_model(model)
    like_vectors = [encode_raster(model, f, bands, precision) for f in like_file]
    f = filters if isinstance(filters, Filters) else parse_filters(list(filters or []))
    rows: dict[str, list[Any]] = {"query": [], "rank": [], "id": [], "score": [], "path": [], "timestamp": [],
                                  "lon": [], "lat": []}
    for text, hits in search_texts(index, texts or [None], model if (texts or like_file) else None, like=like,
                                   unlike=unlike, like_vectors=like_vectors, k=k, filters=f, force=True):
        label = text or "examples " + " ".join([*like, *map(str, like_file)])
        recs = index.records([h.row for h in hits])
        for r, (h, rec) in enumerate(zip(hits, recs, strict=True), start=1):
            for key, v in zip(rows, (label, r, h.id, h.score, rec.get("path"), rec.get("timestamp"),
                                     rec.get("lon"), rec.get("lat")), strict=True):
                rows[key].append(v)
    return SearchResult(rows, f"{index.kind} index, {len(index)} items")


# -- scenes ------------------------------------------------------------------------------------------------------

def _scene_kwargs(kwargs: dict[str, Any], device: str, precision: str) -> dict[str, Any]:
    out = dict(kwargs)
    out["device"] = resolve_device(device)
    out["precision"] = precision
    out.setdefault("num_workers", WORKERS)
    out.setdefault("nodata", NODATA)
    return out


def map_scene(model: SpectralCLIP, scene: PathLike, output: PathLike,
              classes: str | Sequence[str] | Sequence[ClassSpec] | None = None, *, templates: str | None = None,
              probe: PathLike | None = None, device: str = DEVICE, precision: str = PRECISION,
              **options: Any) -> MapResult:
    """A thematic map of a whole scene: sliding-window zero-shot classes blended without seams, as a COG
    (what `spectraclip map` runs; resumable).

    Args:
        model: a loaded model.
        scene: a GeoTIFF/COG/VRT, a band folder (SAFE, OSCD `imgs_1`) or a STAC Item JSON.
        output: the map to write (`.tif`): the class band then per-class probabilities; a PNG quicklook beside it.
        classes: class names (a list or a `--classes` string); not needed with `probe`.
        templates: a template set name; default the model's own.
        probe: a saved window probe (`spectraclip fit-window-probe`) instead of text prompts.
        device: `"auto"`, `"cpu"`, `"cuda"`, ...
        precision: `"auto"`, `"fp32"`, `"bf16"` or `"int8"`.
        **options: the other keywords of `apps.maps.map_scene` (`tile`, `stride`, `dense`, `vector`, `bands`,
            `scl`, `batch_size`, `max_skipped`, ...).

    Returns:
        The map's path, classes, quicklook and job summary; `.plot()` shows the class map with a legend.

    Raises:
        ClassesError: no classes and no probe.
        SkippedWindowsError: the run encoded nothing or skipped more than `max_skipped` of its windows.
    """
    from spectraclip.apps.maps import map_scene as _map_scene

    specs = _class_specs(classes) if classes is not None or probe is None else None
    return _map_scene(model, scene, output, specs, probe=probe, templates=templates,
                      **_scene_kwargs(options, device, precision))


def heatmap(model: SpectralCLIP, scene: PathLike, output: PathLike, queries: str | Sequence[str], *,
            device: str = DEVICE, precision: str = PRECISION, **options: Any) -> HeatmapResult:
    """Where in a scene each text query matches: dense patch-level similarity as a COG (`spectraclip heatmap`).

    Args:
        model: a loaded model.
        scene: a GeoTIFF/COG/VRT, a band folder or a STAC Item JSON.
        output: the heatmap to write (`.tif`, one float32 band per query).
        queries: one text query or several.
        device: `"auto"`, `"cpu"`, `"cuda"`, ...
        precision: `"auto"`, `"fp32"`, `"bf16"` or `"int8"`.
        **options: the other keywords of `apps.heatmap.heatmap_scene` (`tile`, `stride`, `cls_lambda`, ...).

    Returns:
        The heatmap's path, queries, overlay PNG and job summary.

    Raises:
        MapError: no query.
        SkippedWindowsError: the run encoded nothing or skipped too many windows.
    """
    from spectraclip.apps.heatmap import heatmap_scene

    return heatmap_scene(model, scene, output, _texts(queries), **_scene_kwargs(options, device, precision))


def change(model: SpectralCLIP, before: PathLike, after: PathLike, output: PathLike, *,
           classes: str | Sequence[str] | Sequence[ClassSpec] | None = None, queries: str | Sequence[str] | None = None,
           device: str = DEVICE, precision: str = PRECISION, **options: Any) -> ChangeResult:
    """A change map of BEFORE -> AFTER as a COG (`spectraclip change`; resumable).

    Args:
        model: a loaded model.
        before: the first date's scene.
        after: the second date's scene (brought onto the first's grid).
        output: the change map to write (`.tif`).
        classes: class names (a list, a `--classes` string or parsed `ClassSpec`s) whose change of probability is
            also written.
        queries: text queries whose change of similarity is also written.
        device: `"auto"`, `"cpu"`, `"cuda"`, ...
        precision: `"auto"`, `"fp32"`, `"bf16"` or `"int8"`.
        **options: the other keywords of `change.scene.change_scene` (`threshold`, `probe`, `tile`, ...).

    Returns:
        The change map's path, summary and quicklook.

    Raises:
        SkippedWindowsError: the run encoded nothing or skipped too many windows.
    """
    from spectraclip.change.scene import change_scene

    specs = _class_specs(classes) if classes is not None else None
    return change_scene(model, before, after, output, classes=specs,
                        queries=_texts(queries) if queries is not None else None,
                        **_scene_kwargs(options, device, precision))


# -- evaluate and train ------------------------------------------------------------------------------------------

def evaluate(model: SpectralCLIP | str, dataset: str, root: PathLike | None = None, *,
             templates: str | Sequence[str] | None = None, tasks: str | Sequence[str] | None = None,
             output: PathLike = "evaluation", split: str = "test", embeddings: PathLike | None = None,
             batch_size: int | None = None, device: str = DEVICE, precision: str = "fp32",
             workers: int = WORKERS, force: bool = False, plots: bool = True, progress: bool = True,
             log: Callable[[str], None] | None = None) -> EvaluationResult:
    """Evaluate a model on a benchmark dataset (what `spectraclip evaluate` runs): zero-shot, multi-label and
    retrieval metrics with their definitions, per-image predictions and plots under `output`.

    Args:
        model: a loaded model, or a name / checkpoint path to load.
        dataset: a registered dataset (`"eurosat-ms"`, `"eurosat-ms-mini"`, `"bigearthnet"`, `"meter-ml"`, ...).
        root: the dataset's folder (not needed for the shipped `eurosat-ms-mini`).
        templates: template set names; default the model's own.
        tasks: tasks to run (default the dataset's).
        output: the results folder.
        split: the dataset split.
        embeddings: score this embeddings table instead of encoding the images.
        batch_size: images per forward pass; default fitted to the model and device.
        device: `"auto"`, `"cpu"`, `"cuda"`, ...
        precision: `"fp32"` by default (the published code's, so numbers compare with papers); `"auto"`, `"bf16"` or
            `"int8"` for speed.
        workers: DataLoader worker processes.
        force: accept an embeddings table whose fingerprints differ from the model's.
        plots: write plots.
        progress: show progress bars.
        log: where progress lines go (default nowhere).

    Returns:
        The JSON-ready results (`.results`), the files written and the folder.

    Raises:
        EvaluationError: a dataset without a root, an unknown task.
        DatasetError: the dataset cannot be read.
    """
    from spectraclip.evaluate.runner import DatasetSpec, ModelSpec
    from spectraclip.evaluate.runner import evaluate as _evaluate
    net = model if not isinstance(model, (str, Path)) else load_model(model, device=device)
    src = getattr(net, "loaded_from", {})
    spec = ModelSpec(name=src.get("model") or None, checkpoint=src.get("checkpoint") or None, model=net)
    dev = resolve_device(device)
    return _evaluate([spec], [DatasetSpec(dataset, str(root) if root is not None else None, split)],
                     _texts(templates) or None, _texts(tasks) or None, output,
                     batch_size=batch_size, num_workers=workers, device=dev,  # type: ignore[arg-type]  # None: fitted, as the CLI passes it
                     progress=progress, plots=plots, embeddings=embeddings, force=force, precision=precision,
                     log_fn=log)


def train(recipe: Recipe | PathLike, *, overrides: Sequence[str] | None = None, resume: bool = False) -> TrainResult:
    """Continue contrastive pre-training from a recipe (what `spectraclip train` runs).

    Args:
        recipe: a YAML recipe path (see `examples/recipes/`) or a loaded `Recipe`.
        overrides: `key=value` overrides of the recipe (`--set`), e.g. `["optim.lr=5e-4"]`.
        resume: continue from the run's last checkpoint.

    Returns:
        What the run wrote (checkpoint bundle, metrics).

    Raises:
        RecipeError: a bad recipe or override.
    """
    from spectraclip.train.config import load_recipe
    from spectraclip.train.loop import train as _train

    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(recipe, list(overrides or []))
    elif overrides:
        raise FaceError("overrides go with a recipe path; change a loaded Recipe's fields directly")
    return _train(recipe, resume=resume)


__all__ = ["ClassifyResult", "EmbedResult", "FaceError", "Inputs", "Sample", "SearchResult", "as_inputs", "change",
           "classify", "embed", "evaluate", "heatmap", "list_models", "load_model", "map_scene", "resolve_device",
           "search", "train"]
