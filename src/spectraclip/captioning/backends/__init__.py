"""Caption backends: `openai` (any OpenAI-compatible chat-completions server with image input) and
`template` (offline, deterministic captions from map tags and spectral statistics).

A backend turns one `CaptionInput` into a `CaptionOutcome`; it never raises for a bad item, it reports it
as failed with the reason. `make_backend(name, **options)` builds one by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from spectraclip.errors import SpectraclipError
from spectraclip.io.sample import Sample


@dataclass
class CaptionInput:
    """One image to caption: its id, the read sample and its map tag rows (sorted by size)."""

    id: str
    sample: Sample
    tags: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CaptionOutcome:
    """What a backend produced for one image: status `ok` or `failed` (with `error`), captions, the
    question–answer pairs, how many requests it took and anything else worth keeping (`extra`)."""

    status: str
    captions: list[str] = field(default_factory=list)
    qa: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    error: str | None = None
    tags_used: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class CaptionBackend(Protocol):
    """The interface the captioning job drives (asynchronously, up to `concurrency` images at once)."""

    name: str
    model: str
    prompt_version: str
    concurrency: int

    async def caption(self, item: CaptionInput) -> CaptionOutcome: ...

    async def aclose(self) -> None: ...


BACKENDS = ("template", "openai")


class CaptionBackendError(SpectraclipError, ValueError):
    """An unknown caption backend or bad backend options; the message names them."""


def make_backend(name: str, **options: Any) -> CaptionBackend:
    """A backend by name (`template` or `openai`) with its options (see each backend's config)."""
    if name == "template":
        from spectraclip.captioning.backends.template import TemplateBackend

        return TemplateBackend(**options)
    if name == "openai":
        from spectraclip.captioning.backends.openai import OpenAIBackend, OpenAIConfig

        return OpenAIBackend(OpenAIConfig(**options))
    raise CaptionBackendError(f"unknown caption backend {name!r}; known: {', '.join(BACKENDS)}")
