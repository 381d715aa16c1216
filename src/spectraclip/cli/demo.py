"""`spectraclip demo`: multispectral vs RGB CLIP on the embedded EuroSAT-MS subset, with a report page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import DeviceOpt, console, resolve_device


def demo(
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path("spectraclip-demo"),
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Train and evaluate this many seeds; mean ± std.")] = 1,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Skip training: evaluate this pretrained "
                                              "multispectral model (e.g. Llama3-MS-CLIP-Base).")] = None,
    checkpoint: Annotated[str | None, typer.Option("--checkpoint", "-c", help="...or this checkpoint.")] = None,
    baseline_model: Annotated[str, typer.Option("--baseline-model", help="RGB model compared against a "
                                                "pretrained --model.")] = "OpenCLIP-ViT-B-16",
    baseline_checkpoint: Annotated[str | None, typer.Option("--baseline-checkpoint")] = None,
    recipe: Annotated[Path | None, typer.Option(
        "--config", help="Training recipe YAML (default: the shipped one).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Recipe override key=value (repeatable).")
                         ] = None,
    device: DeviceOpt = "auto",
    cv: Annotated[int, typer.Option("--cv", min=0, help="Instead of the demo: K-fold cross-validation of the "
                                    "recipe on the training split only (how a recipe is chosen).")] = 0,
    gap_threshold: Annotated[float, typer.Option(
        "--gap-threshold", help="With --cv: how often a test-sized draw of the held-out patches shows an MS − RGB "
        "top-1 gap of at least this (a fraction: 0.10 = 10 points). A probability, not a pass/fail.")] = 0.10,
) -> None:
    """Show, on real Sentinel-2 data and one CPU, that the extra bands matter: MS vs RGB CLIP, zero-shot."""
    from rich.table import Table

    from spectraclip.demo.claim import gap_sentence
    from spectraclip.demo.pipeline import RECIPE, DemoOptions, run_demo

    opts = DemoOptions(output_dir=output_dir, seeds=seeds, model=model, checkpoint=checkpoint,
                       baseline_model=baseline_model if not baseline_checkpoint else None,
                       baseline_checkpoint=baseline_checkpoint, recipe=recipe or RECIPE,
                       overrides=list(overrides or []), device=resolve_device(device))
    if cv:
        _cross_validate(opts, cv, gap_threshold)
        return
    res = run_demo(opts, say=console.print)  # ModelNotAvailableError, DemoError: the CLI handler
    table = Table(title="zero-shot on the EuroSAT-MS test split (%)" + (
        f", mean ± std over {seeds} seeds" if res["mode"] == "trained" and seeds > 1 else ""))
    for col in ("model", "top-1", "balanced acc.", "mAP@100"):
        table.add_column(col, justify="left" if col == "model" else "right")
    s = res["summary"]
    for v in ("ms", "rgb"):
        fmt = (lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}") if seeds > 1 else \
              (lambda d: f"{100 * d['mean']:.1f}")
        table.add_row(f"{v.upper()} ({res['labels'][v]})", fmt(s[v]["top1"]), fmt(s[v]["balanced_accuracy"]),
                      fmt(s[v]["mAP@100"]))
    for k, b in res["baseline"].items():
        table.add_row(f"[dim]supervised band-stats baseline, {k}[/]", f"[dim]{100 * b['top1']:.1f}[/]",
                      f"[dim]{100 * b['balanced_accuracy']:.1f}[/]", "[dim]—[/]")
    console.print(table)
    console.print(gap_sentence(res["gap"]) + f"; wall time {res['seconds']:.0f} s")
    console.print(res["note"])
    console.print(f"report: [bold]{Path(res['report']).resolve()}[/]")


def _cross_validate(opts, folds: int, gap_threshold: float) -> None:
    """Run `--cv K` and print its table."""
    from rich.table import Table

    from spectraclip.demo.claim import gap_sentence
    from spectraclip.demo.cv import cross_validate

    res = cross_validate(opts, folds, say=console.print, gap_threshold=gap_threshold)
    s = res["summary"]
    table = Table(title=f"zero-shot top-1 (%) on held-out training folds: {folds} folds x {len(res['seeds'])} seed(s)")
    table.add_column("model")
    table.add_column("top-1", justify="right")
    for key, name in (("ms", "MS"), ("rgb", "RGB"), ("gap", "MS − RGB"),
                      ("baseline_ms", "supervised band-stats baseline, all bands"),
                      ("baseline_rgb", "supervised band-stats baseline, RGB")):
        table.add_row(name, f"{100 * s[key]['mean']:.1f} ± {100 * s[key]['std']:.1f}")
    console.print(table)
    console.print(gap_sentence(s["gap_interval"], over="held-out training patches"))
    td = s["test_sized_draws"]
    draws = (f"{td['draws']:,} stratified bootstrap draws of {td['n']} of these patches (the test split's size)")
    spread = f"5–95% of MS − RGB: {100 * td['p05']:+.1f} to {100 * td['p95']:+.1f} points"
    if td.get("chance") is None:
        console.print(f"Over {draws}: {spread}")
    else:
        console.print(f"In {100 * td['chance']:.0f}% of {draws}, MS − RGB is at least {100 * td['threshold']:+.0f} "
                      f"points ({spread}); a probability, not a pass/fail")
    console.print(f"cross-validation results: [bold]{res['path']}[/]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
