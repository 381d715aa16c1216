"""`spectraclip map`, `spectraclip heatmap` and `spectraclip fit-window-probe`: whole scenes in, COG out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import (
    NODATA_DEFAULT,
    WORKERS_DEFAULT,
    BatchOpt,
    CheckpointOpt,
    ClassesFileOpt,
    ClassesOpt,
    CloudMaskOpt,
    DeviceOpt,
    MissingBandsOpt,
    ModelBandsOpt,
    ModelOpt,
    NodataOpt,
    PrecisionOpt,
    RadiometryOpt,
    TemplatesOpt,
    WorkersOpt,
    console,
    fail,
    load_model_or_exit,
    resolve_device,
)

SceneArg = Annotated[Path, typer.Argument(help="A scene: GeoTIFF/COG/VRT, band folder (SAFE, OSCD imgs_1, "
                                          "BigEarthNet) or STAC Item JSON.")]
TileOpt = Annotated[int | None, typer.Option("--tile", min=1, help="Window size in pixels of the scene's finest "
                                             "grid. Default: the model's input size.")]
StrideOpt = Annotated[int | None, typer.Option("--stride", min=1, help="Window step in pixels. Default: half a "
                                               "tile.")]
SceneBandsOpt = Annotated[str | None, typer.Option("--bands", "-b", help="Band order of a multi-band file without "
                                                   "band descriptions (preset or comma list).")]
SclOpt = Annotated[Path | None, typer.Option("--scl", help="Scene classification layer (Sentinel-2 SCL): windows "
                                             "mostly cloud or shadow are skipped.")]
ClsLambdaOpt = Annotated[float, typer.Option("--cls-lambda", help="Subtract this x the window's global ([CLS]) "
                                             "similarity from the patch similarities (SegEarth-OV uses 0.3).")]

MaxSkippedOpt = Annotated[float, typer.Option("--max-skipped", min=0.0, max=1.0, help="Largest share of the "
                                              "windows a run may skip (nodata, cloud, unreadable, missing bands) "
                                              "and still write its output; more fails (exit 2, no output). 1 "
                                              "accepts any share; a run that encoded no window always fails.")]


def scene_options(tile: int | None, stride: int | None, bands: str | None, nodata: str, batch_size: int | None,
                  workers: int, device: str, precision: str, missing_bands: str | None, radiometry: str | None,
                  max_skipped: float, **more):
    """The library's shared scene options (`apps.runner.SceneOptions`) from this command's options."""
    from spectraclip.apps.runner import SceneOptions

    return SceneOptions(tile=tile, stride=stride, bands=bands, nodata=nodata, batch_size=batch_size,
                        num_workers=workers, device=resolve_device(device), precision=precision,
                        missing_bands=missing_bands, radiometry=radiometry, max_skipped=max_skipped, **more)


def print_summary(res, what: str) -> None:
    s = res.summary
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(s.skipped.items())) or "none"
    resumed = f"; resumed at row {s.resumed_at_row}" if s.resumed_at_row else ""
    console.print(f"{what}: [bold]{res.path}[/]  ({s.windows} windows: {s.encoded} encoded, skipped {skipped}; "
                  f"{s.windows_per_s:.1f} windows/s{resumed})")
    for name, msg in s.skipped_windows[:20]:
        console.print(f"  [yellow]-[/] skipped {name}: {msg}")
    if len(s.skipped_windows) > 20:
        console.print(f"  ... and {len(s.skipped_windows) - 20} more")
    if res.quicklook:
        console.print(f"quicklook: {res.quicklook}")


def map_command(
    scene: SceneArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output COG (map.tif); a PNG quicklook goes beside "
                                         "it.")],
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    probe: Annotated[Path | None, typer.Option("--probe", help="A window probe (spectraclip fit-window-probe) "
                                               "instead of text prompts.")] = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    templates: TemplatesOpt = None,
    tile: TileOpt = None,
    stride: StrideOpt = None,
    dense: Annotated[bool, typer.Option("--dense", help="Per-patch classes from dense patch features "
                                        "(open-vocabulary segmentation) instead of one class per window.")] = False,
    probabilities: Annotated[str, typer.Option("--probabilities", help="Probability bands: uint8 (x255) or "
                                               "float32.")] = "uint8",
    vector: Annotated[Path | None, typer.Option("--vector", help="Also write window polygons with their "
                                                "probabilities (GeoParquet).")] = None,
    weight: Annotated[str, typer.Option("--weight", help="Window blending weight: hann or uniform.")] = "hann",
    cls_lambda: ClsLambdaOpt = 0.0,
    bands: SceneBandsOpt = None,
    model_bands: ModelBandsOpt = None,
    missing_bands: MissingBandsOpt = None,
    radiometry: RadiometryOpt = None,
    scl: SclOpt = None,
    cloud_mask: CloudMaskOpt = "auto",
    nodata: NodataOpt = NODATA_DEFAULT,
    max_skipped: MaxSkippedOpt = 0.5,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = WORKERS_DEFAULT,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Thematic map of a whole scene: sliding-window zero-shot classes blended without seams, as a COG."""
    from spectraclip.apps.maps import map_scene
    from spectraclip.zeroshot.classes import parse_classes

    specs = None if probe and not (classes or classes_file) else parse_classes(classes, classes_file)
    opts = scene_options(tile, stride, bands, nodata, batch_size, workers, device, precision, missing_bands,
                         radiometry, max_skipped, weight=weight, scl=scl, cloud_mask=cloud_mask)
    m = load_model_or_exit(model, checkpoint, device, model_bands)
    res = map_scene(m, scene, output, specs, probe=probe, templates=templates, dense=dense,
                    probabilities=probabilities, vector=vector, cls_lambda=cls_lambda, options=opts)
    zs = res.extra.get("zeroshot") or {}
    if zs.get("templates"):
        console.print(f"templates {zs['templates']} ({zs['templates_origin']}); logit scale {zs['logit_scale']:.1f}")
    print_summary(res, "map")
    if res.vector:
        console.print(f"windows: {res.vector}")


