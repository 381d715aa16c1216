"""Prompt template sets for zero-shot evaluation, stored as JSON data files in `zeroshot/templates/`.

A template holds `{}` or `{c}` where the class wording goes. A set is named by its file stem or given
as a path to a user JSON file holding either a list of templates or an object
`{"name", "templates", "description", "source", "classnames"}`.

Named sets:
- sets named after a paper hold exactly that paper's prompts, verbatim and in order, and the class
  wording its code uses per dataset: `msclip` (the 50 templates of the Llama3-MS-CLIP release),
  `rs5m` (the 105 of RS5M / GeoRSCLIP), `clip` (OpenAI CLIP's 3 EuroSAT templates);
- sets of our own have names of our own: `spectraclip-8` (shipped as `msclip` before),
  `spectraclip-rs12` (shipped as `rs5m` before), `clip-satellite` (CLIP's EuroSAT templates without
  CLIP's class wording), `simple` (one template).
Every shipped JSON says in `source` where its templates (and class wording) come from.

Class wording: a set's optional `classnames` maps a dataset name (`dataset.name`: `eurosat-ms`,
`bigearthnet`, `meter-ml`, `resisc45`) to `{ClassName: "words used in the prompt"}`. Choosing the set
chooses the wording: `TemplateSet.prompt_names(dataset)` returns the set's wording when it covers all
of the dataset's classes, else the dataset's own (`dataset.class_prompt_names()`). To compare with a
paper, pick its set; to use other words, give a JSON file with your own `classnames`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spectraclip.errors import SpectraclipError

_DATA_DIR = Path(__file__).with_name("templates")


class TemplateError(SpectraclipError, ValueError):
    """A template set that cannot be found or is malformed; the message names the set or file."""


class _LabelledClasses(Protocol):
    """What `TemplateSet.prompt_names` needs of a dataset (a `spectraclip.data.base.LabelledDataset`)."""

    name: str
    classes: list[str]

    def class_prompt_names(self) -> list[str]: ...


@dataclass(frozen=True)
class TemplateSet:
    """A named list of prompt templates (each with one `{}` or `{c}` placeholder) and optional class wording.

    `source` says where the templates come from (paper code, or ours); `path` where this copy was loaded;
    `classnames` maps dataset name -> {class name: prompt wording}.
    """

    name: str
    templates: list[str]
    description: str = ""
    source: str = ""
    path: str = ""
    classnames: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.templates:
            raise TemplateError(f"template set {self.name!r} has no templates")
        for t in self.templates:
            if not isinstance(t, str) or ("{}" not in t and "{c}" not in t):
                raise TemplateError(
                    f"template {t!r} in set {self.name!r} has no '{{}}' or '{{c}}' placeholder for the class"
                )
        for ds, mapping in self.classnames.items():
            if not isinstance(mapping, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in mapping.items()
            ):
                raise TemplateError(f"template set {self.name!r}: classnames[{ds!r}] must map class names to "
                                    "non-empty strings")

    def fill(self, classname: str) -> list[str]:
        """All prompts for one class wording."""
        return [fill_template(t, classname) for t in self.templates]

    def sha256(self) -> str:
        """Hex digest of the templates joined by newlines: pins a set's exact wording and order."""
        return hashlib.sha256("\n".join(self.templates).encode("utf-8")).hexdigest()

    def class_wording(self, dataset_name: str) -> dict[str, str]:
        """This set's {class name: prompt wording} for a dataset name ({} when the set has none for it)."""
        return dict(self.classnames.get(dataset_name, {}))

    def prompt_names(self, dataset: _LabelledClasses) -> list[str]:
        """The words put into the templates for each of `dataset.classes`, in order.

        The set's wording for `dataset.name` when it names every class (a paper's wording is all or
        nothing), else the dataset's own `class_prompt_names()`.
        """
        wording = self.classnames.get(dataset.name, {})
        if wording and all(c in wording for c in dataset.classes):
            return [wording[c] for c in dataset.classes]
        return list(dataset.class_prompt_names())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready provenance (for reports): name, templates, description, source, path, digest, wording."""
        return {"name": self.name, "templates": list(self.templates), "description": self.description,
                "source": self.source, "path": self.path, "sha256": self.sha256(),
                "classnames": {k: dict(v) for k, v in self.classnames.items()}}


def fill_template(template: str, classname: str) -> str:
    """Put `classname` where the template's `{}` / `{c}` is (plain replace, so other braces are kept)."""
    return template.replace("{c}", classname).replace("{}", classname)


def available_template_sets() -> list[str]:
    """Names of the template sets shipped with the package."""
    return sorted(p.stem for p in _DATA_DIR.glob("*.json"))


def _from_json(data: object, default_name: str, where: str) -> TemplateSet:
    if isinstance(data, list):
        return TemplateSet(default_name, [str(t) for t in data], source=where, path=where)
    if isinstance(data, dict) and isinstance(data.get("templates"), list):
        classnames = data.get("classnames", {})
        if not isinstance(classnames, dict):
            raise TemplateError(f"{where}: 'classnames' must be an object {{dataset: {{class: wording}}}}")
        return TemplateSet(
            str(data.get("name") or default_name),
            [str(t) for t in data["templates"]],
            description=str(data.get("description", "")),
            source=str(data.get("source") or where),
            path=where,
            classnames={str(k): dict(v) if isinstance(v, dict) else v for k, v in classnames.items()},
        )
    raise TemplateError(f"{where}: expected a JSON list of templates or an object with a 'templates' list")


def load_templates(spec: str | Path | TemplateSet | Sequence[str] | Mapping[str, Any]) -> TemplateSet:
    """A shipped set by name, a user JSON file (list of templates or an object), a list of templates, or an
    object `{"name", "templates", "classnames"}` given inline."""
    if isinstance(spec, TemplateSet):
        return spec
    if isinstance(spec, Mapping):  # a whole set inline (a bundle's declared `zeroshot.templates`)
        return _from_json(dict(spec), str(spec.get("name") or "inline"), "an inline template set")
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return TemplateSet("custom", [str(t) for t in spec], source="given templates")
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
