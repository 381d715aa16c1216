"""`spectraclip export`: the image tower as an ONNX file for ONNX Runtime or OpenVINO deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import CheckpointOpt, ModelBandsOpt, ModelOpt, console, fail, load_model_or_exit


def export_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (e.g. model.onnx).")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_bands: ModelBandsOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Export format: onnx, or stac-mlm (a STAC "
                                       "Item with the ML Model extension describing the model).")] = "onnx",
    opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset version.")] = 17,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Run the file through ONNX Runtime and "
                                         "compare with the model's fp32 embeddings.")] = True,
) -> None:
    """Export the image tower (normalised pixels in, L2-normalised embeddings out; batch size dynamic). The
    preprocessing (bands, mean, std, input size) and the model fingerprints go into the file's metadata."""
    from spectraclip.models.export import export_model, verify_onnx

    net = load_model_or_exit(model, checkpoint, "cpu", model_bands)
    if fmt == "stac-mlm":
        from spectraclip.models.stac import write_stac_item

        path = write_stac_item(net, output)
        console.print(f"wrote {path} (STAC Item, MLM extension; {len(net.config.inputs)} input group(s))")
        return
    path = export_model(net, output, fmt, opset=opset)  # an ExportError reaches the CLI handler
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; inputs "
                  f"{', '.join('pixels_' + g for g in net.groups)}, normalised, {net.image_size} px)")
    if verify:
        cos = verify_onnx(net, path)
        console.print(f"ONNX Runtime vs fp32 model: minimum cosine {cos:.6f}")
        if cos < 0.9999:
            fail(f"{path}: ONNX Runtime embeddings differ from the model's (minimum cosine {cos:.6f} < 0.9999)")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
