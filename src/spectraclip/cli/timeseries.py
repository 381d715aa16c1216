"""`spectraclip timeseries`: text queries through a stack of dated scenes, clouds masked; trends, anomalies,
change points."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.apps import MaxSkippedOpt, SceneBandsOpt, StrideOpt, TileOpt, scene_options
from spectraclip.cli.common import (
    NODATA_DEFAULT,
    WORKERS_DEFAULT,
    BatchOpt,
    CheckpointOpt,
    ClassesFileOpt,
    ClassesOpt,
    CloudMaskOpt,
    DeviceOpt,
    MaxCloudOpt,
    MissingBandsOpt,
    ModelBandsOpt,
    ModelOpt,
    NodataOpt,
    PrecisionOpt,
    RadiometryOpt,
    TemplatesOpt,
    WorkersOpt,
    console,
    load_model_or_exit,
)


def timeseries_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder: timeseries.parquet, windows.parquet, "
                                         "per series COGs (values, trend, anomaly), trajectories.png, trend.png.")],
    inputs: Annotated[list[Path] | None, typer.Argument(help="The stack: scenes (GeoTIFF/COG/VRT, band or SAFE "
                                                        "folders, STAC Items), a folder of dated scenes (an SSL4EO-S12 "
                                                        "location), an OSCD city folder, or a STAC ItemCollection "
                                                        "JSON; or none with --stac-api.")] = None,
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="A text query followed through time "
                                                    "(repeatable): its similarity per window and date.")] = None,
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    metric: Annotated[str, typer.Option("--metric", help="similarity (the queries' similarities), or embedding "
                                        "(also each date's cosine distance to the window's reference-period "
                                        "embedding).")] = "similarity",
    reference: Annotated[str | None, typer.Option("--reference", help="Reference period of --metric embedding: "
                                                  "START/END ISO dates (default: the first date).")] = None,
    at: Annotated[list[str] | None, typer.Option("--at", help="lon,lat of a place whose trajectory is plotted "
                                                 "(repeatable; default: the three strongest trends).")] = None,
    embeddings: Annotated[bool, typer.Option("--embeddings", help="Also write each window's embedding per date "
                                             "(column vector).")] = False,
    templates: TemplatesOpt = None,
    tile: TileOpt = None,
    stride: StrideOpt = None,
    weight: Annotated[str, typer.Option("--weight", help="Window blending weight of the COGs: hann or "
                                        "uniform.")] = "hann",
    bands: SceneBandsOpt = None,
    model_bands: ModelBandsOpt = None,
    missing_bands: MissingBandsOpt = None,
    radiometry: RadiometryOpt = None,
    cloud_mask: CloudMaskOpt = "auto",
    max_cloud: MaxCloudOpt = 0.5,
    nodata: NodataOpt = NODATA_DEFAULT,
    max_skipped: MaxSkippedOpt = 0.5,
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = None,
    workers: WorkersOpt = WORKERS_DEFAULT,
    device: DeviceOpt = "auto",
    stac_api: Annotated[str | None, typer.Option("--stac-api", help="A STAC API to search for the stack (with "
                                                 "--collection, --bbox, --datetime; pystac-client).")] = None,
    collection: Annotated[str | None, typer.Option("--collection", help="The STAC API collection searched, e.g. "
                                                   "sentinel-2-l2a.")] = None,
    bbox: Annotated[str | None, typer.Option("--bbox", help="W,S,E,N in degrees: the area searched.")] = None,
    datetime_: Annotated[str | None, typer.Option("--datetime", help="The period searched: START/END (ISO), as "
                                                  "the STAC API takes it.")] = None,
    max_items: Annotated[int, typer.Option("--max-items", help="Refuse a search that finds more items.")] = 100,
) -> None:
    """Seasonal analysis and trends: per window and date the queries' similarities, class probabilities and the
    cloud-free share; per query a COG per date, its trend, anomalies and change points."""
    from spectraclip.timeseries.job import parse_place, parse_reference, timeseries_stack
    from spectraclip.timeseries.stack import StackError, StacSearch, parse_bbox
    from spectraclip.zeroshot.classes import parse_classes

    search = None
    if stac_api:
        if not collection:
            raise StackError("--stac-api needs --collection (e.g. sentinel-2-l2a)")
        search = StacSearch(stac_api, collection, parse_bbox(bbox), datetime_, max_items)
    elif not inputs:
        raise StackError("give the stack (scenes, a folder, an ItemCollection JSON) or --stac-api URL --collection C")
    period = parse_reference(reference)
    places = [parse_place(a) for a in at or []]
    specs = parse_classes(classes, classes_file) if (classes or classes_file) else None
    opts = scene_options(tile, stride, bands, nodata, batch_size, workers, device, precision, missing_bands,
                         radiometry, max_skipped, weight=weight, cloud_mask=cloud_mask, max_cloud=max_cloud)
    m = load_model_or_exit(model, checkpoint, device, model_bands, missing_bands=missing_bands)
    res = timeseries_stack(m, inputs or [], output, queries=query, classes=specs, metric=metric, reference=period,
                           at=places, embeddings=embeddings, templates=templates, options=opts, search=search)
    for n in res.notes:
        console.print(f"[yellow]note:[/] {n}")
    console.print(f"{len(res.dates)} dates: {', '.join(d.isoformat() for d in res.dates)}"
                  + (f" ({res.resumed_dates} finished before, resumed)" if res.resumed_dates else ""))
    console.print("cloud mask per date: " + ", ".join(f"{d.isoformat()} {m}" for d, m in zip(res.dates, res.cloud_masks,
                                                                                              strict=True)))
    if res.outside:
        console.print(f"{res.outside} window-dates outside their date's footprint (missing)")
    for i, s in enumerate(res.summaries):
        skipped = ", ".join(f"{v} {k}" for k, v in sorted(s.skipped.items())) or "none"
        console.print(f"  run {i + 1}: {s.windows} windows, {s.encoded} encoded, skipped {skipped}")
    console.print(f"table: [bold]{res.table}[/]; windows: {res.windows_table}")
    for name, files in res.rasters.items():
        console.print(f"{name}: {', '.join(str(p) for p in files.values())}")
    for name, p in res.plots.items():
        console.print(f"{name}: {p}")
    console.print(f"{res.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("timeseries")(timeseries_command)
