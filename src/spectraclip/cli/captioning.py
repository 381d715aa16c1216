"""`spectraclip tags`, `spectraclip caption`, `spectraclip caption-quality`: map tags, captioning, quality."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from spectraclip.cli.common import BandsOpt, console, err_console, fail, report_failures


def tags_cmd(
    paths: Annotated[list[Path], typer.Argument(
        help="Raster files / band folders (footprints from their CRS and transform) or a footprint table "
        "(.csv/.tsv/.jsonl/.parquet with id,minx,miny,maxx,maxy[,crs] or a caption manifest with id,path).")],
    source: Annotated[str, typer.Option(
        "--source", "-s", help="'overture' (latest release, via the overturemaps package), "
        "'overture:RELEASE', or a local Overture GeoParquet file/folder.")] = "overture",
    output: Annotated[Path, typer.Option("--output", "-o", help="Tags table (Parquet) to write.")] = Path(
        "tags.parquet"),
    types: Annotated[str | None, typer.Option(
        "--types", help="Comma list of Overture types (default: land_cover,land_use,land,water,"
        "infrastructure,building,segment,place).")] = None,
    min_area: Annotated[float, typer.Option(
        "--min-area", help="Drop polygons smaller than this (m²); lines shorter than its square root (m).")
    ] = 2500.0,
    show: Annotated[int, typer.Option("--show", help="Rows of the table to print.")] = 12,
) -> None:
    """Collect Overture Maps features per image footprint: reprojected, clipped, measured, sorted by size."""
    from rich.table import Table

    from spectraclip.captioning.tags import (
        DEFAULT_TYPES,
        TagsError,
        collect_tags,
        footprint_of,
        footprints_from_table,
        open_source,
        write_tags,
    )
    from spectraclip.io.manifest import is_manifest
    from spectraclip.io.readers import find_items

    failed: list[tuple[str, str]] = []
    fps = []
    rasters = []
    for p in paths:
        if is_manifest(p):
            fps.extend(footprints_from_table(p))
        else:
            rasters.append(p)
    for item in find_items(rasters) if rasters else []:
        try:
            fps.append(footprint_of(item))
        except TagsError as exc:  # one bad raster is skipped and reported, the rest are tagged
            failed.append((str(item), str(exc)))
    src = open_source(source)
    wanted = tuple(t.strip() for t in types.split(",")) if types else DEFAULT_TYPES
    df = collect_tags(fps, src, wanted, min_area, on_error=lambda fp, e: failed.append((fp.id, str(e))))
    write_tags(df, output, source=src.description)
    report_failures(failed, "footprints")
    if fps and len(df.attrs.get("image_ids", [])) == 0:
        fail(f"no footprint could be looked up in {src.description} (see above); wrote an empty {output}", 1)
    table = Table(title=f"{len(df)} tags for {len(fps)} images ({src.description})")
    cols = ["image_id", "rank", "overture_type", "class", "subtype", "name", "area_m2", "length_m", "flags"]
    for c in cols:
        table.add_column(c)
    for r in df.head(show).to_dict("records"):
        table.add_row(*[_cell(r[c]) for c in cols])
    console.print(table)
    console.print(f"wrote {output}")


def _cell(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:,.0f}"
    if hasattr(v, "__len__") and not isinstance(v, str):
        return ",".join(map(str, v))
    return str(v)


def caption_cmd(
    paths: Annotated[list[Path], typer.Argument(
        help="Raster files, folders (searched recursively) or manifests (.jsonl/.csv/.tsv/.parquet with id,path).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Caption manifest (JSONL) to append to.")],
    backend: Annotated[str, typer.Option("--backend", help="template (offline) or openai.")] = "template",
    tags: Annotated[Path | None, typer.Option("--tags", help="Tags table from `spectraclip tags`.")] = None,
    bands: BandsOpt = None,
    base_url: Annotated[str, typer.Option(
        "--base-url", help="OpenAI-compatible API base URL (…/v1).")] = "http://127.0.0.1:8000/v1",
    model: Annotated[str, typer.Option(
        "--vlm-model", help="Name of the vision-language model the server serves.")] = "default",
    api_key_env: Annotated[str, typer.Option(
        "--api-key-env", help="Environment variable holding the API key (unset: no key sent).")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option("--concurrency", "-j", min=1, help="Requests in flight.")] = 4,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 120.0,
    max_retries: Annotated[int, typer.Option(
        "--max-retries", min=0, help="Retries of a request on 429/5xx/timeouts/dropped connections.")] = 5,
    max_invalid: Annotated[int, typer.Option(
        "--max-invalid", min=0, help="Re-asks after an invalid reply before recording the image failed.")] = 2,
    backoff: Annotated[float, typer.Option(
        "--backoff", help="First retry delay (s); doubles each retry.")] = 1.0,
    backoff_max: Annotated[float, typer.Option("--backoff-max", help="Longest retry delay (s).")] = 60.0,
    rate_limit: Annotated[float | None, typer.Option(
        "--rate-limit", help="At most this many requests per second.")] = None,
    prompt_version: Annotated[str, typer.Option("--prompt-version", help="Prompt template version.")] = "qa3-v1",
    stretch: Annotated[str, typer.Option(
        "--stretch", help="Composite stretch: fixed (reflectance 0-0.3, gamma) or percentile (2-98).")] = "fixed",
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Caption images recorded as failed again (their rows are replaced).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Caption images into a resumable manifest: rerun the same command after a kill to continue."""
    from spectraclip.captioning.backends import make_backend
    from spectraclip.captioning.job import resolve_items, run_caption_job
    from spectraclip.captioning.tags import read_tags

    items = resolve_items(paths, bands)
    tag_map = read_tags(tags) if tags else None
    if backend == "openai":
        be = make_backend("openai", base_url=base_url, model=model, api_key_env=api_key_env,
                          concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                          max_invalid=max_invalid, backoff_base=backoff, backoff_max=backoff_max,
                          rate_limit=rate_limit, prompt_version=prompt_version, stretch=stretch)
    else:
        be = make_backend(backend)
    summary = run_caption_job(items, be, output, tag_map, retry_failed=retry_failed, progress=progress)
    report_failures(summary.failures, "images (recorded as failed)")
    console.print(f"[bold]{summary.done} done[/], {summary.failed} failed, {summary.skipped} skipped "
                  f"(already in {output}), {summary.duplicates} duplicate inputs, {summary.total} inputs, "
                  f"{summary.seconds:.1f}s")


