"""Archives shipped inside the package, extracted once into the user cache: into a temporary folder that is
renamed into place, so concurrent callers and interrupted runs never see a half-written copy."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path


def extract_once(archive: Path, target: Path, complete: Callable[[Path], bool], error: type[Exception],
                 expected: str, member: str | None = None) -> Path:
    """`target` holding the archive's contents (or its folder `member`), extracted only when `target` is not
    already `complete`; a damaged copy is replaced. Problems raise `error` naming the archive."""
    if target.is_dir() and complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise error(f"cannot extract {archive}: {exc}") from exc
        got = tmp / member if member else tmp
        if not complete(got):
            raise error(f"{archive} does not hold {expected}")
        if target.exists():  # another process won the race, or a damaged earlier copy
            if complete(target):
                return target
            shutil.rmtree(target)
        try:
            os.replace(got, target)
        except OSError:
            if not (target.is_dir() and complete(target)):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
