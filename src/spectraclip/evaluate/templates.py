"""Prompt template sets for zero-shot evaluation, stored as JSON data files in `evaluate/templates/`.

A template holds `{}` or `{c}` where the (humanised) class name goes. A set is named by its file
stem (`clip-satellite`, `rs5m`, `msclip`, `simple`) or given as a path to a user JSON file holding
either a list of templates or `{"name": ..., "templates": [...]}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from spectraclip.errors import SpectraclipError

_DATA_DIR = Path(__file__).with_name("templates")


class TemplateError(SpectraclipError, ValueError):
    """A template set that cannot be found or is malformed; the message names the set or file."""


@dataclass(frozen=True)
class TemplateSet:
    """A named list of prompt templates (each with one `{}` or `{c}` placeholder)."""

    name: str
    templates: list[str]
    description: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.templates:
            raise TemplateError(f"template set {self.name!r} has no templates")
        for t in self.templates:
            if not isinstance(t, str) or ("{}" not in t and "{c}" not in t):
                raise TemplateError(
                    f"template {t!r} in set {self.name!r} has no '{{}}' or '{{c}}' placeholder for the class"
                )

    def fill(self, classname: str) -> list[str]:
        """All prompts for one class name."""
        return [fill_template(t, classname) for t in self.templates]

    def to_dict(self) -> dict:
        return {"name": self.name, "templates": list(self.templates), "description": self.description,
                "source": self.source}


def fill_template(template: str, classname: str) -> str:
    """Put `classname` where the template's `{}` / `{c}` is (plain replace, so other braces are kept)."""
    return template.replace("{c}", classname).replace("{}", classname)


def humanize_classname(name: str) -> str:
    """`HerbaceousVegetation` -> "herbaceous vegetation", `sea_lake` -> "sea lake": prompt-friendly words."""
    text = re.sub(r"[_\-]+", " ", str(name))
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    words = [w if (w.isupper() and len(w) > 1) else w.lower() for w in text.split()]
    return " ".join(words)


def available_template_sets() -> list[str]:
    """Names of the template sets shipped with the package."""
    return sorted(p.stem for p in _DATA_DIR.glob("*.json"))


def _from_json(data: object, default_name: str, source: str) -> TemplateSet:
    if isinstance(data, list):
        return TemplateSet(default_name, [str(t) for t in data], source=source)
    if isinstance(data, dict) and isinstance(data.get("templates"), list):
        return TemplateSet(
            str(data.get("name") or default_name),
            [str(t) for t in data["templates"]],
            description=str(data.get("description", "")),
            source=source,
        )
    raise TemplateError(f"{source}: expected a JSON list of templates or an object with a 'templates' list")


def load_templates(spec: str | Path | TemplateSet) -> TemplateSet:
    """A shipped set by name, or a user JSON file (list of templates or {"name", "templates"})."""
    if isinstance(spec, TemplateSet):
        return spec
    text = str(spec)
    bundled = _DATA_DIR / f"{text}.json"
    if "/" not in text and "\\" not in text and bundled.is_file():
        return _from_json(json.loads(bundled.read_text(encoding="utf-8")), text, f"spectraclip:{text}")
    path = Path(text).expanduser()
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{path}: not valid JSON ({exc})") from exc
        return _from_json(data, path.stem, str(path))
    raise TemplateError(
        f"unknown template set {text!r}: not one of {', '.join(available_template_sets())} and no such file"
    )
