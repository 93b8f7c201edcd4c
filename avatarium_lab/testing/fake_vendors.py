"""The shared machinery of the vendor fakes: behaviour, faults, the scripted reply, and a loopback server.

A vendor fake is an ASGI app (Starlette) built from a ``FakeBehaviour``; ``FakeServer`` runs any such app with
uvicorn on an ephemeral 127.0.0.1 port in a background thread. Per request the app:

1. checks the key (401 with the vendor's real error body when it is not ``behaviour.api_key``);
2. records the request (``behaviour.requests``: path, JSON body, headers with the key removed);
3. pops the next ``Fault`` from ``behaviour.faults`` (none when the queue is empty) and applies it;
4. streams ``behaviour.reply_for(request)``: the script, or -- when the request asks to continue a partial
   reply (see ``continuation_of``) -- the rest of the script after it, in chunks of ``words_per_chunk`` words,
   after ``ttft`` seconds and ``chunk_interval`` seconds apart.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_SCRIPT = (
    "The ocean covers most of our planet, and it is deeper than the tallest mountain is high. "
    "Waves are made by the wind, while the tides follow the pull of the moon. "
    "Whales sing to each other across hundreds of miles of dark water."
)

FaultKind = Literal[
    "status",              # an HTTP error status with the vendor's error body, before any stream
    "rate_limit",          # 429 with Retry-After (header and, where the vendor does so, body)
    "stall_before_first",  # accept the request, send headers, then nothing for `stall` seconds
    "stall_mid",           # stream `after_chunks` chunks, then nothing for `stall` seconds
    "truncate",            # stream `after_chunks` chunks, then drop the connection (no terminal event)
    "invalid_json",        # stream `after_chunks` chunks, then one `data:` line that is not JSON
    "no_terminal",         # stream every chunk but end cleanly without the final event ([DONE], message_stop, ...)
    "in_stream_error",     # stream `after_chunks` chunks, then the vendor's in-stream error event, if it has one
]


class InjectedTruncation(Exception):
    """Raised inside a fake's body generator so the server drops the connection mid-body ('truncate' fault)."""


class _QuietInjectedFaults(logging.Filter):
    """uvicorn logs a traceback for every deliberately truncated body; keep those out of test and notebook output."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, InjectedTruncation):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


@dataclass
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = 1.0
    after_chunks: int = 3
    stall: float = 30.0


@dataclass
class FakeBehaviour:
    """What a fake vendor does. Mutable on purpose: tests queue faults and read requests while it runs."""

    script: str = DEFAULT_SCRIPT
    api_key: str = "test-key-0123456789abcdef"
    ttft: float = 0.0
    chunk_interval: float = 0.0
    words_per_chunk: int = 1
    prompt_tokens: int = 42
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""

    def next_fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    def record(self, path: str, body: Any, headers: dict[str, str]) -> None:
        hidden = {"authorization", "x-api-key", "x-goog-api-key", "xi-api-key"}
        self.requests.append({
            "path": path,
            "body": body,
            "headers": {k: v for k, v in headers.items() if k.lower() not in hidden},
            "t": time.perf_counter(),
        })

    def reply_for(self, partial: str | None) -> list[str]:
        """The chunks to stream: the whole script, or the rest of it after ``partial`` when continuing."""
        text = self.script
        if partial:
            rest = continuation_of(self.script, partial)
            text = rest if rest is not None else self.script
        return script_chunks(text, self.words_per_chunk)

    def completion_tokens(self, chunks: list[str]) -> int:
        return max(1, len("".join(chunks).split()))


def script_chunks(text: str, words_per_chunk: int = 1) -> list[str]:
    """Split ``text`` into chunks of whole words, each keeping its leading space (as LLM tokens do)."""
    words = re.findall(r"\s*\S+", text)
    n = max(1, words_per_chunk)
    return ["".join(words[i:i + n]) for i in range(0, len(words), n)]


def continuation_of(script: str, partial: str) -> str | None:
    """What remains of ``script`` after ``partial`` (a prefix of it, compared with whitespace collapsed).

    Returns None when ``partial`` is not a prefix of the script. The remainder keeps its leading space, so
    ``partial + remainder`` reads as the script.
    """
    target = " ".join(partial.split())
    if not target:
        return script
    consumed = ""
    for i, ch in enumerate(script):
        consumed += ch
        norm = " ".join(consumed.split())
        if norm == target and (i + 1 == len(script) or not script[i + 1].isalnum() or not ch.isalnum()):
            return script[i + 1:]
        if len(norm) > len(target) + 1:
            break
    return None


class FakeServer:
    """Run an ASGI app on 127.0.0.1 (ephemeral port) in a background thread: ``with FakeServer(app) as s: s.url``.

    Also runs the project's own apps in tests (the gateway, the live page): ``lifespan="on"`` runs their startup,
    other keywords go to ``uvicorn.Config`` (``ssl_certfile``, ``ws_max_size``...).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", lifespan: str = "off", **uvicorn_options: Any) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("fake vendors only listen on loopback")
        self.app = app
        self.host = host
        self.lifespan = lifespan
        self.options = uvicorn_options
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.options.get("ssl_certfile") else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        import uvicorn

        error_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _QuietInjectedFaults) for f in error_log.filters):
            error_log.addFilter(_QuietInjectedFaults())

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted connections: without it Nagle holds each small SSE chunk until the client's
        # delayed ACK (~40 ms), which real streaming APIs do not do.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan=self.lifespan, access_log=False,
                                timeout_graceful_shutdown=1, **self.options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"fake-vendor-{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake vendor server did not start")
            time.sleep(0.01)
        return self

    def _run(self, sock: socket.socket) -> None:
        asyncio.run(self._server.serve(sockets=[sock]))

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port_url(host: str = "127.0.0.1") -> str:
    """A loopback URL where nothing listens (connection refused), for the 'refused' fault."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"http://{host}:{port}"
