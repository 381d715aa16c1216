"""`embed --engine ray` on a local 2-CPU Ray: the single-process table, through a killed worker and a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from spectraclip.cli.main import app  # noqa: E402
from spectraclip.distributed.ray_engine import embed_with_ray, runtime_env  # noqa: E402
from spectraclip.embeddings import PartWriter, read_embeddings  # noqa: E402
from spectraclip.inference import embed_to_table, table_metadata  # noqa: E402
from spectraclip.models.loading import load_model  # noqa: E402

EUROSAT = Path("/work/shared/data/eurosat-ms-mini/test")
pytestmark = [pytest.mark.skipif(not EUROSAT.is_dir(), reason="needs ../shared/data"),
              pytest.mark.slow]  # ~20 s of Ray Data start-up per run, ~10 s per actor restart


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module (workers import this checkout of spectraclip)."""
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False)
    yield
    ray.shutdown()


def _files(*classes: str) -> list[Path]:
    return sorted(f for c in classes for f in (EUROSAT / c).glob("*.tif"))


def test_ray_table_equals_single_process_through_a_killed_worker_and_a_resume(local_ray, tmp_path):
    files = _files("Forest", "River", "Highway", "SeaLake")  # 21 real patches
    model = load_model("tiny-test", bands="eurosat-ms")
    local, _, _ = embed_to_table(model, files, tmp_path / "local.parquet", bands="eurosat-ms", batch_size=4,
                                 progress=False)
    out = tmp_path / "ray.parquet"
    # an earlier run stopped after its first two batches: their parts are there
    done = PartWriter(out, metadata=table_metadata(model, "fp32"))
    done.write(local.ids[:8], local.vectors[:8], {k: v[:8] for k, v in local.columns.items()})
    marker = tmp_path / "killed"
    table, failed, resumed = embed_with_ray(
        model, files, out, bands="eurosat-ms", batch_size=4, workers=1, progress=False,
        _die=[(str(marker), 2, "after_write")])  # the actor dies after writing its 2nd part, before reporting it
    assert marker.exists(), "the test hook did not kill the worker"
    assert resumed == 8 and failed == []
    assert table.ids == local.ids  # each id exactly once, in listing order
    assert np.abs(table.vectors - local.vectors).max() <= 1e-6
    assert table.fingerprints == local.fingerprints
    assert table.metadata == local.metadata
    assert sorted(table.columns) == sorted(local.columns)
    for col in ("geometry", "pixel_bbox", "centre_lat", "path"):
        assert table.columns[col] == local.columns[col], col
    assert not out.with_name(out.name + ".parts").exists()


def test_cli_engine_ray_embeds_a_shard_of_scene_windows(local_ray, tmp_path):
    scene = EUROSAT.parents[1] / "s2-l2a-examples" / "282D_485L_3_3.tif"  # 224 x 224 UTM tile: 49 windows
    common = ["-m", "tiny-test", "--model-bands", "s2-l2a", "--bands", "s2-l2a", "--device", "cpu",
              "--precision", "fp32", "--batch-size", "8", "--windows", "--tile", "32"]
    runner = CliRunner()
    res = runner.invoke(app, ["embed", str(scene), "-o", str(tmp_path / "local.parquet"), "--workers", "0", *common])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["embed", str(scene), "-o", str(tmp_path / "ray.parquet"), "--engine", "ray",
                              "--workers", "1", "--shard", "2/2", *common])
    assert res.exit_code == 0, res.output
    assert "24 embeddings of dimension 32" in " ".join(res.output.split())
    local, part = read_embeddings(tmp_path / "local.parquet"), read_embeddings(tmp_path / "ray.parquet")
    assert sorted(part.ids) == sorted(local.ids)[25:] and part.metadata["shard"] == "2/2"
    row = {id_: i for i, id_ in enumerate(local.ids)}
    take = [row[i] for i in part.ids]
    assert np.abs(part.vectors - local.vectors[take]).max() <= 1e-6
    for col in ("geometry", "pixel_bbox", "utm_crs", "product_id", "centre_lon"):
        assert part.columns[col] == [local.columns[col][i] for i in take], col
