"""`spectraclip serve INDEX_DIR`: the search service and its page (FastAPI + uvicorn), on localhost by default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import (
    CheckpointOpt,
    DeviceOpt,
    ModelBandsOpt,
    ModelOpt,
    console,
    err_console,
    load_model_or_exit,
)


def serve(
    index_dir: Annotated[Path, typer.Argument(help="An index folder made by `spectraclip index build`.")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_bands: ModelBandsOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the service.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Serve with a model the index was not made by.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes (each opens the "
                                         "memory-mapped index and loads the model): up to one per core "
                                         "lets request handling use every core.")] = 1,
    layer: Annotated[list[Path] | None, typer.Option("--layer", help="A product to show on the map page (/map): a "
                                                     "COG from `map`, `heatmap`, `change`, or a scene (natural-colour "
                                                     "base layer); repeat for several.")] = None,
    labels_db: Annotated[str | None, typer.Option("--labels-db", help="The labels database: a SQLAlchemy URL "
                                                  "(sqlite:///..., postgresql://...) or a file; default INDEX_DIR"
                                                  ".labels.sqlite beside the index.")] = None,
) -> None:
    """Serve `POST /search`, `/items/{id}`, thumbnails, the search page at http://HOST:PORT/ and the map
    workspace at /map (layers as tiles, labels, learn, export)."""
    import uvicorn

    from spectraclip.index.store import open_index
    from spectraclip.serve.app import create_app, settle_heap
    from spectraclip.serve.layers import LayerError, open_layers

    try:
        served = open_layers(list(layer or []))  # refused before loading anything: exit 2 naming the file
    except LayerError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for lay in served.values():
        if lay.warning:
            err_console.print(f"[yellow]warning:[/yellow] {lay.warning}")
    net = load_model_or_exit(model, checkpoint, device, model_bands) if (model or checkpoint) else None
    if workers == 1:
        app = create_app(index_dir, net, force=force, layers=list(layer or []), labels=labels_db)  # checks now
    else:  # each worker builds its own app: here only the checks, not the app's columns and warm-up
        from spectraclip.serve.labels import open_store

        index = open_index(index_dir)
        if net is not None:
            index.check_model(net, force=force)
        open_store(index_dir, labels_db).close()  # a labels database that cannot be opened: exit 2 now
    console.print(f"serving {index_dir} on http://{host}:{port}/ (API: /docs)"
                  f"{f' with {workers} worker processes' if workers > 1 else ''}")
    if workers == 1:
        settle_heap()
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)
        return
    import os

    from spectraclip.cli.common import resolve_device
    from spectraclip.serve.worker import ENV, settings_env

    del index, net  # each worker opens its own
    os.environ[ENV] = settings_env(index_dir, model=model, checkpoint=checkpoint, model_bands=model_bands,
                                   device=resolve_device(device), force=force, workers=workers,
                                   layers=[str(p) for p in layer or []], labels=labels_db)
    uvicorn.run("spectraclip.serve.worker:app", factory=True, workers=workers, host=host, port=port,
                log_level="warning", timeout_keep_alive=30)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
