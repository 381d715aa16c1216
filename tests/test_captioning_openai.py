"""The openai backend against a local scripted OpenAI-compatible server: retries, backoff, validation."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from fake_vlm_server import start_server

from spectraclip.bands import BandSet
from spectraclip.captioning.backends import CaptionInput
from spectraclip.captioning.backends.openai import OpenAIBackend, OpenAIConfig
from spectraclip.io.sample import Sample

TAGS = [{"overture_type": "place", "class": "village", "name": "Testville", "geometry_kind": "point"}]


@pytest.fixture()
def server():
    srv = start_server()
    yield srv
    srv.close()


def _item(i: str = "a") -> CaptionInput:
    px = np.full((3, 32, 32), 1200, np.float32)
    return CaptionInput(i, Sample(px, BandSet.parse("rgb"), i), list(TAGS))


def _backend(server, **kw) -> OpenAIBackend:
    opts = dict(base_url=server.url, model="fake", backoff_base=0.01, backoff_max=0.05, timeout=5.0,
                max_retries=4, max_invalid=2)
    opts.update(kw)
    return OpenAIBackend(OpenAIConfig(**opts))


def _run(backend, *items):
    async def go():
        try:
            return await asyncio.gather(*(backend.caption(i) for i in items))
        finally:
            await backend.aclose()
    return asyncio.run(go())


def test_retries_on_500_429_and_dropped_connections(server):
    server.state.script = {"a": ["500", "429", "drop", "503", "ok"]}
    (out,) = _run(_backend(server), _item())
    assert out.status == "ok" and out.attempts == 5 and server.stats() == {"a": 5}
    assert "Testville" in out.captions[0] and len(out.qa) == 3


def test_retries_on_timeouts(server):
    server.state.script = {"a": ["slow:1.5", "ok"]}
    (out,) = _run(_backend(server, timeout=0.3), _item())
    assert out.status == "ok" and out.attempts == 2


def test_gives_up_after_max_retries(server):
    server.state.script = {"a": ["500"] * 10}
    (out,) = _run(_backend(server, max_retries=2), _item())
    assert out.status == "failed" and out.attempts == 3 and "gave up after 3 requests" in out.error
    assert "HTTP 500" in out.error and server.url.rstrip("/") in out.error


def test_non_retryable_http_error_fails_at_once_naming_server_and_status(server):
    server.state.script = {"a": ["401"]}
    (out,) = _run(_backend(server), _item())
    assert out.status == "failed" and out.attempts == 1 and "HTTP 401" in out.error
    assert f"{server.url.rstrip('/')}/chat/completions" in out.error


def test_retry_after_from_the_server_replaces_the_backoff(server):
    server.state.script = {"a": ["429", "ok"]}  # the fake server's 429 says Retry-After: 0
    t0 = time.monotonic()
    (out,) = _run(_backend(server, backoff_base=30.0, backoff_max=60.0), _item())
    assert out.status == "ok" and out.attempts == 2 and time.monotonic() - t0 < 5.0  # not a 30 s backoff


def test_malformed_reply_retried_then_recorded_failed_with_reason(server):
    server.state.script = {"a": ["malformed", "badjson", "invented", "ok"]}
    (out,) = _run(_backend(server, max_invalid=2), _item())
    assert out.status == "failed" and out.attempts == 3
    assert "invalid reply 3 time(s)" in out.error and "Lake Springfield" in out.error
    assert server.stats() == {"a": 3}


def test_invalid_then_valid_reply_succeeds_and_keeps_the_reasons(server):
    server.state.script = {"a": ["malformed", "ok"]}
    (out,) = _run(_backend(server), _item())
    assert out.status == "ok" and out.attempts == 2 and "0 complete" in out.extra["invalid_replies"][0]


def test_concurrency_and_rate_limit(server):
    server.state.delay = 0.3
    t0 = time.monotonic()
    outs = _run(_backend(server, concurrency=4), *[_item(f"c{i}") for i in range(4)])
    assert all(o.status == "ok" for o in outs) and time.monotonic() - t0 < 1.0  # not 4 x 0.3 s in a row
    server.state.delay = 0.0
    t0 = time.monotonic()
    _run(_backend(server, concurrency=4, rate_limit=10.0), *[_item(f"r{i}") for i in range(4)])
    assert time.monotonic() - t0 >= 0.3  # 4 request starts spaced 0.1 s apart


def test_exponential_backoff_with_cap_and_retry_after():
    b = OpenAIBackend(OpenAIConfig(backoff_base=0.5, backoff_max=3.0))
    assert 0.5 <= b._backoff(0) <= 0.625 and 2.0 <= b._backoff(2) <= 2.5 and b._backoff(6) == 3.0
    assert b._backoff(3, retry_after="1") == 1.0 and b._backoff(0, retry_after="999") == 3.0


def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekrit")
    assert OpenAIBackend(OpenAIConfig(api_key_env="MY_KEY"))._headers()["Authorization"] == "Bearer sekrit"
    monkeypatch.delenv("MY_KEY")
    assert "Authorization" not in OpenAIBackend(OpenAIConfig(api_key_env="MY_KEY"))._headers()