def caption_quality_cmd(
    manifests: Annotated[list[Path], typer.Argument(
        help="One or more caption sets, compared side by side: caption manifests (.jsonl/.csv/.parquet...) or "
        "human-caption files SPLIT_caps.txt (one caption per line) with SPLIT_filename.txt beside them (image "
        "name per caption line, or per block of k lines); give the _caps.txt file, the DIR/SPLIT prefix, or a "
        "folder holding one *_caps.txt.")],
    references: Annotated[Path | None, typer.Option(
        "--references", help="Reference captions for METEOR, with the same ids (image names): a manifest or a "
        "_caps.txt/_filename.txt pair as above. Captions whose id has no reference are counted, not scored; no "
        "id in common is an error.")] = None,
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder for quality.md, quality.json, the plot.")] = Path(
        "caption-quality"),
    sample_size: Annotated[int, typer.Option(
        "--sample-size", min=1, help="K: captions per random sample (K different images, one caption each) for "
        "the size-independent distinct-n (sets of fewer than K images get none).")] = 100,
    draws: Annotated[int, typer.Option("--draws", min=1, help="Random K-caption samples averaged.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the K-caption samples.")] = 0,
) -> None:
    """Caption quality: METEOR vs references, n-gram diversity (distinct-n over the whole set, on K-caption
    samples, per image), pairwise similarity, vocabulary, lengths, plot."""
    from rich.markdown import Markdown

    from spectraclip.captioning.quality import caption_quality, markdown_summary, write_quality

    names = [m.stem for m in manifests]
    if len(set(names)) < len(names):
        names = [f"{m.parent.name}/{m.stem}" for m in manifests]
    reports = [caption_quality(m, references, name=n, sample_size=sample_size, draws=draws, seed=seed)
               for m, n in zip(manifests, names, strict=True)]
    paths = write_quality(reports, out)
    console.print(Markdown(markdown_summary(reports)))
    for r in reports:
        if r.meteor_no_reference:
            ids = f"{r.meteor_unmatched_ids} id" + ("" if r.meteor_unmatched_ids == 1 else "s")
            err_console.print(
                f"[yellow]warning:[/] {escape(r.path)}: {r.meteor_no_reference} of {r.captions} captions ({ids}, "
                f"e.g. {escape(', '.join(r.meteor_unmatched_examples[:3]))}) have no reference in "
                f"{escape(str(r.references))}; METEOR is over the other {r.meteor_pairs}", highlight=False)
    err_console.print(f"wrote {paths['markdown']}, {paths['json']}, {paths['plot']}")


def register(app: typer.Typer) -> None:
    """Add the captioning commands to the app."""
    app.command("tags")(tags_cmd)
    app.command("caption")(caption_cmd)
    app.command("caption-quality")(caption_quality_cmd)
