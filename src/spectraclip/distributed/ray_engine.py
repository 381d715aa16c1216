"""`embed --engine ray`: the one encode path on a Ray Data pipeline, writing the same embeddings table.

items (rows: id + the pickled item) → read + preprocess in CPU tasks (`inference.prepare_dataset`, the
step DataLoader workers run) → encode in an actor pool holding the model (`inference.encode_batch`, GPU or
CPU) → each actor writes its batch as a Parquet part beside the output (`embeddings.write_part`) → the
driver merges the parts (`PartWriter.finish`, rows in listing order).

Fault tolerance is Ray's: an actor that dies is restarted and its unfinished batch retried. A batch's part
is named by a hash of its ids, so a retried batch rewrites the same file instead of adding one; the merge
keeps each id once anyway. A rerun skips the ids already in parts, like the local engine.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectraclip.distributed.errors import DistributedError
from spectraclip.errors import SpectraclipError
from spectraclip.inference import LazySubset

if TYPE_CHECKING:
    from spectraclip.embeddings import EmbeddingsTable
    from spectraclip.models import SpectralCLIP

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'spectraclip[distributed]' (or: pip install 'ray[data]')"


def import_ray() -> Any:
    """The `ray` module, or a DistributedError saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is the part we need)
    except ImportError as exc:
        raise DistributedError(f"--engine ray needs Ray Data, which is not installed ({exc}); {INSTALL_HINT}") \
            from exc
    return ray


