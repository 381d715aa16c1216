"""What the demo's MS − RGB gap can and cannot say, in the words both the terminal and `report.html` use.

The demo reports the gap with its interval and no pass/fail verdict: 54 test patches are too few to
judge a target (one patch is 1.85 points), so the text points at the better guides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Measured outside the project (not reproducible from the package, whose data holds only the 270 patches):
# the demo's twins evaluated zero-shot on 199 EuroSAT-MS patches that are not in the package.
OUTSIDE_CHECK: dict[str, float] = {"patches": 199, "ms_top1": 0.769, "rgb_top1": 0.653}


def gap_sentence(gap: Mapping[str, Any], over: str = "test patches") -> str:
    """`MS − RGB top-1: +x.x points (95% paired bootstrap interval over the N test patches: a to b)`."""
    lo, hi = gap["ci95"]
    return (f"MS − RGB top-1: {100 * gap['mean']:+.1f} points (95% paired bootstrap interval over the "
            f"{gap['n_images']} {over}: {100 * lo:+.1f} to {100 * hi:+.1f})")


def reading_note(mode: str, n_images: int) -> str:
    """The plain paragraph under the gap: how the models were trained and evaluated, and what to trust more."""
    one = 100.0 / max(n_images, 1)
    size = (f"With {n_images} test patches one patch is {one:.2f} points, so the interval above is what this "
            "split can tell, and no verdict is drawn from it.")
    if mode != "trained":
        return (f"Both pretrained models are evaluated zero-shot from class names with prompt templates. {size}")
    ms, rgb = 100 * OUTSIDE_CHECK["ms_top1"], 100 * OUTSIDE_CHECK["rgb_top1"]
    return (
        "How to read this: the twins are trained on captions generated from the training labels and evaluated "
        "zero-shot with prompt templates never used as captions (text-supervised zero-shot), unlike the "
        "Llama3-MS-CLIP paper, whose models transfer from a separate caption corpus. "
        f"{size} Better guides are cross-validation on the training patches (`spectraclip demo --cv 4`) and an "
        f"outside check on {OUTSIDE_CHECK['patches']:.0f} further EuroSAT-MS patches that are not in the "
        f"package, where twins trained with the shipped recipe score MS {ms:.1f}% and RGB {rgb:.1f}% top-1 "
        f"({ms - rgb:+.1f} points).")
