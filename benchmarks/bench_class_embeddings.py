"""Zero-shot class embeddings: `zeroshot.classifier.class_text_embeddings` (open_clip's
`build_zero_shot_classifier`, one forward per group of whole classes) against the previous
implementation (all prompts in chunks of `--batch-size`), timed in the same run, same model.

Model: open_clip ViT-B-16 text tower (random weights: speed does not depend on the values).
Classes: the 10 EuroSAT classes in each set's wording; template sets as named.

    python benchmarks/bench_class_embeddings.py [--sets msclip,spectraclip-8] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]


class _Classes:
    name, classes = "eurosat-ms", EUROSAT

    def class_prompt_names(self) -> list[str]:
        from spectraclip.zeroshot.classes import humanize_classname

        return [humanize_classname(c) for c in EUROSAT]


def previous_implementation(model, classnames: list[str], templates: list[str], batch_size: int) -> torch.Tensor:
    """The baseline: every prompt, in chunks of `batch_size`, normalised, averaged per class, renormalised."""
    from spectraclip.zeroshot.templates import fill_template

    prompts = [fill_template(t, c) for c in classnames for t in templates]
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            emb = model.encode_text(model.tokenize(prompts[start:start + batch_size]))
            chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1))
    per_prompt = torch.cat(chunks).reshape(len(classnames), len(templates), -1)
    return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def best_seconds(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """Best wall time over `repeats` calls after one warm-up call, and the last result."""
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="msclip,spectraclip-8")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from spectraclip.models.loading import load_model
    from spectraclip.zeroshot.classifier import class_text_embeddings
    from spectraclip.zeroshot.templates import load_templates

    model = load_model("ViT-B-16", bands="msclip").eval()
    table = Table(title=f"class embeddings, ViT-B-16 text tower, {args.threads} threads, batch {args.batch_size}")
    for col in ("set", "prompts", "previous s (baseline)", "open_clip builder s", "ratio", "max |diff|"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        ts = load_templates(name)
        names = ts.prompt_names(_Classes())
        def baseline(names=names, ts=ts):
            return previous_implementation(model, names, ts.templates, args.batch_size)

        def builder(names=names, ts=ts):
            return class_text_embeddings(model, names, ts, batch_size=args.batch_size)

        (base, ref), (ours, got) = best_seconds(baseline, args.repeats), best_seconds(builder, args.repeats)
        diff = (got - ref).abs().max().item()
        table.add_row(name, str(len(names) * len(ts.templates)), f"{base:.2f}", f"{ours:.2f}",
                      f"{ours / base:.2f}", f"{diff:.1e}")
    Console().print(table)


if __name__ == "__main__":
    main()
