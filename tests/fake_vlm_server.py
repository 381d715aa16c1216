"""A local OpenAI-compatible chat-completions server with scripted replies, for captioning tests and demos.

Start in-process with `start_server(script=..., delay=...)` (127.0.0.1, a free port) or from a shell:
`python tests/fake_vlm_server.py --port 8765 [--delay 0.2] [--script script.json]`.

Requests are keyed by the `X-Spectraclip-Item` header the caption backend sends (else a hash of the image).
`script` maps an item id (or `*` for every item) to the actions its successive requests get; when the list
runs out the item gets `default` (normally `ok`). Actions:
`ok` (a valid reply built from the image's mean colour and the allowed place names), `malformed` (ignores the
format), `badjson` (HTTP 200 with a body that is not JSON), `invented` (valid format, invented place name),
`429` (with `Retry-After: 0`), any other status code (`500`, `503`, `401`, ...),
`drop` (closes the connection without answering),
`slow:<seconds>` (sleeps, then `ok`). `GET /_stats` returns request counts per item; `POST /_script` replaces
the script (JSON `{"script": {...}, "default": "ok", "delay": 0}`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeState:
    """The script, global delay and request counters, shared by the handler threads."""

    def __init__(self, script: dict[str, list[str]] | None = None, default: str = "ok", delay: float = 0.0):
        self.lock = threading.Lock()
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.default = default
        self.delay = delay
        self.requests: dict[str, int] = {}
        self.actions: list[tuple[str, str]] = []

    def next_action(self, item: str) -> str:
        with self.lock:
            self.requests[item] = self.requests.get(item, 0) + 1
            queue = self.script.get(item) or self.script.get("*")
            action = queue.pop(0) if queue else self.default
            self.actions.append((item, action))
            return action


def _describe(body: dict[str, Any]) -> tuple[str, list[str]]:
    """A colour word from the image's mean RGB and the place names the prompt allows."""
    text, url = "", ""
    for msg in body.get("messages", []):
        content = msg.get("content")
        if isinstance(content, str):
            text += content
        else:
            for part in content or []:
                if part.get("type") == "text":
                    text += part.get("text", "")
                elif part.get("type") == "image_url":
                    url = part["image_url"]["url"]
    colour = "grey"
    if url.startswith("data:image"):
        import numpy as np
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), float)
        r, g, b = img.reshape(-1, 3).mean(axis=0)
        bright = img.mean()
        if bright > 170:
            colour = "bright white"
        elif bright < 40:
            colour = "very dark"
        elif b > r and b > g:
            colour = "bluish"
        elif g >= r and g >= b:
            colour = "greenish"
        else:
            colour = "brownish"
    m = re.search(r"Place names you may use: (.*)\.", text)
    names = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    return colour, names


def ok_reply(body: dict[str, Any]) -> str:
    """A reply in the prompt's Q/A/CAPTION format."""
    colour, names = _describe(body)
    place = f" near {names[0]}" if names else ""
    return (
        "Q1: What is the main land cover?\n"
        f"A1: The scene looks {colour} overall.\n"
        "Q2: Is there water or snow?\n"
        f"A2: The {colour} tones suggest the surface type.\n"
        "Q3: Are there built-up areas?\n"
        "A3: No clear built-up areas are visible.\n"
        f"CAPTION: A {colour} satellite scene{place} showing natural surfaces with no clear built-up areas "
        "or roads."
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeState

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/").endswith("_stats"):
            with self.state.lock:
                data = {"requests": dict(self.state.requests), "total": sum(self.state.requests.values()),
                        "actions": list(self.state.actions)}
            self._send(200, json.dumps(data).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/").endswith("_script"):
            cfg = json.loads(raw or b"{}")
            with self.state.lock:
                self.state.script = {k: list(v) for k, v in cfg.get("script", {}).items()}
                self.state.default = cfg.get("default", "ok")
                self.state.delay = float(cfg.get("delay", 0.0))
            self._send(200, b"{}")
            return
        if not self.path.rstrip("/").endswith("chat/completions"):
            self._send(404, b'{"error": "not found"}')
            return
        body = json.loads(raw)
        item = self.headers.get("X-Spectraclip-Item") or hashlib.sha1(raw).hexdigest()[:12]
        action = self.state.next_action(item)
        if self.state.delay:
            time.sleep(self.state.delay)
        if action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if action == "429":
            self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0"})
            return
        if action.isdigit():  # any other status code: 500, 503, 401, ...
            self._send(int(action), b'{"error": {"message": "scripted error"}}')
            return
        if action == "badjson":
            self._send(200, b"<html>not json</html>", ctype="text/html")
            return
        if action.startswith("slow:"):
            time.sleep(float(action.split(":", 1)[1]))
            action = "ok"
        if action == "malformed":
            text = "I think this is a nice picture of some land."
        elif action == "invented":
            text = ok_reply(body).replace("CAPTION: A", "CAPTION: Near Lake Springfield, a")
        else:
            text = ok_reply(body)
        reply = {"id": f"chatcmpl-{item}", "object": "chat.completion", "model": body.get("model", "fake"),
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                              "finish_reason": "stop"}]}
        self._send(200, json.dumps(reply).encode())


class FakeServer:
    """A running fake server: `url` (OpenAI base URL, ending in /v1), `state`, `stats()`, `close()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **state_kwargs: Any) -> None:
        self.state = FakeState(**state_kwargs)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stats(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_server(**kwargs: Any) -> FakeServer:
    """Start a fake server on 127.0.0.1 and a free port, in a daemon thread."""
    return FakeServer(**kwargs).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait before every reply")
    ap.add_argument("--script", help="JSON file: {item id or '*': [actions...]}")
    ap.add_argument("--default", default="ok", help="action once an item's script is used up")
    args = ap.parse_args()
    script = json.load(open(args.script)) if args.script else None
    server = FakeServer(args.host, args.port, script=script, default=args.default, delay=args.delay)
    print(f"fake OpenAI-compatible server on {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
