"""Captions from any OpenAI-compatible chat-completions server with image input (vLLM, llama.cpp server,
Ollama, hosted APIs), with httpx; retries by tenacity.

Each image is sent as a natural-colour PNG data URL with the versioned prompt. Requests that fail with
408/409/425/429, 5xx, a timeout or a dropped connection are retried up to `max_retries` times with
exponential backoff (honouring `Retry-After`, capped at `backoff_max`); other HTTP errors fail the image
at once with the server's URL and the status. A reply that does not validate (`prompts.parse_reply`) is
asked again up to `max_invalid` more times, then the image is recorded as failed with the reason. A shared
limiter keeps request starts (retries included) under `rate_limit` per second.

Why tenacity and not the `openai` SDK's own `max_retries`: the SDK's backoff is fixed (0.5 s doubling to
8 s, not an option), its retries happen inside one call, where the shared rate limiter cannot space them,
and it does not say how many requests an image took (recorded as `attempts` in the manifest).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type, stop_after_attempt

from spectraclip.captioning.backends import CaptionInput, CaptionOutcome
from spectraclip.captioning.composite import data_url, natural_colour
from spectraclip.captioning.prompts import (
    DEFAULT_PROMPT,
    InvalidReply,
    build_context,
    build_messages,
    get_prompt,
    parse_reply,
)
from spectraclip.errors import SpectraclipError

RETRY_STATUS = {408, 409, 425, 429}


class RequestFailed(SpectraclipError):
    """A request that cannot succeed (non-retryable HTTP error, or retries exhausted); names server and status."""


class _Retryable(SpectraclipError):
    """A failed request worth another try (429/5xx/timeout/dropped connection), with the server's Retry-After."""

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class OpenAIConfig:
    """Options of the OpenAI-compatible backend (each maps onto a `spectraclip caption` option)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout: float = 120.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    max_invalid: int = 2
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    rate_limit: float | None = None
    temperature: float = 0.2
    max_tokens: int = 600
    prompt_version: str = DEFAULT_PROMPT
    stretch: str = "fixed"
    image_size: int = 224
    extra_body: dict[str, Any] = field(default_factory=dict)


class RateLimiter:
    """Spaces request starts at least `1/rate` seconds apart across all concurrent tasks."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock: asyncio.Lock | None = None

    async def wait(self) -> None:
        if not self.interval:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


class OpenAIBackend:
    """The `openai` caption backend; `caption` is safe to run concurrently (bounded by `concurrency`)."""

    name = "openai"

    def __init__(self, config: OpenAIConfig | None = None) -> None:
        self.config = config or OpenAIConfig()
        self.model = self.config.model
        self.prompt_version = self.config.prompt_version
        self.concurrency = max(1, int(self.config.concurrency))
        self.template = get_prompt(self.config.prompt_version)
        self.limiter = RateLimiter(self.config.rate_limit)
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _get_client(self) -> Any:
        import httpx

        if self._client is None:
            c = self.config
            self._client = httpx.AsyncClient(
                base_url=c.base_url.rstrip("/") + "/",
                headers=self._headers(),
                timeout=httpx.Timeout(c.timeout, connect=c.connect_timeout),
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            )
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _backoff(self, retry: int, retry_after: str | None = None) -> float:
        c = self.config
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), c.backoff_max)
            except ValueError:
                pass
        return min(c.backoff_base * (2 ** retry) * (1 + 0.25 * random.random()), c.backoff_max)

    def _wait(self, state: RetryCallState) -> float:
        """tenacity's wait before retry `state.attempt_number`: the server's Retry-After, else the backoff."""
        exc = state.outcome.exception() if state.outcome is not None else None
        return self._backoff(state.attempt_number - 1, getattr(exc, "retry_after", None))

    async def _post(self, client: Any, payload: dict[str, Any], item_id: str, counter: list[int]) -> str:
        """One POST: the reply text, `_Retryable` for a failure worth retrying, RequestFailed otherwise."""
        import httpx

        await self.limiter.wait()
        counter[0] += 1
        url = f"{client.base_url}chat/completions"
        try:
            resp = await client.post("chat/completions", json=payload, headers={"X-Spectraclip-Item": item_id})
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout from {url} ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error to {url} ({type(exc).__name__}: {exc})") from exc
        if resp.status_code == 200:
            return _reply_text(resp)
        body = resp.text[:200].replace("\n", " ")
        message = f"HTTP {resp.status_code}: {body} (from {url})"
        if resp.status_code >= 500 or resp.status_code in RETRY_STATUS:
            raise _Retryable(message, resp.headers.get("retry-after"))
        raise RequestFailed(message)

    async def _request(self, payload: dict[str, Any], item_id: str, counter: list[int]) -> str:
        """POST one chat completion with bounded retries; the reply text, or RequestFailed/InvalidReply."""
        client = self._get_client()
        retrying = AsyncRetrying(stop=stop_after_attempt(self.config.max_retries + 1), wait=self._wait,
                                 retry=retry_if_exception_type(_Retryable), sleep=asyncio.sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._post(client, payload, item_id, counter)
        except RetryError as exc:
            raise RequestFailed(f"gave up after {exc.last_attempt.attempt_number} requests; last: "
                                f"{exc.last_attempt.exception()}") from exc
        raise AssertionError("unreachable: tenacity either returned, raised or gave up")  # pragma: no cover

    async def caption(self, item: CaptionInput) -> CaptionOutcome:
        """Caption one image: composite + prompt, request with retries, validate, re-ask on invalid replies."""
        c = self.config
        try:
            image = natural_colour(item.sample, size=c.image_size, stretch=c.stretch)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a bad item is reported, not fatal
            return CaptionOutcome("failed", error=f"composite: {exc}")
        extent = _extent_m(item)
        context = build_context(item.tags, self.template, extent)
        payload = {"model": c.model, "messages": build_messages(context, data_url(image)),
                   "temperature": c.temperature, "max_tokens": c.max_tokens, **c.extra_body}
        counter = [0]
        self._get_client()
        assert self._sem is not None
        reasons: list[str] = []
        async with self._sem:
            for _ in range(c.max_invalid + 1):
                try:
                    text = await self._request(payload, item.id, counter)
                    parsed = parse_reply(text, self.template, context.allowed_names)
                except RequestFailed as exc:
                    return CaptionOutcome("failed", attempts=counter[0], error=str(exc),
                                          tags_used=context.tags_used)
                except InvalidReply as exc:
                    reasons.append(exc.reason)
                    continue
                return CaptionOutcome("ok", [parsed.caption], parsed.qa, counter[0],
                                      tags_used=context.tags_used,
                                      extra={"invalid_replies": reasons} if reasons else {})
        return CaptionOutcome("failed", attempts=counter[0], tags_used=context.tags_used,
                              error=f"invalid reply {len(reasons)} time(s); last: {reasons[-1]}")


def _reply_text(resp: Any) -> str:
    """The assistant text of a chat-completions response; a malformed body is an invalid reply."""
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidReply(f"malformed response body ({type(exc).__name__}): {resp.text[:120]!r}") from exc
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise InvalidReply("response message has no text content")
    return content


def _extent_m(item: CaptionInput) -> float | None:
    """Image width in metres from its transform (projected CRSs only)."""
    s = item.sample
    if not s.transform or not s.crs:
        return None
    try:
        from pyproj import CRS

        if not CRS.from_user_input(s.crs).is_projected:
            return None
    except Exception:  # noqa: BLE001
        return None
    return abs(float(s.transform[0])) * s.pixels.shape[-1]
