"""Versioned captioning prompts and the parser/validator of model replies.

The prompt gives the model the natural-colour image, the map tags (largest first, with flags) and the
only place names it may use, and asks for three question–answer pairs (chain of thought) before the
final caption. `parse_reply` turns a reply into `ParsedReply(qa, caption)` or raises `InvalidReply`
naming why: pairs missing, no caption, caption too short/long, or a place name that was not given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spectraclip.errors import SpectraclipError

DEFAULT_PROMPT = "qa3-v1"

_SYSTEM_V1 = (
    "You are a remote-sensing analyst who writes short, factual captions for Sentinel-2 satellite images. "
    "You describe only what can be seen at 10 m resolution and what the supplied map tags state."
)
_USER_V1 = """This is a natural-colour (red, green, blue) composite of a Sentinel-2 satellite image covering \
about {extent} (north is up).

Map features inside the image, from Overture Maps (OpenStreetMap and other sources), largest first:
{tags}

Place names you may use: {names}.

Rules:
- Describe only what is visible in the image or listed above; do not guess the country, region, season or date.
- Do not use any place name except those listed above. If none is listed, use no place names at all.
- Map features may be too small to see or out of date; mention them only when they agree with the image.
- No speculation about things you cannot see (people, activities, weather beyond clouds and snow).

First ask and answer three short questions that matter for describing this image (for example: the main \
land cover, water or snow, and built-up areas or infrastructure). Then write the final caption: \
{min_words} to {max_words} words, one to three sentences, in plain English.

Reply in exactly this format and nothing else:
Q1: <question>
A1: <answer>
Q2: <question>
A2: <answer>
Q3: <question>
A3: <answer>
CAPTION: <caption>"""

# Capitalised words that are not place names (abbreviations and terms a caption may legitimately use).
_NOT_PLACES = {
    "i", "sentinel", "sentinel-2", "rgb", "nir", "swir", "ndvi", "ndwi", "ndsi", "esa", "copernicus", "earth",
    "overture", "openstreetmap", "osm", "maps", "map", "km", "m", "caption", "image", "q1", "q2", "q3",
    "a1", "a2", "a3", "n", "s", "e", "w", "ne", "nw", "se", "sw",
}


class InvalidReply(SpectraclipError, ValueError):
    """A model reply that does not follow the prompt; `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt: system and user texts (user has `{extent} {tags} {names} {min_words} {max_words}`)
    plus the validation bounds applied to replies."""

    version: str
    system: str
    user: str
    n_pairs: int = 3
    min_words: int = 8
    max_words: int = 80
    max_chars: int = 700
    max_tags: int = 20


PROMPTS: dict[str, PromptTemplate] = {"qa3-v1": PromptTemplate("qa3-v1", _SYSTEM_V1, _USER_V1)}


def get_prompt(version: str = DEFAULT_PROMPT) -> PromptTemplate:
    """The prompt template with this version string (error lists the known versions)."""
    if version not in PROMPTS:
        raise KeyError(f"unknown prompt version {version!r}; known: {', '.join(PROMPTS)}")
    return PROMPTS[version]


@dataclass
class ParsedReply:
    """A validated reply: the question–answer pairs and the final caption."""

    qa: list[dict[str, str]]
    caption: str


@dataclass
class PromptContext:
    """The text given to the model for one image and the place names it is allowed to use."""

    system: str
    user: str
    allowed_names: list[str] = field(default_factory=list)
    tags_used: list[dict[str, Any]] = field(default_factory=list)


def describe_tag(tag: dict[str, Any]) -> str:
    """One prompt line for a tag row: type, class/subtype, flags, size, position and name."""
    kind = str(tag.get("overture_type", "feature")).replace("_", " ")
    what = tag.get("class") or tag.get("subtype") or kind
    sub = tag.get("subtype")
    label = f"{kind}: {str(what).replace('_', ' ')}"
    if sub and sub != what:
        label += f" ({str(sub).replace('_', ' ')})"
    flags = [f.removeprefix("is_").removeprefix("has_").replace("_", " ") for f in tag.get("flags") or []]
    if flags:
        label += ", " + ", ".join(flags)
    if tag.get("geometry_kind") == "polygon":
        frac = float(tag.get("cover_fraction") or 0.0)
        label += f", {frac:.0%} of the image" if frac >= 0.01 else ", small"
    elif tag.get("geometry_kind") == "line":
        length = float(tag.get("length_m") or 0.0)
        label += f", {length / 1000:.1f} km long" if length >= 1000 else f", {length:.0f} m long"
    if tag.get("position"):
        label += f", {tag['position']}"
    if tag.get("name"):
        label += f', named "{tag["name"]}"'
    return "- " + label


def build_context(tags: Sequence[dict[str, Any]], template: PromptTemplate, extent_m: float | None = None
                  ) -> PromptContext:
    """The prompt for one image from its tag rows (already sorted by size); only the first `max_tags` are
    shown, and the allowed place names are exactly the names shown."""
    used = list(tags)[: template.max_tags]
    names = sorted({str(t["name"]) for t in used if t.get("name")})
    extent = f"{extent_m / 1000:.1f} km × {extent_m / 1000:.1f} km" if extent_m else "a few kilometres"
    user = template.user.format(
        extent=extent,
        tags="\n".join(describe_tag(t) for t in used) or "- none known",
        names=", ".join(f'"{n}"' for n in names) if names else "none",
        min_words=template.min_words,
        max_words=template.max_words,
    )
    return PromptContext(template.system, user, names, used)


def build_messages(context: PromptContext, image_url: str) -> list[dict[str, Any]]:
    """OpenAI chat-completions messages: system text, then user text plus the image as a data URL."""
    return [
        {"role": "system", "content": context.system},
        {"role": "user", "content": [
            {"type": "text", "text": context.user},
            {"type": "image_url", "image_url": {"url": image_url}},
        ]},
    ]


_LINE = re.compile(r"^\s*[*#>\-\s]*(Q|A|CAPTION)\s*([0-9]*)\s*[*]*\s*[:.)]\s*[*]*\s*(.*)$", re.IGNORECASE)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text.replace("**", "")).strip()
    return text.strip().strip('"“”').strip()


def _from_json(text: str) -> tuple[list[dict[str, str]], str] | None:
    body = text.strip()
    if body.startswith("```"):
        body = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", body)
    if not body.startswith("{"):
        return None
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    qa = [{"q": _clean(str(p.get("q") or p.get("question") or "")),
           "a": _clean(str(p.get("a") or p.get("answer") or ""))}
          for p in obj.get("qa") or obj.get("questions") or [] if isinstance(p, dict)]
    return qa, _clean(str(obj.get("caption") or ""))