def heatmap_command(
    scene: SceneArg,
    query: Annotated[list[str], typer.Option("--query", "-q", help="A text query (repeatable): one band each.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output float32 COG; a PNG overlay goes beside "
                                         "it.")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    tile: TileOpt = None,
    stride: StrideOpt = None,
    cls_lambda: ClsLambdaOpt = 0.0,
    attention: Annotated[str, typer.Option("--attention", help="Last-block attention: qq (ClearCLIP), qq+kk, "
                                           "vanilla.")] = "qq",
    bands: SceneBandsOpt = None,
    model_bands: ModelBandsOpt = None,
    missing_bands: MissingBandsOpt = None,
    radiometry: RadiometryOpt = None,
    scl: SclOpt = None,
    cloud_mask: CloudMaskOpt = "auto",
    nodata: NodataOpt = NODATA_DEFAULT,
    max_skipped: MaxSkippedOpt = 0.5,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = WORKERS_DEFAULT,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Where in a scene each text query matches: dense patch-level similarity, training-free, as a COG."""
    from spectraclip import api

    opts = scene_options(tile, stride, bands, nodata, batch_size, workers, device, precision, missing_bands,
                         radiometry, max_skipped, scl=scl, cloud_mask=cloud_mask)
    m = load_model_or_exit(model, checkpoint, device, model_bands)
    res = api.heatmap(m, scene, output, query, device=device, precision=precision, cls_lambda=cls_lambda,
                      attention=attention, options=opts)
    print_summary(res, "heatmap")


def fit_window_probe_command(
    table: Annotated[Path, typer.Argument(help="Embeddings table (spectraclip embed) of labelled windows/chips.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Probe JSON for spectraclip map --probe.")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    label_column: Annotated[str, typer.Option("--label-column", help="Column with each row's class (default: "
                                              "the parent folder of its path).")] = "label",
    device: DeviceOpt = "auto",
) -> None:
    """Fit a few-shot window probe (logistic regression on the model's embeddings) for `map --probe`."""
    from spectraclip.apps.probe_head import fit_probe_from_table

    m = load_model_or_exit(model, checkpoint, device)
    if not table.exists():
        fail(f"{table}: no such embeddings table")
    probe = fit_probe_from_table(m, table, output, label_column=label_column)
    console.print(f"probe: [bold]{output}[/] ({len(probe.classes)} classes: {', '.join(probe.classes)}; "
                  f"{probe.n_train} labelled rows)")


def register(app: typer.Typer) -> None:
    app.command("map")(map_command)
    app.command("heatmap")(heatmap_command)
    app.command("fit-window-probe")(fit_window_probe_command)
