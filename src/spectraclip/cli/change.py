"""`spectraclip change BEFORE AFTER`: change map of two dates of a place, as a COG with a PNG and the changed
windows ranked in a GeoParquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.apps import (
    MaxSkippedOpt,
    SceneBandsOpt,
    StrideOpt,
    TileOpt,
    print_summary,
    scene_options,
)
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
    load_model_or_exit,
    resolve_device,
    split_list,
)

DateArg = "A scene (GeoTIFF/COG/VRT, band folder such as OSCD imgs_1 or SAFE, STAC Item JSON)"


def change_command(
    before: Annotated[Path, typer.Argument(help=f"{DateArg}: the first date.")],
    after: Annotated[Path, typer.Argument(help=f"{DateArg}: the second date (reprojected onto BEFORE's grid "
                                          "when it differs).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output COG (change.tif): change score, change "
                                         "flag, ...; a PNG and a GeoParquet of changed windows go beside it.")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    classes: ClassesOpt = None,
    classes_file: ClassesFileOpt = None,
    query: Annotated[list[str] | None, typer.Option("--query", "-q", help="Score change towards a description: "
                                                    "its similarity AFTER minus BEFORE (repeatable; one band "
                                                    "each).")] = None,
    train_labels: Annotated[Path | None, typer.Option("--train-labels", help="Labelled pairs of other scenes "
                                                      "(OSCD layout: images/<x>/imgs_1|imgs_2, labels/<x>/<x>-cm.tif)"
                                                      ": fit a few-shot change probe on them.")] = None,
    probe_kind: Annotated[str | None, typer.Option("--probe", help="Few-shot probe of --train-labels: cnn (a small "
                                                   "Siamese change network on both dates' bands) or gbm (gradient "
                                                   "boosting on per-pixel features). Default: cnn.")] = None,
    probe_steps: Annotated[int | None, typer.Option("--probe-steps", min=1, help="Training steps of the change "
                                                    "network (default 600; docs/change.md).")] = None,
    probe_seeds: Annotated[int | None, typer.Option("--probe-seeds", min=1, help="Train the change network with "
                                                    "this many seeds and average them (default 1; N times the "
                                                    "training time; docs/change.md).")] = None,
    save_probe: Annotated[Path | None, typer.Option("--save-probe", help="Write the trained probe to this file "
                                                    "(reuse it with --load-probe).")] = None,
    load_probe: Annotated[Path | None, typer.Option("--load-probe", help="Use a probe written by --save-probe "
                                                    "instead of training one (no --train-labels needed).")] = None,
    threshold: Annotated[float | None, typer.Option("--threshold", help="Change-score threshold of the change "
                                                    "flag (default: Otsu's threshold of the scene's scores).")] = None,
    embedding_weight: Annotated[float | None, typer.Option("--embedding-weight", min=0.0, max=1.0, help="Weight of "
                                                           "the embedding change against the change vector in the "
                                                           "score (default: the documented rule's).")] = None,
    threshold_method: Annotated[str | None, typer.Option("--threshold-method", help="otsu, or otsu2 (Otsu again "
                                                         "above the first threshold: rare change). Default: the "
                                                         "documented rule's.")] = None,
    templates: TemplatesOpt = None,
    tile: TileOpt = None,
    stride: StrideOpt = None,
    weight: Annotated[str, typer.Option("--weight", help="Window blending weight: hann or uniform.")] = "hann",
    vector: Annotated[Path | None, typer.Option("--vector", help="GeoParquet of changed windows (default: "
                                                "<output>.windows.parquet).")] = None,
    bands: SceneBandsOpt = None,
    model_bands: ModelBandsOpt = None,
    missing_bands: MissingBandsOpt = None,
    radiometry: RadiometryOpt = None,
    cloud_mask: CloudMaskOpt = "auto",
    nodata: NodataOpt = NODATA_DEFAULT,
    max_skipped: MaxSkippedOpt = 0.5,
    precision: PrecisionOpt = "auto",
    batch_size: BatchOpt = None,
    workers: WorkersOpt = WORKERS_DEFAULT,
    device: DeviceOpt = "auto",
) -> None:
    """Change between two dates: embedding change + spectral change vector per window and patch, as a COG."""

    from spectraclip import api
    from spectraclip.change.cnn import config_with, fit_cnn_probe
    from spectraclip.change.features import feature_names
    from spectraclip.change.labels import find_pairs
    from spectraclip.change.probe import fit_change_probe
    from spectraclip.change.probe_io import DEFAULT_PROBE, PROBES
    from spectraclip.change.probe_io import load_probe as load_saved_probe
    from spectraclip.change.probe_io import save_probe as save_probe_file
    from spectraclip.change.scene import (
        DEFAULT_RULE,
        ChangeInputError,
        ChangeRule,
        labelled_arrays,
        labelled_samples,
    )
    from spectraclip.zeroshot.classes import parse_classes

    rule = ChangeRule(DEFAULT_RULE.embedding_weight if embedding_weight is None else embedding_weight,
                      threshold_method or DEFAULT_RULE.method)
    specs = parse_classes(classes, classes_file) if (classes or classes_file) else None
    m = load_model_or_exit(model, checkpoint, device, model_bands, missing_bands=missing_bands)
    dev = resolve_device(device)
    bs = batch_size or 32  # the labelled-pixel sampling of the pixel probe needs a number
    kind = probe_kind or DEFAULT_PROBE
    if kind not in PROBES:
        raise ChangeInputError(f"--probe {kind!r}: choose one of {', '.join(PROBES)}")
    if load_probe is not None and train_labels is not None:
        raise ChangeInputError("--load-probe and --train-labels: give one (a saved probe is already trained)")
    probe = None
    if load_probe is not None:
        probe = load_saved_probe(load_probe)
        console.print(f"probe: {getattr(probe, 'kind', 'gbm')} from {load_probe}, trained on "
                      f"{', '.join(probe.scenes)}, threshold {probe.threshold:.2f}")
    elif train_labels is not None:
        pairs = find_pairs(train_labels)
        same = [p.name for p in pairs if p.before.resolve() == before.resolve()]
        if same:
            console.print(f"[yellow]note:[/] BEFORE is the first date of training pair {same[0]}: the probe has "
                          "seen this scene's labels")
        if kind == "cnn":
            cfg = config_with(probe_steps, probe_seeds)
            arrays = []
            for p in pairs:
                console.print(f"reading labelled pair {p.name}")
                arrays.append(labelled_arrays(m, p.before, p.after, p.labels, name=p.name, bands=bands,
                                              nodata=nodata, indices=cfg.indices, cloud_mask=cloud_mask))
            probe = fit_cnn_probe(arrays, cfg, log=console.print)
        else:
            samples = []
            for p in pairs:
                console.print(f"sampling labelled pixels of {p.name}")
                samples.append(labelled_samples(m, p.before, p.after, p.labels, name=p.name, tile=tile,
                                                stride=stride, bands=bands, nodata=nodata, precision=precision,
                                                batch_size=bs, device=dev, cloud_mask=cloud_mask))
            probe = fit_change_probe(samples, feature_names(list(m.bands.names)))
        inner = f", cross-validated F1 {probe.inner_f1:.3f}" if probe.inner_f1 is not None else ""
        console.print(f"probe ({kind}): {len(pairs)} labelled pairs, {probe.n_train} pixels, threshold "
                      f"{probe.threshold:.2f}{inner}")
        for n in probe.notes:
            console.print(f"[yellow]note:[/] {n}")
    if save_probe is not None:
        if probe is None:
            raise ChangeInputError("--save-probe needs a probe: give --train-labels")
        console.print(f"saved the probe to {save_probe_file(probe, save_probe)}")
    opts = scene_options(tile, stride, bands, nodata, batch_size, workers, device, precision, missing_bands, radiometry,
                         max_skipped, weight=weight, cloud_mask=cloud_mask)
    res = api.change(m, before, after, output, classes=specs, queries=split_list(query) if query else None,
                     device=device, precision=precision, probe=probe, threshold=threshold, rule=rule,
                     templates=templates, vector=vector or "auto", options=opts)
    for n in res.notes:
        console.print(f"[yellow]note:[/] {n}")
    zs = res.extra.get("zeroshot")
    if zs:
        console.print(f"classes: templates {zs['templates']} ({zs['templates_origin']}); logit scale "
                      f"{zs['logit_scale']:.1f}")
    print_summary(res, "change")
    console.print(f"threshold {res.threshold:.3f} ({res.threshold_rule}); {res.changed_windows} changed windows"
                  + (f": {res.vector}" if res.vector else ""))


def register(app: typer.Typer) -> None:
    app.command("change")(change_command)
