"""Pages for probe runs: the Markdown table, the label-efficiency plot and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from spectraclip.io.atomic import atomic_open, atomic_path
from spectraclip.probe.curves import ProbeResult
from spectraclip.probe.estimators import HIGHER_IS_BETTER


def _k_label(k: int | None) -> str:
    return "all" if k is None else str(k)


def markdown_table(result: ProbeResult, metrics: list[str] | None = None) -> str:
    """One Markdown table per metric: rows are training sizes, columns the series, cells mean ± std."""
    metrics = metrics or list(result.metrics)
    ks: list[int | None] = []
    for s in result.series:
        for p in s.points:
            if p.k not in ks:
                ks.append(p.k)
    lines = [
        f"Task: {result.task}; {result.n_pool} training-pool and {result.n_test} test items; "
        f"{result.config.get('draws')} draws per size; split: {result.config.get('split')}.",
        "",
    ]
    for metric in metrics:
        arrow = "↓" if not HIGHER_IS_BETTER.get(metric, True) else "↑"
        lines.append(f"**{metric}** {arrow}")
        lines.append("")
        lines.append("| k (n train) | " + " | ".join(s.name for s in result.series) + " |")
        lines.append("|---" * (len(result.series) + 1) + "|")
        for k in ks:
            cells, n_train = [], None
            for s in result.series:
                p = next((q for q in s.points if q.k == k), None)
                if p is None:
                    cells.append("–")
                    continue
                n_train = p.n_train
                cells.append(f"{p.mean(metric):.3f} ± {p.std(metric):.3f}")
            lines.append(f"| {_k_label(k)} ({n_train}) | " + " | ".join(cells) + " |")
        lines.append("")
    if result.skipped_ks:
        lines.append(f"Sizes not below the training pool ({result.n_pool}) were covered by 'all': "
                     + ", ".join(map(str, result.skipped_ks)) + ".")
    return "\n".join(lines) + "\n"


def plot_curves(result: ProbeResult, path: str | Path, metrics: list[str] | None = None) -> Path:
    """Label-efficiency curves (mean ± std band over draws, log-scale k) with each series' full-label line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = metrics or list(result.metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for n, s in enumerate(result.series):
            color = colors[n % len(colors)]
            pts = [p for p in s.points if p.k is not None]
            if pts:
                x = [p.n_train for p in pts]
                m = [p.mean(metric) for p in pts]
                sd = [p.std(metric) for p in pts]
                ax.plot(x, m, marker="o", color=color, label=s.name)
                ax.fill_between(x, [a - b for a, b in zip(m, sd, strict=True)],
                                [a + b for a, b in zip(m, sd, strict=True)], color=color, alpha=0.15)
            full = s.full
            if full is not None:
                ax.axhline(full.mean(metric), color=color, linestyle="--", linewidth=1,
                           label=f"{s.name}: all {full.n_train} labels")
        ax.set_xscale("log")
        ax.set_xlabel("labelled training examples (k)")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Few-shot probe ({result.task}, {result.n_test} test items)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)


def write_report(result: ProbeResult, out_dir: str | Path, with_indices: bool = False) -> dict[str, Path]:
    """Write `probe.json`, `probe.md` and `probe.png` into `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "probe.json", "markdown": out / "probe.md", "plot": out / "probe.png"}
    with atomic_open(paths["json"]) as fh:
        json.dump(result.to_dict(with_indices), fh, indent=1)
    plot_curves(result, paths["plot"])
    with atomic_open(paths["markdown"]) as fh:
        fh.write("# Few-shot probe\n\n" + markdown_table(result)
                 + f"\n![label-efficiency curves]({paths['plot'].name})\n")
    return paths