def runtime_env() -> dict[str, Any]:
    """Environment of local Ray workers: this spectraclip on their path (the driver may run from a checkout)."""
    import spectraclip

    src = str(Path(spectraclip.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at `address` ("auto": the running one), or start a local Ray; True when this
    call started it (so the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    try:
        if address:  # a cluster's workers have their own spectraclip installed
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DistributedError(f"cannot connect to Ray at {address or 'a new local cluster'}: {exc}") from exc
    return True


def part_name(ids: Sequence[str]) -> str:
    """The part file name of a batch: a hash of its ids, so a retried batch rewrites its own part."""
    return "r" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:20]


def _prepare_rows(batch: dict[str, np.ndarray], proto: Any, dataset: Any = None) -> dict[str, np.ndarray]:
    """CPU task: read + preprocess each row's item with the prototype dataset's step (InputErrors recorded)."""
    ids = [str(i) for i in batch["id"]]
    if "index" in batch:  # items of a dataset (e.g. a multi-file layout), shipped once with the task
        items: Any = LazySubset(dataset, [int(k) for k in batch["index"]])
    else:
        items = [pickle.loads(b) for b in batch["item"]]
    ds = proto.with_items(items, ids)
    records = [pickle.dumps(ds[i], protocol=pickle.HIGHEST_PROTOCOL) for i in range(len(ids))]
    return {"id": np.asarray(ids, dtype=object), "record": np.asarray(records, dtype=object)}


class EncodeActor:
    """Holds the model on its device; encodes prepared records and writes each batch as a table part."""

    def __init__(self, model_ref: list[Any], precision: str, device: str, batch_size: int, parts_dir: str,
                 metadata: dict[str, Any], die: list[tuple[str, int, str]] | None = None) -> None:
        import ray
        import torch

        from spectraclip.models.precision import prepare_for_inference

        if device == "cpu" and os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(max(1, int(os.environ["OMP_NUM_THREADS"])))
        self.model = ray.get(model_ref[0])
        self.device = device
        self.encoder = prepare_for_inference(self.model, precision, device, batch_size)
        self.parts_dir, self.metadata = parts_dir, metadata
        self.die, self.n_batches = die or [], 0

    def _maybe_die(self, when: str) -> None:
        """Test hook: end this worker process once, at its n-th batch, before or after writing its part."""
        for marker, n, at in self.die:
            if at == when and self.n_batches == n and not os.path.exists(marker):
                Path(marker).write_text(str(os.getpid()))
                os._exit(1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from spectraclip.embeddings import write_part
        from spectraclip.inference import EncodedImages, collate_prepared, encode_batch

        self.n_batches += 1
        records = [pickle.loads(r) for r in batch["record"]]
        collated = collate_prepared(self.model, records)
        vectors = encode_batch(self.model, self.encoder, collated, self.device)
        self._maybe_die("before_write")
        if collated["ids"]:
            columns = EncodedImages(collated["ids"], vectors, collated["meta"]).columns()
            write_part(self.parts_dir, part_name(collated["ids"]), collated["ids"], vectors, columns, self.metadata)
        self._maybe_die("after_write")
        failed = dict(collated["failed"])
        ids = list(collated["ids"]) + list(failed)
        errors = [""] * len(collated["ids"]) + list(failed.values())
        return {"id": np.asarray(ids, dtype=object), "error": np.asarray(errors, dtype=object)}


def embed_with_ray(model: SpectralCLIP, items: Sequence[Any], output: str | Path, *,
                   bands: str | None = None, nodata: str = "error", batch_size: int | None = 32,
                   workers: int = 1, num_gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0,
                   device: str = "cpu", address: str | None = None, progress: bool = True,
                   metadata: dict[str, Any] | None = None, radiometry: Any = None, precision: str | None = "fp32",
                   skip_ids: set[str] | None = None, stats: dict[str, float] | None = None,
                   _die: list[tuple[str, int, str]] | None = None,
                   ) -> tuple[EmbeddingsTable, list[tuple[str, str]], int]:
    """`inference.embed_to_table` on Ray Data: the same table (columns, fingerprints, GeoParquet, row order),
    resumable; `skip_ids` as in `embed_to_table` (other shards); `stats`, when given, receives the pipeline's
    seconds to its first finished batch (actor start-up) and in all, and the items run.
    Returns (table, failed, number kept from before).
    `workers` actors encode, each with `num_gpus_per_worker` GPUs (0: CPU) and `cpus_per_worker` CPUs."""
    ray = import_ray()
    import torch

    from spectraclip.embeddings import PartWriter
    from spectraclip.inference import list_items, prepare_dataset, table_metadata
    from spectraclip.models.batching import choose_batch_size
    from spectraclip.models.precision import resolve_precision

    if workers < 1:
        raise DistributedError(f"--workers {workers}: the Ray engine needs at least one encoding worker")
    if num_gpus_per_worker > 0:
        device = "cuda"  # Ray gives each actor its GPUs as CUDA_VISIBLE_DEVICES
    elif device == "auto":
        device = "cpu"
    elif device != "cpu":
        raise DistributedError(f"--device {device} with --engine ray: give --num-gpus-per-worker N so Ray "
                               "assigns GPUs to the encoding actors (without it they run on CPU)")
    batch_size = batch_size or choose_batch_size(model, torch.device(device), len(items))
    precision = resolve_precision(precision, device, batch_size, model=model)
    writer = PartWriter(output, metadata=table_metadata(model, precision, metadata, device))
    before = len(writer.done_ids)
    all_items, all_ids = list_items(items)
    skip = writer.done_ids | set(skip_ids or ())
    todo_items, todo_ids = list_items(items, skip) if skip else (all_items, all_ids)
    failed: list[tuple[str, str]] = []
    if len(todo_ids):
        started = ensure_ray(address)
        try:
            failed = _run(ray, model, todo_items, todo_ids, writer, batch_size=batch_size, workers=workers,
                          num_gpus=num_gpus_per_worker, num_cpus=cpus_per_worker, device=device,
                          precision=precision, progress=progress,
                          proto=prepare_dataset(model, [], [], bands=bands, nodata=nodata, radiometry=radiometry),
                          die=_die, stats=stats)
        finally:
            if started:
                ray.shutdown()
    return writer.finish(order=all_ids), failed, before


def _run(ray: Any, model: SpectralCLIP, items: Sequence[Any], ids: Sequence[str], writer: Any, *, batch_size: int,
         workers: int, num_gpus: float, num_cpus: float, device: str, precision: str, progress: bool, proto: Any,
         die: list[tuple[str, int, str]] | None, stats: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """Build and run the pipeline; the parts land in `writer.parts_dir`; returns the failed items."""
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    if isinstance(items, (list, tuple)):  # paths, scene windows, layout items: each row carries its item
        rows = [{"id": i, "item": pickle.dumps(it, protocol=pickle.HIGHEST_PROTOCOL)}
                for i, it in zip(ids, items, strict=True)]
        dataset = None
    else:  # a dataset reads its own items: rows carry the index, the dataset goes with the task
        rows = [{"id": i, "index": k} for k, i in enumerate(ids)]
        dataset = items
    n_blocks = max(1, min(len(rows), math.ceil(len(rows) / batch_size)))
    model_ref = ray.put(model.cpu())
    ds = ray.data.from_items(rows, override_num_blocks=n_blocks)
    ds = ds.map_batches(_prepare_rows, fn_kwargs={"proto": proto, "dataset": dataset}, batch_size=batch_size,
                        batch_format="numpy", num_cpus=min(1.0, num_cpus))
    ds = ds.map_batches(
        EncodeActor, batch_size=batch_size, batch_format="numpy", compute=ActorPoolStrategy(size=workers),
        num_gpus=num_gpus or None, num_cpus=num_cpus,
        fn_constructor_kwargs={"model_ref": [model_ref], "precision": precision, "device": device,
                               "batch_size": batch_size, "parts_dir": str(writer.parts_dir),
                               "metadata": writer.metadata, "die": die})
    failed: list[tuple[str, str]] = []
    done = 0
    t0 = time.perf_counter()
    first: float | None = None
    try:
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if first is None:
                first = time.perf_counter() - t0
                if stats is not None:
                    stats["first_batch_items"] = float(len(out["id"]))
            for id_, err in zip(out["id"], out["error"], strict=True):
                done += 1
                if err:
                    failed.append((str(id_), str(err)))
    except SpectraclipError:
        raise
    except Exception as exc:  # a Ray task error wraps the cause; keep what was written for a rerun
        raise DistributedError(f"the Ray run stopped after {done} of {len(rows)} items ({exc}); the parts "
                               f"written so far are kept in {writer.parts_dir}: rerun the same command to resume"
                               ) from exc
    if stats is not None:
        stats.update({"first_batch_s": first or 0.0, "total_s": time.perf_counter() - t0, "items": float(done)})
    return failed


__all__ = ["EncodeActor", "INSTALL_HINT", "embed_with_ray", "ensure_ray", "import_ray", "part_name",
           "runtime_env"]
