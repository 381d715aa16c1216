"""`spectraclip serve INDEX_DIR`: the search service and its page (FastAPI + uvicorn), on localhost by default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spectraclip.cli.common import CheckpointOpt, DeviceOpt, ModelBandsOpt, ModelOpt, console, fail, load_model_or_exit


def serve(
    index_dir: Annotated[Path, typer.Argument(help="An index folder made by `spectraclip index build`.")],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    model_bands: ModelBandsOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the service.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Serve with a model the index was not made by.")] = False,
) -> None:
    """Serve `POST /search`, `/items/{id}`, thumbnails and the search page at http://HOST:PORT/."""
    import uvicorn

    from spectraclip.errors import SpectraclipError
    from spectraclip.serve.app import create_app

    net = load_model_or_exit(model, checkpoint, device, model_bands)
    try:
        app = create_app(index_dir, net, force=force)
    except SpectraclipError as exc:
        fail(str(exc))
        return
    console.print(f"serving {index_dir} on http://{host}:{port}/ (API: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
