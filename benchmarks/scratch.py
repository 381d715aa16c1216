"""One scratch folder per benchmark run, removed when the process exits.

Benchmarks write scenes, ONNX/OpenVINO models and caches of hundreds of MB to GB each; folders made with a bare
`tempfile.mkdtemp` outlived their runs and once filled the disk (4 GB of `dyn_*` ONNX files from bench_embed
alone). `BENCH_KEEP=1` keeps them for inspection and prints where they are.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path


def scratch_dir(prefix: str, parent: str | None = None) -> Path:
    """A new empty folder (`prefix` + random) under `parent` or the system temp folder, deleted at exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if os.environ.get("BENCH_KEEP"):
        print(f"# BENCH_KEEP: scratch kept at {path}", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, path, True)
    return path
