"""The documentation site: every Python block of docs/tutorials/*.md runs (in order, one namespace per page, in a
temporary folder; figures go to docs/img/), and `mkdocs build --strict` succeeds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((REPO / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)
#: `<!-- test-data: NAME -->` on a page: it reads NAME under the shared data folder (`../shared/data`, or
#: `$SPECTRACLIP_DATA`), which the page finds through `SPECTRACLIP_DATA`; without it the page is skipped.
DATA_MARK = re.compile(r"<!-- test-data: ([\w.-]+) -->")
SHARED_DATA = Path(os.environ.get("SPECTRACLIP_DATA", REPO.parent / "shared" / "data"))


def python_blocks(page: Path) -> list[tuple[str, str]]:
    """`(info, code)` of each fenced python block; info is what follows ```python: empty, or
    `title="skip-test: REASON"` for a block that needs what the tests cannot have (the title shows the reason)."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(page.read_text())]


def _skipped(info: str) -> bool:
    return "skip-test" in info


def test_skipped_blocks_say_why():
    for page in TUTORIALS:
        for info, _ in python_blocks(page):
            if _skipped(info):
                assert re.fullmatch(r'title="skip-test: .{10,}"', info), f"{page.name}: {info!r} gives no reason"
            else:
                assert not info, f"{page.name}: unknown block marker {info!r}"


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_blocks_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    needs = DATA_MARK.findall(page.read_text())
    missing = [n for n in needs if not (SHARED_DATA / n).exists()]
    if missing:
        pytest.skip(f"{page.name} reads {', '.join(missing)} under {SHARED_DATA}, which is absent")
    if needs:
        monkeypatch.setenv("SPECTRACLIP_DATA", str(SHARED_DATA.resolve()))
    img = REPO / "docs" / "img"
    img.mkdir(exist_ok=True)
    (tmp_path / "img").symlink_to(img)  # the figures a block writes to img/ are the site's
    monkeypatch.chdir(tmp_path)
    blocks = [(info, code) for info, code in python_blocks(page) if not _skipped(info)]
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for i, (_, code) in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i + 1}]", "exec"), namespace)
        finally:
            plt.close("all")
    assert blocks, f"{page.name} has no block that runs"


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    out = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    warnings = [line for line in (out.stdout + out.stderr).splitlines() if "WARNING" in line]
    assert not warnings, warnings
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").read_text().count("spectraclip classify") > 0
