"""Options shared by the commands that load a model and read rasters, and small parsing/printing helpers.

Option conventions (checked by tests/test_cli_options.py): `-o/--output` for every output, file or folder;
`-c/--checkpoint` only for model checkpoints (a recipe is `--config`); `-m/--model` only for CLIP models;
`--device` defaults to `auto`; list options take repeated and comma-separated values (`split_list`).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from spectraclip.errors import SpectraclipError

# soft_wrap: a message is never broken into lines at the terminal width (80 columns without a terminal), so a
# path it names stays whole for copy and paste and for logs (tables keep their own layout)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class OptionError(SpectraclipError):
    """A command-line option value that cannot work (unknown band, device not on this machine, ...), found
    while the options are parsed, before any model loads; the CLI handler prints it as `error: ...`, exit 2."""


def _checked(check: Callable[[Any], object]) -> Callable[[Any], Any]:
    """A typer callback running `check` on a given value (not on None); a library error is prefixed with the
    option it came from when its message does not name it already."""
    def callback(param: typer.CallbackParam, value: Any) -> Any:
        if value is None or value == []:
            return value
        try:
            check(value)
        except SpectraclipError as exc:
            name = next((o for o in param.opts if o.startswith("--")), param.name or "")
            if str(exc).startswith(name):
                raise
            raise OptionError(f"{name}: {exc}") from exc
        return value

    return callback


def _check_bands(value: str) -> None:
    from spectraclip.bands import BandSet

    BandSet.parse(value)  # BandError (a SpectraclipError) names the unknown band or preset


def _check_nodata(value: str) -> None:
    from spectraclip.io.nodata import check_policy

    check_policy(value)


def _check_radiometry(value: str) -> None:
    from spectraclip.io.radiometry import parse_radiometry

    parse_radiometry(value)


def _check_templates(value: str | list[str]) -> None:
    from spectraclip.zeroshot.templates import load_templates

    for spec in split_list(value):
        load_templates(spec)


def _check_classes(values: list[str]) -> None:
    from spectraclip.zeroshot.classes import parse_classes

    parse_classes(values, min_classes=1)  # the grammar; the count is checked with --classes-file by the command


def _check_paths(paths: list[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(p))  # the handler names it


check_templates = _checked(_check_templates)  # callback of a --templates option (one value or a list)
existing_paths = _checked(_check_paths)  # callback of path arguments: a missing one is named before any load

_CUDA = re.compile(r"cuda(:\d+)?")


def _devices_here() -> list[str]:
    import torch

    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    mps = getattr(torch.backends, "mps", None)
    return found + (["mps"] if mps is not None and mps.is_available() else [])


def check_device(value: str) -> str:
    """`--device`: auto, cpu, cuda, cuda:N or mps, and present on this machine (checked before any load)."""
    if value in ("auto", "cpu"):
        return value
    if not _CUDA.fullmatch(value) and value != "mps":
        raise OptionError(f"--device {value!r}: expected auto, cpu, cuda, cuda:N or mps")
    here = _devices_here()
    if value == "mps" and "mps" not in here:
        raise OptionError(f"--device mps: MPS (Apple GPU) is not available here; devices here: {', '.join(here)}")
    if value.startswith("cuda"):
        gpus = [d for d in here if d.startswith("cuda")]
        if not gpus:
            raise OptionError(f"--device {value}: CUDA is not available here (no CUDA GPU or driver visible to "
                              f"torch); devices here: {', '.join(here)} (or --device auto)")
        if value != "cuda" and value not in gpus:
            raise OptionError(f"--device {value}: no such GPU; devices here: {', '.join(here)}")
    return value


# Defaults of the reading options, the same for every command. Nodata pixels are filled (and reported): a chip
# with a few nodata pixels is kept, its `nodata_fraction` recorded and a note printed; a scene window keeps the
# valid pixels mapped and those pixels unmapped; `--nodata error` skips such chips and windows instead. One
# DataLoader reader overlaps reading with encoding (docs/benchmarks.md).
NODATA_DEFAULT = "fill"
WORKERS_DEFAULT = 1

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Registry name (e.g. Llama3-MS-CLIP-Base), open_clip arch, or hf-hub:ID."),
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option("--checkpoint", "-c", help="Bundle folder, hf-hub:ID, or a weights file (works offline)."),
]
BandsOpt = Annotated[
    str | None,
    typer.Option("--bands", "-b", callback=_checked(_check_bands), help="Band order of the input files: a preset "
                 "(s2-l2a, eurosat-ms, ...) or a comma list (B04,B03,B02). Default: the files' band descriptions."),
]
ModelBandsOpt = Annotated[
    str | None,
    typer.Option("--model-bands", callback=_checked(_check_bands), help="Bands the model should take (extends an "
                 "RGB open_clip model or a test model to them by name, new bands zero-initialised). Default: the "
                 "model's own."),
]
MissingBandsOpt = Annotated[
    str | None,
    typer.Option("--missing-bands", help="Bands the model needs that the data lacks: error (name them) or fill "
                 "(the band's training mean, zero after normalisation; recorded per item). Default: the "
                 "model's declared policy."),
]
TemplatesOpt = Annotated[
    str | None, typer.Option("--templates", "-t", callback=check_templates, help="A named template set "
                             "or a JSON file of templates. Default: the set the model declares (msclip for a model "
                             "that declares none).")
]
ClassesOpt = Annotated[
    list[str] | None,
    typer.Option("--classes", callback=_checked(_check_classes), help="Classes: repeat or comma list; `Name=prompt "
                 "words` to word a class; a preset (eurosat); @FILE for a file. Names without words are worded by a "
                 "preset or de-CamelCased."),
]
ClassesFileOpt = Annotated[
    Path | None, typer.Option("--classes-file", help="One class per line (Name or Name=prompt words; # comments).")
]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, show_default=False, help="Images per forward "
                    "pass. Default: fitted to the model and the free memory of the device.")]
DeviceOpt = Annotated[str, typer.Option("--device", callback=check_device, help="auto (CUDA when present), cpu, "
                                        "cuda, cuda:N or mps; checked against this machine before anything loads.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="DataLoader worker processes reading inputs "
                                         "(0: read in the main process).")]
def _check_precision(value: str) -> str:
    """Refuse an unknown mode, or one this machine cannot run, before anything is loaded."""
    if value == "auto":  # the default: nothing to check, and no torch import while parsing
        return value
    from spectraclip.models.precision import PRECISIONS, PrecisionError, resolve_precision

    if value not in PRECISIONS:
        raise OptionError(f"--precision {value!r}: expected auto, {', '.join(PRECISIONS)}")
    import torch

    try:
        resolve_precision(value, "cuda" if value == "fp16" and torch.cuda.is_available() else "cpu")
    except PrecisionError as exc:
        raise OptionError(f"--precision {value}: {exc}") from exc
    return value


PrecisionOpt = Annotated[
    str, typer.Option("--precision", callback=_check_precision, help="Image-encoding precision: auto (the "
                      "fastest mode that passes the accuracy gate on this model: int8 with static, calibrated scales "
                      "on CPU, bf16 on GPU; else fp32), fp32, bf16, fp16 (GPU) or int8 (CPU). Recorded in embeddings "
                      "tables with the gate's result. Per-item deterministic: batch size, workers, shards and resume "
                      "do not change a vector.")
]
NodataOpt = Annotated[
    str, typer.Option("--nodata", callback=_checked(_check_nodata), help="NaN/nodata pixels: fill (the band's "
                      "mean over the valid pixels; a chip's output records its nodata_fraction, a scene's filled "
                      "pixels stay unmapped), error (skip the chip or window and report it), ignore (keep the values).")
]
RadiometryOpt = Annotated[
    str | None,
    typer.Option("--radiometry", callback=_checked(_check_radiometry), help="What the input pixel values are: dn / "
                 "l2a / l1c (reflectance x 10000), l2a-offset / baseline-04 / offset-1000 (Sentinel-2 from baseline "
                 "04.00, 25 Jan 2022: DN - 1000 first), reflectance (0-1), or scale=S,offset=O (reflectance = raw * "
                 "S + O). Overrides the files' tags. Default: what the files' tags or metadata say."),
]
def _check_cloud_mask(value: str) -> None:
    from spectraclip.io.clouds import check_cloud_mask

    check_cloud_mask(value)


CloudMaskOpt = Annotated[
    str, typer.Option("--cloud-mask", callback=_checked(_check_cloud_mask), help="Per-date cloud mask: auto (the "
                      "SCL layer when the scene has one), scl (L2A's SCL; an error without one), s2cloudless (L1C: "
                      "the s2cloudless classifier on the scene's ten L1C bands), none. Windows cloudier than "
                      "--max-cloud are skipped (missing at that date).")
]
MaxCloudOpt = Annotated[float, typer.Option("--max-cloud", min=0.0, max=1.0, help="Largest cloud share of a window "
                                            "that is still read; cloudier windows are skipped.")]
PathsArg = Annotated[list[Path], typer.Argument(callback=existing_paths,
                                                help="Raster files or folders (searched recursively).")]


def split_list(values: Sequence[str] | str | None) -> list[str]:
    """Values of a list option given repeated (`--x a --x b`), comma-separated (`--x a,b`) or both, in order;
    blanks dropped. One parser for every list option, so they all accept both forms."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def resolve_device(device: str) -> str:
    """`auto` picks CUDA when present, else CPU (`spectraclip.api.resolve_device`)."""
    from spectraclip.api import resolve_device as _resolve

    return _resolve(device)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` in red on one stderr line (the message is not markup) and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def print_table(table: Any, out: Console | None = None) -> None:
    """Print a rich Table whole: in a terminal its `no_wrap` columns (names, ids, paths: what users copy) stay
    on one line and the others wrap; into a pipe or file (where rich would assume 80 columns) nothing is cut or
    wrapped, the table takes the width it needs."""
    from rich.measure import Measurement

    out = out or console
    if out.is_terminal:
        out.print(table)
        return
    width = Measurement.get(out, out.options.update(max_width=100_000), table).maximum
    saved = out.width
    out.width = max(saved, width)
    try:
        out.print(table)
    finally:
        out.width = saved


def report_failures(failed: list[tuple[str, str]], what: str = "items") -> None:
    """List skipped inputs and why, on stderr."""
    if not failed:
        return
    err_console.print(f"[yellow]skipped {len(failed)} bad {what}:[/]")
    for where, msg in failed[:50]:
        err_console.print(f"  [yellow]-[/] {escape(str(where))}: {escape(str(msg))}", highlight=False)
    if len(failed) > 50:
        err_console.print(f"  ... and {len(failed) - 50} more")


def load_model_or_exit(model: str | None, checkpoint: str | None, device: str, model_bands: str | None = None, *,
                       missing_bands: str | None = None, resize: bool = False):
    """Load a model through the library with this run's input options (`--missing-bands`, `--resize`);
    without --model or --checkpoint, exit with a usage message.

    Loading errors (`SpectraclipError`: unknown name, bad bundle, weights not downloaded, a bad policy) reach
    the CLI handler, which prints their message (with the traceback under --debug) and exits with 2.
    """
    if not model and not checkpoint:
        fail("give --model NAME or --checkpoint PATH (see `spectraclip models`)")
    from spectraclip.api import load_model

    return load_model(name=model or None, checkpoint=checkpoint or None, bands=model_bands, device=device,
                      missing_bands=missing_bands,
                      resize=resize)
