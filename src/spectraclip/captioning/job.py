"""The resumable, idempotent captioning job: images in, caption manifest (JSONL) out.

Every finished image (captioned or failed) is appended as one complete, fsynced line with
`spectraclip.io.atomic.append_line`. On restart the manifest is read first: a truncated last line (a
kill during a write) is cut off, ids already recorded are skipped (not requested again), so no image
appears twice and nothing written is lost. `retry_failed=True` rewrites the manifest atomically without
its failed rows and captions those images again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spectraclip.captioning.backends import CaptionBackend, CaptionInput, CaptionOutcome
from spectraclip.captioning.tags import item_id
from spectraclip.io.atomic import append_line, atomic_open
from spectraclip.io.manifest import (
    ManifestError,
    is_manifest,
    read_manifest_rows,
    read_numbered_rows,
    resolve_path,
    row_image,
    row_location,
)

_TAG_KEYS = ("overture_type", "class", "subtype", "name", "flags", "geometry_kind", "area_m2", "length_m",
             "cover_fraction", "position")


@dataclass(frozen=True)
class CaptionItem:
    """One image to caption: id, path (file or band folder) and its band order spec (None = detect)."""

    id: str
    path: Path
    bands: str | None = None


@dataclass
class JobSummary:
    """Counts of a captioning run: done (captioned now), failed (now), skipped (already in the manifest)."""

    output: Path
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def repair_manifest(path: str | Path) -> int:
    """Cut an incomplete last line (no trailing newline) off a JSONL manifest; returns bytes removed."""
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return 0
    data = p.read_bytes()
    if data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(p, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return len(data) - keep


def resolve_items(paths: Sequence[str | Path], bands: str | None = None) -> list[CaptionItem]:
    """Images from files, folders (expanded by `spectraclip.io.readers.find_items`) or manifests (any format
    of `spectraclip.io.manifest`, rows with `id`, `path`, optional `bands`; relative paths against the
    manifest's folder). A manifest row without a single image `path` is a ManifestError naming its line."""
    items: list[CaptionItem] = []
    rasters: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not is_manifest(p):
            rasters.append(p)
            continue
        for number, row in read_numbered_rows(p):
            image = row_image(row)
            if not isinstance(image, str):
                problem = "has no 'path'" if image is None else "has per-band files; caption a raster or folder"
                raise ManifestError(f"{row_location(p, number)}: row {row.get('id')!r} {problem}")
            q = resolve_path(p.parent, image)
            items.append(CaptionItem(str(row.get("id") or item_id(q)), q, row.get("bands") or bands))
    if rasters:
        from spectraclip.io.readers import find_items

        items.extend(CaptionItem(item_id(q), Path(q), bands) for q in find_items(rasters))
    return items


def _manifest_path(path: Path, output: Path) -> str:
    """Relative to the manifest's folder when the image lies inside it, else absolute."""
    path, base = path.resolve(), output.resolve().parent
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _compact_tag(tag: dict[str, Any]) -> dict[str, Any]:
    out = {k: tag.get(k) for k in _TAG_KEYS if tag.get(k) not in (None, [], "")}
    for k, nd in (("area_m2", 1), ("length_m", 1), ("cover_fraction", 4)):
        if isinstance(out.get(k), float):
            out[k] = round(out[k], nd)
    return out


def make_row(item: CaptionItem, outcome: CaptionOutcome, backend: CaptionBackend, output: Path,
             bands: str | None) -> dict[str, Any]:
    """One manifest row: the caption-manifest schema of `spectraclip.io.manifest` (`id`, `path`, `bands`,
    `captions`, `status`) plus the job's metadata keys."""
    row: dict[str, Any] = {
        "id": item.id,
        "path": _manifest_path(item.path, output),
        "bands": bands,
        "captions": outcome.captions,
        "qa": outcome.qa,
        "tags": [_compact_tag(t) for t in outcome.tags_used],
        "backend": backend.name,
        "model": backend.model,
        "prompt_version": backend.prompt_version,
        "attempts": outcome.attempts,
        "status": outcome.status,
        "error": outcome.error,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for k, v in outcome.extra.items():
        row.setdefault(k, v)
    return row


def _read(item: CaptionItem) -> Any:
    from spectraclip.io.readers import read_sample

    return read_sample(item.path, item.bands)


def run_caption_job(items: Iterable[CaptionItem], backend: CaptionBackend, output: str | Path,
                    tags: dict[str, list[dict[str, Any]]] | None = None, *, retry_failed: bool = False,
                    progress: bool = True, reader: Callable[[CaptionItem], Any] | None = None) -> JobSummary:
    """Caption every item not yet in `output` with `backend`, appending one row per finished image."""
    t0 = time.monotonic()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    repair_manifest(out)
    existing = read_manifest_rows(out, allow_partial_tail=True) if out.exists() else []
    if retry_failed and any(r.get("status") == "failed" for r in existing):
        existing = [r for r in existing if r.get("status") != "failed"]
        with atomic_open(out, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in existing)
    recorded = {str(r.get("id")) for r in existing}
    summary = JobSummary(out)
    pending: list[CaptionItem] = []
    seen: set[str] = set()
    for it in items:
        summary.total += 1
        if it.id in seen:
            summary.duplicates += 1
            continue
        seen.add(it.id)
        if it.id in recorded:
            summary.skipped += 1
        else:
            pending.append(it)
    asyncio.run(_run(pending, backend, out, tags or {}, summary, progress, reader or _read))
    summary.seconds = time.monotonic() - t0
    return summary


async def _run(pending: list[CaptionItem], backend: CaptionBackend, out: Path,
               tags: dict[str, list[dict[str, Any]]], summary: JobSummary, progress: bool,
               reader: Callable[[CaptionItem], Any]) -> None:
    from tqdm import tqdm

    async def one(item: CaptionItem) -> tuple[CaptionItem, CaptionOutcome, str | None]:
        try:
            sample = await asyncio.to_thread(reader, item)
        except Exception as exc:  # noqa: BLE001 - a bad raster is recorded as failed, the job goes on
            return item, CaptionOutcome("failed", error=f"read: {exc}"), item.bands
        outcome = await backend.caption(CaptionInput(item.id, sample, list(tags.get(item.id, []))))
        return item, outcome, str(sample.bands)

    window = max(1, backend.concurrency) * 2
    bar = tqdm(total=len(pending), desc=f"caption ({backend.name})", unit="image", disable=not progress)
    running: set[asyncio.Task] = set()

    def finish(task: asyncio.Task) -> None:
        item, outcome, bands = task.result()
        append_line(out, json.dumps(make_row(item, outcome, backend, out, bands), ensure_ascii=False))
        if outcome.status == "ok":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append((item.id, outcome.error or "unknown error"))
        bar.update(1)
        bar.set_postfix(done=summary.done, failed=summary.failed)

    try:
        for item in pending:
            while len(running) >= window:
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for t in finished:
                    finish(t)
            running.add(asyncio.create_task(one(item)))
        while running:
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                finish(t)
    finally:
        for t in running:
            t.cancel()
        bar.close()
        await backend.aclose()