def _split(text: str) -> tuple[list[dict[str, str]], str]:
    """Q/A pairs and caption from the line format (continuation lines are joined to the field above)."""
    parsed = _from_json(text)
    if parsed is not None:
        return parsed
    fields: list[list[str]] = []  # [kind, number, text]
    for line in text.replace("\r", "").split("\n"):
        m = _LINE.match(line)
        if m:
            fields.append([m.group(1).upper(), m.group(2), m.group(3)])
        elif fields and line.strip():
            fields[-1][2] += " " + line.strip()
    qa: list[dict[str, str]] = []
    caption = ""
    pending_q: str | None = None
    for kind, _num, body in fields:
        if kind == "Q":
            pending_q = _clean(body)
        elif kind == "A" and pending_q is not None:
            qa.append({"q": pending_q, "a": _clean(body)})
            pending_q = None
        elif kind == "CAPTION":
            caption = _clean(body)
    return qa, caption


_CAPS = re.compile(r"[A-Z][\w'’\-]*(?:\s+[A-Z0-9][\w'’\-]*)*")


def invented_names(text: str, allowed: Iterable[str]) -> list[str]:
    """Capitalised word runs in `text` (other than a sentence's first word) that are not part of an allowed
    place name or a known term: likely invented place names. A heuristic: a name that starts a sentence
    is not caught."""
    allowed_words = {w.lower() for name in allowed for w in re.findall(r"[\w'’\-]+", name)}
    found = []
    for m in _CAPS.finditer(text):
        words = m.group(0).split()
        before = text[: m.start()].rstrip()
        if not before or before[-1] in ".!?:;\n\"(":
            words = words[1:]  # capitalised by grammar
        bad = [w for w in words if w.lower().strip("'’-") not in allowed_words | _NOT_PLACES
               and not w[0].isdigit()]
        if bad:
            found.append(" ".join(words))
    return found


def parse_reply(text: str, template: PromptTemplate, allowed_names: Sequence[str] = ()) -> ParsedReply:
    """Parse and validate a model reply; raises `InvalidReply` with the reason when it breaks the prompt."""
    if not text or not text.strip():
        raise InvalidReply("empty reply")
    qa, caption = _split(text)
    qa = [p for p in qa if p["q"] and p["a"]]
    if len(qa) < template.n_pairs:
        raise InvalidReply(f"found {len(qa)} complete question-answer pair(s), need {template.n_pairs}")
    qa = qa[: template.n_pairs]
    if not caption:
        raise InvalidReply("no CAPTION line")
    n_words = len(caption.split())
    if n_words < template.min_words:
        raise InvalidReply(f"caption too short ({n_words} words < {template.min_words})")
    if n_words > template.max_words or len(caption) > template.max_chars:
        raise InvalidReply(f"caption too long ({n_words} words, {len(caption)} characters; "
                           f"limits {template.max_words} words, {template.max_chars} characters)")
    for where in [caption] + [p["a"] for p in qa]:
        bad = invented_names(where, allowed_names)
        if bad:
            raise InvalidReply(f"place name(s) not given in the prompt: {', '.join(repr(b) for b in bad)}")
    return ParsedReply(qa, caption)
