"""The one scene runner behind `map`, `map --dense`, `heatmap` and `change`.

Every scene application does the same thing: open the scene and keep the bands the model takes, lay the window
grid, build a preprocessor for this run, key the resumable job, open the block writer (resuming when the state
is of the same job), run the windows, refuse a run that skipped too much, and finish the COG. `SceneJob` does
that sequence once; an application is a `SceneHead`: what it computes per window batch, its output bands, dtype
and tags, and how a strip of blended values becomes output bands. Its quicklook stays with the application.

The caller's model is never changed: the run's input handling (`missing_bands`, resizing windows larger than
twice the model input) lives in a local `Preprocessor`; the model is used on its own device (a `device` other
than the model's runs a copy of the model there, and the caller's stays where it was); its train/eval mode is
restored when the run ends.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from spectraclip.apps.scene_job import JobSummary, ResumeError, can_resume, run_windows
from spectraclip.errors import SpectraclipError
from spectraclip.io.clouds import apply_cloud_mask, check_cloud_mask
from spectraclip.io.cog import BlockWriter
from spectraclip.io.radiometry import as_radiometry
from spectraclip.io.scene import Scene, SceneError, SceneWindow, open_scene, window_grid
from spectraclip.models.device import model_device
from spectraclip.models.inputs import SCENE_FACTOR, Preprocessor

DEFAULT_MAX_SKIPPED = 0.5
FAILED_MARKER = "failed.json"


class SkippedWindowsError(SpectraclipError, ValueError):
    """A scene run that encoded no window, or skipped more than its `max_skipped` share of them."""


@dataclass
class SceneOptions:
    """The options every scene application shares (one field per CLI option of map, heatmap and change).

    `device` None uses the model's device. `missing_bands` None keeps the model's policy. `radiometry` (a
    `--radiometry` value) says what the scene's values are. `max_skipped`: the largest share of windows a run may
    skip (nodata, cloud, unreadable, bands missing) and still write its output; a run that encoded nothing always
    fails. (The resumable job's fault hook for tests is an environment variable, see `apps.scene_job`.)"""

    tile: int | None = None
    stride: int | None = None
    weight: str = "hann"
    bands: Any = None
    scl: str | Path | None = None
    nodata: str = "fill"
    max_cloud: float = 0.5
    batch_size: int | None = None  # None: fitted to the model and the device (models.batching)
    num_workers: int = 0
    device: str | torch.device | None = None
    precision: str | None = "fp32"
    progress: bool = True
    checkpoint_rows: int = 512
    missing_bands: str | None = None
    radiometry: str | None = None
    max_skipped: float = DEFAULT_MAX_SKIPPED
    cloud_mask: str = "auto"  # io.clouds: auto (SCL for L2A, s2cloudless for L1C) | scl | s2cloudless | none

    def __post_init__(self) -> None:
        check_cloud_mask(self.cloud_mask)
        if not 0.0 <= float(self.max_skipped) <= 1.0:
            raise SkippedWindowsError(f"--max-skipped {self.max_skipped}: give a share within 0..1 (1 accepts any "
                                      "number of skipped windows as long as one is encoded)")
        as_radiometry(self.radiometry)  # a bad --radiometry is refused before anything runs

    def reader_options(self) -> dict[str, Any]:
        """The `SceneReader` options of this run (picklable: they travel to the loader's workers)."""
        return {"nodata": self.nodata, "max_cloud": self.max_cloud, "radiometry": self.radiometry}

    def key(self) -> dict[str, Any]:
        """What of these options decides the output (a resumed run must agree on it). `max_skipped` does not:
        a run refused for skipped windows resumes at its end when rerun with a larger share."""
        return {"weight": self.weight, "nodata": self.nodata, "max_cloud": self.max_cloud,
                "radiometry": self.radiometry, "cloud_mask": self.cloud_mask}


@contextmanager
def run_model(model: Any, device: str | torch.device | None = None) -> Iterator[Any]:
    """The model a scene run uses: the caller's (on its own device) or, when `device` names another one, a copy
    moved there. The caller's train/eval mode is restored afterwards."""
    dev = model_device(model) if device is None else torch.device(device)
    if dev.type == model_device(model).type and (dev.index is None or dev == model_device(model)):
        training = model.training
        try:
            yield model
        finally:
            model.train(training)
    else:
        yield copy.deepcopy(model).to(dev).eval()


def select_model_bands(model: Any, scene: str | Path | Scene, bands: Any = None, scl: str | Path | None = None,
                       cloud_mask: str = "auto", work_dir: str | Path | None = None) -> Scene:
    """The scene (opened when given as a path) with its cloud layer (`cloud_mask`, `io.clouds`; s2cloudless
    writes its mask into `work_dir`) restricted to the bands the model takes; none in common is a SceneError.
    Bands the model takes that the scene lacks are the preprocessor's business (missing-band policy)."""
    if isinstance(scene, Scene):
        sc = scene
    else:  # s2cloudless reads bands the model may not take: the scene is opened whole, then restricted
        sc = open_scene(scene, None if cloud_mask in ("s2cloudless", "auto") else bands, scl=scl)
    sc = apply_cloud_mask(sc, cloud_mask, work_dir)
    if bands is not None and cloud_mask in ("s2cloudless", "auto") and not isinstance(scene, Scene):
        sc = sc.select(bands)
    have = set(sc.bands.names)
    usable = [b for b in model.bands.names if b in have]
    if not usable:
        raise SceneError(f"{sc.path}: the scene has bands {', '.join(sc.bands.names)} but the model takes "
                         f"{', '.join(model.bands.names)}: none in common")
    return sc.select(usable)


def scene_preprocessor(model: Any, tile: int, missing_bands: str | None = None) -> Preprocessor:
    """The model's preprocessor with this run's options: `missing_bands` when given, and windows larger than
    twice the model input resized into it (a window is a chip by construction). The model is not touched."""
    prep = model.preprocessor()
    return replace(prep, missing_bands=missing_bands or prep.missing_bands,
                   allow_resize=prep.allow_resize or tile > SCENE_FACTOR * model.image_size)


class SceneHead(Protocol):
    """One application over the scene runner."""

    kind: str  # map | heatmap | change ...
    channels: int  # values per pixel that are blended over windows
    resampling: str  # overview resampling of the finished COG

    def __call__(self, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                 windows: list[SceneWindow]) -> tuple[np.ndarray, np.ndarray]:
        """One batch of prepared windows -> (values [B, K] or [B, K, h, w], per-window summary [B, K'])."""

    def key(self) -> dict[str, Any]:
        """What of the head decides the output (classes, queries, precision, ...)."""

    def writer(self, job: SceneJob) -> BlockWriter:
        """The output raster's writer (bands, dtype, nodata, tags)."""

    def write_strip(self, writer: BlockWriter, top: int, values: np.ndarray, wsum: np.ndarray) -> None:
        """Blended values `[K, n, W]` of output rows `top..top+n` (and their weight sums) into the output."""


@dataclass
class SceneJob:
    """One run over one scene: the scene (model bands only), its window grid, the preprocessor and options."""

    model: Any
    scene: Scene
    output: Path
    options: SceneOptions
    tile: int
    stride: int
    windows: list[SceneWindow]
    prepare: Preprocessor

    @classmethod
    def open(cls, model: Any, scene: str | Path | Scene, output: str | Path, options: SceneOptions, *,
             select_bands: bool = True) -> SceneJob:
        """Open `scene` for `model` (its bands selected unless `select_bands` is False, e.g. an aligned pair)."""
        parts = Path(output).with_name(Path(output).name + ".parts")
        sc = (select_model_bands(model, scene, options.bands, options.scl, options.cloud_mask, parts) if select_bands
              else scene)  # an aligned pair or stack has had its cloud layer applied by the caller
        assert isinstance(sc, Scene)
        tile = int(options.tile or model.image_size)
        stride = int(options.stride or max(1, tile // 2))
        windows = window_grid(sc.height, sc.width, tile, stride)
        if options.batch_size is None:
            from spectraclip.models.batching import choose_batch_size

            options = replace(options, batch_size=choose_batch_size(model, model_device(model), len(windows)))
        return cls(model, sc, Path(output), options, tile, stride, windows,
                   scene_preprocessor(model, tile, options.missing_bands))

    @property
    def parts(self) -> Path:
        """The folder of the resume state (and intermediate files) beside the output."""
        return self.output.with_name(self.output.name + ".parts")

    def key(self, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        """The job key: model and preprocessing, scene, grid, the shared options and the head's own."""
        from spectraclip.identity import Fingerprints

        return {"kind": kind, **Fingerprints.of(self.model).to_metadata(), "preprocessing": self.prepare.spec(),
                "scene": self.scene.to_dict(), "tile": self.tile, "stride": self.stride, **self.options.key(),
                **extra}

    def can_resume(self, key: dict[str, Any], partial: Path) -> bool:
        """True when the parts folder holds this job's state. The state of a run refused for skipped windows
        is discarded when the job differs (e.g. rerun with --missing-bands fill): nothing good is lost."""
        failed = self.parts / FAILED_MARKER
        try:
            resume = can_resume(self.parts, key)
        except ResumeError:
            if not failed.exists():
                raise
            resume = False
        if resume and not partial.exists():  # a state without its partial output: start over
            resume = False
            (self.parts / "state.npz").unlink(missing_ok=True)
        if not resume and failed.exists():  # only the state and the partial file: the folder may hold inputs
            (self.parts / "state.npz").unlink(missing_ok=True)
            failed.unlink()
            partial.unlink(missing_ok=True)
        return resume

    def run(self, window_fn: Any, channels: int, writer: BlockWriter, on_strip: Any, key: dict[str, Any],
            reader_options: dict[str, Any] | None = None, check: bool = True) -> JobSummary:
        """Open `writer` (resuming a run of the same `key`), run the windows, close it; a run that skipped too
        much raises `SkippedWindowsError`, leaving the partial output and the resume state (not finished).
        `check=False` leaves that check to the caller (a time series checks its whole stack: one wholly cloudy
        date is missing, not a failure)."""
        o = self.options
        writer.open(resume=self.can_resume(key, writer.partial))
        try:
            summary = run_windows(self.scene, self.windows, self.prepare, self.model.groups, window_fn, channels,
                                  on_strip, state_dir=self.parts, job_key=key, sync=writer.sync, weight=o.weight,
                                  batch_size=o.batch_size, num_workers=o.num_workers, progress=o.progress,
                                  reader_options=reader_options or o.reader_options(),
                                  checkpoint_rows=o.checkpoint_rows)
        finally:
            writer.close()
        if check:
            self.check(summary, writer.partial)
        return summary

    def check(self, summary: JobSummary, partial: Path) -> None:
        """Refuse a run that encoded nothing or skipped more than `max_skipped` of its windows."""
        try:
            check_skipped(summary, self.options.max_skipped, str(self.scene.path), self.output)
        except SkippedWindowsError as exc:
            self.parts.mkdir(parents=True, exist_ok=True)
            (self.parts / FAILED_MARKER).write_text(json.dumps({"error": str(exc), "partial": str(partial)}))
            raise

    def run_head(self, head: SceneHead) -> JobSummary:
        """Run `head` over the scene into its COG: resumable, refused when too much was skipped, finished."""
        key = self.key(head.kind, head.key())
        writer = head.writer(self)
        summary = self.run(head, head.channels, writer,
                           lambda top, values, wsum: head.write_strip(writer, top, values, wsum), key)
        writer.finish(resampling=head.resampling)
        shutil.rmtree(self.parts, ignore_errors=True)
        return summary


def check_skipped(summary: JobSummary, max_skipped: float, where: str, output: Path | None = None) -> None:
    """`SkippedWindowsError` when no window was encoded or more than `max_skipped` of them were skipped; the
    message says how many, the most common reason (with an example) and what to do."""
    n_skipped = sum(summary.skipped.values())
    total = summary.windows
    if summary.encoded > 0 and (total == 0 or n_skipped / total <= max_skipped):
        return
    reasons = Counter(summary.skipped)
    reason, count = reasons.most_common(1)[0] if reasons else ("none", 0)
    example = _common_message(summary.skipped_windows)
    what = "no window was encoded" if summary.encoded == 0 else (
        f"more than --max-skipped {max_skipped:g} of the windows were skipped")
    if reason == "nodata":
        advice = "the windows hold no data: check the scene's extent and nodata value"
    elif reason == "cloud":
        advice = "the windows are cloudy: raise --max-cloud or drop --scl"
    elif "missing band" in example:
        advice = ("pass --missing-bands fill (the missing bands get the model's training mean), or use a model "
                  "of the scene's bands")
    else:
        advice = "fix the input as the message says (e.g. --nodata fill, --radiometry for undescribed values)"
    tail = "" if summary.encoded == 0 else "; or accept it with a larger --max-skipped (1 accepts any share)"
    kept = f"; no output written to {output} (its partial file and resume state are kept)" if output else ""
    raise SkippedWindowsError(
        f"{where}: {what}: {n_skipped} of {total} windows skipped, most often for {reason} ({count}), e.g. "
        f"{example}. What to do: {advice}{tail}{kept}")


def _common_message(skipped_windows: list[tuple[str, str]]) -> str:
    """The most frequent skip message (window names taken out, so the same cause counts once)."""
    if not skipped_windows:
        return "no message"
    counts = Counter(msg.replace(name, "<window>") for name, msg in skipped_windows)
    msg = counts.most_common(1)[0][0]
    return msg.replace("<window>: ", "").replace("<window>", "a window")


__all__ = ["DEFAULT_MAX_SKIPPED", "SceneHead", "SceneJob", "SceneOptions", "SkippedWindowsError", "check_skipped",
           "model_device", "run_model", "scene_preprocessor", "select_model_bands"]
