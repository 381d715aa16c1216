"""The one `--classes` grammar of every command, and the class-name presets.

A class list is given as any mix of:
- repeated or comma-separated values: `--classes Forest --classes River,Industrial`;
- `Name=prompt words`: the map/table shows `Name`, the prompts use `prompt words`
  (`--classes "Water=river or lake,Urban=buildings and roads"`);
- a preset by name: `eurosat` (EuroSAT's ten classes with the wording OpenAI CLIP used for them);
- a file: `--classes-file FILE` or `--classes @FILE`, one entry per line in the forms above, `#` comments.

A class given without prompt words is worded by a preset that knows it (`AnnualCrop` -> "annual crop land"),
else by `humanize_classname` (`HerbaceousVegetation` -> "herbaceous vegetation"): CamelCase or snake_case
names never reach a prompt verbatim, and every command reports the wording it used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from spectraclip.errors import SpectraclipError

# The wording OpenAI CLIP used for EuroSAT's classes (its `eurosat` prompts); the one copy of the package.
EUROSAT_WORDING: dict[str, str] = {
    "AnnualCrop": "annual crop land", "Forest": "forest", "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road", "Industrial": "industrial buildings or commercial buildings",
    "Pasture": "pasture land", "PermanentCrop": "permanent crop land",
    "Residential": "residential buildings or homes or apartments", "River": "river", "SeaLake": "lake or sea",
}
CLASS_PRESETS: dict[str, dict[str, str]] = {"eurosat": EUROSAT_WORDING, "eurosat-ms": EUROSAT_WORDING}
MAX_CLASSES = 254  # a uint8 class band keeps 255 for nodata


class ClassesError(SpectraclipError, ValueError):
    """A class list that cannot be used (none, one, repeated, unreadable file); the message says which."""


@dataclass(frozen=True)
class ClassSpec:
    """One class: the `name` shown in outputs and the `prompt` words put into the templates.

    `worded` is False when the prompt was not given but derived from the name (a preset or de-CamelCasing); then
    a template set with its own wording for the class (a paper's, e.g. `msclip`) may replace it
    (`reword_for`), as `evaluate` does for a dataset's classes.
    """

    name: str
    prompt: str
    worded: bool = field(default=True, compare=False)


def humanize_classname(name: str) -> str:
    """`HerbaceousVegetation` -> "herbaceous vegetation", `sea_lake` -> "sea lake": prompt-friendly words."""
    text = re.sub(r"[_\-]+", " ", str(name))
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    words = [w if (w.isupper() and len(w) > 1) else w.lower() for w in text.split()]
    return " ".join(words)


def default_wording(name: str) -> str:
    """The prompt words of a class given by name only: a preset's wording when one knows the name, else the
    humanised name."""
    for preset in CLASS_PRESETS.values():
        if name in preset:
            return preset[name]
    return humanize_classname(name)


def _file_entries(path: Path) -> list[str]:
    if not path.is_file():
        raise ClassesError(f"{path}: classes file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassesError(f"{path}: cannot read the classes file ({exc})") from exc
    out = [ln.strip() for ln in lines]
    return [ln for ln in out if ln and not ln.startswith("#")]


def _entries(values: Iterable[str]) -> Iterable[str]:
    for value in values:
        value = str(value).strip()
        if value.startswith("@"):
            yield from _file_entries(Path(value[1:]).expanduser())
            continue
        yield from (part.strip() for part in value.split(",") if part.strip())


def parse_classes(values: str | Sequence[str] | None = None, file: str | Path | None = None, *,
                  min_classes: int = 2) -> list[ClassSpec]:
    """Classes from `--classes` values and/or `--classes-file` (the grammar of this module's docstring).

    Raises `ClassesError` for fewer than `min_classes` (a softmax over one class is 1.0 whatever the image),
    a repeated name, an empty name, or more than 254 classes.
    """
    raw = [values] if isinstance(values, str) else list(values or [])
    entries = list(_entries(raw))
    if file is not None:
        entries += _file_entries(Path(file).expanduser())
    out: list[ClassSpec] = []
    for entry in entries:
        preset = CLASS_PRESETS.get(entry.lower())
        if preset is not None and "=" not in entry:
            out += [ClassSpec(k, v, worded=False) for k, v in preset.items()]
            continue
        name, _, prompt = entry.partition("=")
        name = name.strip()
        if not name:
            raise ClassesError(f"--classes {entry!r}: a class needs a name before '='")
        out.append(ClassSpec(name, prompt.strip() or default_wording(name), worded=bool(prompt.strip())))
    if len(out) < min_classes:
        got = ", ".join(c.name for c in out) or "none"
        raise ClassesError(f"give at least {'two' if min_classes == 2 else min_classes} classes (got {got}): "
                           f"--classes A,B (or repeat --classes; "
                           f"presets: {', '.join(sorted(CLASS_PRESETS))}) or --classes-file FILE (one per line)")
    names = [c.name for c in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ClassesError(f"--classes repeats {', '.join(repeated)}")
    if len(out) > MAX_CLASSES:
        raise ClassesError(f"{len(out)} classes: at most {MAX_CLASSES} (a uint8 class band keeps 255 for nodata)")
    return out


def reword_for(classes: Sequence[ClassSpec], wordings: dict[str, dict[str, str]]) -> list[ClassSpec]:
    """The classes with a template set's wording (`TemplateSet.classnames`: dataset -> {class: words}) for those
    whose prompt was derived from the name, when one dataset's wording names all of them (all or nothing, as
    `TemplateSet.prompt_names` chooses for a dataset); explicit `Name=words` are kept."""
    derived = [c.name for c in classes if not c.worded]
    if not derived:
        return list(classes)
    for mapping in wordings.values():
        if all(n in mapping for n in derived):
            return [c if c.worded else replace(c, prompt=mapping[c.name]) for c in classes]
    return list(classes)


def describe_classes(classes: Sequence[ClassSpec]) -> str:
    """`Name ("prompt words"), ...` for the classes whose prompt differs from their name: what a run reports."""
    parts = [c.name if c.prompt == c.name else f'{c.name} ("{c.prompt}")' for c in classes]
    return ", ".join(parts)


__all__ = ["CLASS_PRESETS", "EUROSAT_WORDING", "MAX_CLASSES", "ClassSpec", "ClassesError", "default_wording",
           "describe_classes", "humanize_classname", "parse_classes", "reword_for"]
