"""The layers of docs/architecture.md hold: `lint-imports` keeps every contract in pyproject.toml.

It runs against the spectraclip this test suite imports (its src folder on PYTHONPATH) with this checkout's
contracts, and fails with import-linter's report, which names each forbidden import and its line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import spectraclip

ROOT = Path(__file__).resolve().parents[1]
CHECK = ("import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter", reason="import-linter is a dev dependency (pip install -e '.[dev]')")
    src = str(Path(spectraclip.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-c", CHECK, str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"lint-imports found broken contracts:\n{run.stdout}\n{run.stderr}"
