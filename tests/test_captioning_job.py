"""The resumable captioning job: resume after SIGKILL (nothing lost, duplicated or re-requested), truncated
last lines, duplicates, failures recorded, retry of failed rows, manifests as input, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_vlm_server import start_server
from fixtures_overture import L2A_DIR, make_overture, tiles
from typer.testing import CliRunner

from spectraclip.captioning.backends import make_backend
from spectraclip.captioning.job import resolve_items, run_caption_job
from spectraclip.io.manifest import read_manifest_rows

pytestmark = pytest.mark.skipif(not L2A_DIR.exists(), reason=f"real L2A tiles not found at {L2A_DIR}")
REPO = Path(__file__).resolve().parents[1]


def read_manifest(path: Path) -> list[dict]:
    """The job's output as the job reads it on restart (an interrupted last line left out)."""
    return read_manifest_rows(path, allow_partial_tail=True)


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_manifest(path)]


@pytest.fixture()
def many_tiles(tmp_path):
    """Ten image files (copies of the five real tiles under two names each)."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    for k in range(2):
        for t in tiles():
            shutil.copyfile(t, folder / f"{t.stem}_{k}.tif")
    return folder


def test_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path, many_tiles):
    server = start_server(delay=0.25)
    out = tmp_path / "caps.jsonl"
    cmd = [sys.executable, "-m", "spectraclip.cli.main", "caption", str(many_tiles), "--bands", "s2-l2a",
           "--backend", "openai", "--base-url", server.url, "--vlm-model", "fake", "--concurrency", "2",
           "--backoff", "0.01", "--no-progress", "-o", str(out)]
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = read_manifest(out)
        assert 3 <= len(before) < 10
        with open(out, "a") as fh:  # as if the kill had hit in the middle of a write
            fh.write('{"id": "half a rec')
        server.state.delay = 0.0
        rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        after = read_manifest(out)
        ids = [r["id"] for r in after]
        assert len(ids) == len(set(ids)) == 10  # every image once
        assert after[: len(before)] == before  # nothing written was lost or changed
        assert all(r["status"] == "ok" and r["captions"] and r["backend"] == "openai" for r in after)
        counts = server.stats()
        for r in before:  # finished images were not requested again
            assert counts[r["id"]] == 1
        assert sum(counts.values()) <= 10 + 2  # at most the in-flight ones (concurrency 2) twice
        assert f"{len(before)} skipped" in " ".join(rerun.stdout.split())
    finally:
        server.close()


def test_truncated_last_line_is_repaired_and_rerun_is_idempotent(tmp_path):
    out = tmp_path / "caps.jsonl"
    items = resolve_items([L2A_DIR], "s2-l2a")
    s1 = run_caption_job(items[:2], make_backend("template"), out, progress=False)
    assert (s1.done, s1.failed, s1.skipped) == (2, 0, 0)
    with open(out, "a") as fh:
        fh.write('{"id": "trunc')
    s2 = run_caption_job(items, make_backend("template"), out, progress=False)
    assert (s2.done, s2.skipped) == (3, 2)
    s3 = run_caption_job(items + items[:1], make_backend("template"), out, progress=False)
    assert (s3.done, s3.skipped, s3.duplicates) == (0, 5, 1)
    assert sorted(_ids(out)) == sorted(i.id for i in items)
    row = read_manifest(out)[0]
    assert row["bands"] == "s2-l2a" and row["prompt_version"] == "template-v1" and row["attempts"] == 1
    assert Path(row["path"]).is_absolute() and Path(row["path"]).exists()


def test_bad_items_are_recorded_failed_and_retried_on_request(tmp_path):
    bad = tmp_path / "img" / "broken.tif"
    bad.parent.mkdir()
    bad.write_bytes(b"not a tiff")
    out = tmp_path / "img" / "caps.jsonl"
    items = resolve_items([bad, tiles()[0]], "s2-l2a")
    s = run_caption_job(items, make_backend("template"), out, progress=False)
    assert (s.done, s.failed) == (1, 1) and s.failures[0][0] == "broken"
    rows = {r["id"]: r for r in read_manifest(out)}
    assert rows["broken"]["status"] == "failed" and rows["broken"]["error"].startswith("read:")
    assert rows["broken"]["path"] == "broken.tif"  # relative to the manifest's folder
    s2 = run_caption_job(items, make_backend("template"), out, progress=False, retry_failed=True)
    assert (s2.failed, s2.skipped) == (1, 1)
    assert sorted(_ids(out)) == sorted(["broken", tiles()[0].stem])


def test_manifest_as_input(tmp_path):
    man = tmp_path / "in.jsonl"
    man.write_text(json.dumps({"id": "custom", "path": str(tiles()[3]), "bands": "s2-l2a"}) + "\n")
    items = resolve_items([man])
    assert items[0].id == "custom" and items[0].bands == "s2-l2a"
    run_caption_job(items, make_backend("template"), tmp_path / "out.jsonl", progress=False)
    (row,) = read_manifest(tmp_path / "out.jsonl")
    assert row["id"] == "custom" and "snow" in row["captions"][0]


def test_cli_tags_caption_quality_end_to_end(tmp_path):
    from spectraclip.cli.main import app

    ov = make_overture(tmp_path / "ov")
    runner = CliRunner()
    r = runner.invoke(app, ["tags", str(L2A_DIR), "--source", str(ov), "-o", str(tmp_path / "tags.parquet")])
    assert r.exit_code == 0, r.output
    caps = tmp_path / "caps.jsonl"
    r = runner.invoke(app, ["caption", str(L2A_DIR), "--bands", "s2-l2a", "--tags", str(tmp_path / "tags.parquet"),
                            "--backend", "template", "-o", str(caps), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "5 done" in r.output
    rows = read_manifest(caps)
    assert all('"Lago Verde"' in row["captions"][0] for row in rows)
    assert rows[0]["tags"][1]["flags"] == ["is_intermittent"]
    r = runner.invoke(app, ["caption-quality", str(caps), "-o", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "q" / "quality.md").read_text().count("distinct-") >= 4
