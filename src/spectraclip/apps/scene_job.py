"""The resumable sliding-window job every scene app runs: windows stream in (read and prepared in DataLoader
workers), a model function turns each batch into per-window values, the values are blended strip by strip and
handed to a writer; finished strips and the open rows are checkpointed, so a rerun after a kill continues and
ends with the same output as an uninterrupted run.

Fault injection (tests only, no option of any function): with `SPECTRACLIP_FAULT_STOP_AFTER_ROWS=N` in the
environment, a job stops as a kill would once N output rows are checkpointed, raising `JobInterrupted`; a rerun
without it resumes. This is the one place the variable is read and documented."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from spectraclip.apps.blend import StripBlender
from spectraclip.errors import InputError, SpectraclipError
from spectraclip.io.atomic import atomic_path
from spectraclip.io.scene import Scene, SceneReader, SceneWindow

log = logging.getLogger(__name__)
FAULT_STOP_ENV = "SPECTRACLIP_FAULT_STOP_AFTER_ROWS"  # tests: stop as if killed after N checkpointed output rows

# (x per group, present per group, windows) -> (values [B, K] or [B, K, h, w], window summary [B, K])
# (values [B, K, h, w], summaries [B, S]) or (values, summaries, skips): skips[i] = (reason, message) for a window
# the head itself finds unusable (change: AFTER cloudy there), counted and listed as skipped, never blended
WindowFn = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], list[SceneWindow]], tuple[Any, ...]]
StripFn = Callable[[int, np.ndarray, np.ndarray], None]


class ResumeError(SpectraclipError, ValueError):
    """A resume state made by another job (model, classes, tile, scene, ...) than the one asked for."""


@dataclass
class JobSummary:
    """What a scene job did: windows in the grid, encoded, skipped (by reason, and which), speed."""

    windows: int
    encoded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_windows: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_at_row: int | None = None
    records: tuple[np.ndarray, np.ndarray] | None = None  # (window indices [N], summaries [N, K])

    @property
    def windows_per_s(self) -> float:
        done = self.encoded + sum(self.skipped.values())
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows, "encoded": self.encoded, "skipped": dict(self.skipped),
                "skipped_windows": [list(s) for s in self.skipped_windows[:200]],
                "seconds": round(self.seconds, 2), "windows_per_s": round(self.windows_per_s, 2),
                "resumed_at_row": self.resumed_at_row}


class WindowDataset(Dataset):
    """The scene job's windows as a dataset: item i is window i read (`SceneReader`, its skip reason and message)
    and prepared; the scene is reopened lazily in each worker process (picklable)."""

    def __init__(self, scene: Scene, windows: Sequence[SceneWindow], prepare: Callable[[Any], Any],
                 reader_options: dict[str, Any]) -> None:
        self.scene_spec, self.windows, self.prepare = scene.to_dict(), list(windows), prepare
        self.reader_options = dict(reader_options)
        self._reader: SceneReader | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self._reader is None:
            self._reader = SceneReader(Scene.from_dict(self.scene_spec), **self.reader_options)
        w = self.windows[i]
        got = self._reader.read(w)
        item = {"window": w, "input": None, "valid": got.valid, "skipped": got.skipped, "message": got.message}
        if got.sample is not None:
            try:
                item["input"] = self.prepare(got.sample)
            except InputError as exc:
                item.update(skipped="error", message=f"{w.name}: {type(exc).__name__}: {exc}")
        return item


def _as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


class _State:
    """The resume file: one atomic .npz with the job key, progress, open rows and window records."""

    def __init__(self, folder: Path, key: dict[str, Any]) -> None:
        self.folder, self.key = folder, json.loads(json.dumps(key, default=str))
        self.path = folder / "state.npz"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        with np.load(self.path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["key"] != self.key:
                diff = sorted(k for k in set(meta["key"]) | set(self.key) if meta["key"].get(k) != self.key.get(k))
                raise ResumeError(f"{self.folder}: a resume state of another job (differs in {', '.join(diff)}); "
                                  "delete this folder (and the .partial.tif beside the output) to start over")
            return {"meta": meta, "sums": z["sums"], "wsum": z["wsum"], "rec_idx": z["rec_idx"],
                    "rec_val": z["rec_val"]}

    def save(self, meta: dict[str, Any], blender: StripBlender, rec_idx: np.ndarray, rec_val: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps({"key": self.key, **meta})), sums=blender.sums, wsum=blender.wsum,
                 rec_idx=rec_idx, rec_val=rec_val)
        with atomic_path(self.path) as tmp:
            tmp.write_bytes(buf.getvalue())


def can_resume(state_dir: str | Path, job_key: dict[str, Any]) -> bool:
    """True when `state_dir` holds the resume state of this job; a state of another job is a ResumeError."""
    return _State(Path(state_dir), job_key).load() is not None


def run_windows(scene: Scene, windows: Sequence[SceneWindow], prepare: Callable[[Any], Any], groups: Sequence[str],
                window_fn: WindowFn, channels: int, on_strip: StripFn, *, state_dir: str | Path,
                job_key: dict[str, Any], sync: Callable[[], None] = lambda: None, weight: str = "hann",
                batch_size: int = 32, num_workers: int = 0, progress: bool = True,
                reader_options: dict[str, Any] | None = None, checkpoint_rows: int = 512,
                checkpoint_seconds: float = 30.0) -> JobSummary:
    """Run `window_fn` over `windows` (sorted by grid row) and blend; `on_strip(top, values, wsum)` receives
    finished output rows in order. Resumes from `state_dir` when it holds the state of the same `job_key`;
    the state is saved every `checkpoint_rows` output rows or `checkpoint_seconds`, whichever comes first.
    Raises `JobInterrupted` when the fault hook (`SPECTRACLIP_FAULT_STOP_AFTER_ROWS`, see the module doc) stops it."""
    from spectraclip.models.inputs import collate_inputs

    stop_after_rows = _fault_stop_after_rows()
    t0 = time.perf_counter()
    tile = max(w.height for w in windows)
    blender = StripBlender(scene.height, scene.width, channels, tile, weight)
    state = _State(Path(state_dir), job_key)
    summary = JobSummary(windows=len(windows))
    rec_idx: list[np.ndarray] = []
    rec_val: list[np.ndarray] = []
    loaded = state.load()
    skipped: Counter[str] = Counter()
    next_row = 0
    if loaded is not None:
        meta = loaded["meta"]
        blender.load_state({"top": meta["top"], "sums": loaded["sums"], "wsum": loaded["wsum"]})
        next_row = int(meta["next_window_row"])
        summary.encoded = int(meta["encoded"])
        skipped.update(meta["skipped"])
        summary.skipped_windows = [tuple(s) for s in meta["skipped_windows"]]
        rec_idx.append(loaded["rec_idx"])
        rec_val.append(loaded["rec_val"].reshape(len(loaded["rec_idx"]), -1))
        summary.resumed_at_row = blender.top
        log.info("resuming %s at output row %d", scene.path, blender.top)
    todo = [w for w in windows if w.row >= next_row]
    row_starts = sorted({w.row for w in windows})
    next_start = {r: (row_starts[i + 1] if i + 1 < len(row_starts) else scene.height) for i, r in enumerate(row_starts)}
    ds = WindowDataset(scene, todo, prepare, reader_options or {})
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list,
                        prefetch_factor=4 if num_workers else None)
    last_ckpt = blender.top
    current_row = todo[0].row if todo else None
    from tqdm.auto import tqdm

    last_time = time.monotonic()

    def flush(until: int, window_row: int) -> bool:
        nonlocal last_ckpt, last_time
        top, values, wsum = blender.pop_until(until)
        if values.shape[1]:
            on_strip(top, values, wsum)
        due = time.monotonic() - last_time >= checkpoint_seconds and blender.top > last_ckpt
        if due or blender.top - last_ckpt >= checkpoint_rows or blender.top >= scene.height:
            sync()
            idx = np.concatenate(rec_idx) if rec_idx else np.zeros(0, np.int64)
            val = np.concatenate(rec_val) if rec_val else np.zeros((0, channels), np.float32)
            state.save({"top": blender.top, "next_window_row": window_row, "encoded": summary.encoded,
                        "skipped": dict(skipped), "skipped_windows": [list(s) for s in summary.skipped_windows]},
                       blender, idx, val)
            last_ckpt, last_time = blender.top, time.monotonic()
            return stop_after_rows is not None and blender.top >= stop_after_rows
        return False

    model_dtype = torch.float32
    stopped = False
    with tqdm(total=len(windows), initial=len(windows) - len(todo), desc="mapping windows", unit="win",
              disable=not progress) as bar, torch.inference_mode():
        for batch in loader:
            ok = [it for it in batch if it["input"] is not None]
            values = summaries = None
            late: list[tuple[str, str] | None] = [None] * len(ok)
            if ok:
                x, present = collate_inputs([it["input"] for it in ok], groups)
                x = {g: t.to(model_dtype) for g, t in x.items()}
                got = window_fn(x, present, [it["window"] for it in ok])
                values, summaries = got[0], got[1]
                if len(got) > 2:  # the head skips windows itself (change: AFTER cloudy): (reason, message) or None
                    late = list(got[2])
            j = 0
            for it in batch:
                w = it["window"]
                if w.row != current_row:
                    if flush(w.row, w.row):
                        stopped = True
                        break
                    current_row = w.row
                if it["input"] is None:
                    skipped[it["skipped"]] += 1
                    summary.skipped_windows.append((w.name, it["message"] or it["skipped"]))
                    continue
                if late[j] is not None:
                    skipped[late[j][0]] += 1
                    summary.skipped_windows.append((w.name, late[j][1]))
                    j += 1
                    continue
                blender.add(w.row, w.col, values[j], it["valid"])
                rec_idx.append(np.array([w.index], np.int64))
                rec_val.append(np.asarray(summaries[j], np.float32)[None])
                summary.encoded += 1
                j += 1
            if stopped:
                break
            bar.update(len(batch))
            bar.set_postfix(skipped=sum(skipped.values()))
    if not stopped:
        flush(scene.height, next_start.get(current_row, scene.height) if current_row is not None else scene.height)
    summary.skipped = dict(skipped)
    summary.seconds = time.perf_counter() - t0
    if rec_idx:
        summary.records = (np.concatenate(rec_idx), np.concatenate(rec_val))
    if stopped:
        raise JobInterrupted(summary)
    return summary


class JobInterrupted(SpectraclipError):  # noqa: N818 - a stop, not a failure: the state is saved, a rerun resumes
    """A scene job that stopped before its end with its resume state saved (the fault hook of the module doc);
    `summary` is what it had done. Rerunning the same job resumes it."""

    def __init__(self, summary: JobSummary) -> None:
        self.summary = summary
        super().__init__(f"stopped after {FAULT_STOP_ENV} output rows (fault injection); rerun to resume")


def _fault_stop_after_rows() -> int | None:
    raw = os.environ.get(FAULT_STOP_ENV, "").strip()
    return int(raw) if raw else None


__all__ = ["FAULT_STOP_ENV", "JobInterrupted", "JobSummary", "ResumeError", "StripFn", "WindowDataset", "WindowFn",
           "can_resume", "run_windows"]
