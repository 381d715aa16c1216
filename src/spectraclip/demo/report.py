"""The demo's `report.html`: one self-contained page (images inlined), readable offline in any browser."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from spectraclip.apps.demo_scene import scene_map_html
from spectraclip.bands import BandSet, select_bands
from spectraclip.demo.claim import gap_sentence
from spectraclip.io.atomic import atomic_open

FALSE_COLOUR = ("B08", "B04", "B03")  # NIR-red-green: vegetation shows red
NATURAL = ("B04", "B03", "B02")
THUMBNAIL_MIN_RANGE = 1500.0  # digital numbers (reflectance x 10000)
MAX_DISAGREEMENTS = 12  # thumbnails per side of the disagreement section


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail(sample, bands: tuple[str, str, str], size: int = 96) -> str:
    """A stretched 3-band composite of a sample as an inline PNG (bands picked by name)."""
    from PIL import Image

    from spectraclip.io.render import png_bytes, stretch_rgb

    rgb = select_bands(sample.pixels, sample.bands, BandSet(bands), where=sample.path or sample.id)
    # L1C top-of-atmosphere haze makes a fixed stretch look grey; one range for all three bands keeps the
    # colours, and a minimum range of 0.15 reflectance keeps dark water from turning into stretched noise
    img = stretch_rgb(rgb, "percentile", joint=True, min_range=THUMBNAIL_MIN_RANGE)
    img = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.NEAREST))
    return _b64(png_bytes(img))


def _tile(sample, caption: str) -> str:
    """One test patch in natural and false colour with an HTML caption underneath."""
    return (f"<div class='hit'><img src='{thumbnail(sample, NATURAL)}' title='natural colour'>"
            f"<img src='{thumbnail(sample, FALSE_COLOUR)}' title='false colour NIR-R-G'><div>{caption}</div></div>")


def _bar_chart(results: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    s, b = results["summary"], results["baseline"]
    names = [f"MS zero-shot ({results['labels']['ms']})", f"RGB zero-shot ({results['labels']['rgb']})",
             "band-stats logistic, all bands (supervised)", "band-stats logistic, RGB (supervised)"]
    top1 = [s["ms"]["top1"]["mean"], s["rgb"]["top1"]["mean"], b["all bands"]["top1"], b["RGB"]["top1"]]
    err = [s["ms"]["top1"]["std"], s["rgb"]["top1"]["std"], 0, 0]
    bal = [s["ms"]["balanced_accuracy"]["mean"], s["rgb"]["balanced_accuracy"]["mean"],
           b["all bands"]["balanced_accuracy"], b["RGB"]["balanced_accuracy"]]
    fig, ax = plt.subplots(figsize=(7.5, 3.4), constrained_layout=True)
    x = np.arange(len(names))
    ax.bar(x - 0.2, top1, 0.4, yerr=err, capsize=3, label="top-1 accuracy", color=["#2a9d8f", "#e76f51", "#8ab17d",
                                                                                    "#f4a261"])
    ax.bar(x + 0.2, bal, 0.4, label="balanced accuracy", color="#264653", alpha=0.55)
    for xi, v in zip(x, top1, strict=True):
        ax.text(xi - 0.2, v + 0.02, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_xticks(x, names, fontsize=7, rotation=12, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("EuroSAT-MS test split")
    ax.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance (10 classes)")
    ax.legend(fontsize=7, loc="upper right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return _b64(buf.getvalue())


def _code_spans(text: str) -> str:
    """`a command` in already-escaped text as <code>a command</code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _pct(d: dict[str, float], spread: bool = True) -> str:
    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}" if spread else f"{100 * d['mean']:.1f}"


