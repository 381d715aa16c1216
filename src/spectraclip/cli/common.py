"""Options shared by the commands that load a model and read rasters, and small parsing/printing helpers.

Option conventions (checked by tests/test_cli_options.py): `-o/--output` for every output, file or folder;
`-c/--checkpoint` only for model checkpoints (a recipe is `--config`); `-m/--model` only for CLIP models;
`--device` defaults to `auto`; list options take repeated and comma-separated values (`split_list`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: a message is never broken into lines at the terminal width (80 columns without a terminal), so a
# path it names stays whole for copy and paste and for logs (tables keep their own layout)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

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
    typer.Option("--bands", "-b", help="Band order of the input files: a preset (s2-l2a, eurosat-ms, ...) "
                 "or a comma list (B04,B03,B02). Default: the files' band descriptions."),
]
ModelBandsOpt = Annotated[
    str | None,
    typer.Option("--model-bands", help="Bands the model should take (extends an RGB open_clip model or a "
                 "test model to them by name, new bands zero-initialised). Default: the model's own."),
]
MissingBandsOpt = Annotated[
    str | None,
    typer.Option("--missing-bands", help="Bands the model needs that the data lacks: error (name them) or fill "
                 "(the band's training mean, zero after normalisation; recorded per item). Default: the "
                 "model's declared policy."),
]
TemplatesOpt = Annotated[
    str | None, typer.Option("--templates", "-t", help="A named template set or a JSON file of templates. Default: "
                             "the set the model declares (msclip for a model that declares none).")
]
ClassesOpt = Annotated[
    list[str] | None,
    typer.Option("--classes", help="Classes: repeat or comma list; `Name=prompt words` to word a class; a preset "
                 "(eurosat); @FILE for a file. Names without words are worded by a preset or de-CamelCased."),
]
ClassesFileOpt = Annotated[
    Path | None, typer.Option("--classes-file", help="One class per line (Name or Name=prompt words; # comments).")
]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Images per forward pass (default: "
                    "fitted to the model and the free memory of the device).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda, cuda:1.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="DataLoader worker processes for reading.")]
def _check_precision(value: str) -> str:
    """Refuse an unknown mode, or one this machine cannot run, before anything is loaded."""
    from spectraclip.models.precision import AUTO, PRECISIONS, PrecisionError, resolve_precision

    if value == AUTO:
        return value
    if value not in PRECISIONS:
        raise typer.BadParameter(f"{value!r}: expected auto, {', '.join(PRECISIONS)}")
    import torch

    try:
        resolve_precision(value, "cuda" if value == "fp16" and torch.cuda.is_available() else "cpu")
    except PrecisionError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


PrecisionOpt = Annotated[
    str, typer.Option("--precision", callback=_check_precision, help="Image-encoding precision: auto (the "
                      "fastest mode that passes the accuracy gate on this device: int8 on CPU with onnxruntime, bf16 "
                      "on GPU), fp32, bf16, fp16 (GPU) or int8 (CPU). Recorded in embeddings tables.")
]
NodataOpt = Annotated[
    str, typer.Option("--nodata", help="NaN/nodata pixels: error (skip the file), fill (band mean), ignore.")
]
RadiometryOpt = Annotated[
    str | None,
    typer.Option("--radiometry", help="What the input pixel values are: dn / l2a / l1c (reflectance x 10000), "
                 "l2a-offset / baseline-04 / offset-1000 (Sentinel-2 from baseline 04.00, 25 Jan 2022: DN - 1000 "
                 "first), reflectance (0-1), or scale=S,offset=O (reflectance = raw * S + O). Overrides the files' "
                 "tags. Default: what the files' tags or metadata say."),
]
PathsArg = Annotated[list[Path], typer.Argument(help="Raster files or folders (searched recursively).")]


def split_list(values: Sequence[str] | str | None) -> list[str]:
    """Values of a list option given repeated (`--x a --x b`), comma-separated (`--x a,b`) or both, in order;
    blanks dropped. One parser for every list option, so they all accept both forms."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def resolve_device(device: str) -> str:
    """`auto` picks CUDA when present, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` in red on one stderr line (the message is not markup) and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


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
    from spectraclip.models.loading import load_model

    if not model and not checkpoint:
        fail("give --model NAME or --checkpoint PATH (see `spectraclip models`)")
    net = load_model(model, checkpoint, device=resolve_device(device), bands=model_bands)
    return net.set_input_options(missing_bands=missing_bands, allow_resize=resize or None)
