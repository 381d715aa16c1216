"""Options shared by the commands that load a model and read rasters, and small printing helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

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
TemplatesOpt = Annotated[
    str, typer.Option("--templates", "-t", help="A named template set or a JSON file of templates.")
]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Images per forward pass (default: "
                    "fitted to the model and the free memory of the device).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, or auto.")]
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
PathsArg = Annotated[list[Path], typer.Argument(help="Raster files or folders (searched recursively).")]


def resolve_device(device: str) -> str:
    """`auto` picks CUDA when present, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def fail(message: str, code: int = 2) -> None:
    """Print an error in red and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def report_failures(failed: list[tuple[str, str]], what: str = "items") -> None:
    """List skipped inputs and why, on stderr."""
    if not failed:
        return
    err_console.print(f"[yellow]skipped {len(failed)} bad {what}:[/]")
    for where, msg in failed[:50]:
        err_console.print(f"  [yellow]-[/] {where}: {msg}")
    if len(failed) > 50:
        err_console.print(f"  ... and {len(failed) - 50} more")


def load_model_or_exit(model: str | None, checkpoint: str | None, device: str, model_bands: str | None = None):
    """Load a model through the library; known loading errors become a clean exit with their message."""
    from spectraclip.models.loading import load_model

    if not model and not checkpoint:
        fail("give --model NAME or --checkpoint PATH (see `spectraclip models`)")
    try:
        return load_model(model, checkpoint, device=resolve_device(device), bands=model_bands)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        fail(str(exc))