def write_report(out: Path, results: dict[str, Any], eval_dir: Path, test_ds) -> Path:
    """Write `out/report.html` from the demo results, the evaluator's plots and thumbnails of search hits."""
    s, b = results["summary"], results["baseline"]
    lab = results["labels"]
    esc = html.escape
    sp = len(results["per_seed"]) > 1
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{_pct(s[v]['top1'], sp)}</td><td>{_pct(s[v]['balanced_accuracy'], sp)}</td>"
        f"<td>{_pct(s[v]['mAP@100'], sp)}</td></tr>"
        for v, name in (("ms", f"MS zero-shot — {lab['ms']}"), ("rgb", f"RGB zero-shot — {lab['rgb']}")))
    rows += "".join(
        f"<tr class='base'><td>{esc(name)}</td><td>{100 * b[k]['top1']:.1f}</td>"
        f"<td>{100 * b[k]['balanced_accuracy']:.1f}</td><td>—</td></tr>"
        for k, name in (("all bands", "supervised baseline: logistic regression on per-band mean+std, 13 bands"),
                        ("RGB", "supervised baseline: logistic regression on per-band mean+std, RGB")))
    gap_html = (f"<b>{esc(gap_sentence(results['gap']))}</b>. <small>The per-image predictions are in "
               f"<code>evaluation/*/predictions/</code>.</small>")
    per_class = "".join(
        f"<tr><td>{esc(c)}</td><td>{100 * results['per_seed'][0]['ms']['per_class'].get(c, float('nan')):.0f}</td>"
        f"<td>{100 * results['per_seed'][0]['rgb']['per_class'].get(c, float('nan')):.0f}</td></tr>"
        for c in results["dataset"]["classes"])
    plots = results["evaluation"]["plots"]

    def figs(kind: str) -> str:
        out_html = []
        for p in plots:
            if kind in p["file"] and p["file"].endswith(".png") and "rs12" not in p["file"]:
                png = (eval_dir / p["file"]).read_bytes()
                out_html.append(f"<figure><img src='{_b64(png)}'><figcaption>{esc(p['title'])}</figcaption></figure>")
        return "".join(out_html)

    by_id = {it_id: i for i, it_id in enumerate(test_ds.ids)}
    search_html = []
    for q in results["search"]:
        cells = []
        for h in q["hits"]:
            cells.append(_tile(test_ds[by_id[h["id"]]], f"#{h['rank']} {esc(h['label'])}<br><small>{esc(h['id'])} · "
                                                        f"{h['score']:.3f}</small>"))
        search_html.append(f"<h3>“{esc(q['query'])}”</h3><div class='hits'>{''.join(cells)}</div>")
    dis = results["disagreements"]
    dis_html = []
    for key, title in (("ms_only", f"{lab['ms']} right, {lab['rgb']} wrong"),
                       ("rgb_only", f"{lab['rgb']} right, {lab['ms']} wrong")):
        rows_ = dis[key]
        cells = [_tile(test_ds[by_id[r["id"]]], f"<b>{esc(r['label'])}</b><br><small>MS: {esc(r['ms'])}<br>"
                                                f"RGB: {esc(r['rgb'])}</small>") for r in rows_[:MAX_DISAGREEMENTS]]
        more = f" (first {MAX_DISAGREEMENTS} shown)" if len(rows_) > MAX_DISAGREEMENTS else ""
        dis_html.append(f"<h3>{esc(title)}: {len(rows_)} patches{more}</h3><div class='hits'>{''.join(cells)}</div>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in results["evaluation"]["notes"])
    seeds = results["seeds"]
    if results["mode"] != "trained":
        mode = "pretrained models given on the command line"
    elif seeds and len(seeds) > 1:
        mode = f"trained here, mean ± std over seeds {seeds}"
    else:
        mode = f"trained here, seed {seeds[0] if seeds else 0}"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>spectraclip demo — multispectral vs RGB CLIP on EuroSAT-MS</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}td+td{{white-space:nowrap}}tr.base td{{color:#555;font-style:italic}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}}figure img{{max-width:520px}}
figcaption{{font-size:0.8em;color:#555;max-width:520px}}
.hits{{display:flex;flex-wrap:wrap;gap:10px}}.hit{{font-size:0.8em;text-align:center}}
.hit img{{width:96px;height:96px;margin:1px;image-rendering:pixelated}}small{{color:#666}}
p.note{{max-width:850px;background:#f6f6f2;border-left:3px solid #bbb;padding:0.5em 1em}}
</style></head><body>
<h1>Multispectral vs RGB CLIP on real Sentinel-2 patches</h1>
<p>Zero-shot classification of the {results['dataset']['test']} held-out EuroSAT-MS test patches
({len(results['dataset']['classes'])} classes) from class names alone, with prompt-template ensembles
({esc(', '.join(results['templates']))}) that were never used as training captions. Models: {esc(mode)}.
Numbers in %.</p>
<table><tr><th>model</th><th>top-1</th><th>balanced accuracy</th><th>text→image mAP@100</th></tr>{rows}</table>
<p>{gap_html}</p>
<p class="note">{_code_spans(esc(results['note']))}</p>
<img src="{_bar_chart(results)}" alt="accuracy bar chart">
<h2>Per-class zero-shot accuracy (first seed)</h2>
<table><tr><th>class</th><th>MS</th><th>RGB</th></tr>{per_class}</table>
<h2>Confusion matrices</h2>{figs('__confusion')}
<h2>Embedding maps of the test patches</h2>{figs('__embedding_map')}
<h2>Where the models disagree (first seed, {esc(dis['templates'])} templates)</h2>
<p>Test patches exactly one of the two models classifies correctly, with the true class and both predictions;
every other patch both get right or both get wrong. Per-image predictions of every run are in
<code>evaluation/*/predictions/</code>.</p>
{''.join(dis_html)}
<h2>Free-text search with the MS model (top {len(results['search'][0]['hits']) if results['search'] else 0})</h2>
<p>Each hit shows natural colour (B04-B03-B02) and false colour (B08-B04-B03: vegetation red).</p>
{''.join(search_html)}
{scene_map_html(results.get("scene_map"))}
<h2>Provenance</h2><ul><li>Data: EuroSAT-MS (Helber et al., 2019, IEEE JSTARS), MIT licence; 270-patch subset
shipped with spectraclip.</li><li>Recipe: {esc(str(results['recipe']))} {esc(' '.join(results['overrides']))}</li>
<li>Full numbers: results.json; evaluator output: {esc(results['evaluation']['output'])}</li>
<li>Wall time: {results['seconds']:.0f} s</li>{notes}</ul>
</body></html>"""
    path = out / "report.html"
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path
