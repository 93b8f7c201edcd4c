"""Gateway test helpers: a real uvicorn server on 127.0.0.1 (a thread in this process) over a SQLite store, a scripted
provider and the instant voice, two tenants with keys, and a controllable clock for expiry."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatarium_lab.config import Config
from avatarium_lab.conversation import Store
from avatarium_lab.gateway import create_app
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.testing.fake_vendors import FakeServer
from avatarium_lab.testing.instant import InstantVoice
from avatarium_lab.testing.scripted import ScriptedProvider

SCRIPT = "Hello there! The ocean is deep and wide. Waves are made by the wind."


class Clock:
    """Wall-clock seconds that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Running:
    base: str            # http://127.0.0.1:PORT
    ws_base: str         # ws://127.0.0.1:PORT
    store: Store
    clock: Clock
    provider: ScriptedProvider
    keys: dict[str, str]  # "a", "b", "a_read" (read only) -> secret
    tenants: dict[str, str]  # "a"/"b" -> tenant id
    app: Any = None
    server: Any = None
    logs: list[str] = field(default_factory=list)

    def auth(self, who: str = "a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def http(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.base, timeout=30)

    def create_conversation(self, who: str = "a") -> str:
        with self.http() as c:
            r = c.post("/v1/conversations", json={}, headers=self.auth(who))
            assert r.status_code == 201, r.text
            return r.json()["id"]

    def connect(self, conversation_id: str, who: str | None = "a", **kwargs: Any) -> Any:
        from websockets.sync.client import connect

        headers = self.auth(who) if who else None
        return connect(f"{self.ws_base}/v1/conversations/{conversation_id}/ws", additional_headers=headers,
                       open_timeout=10, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_uvicorn(server: FakeServer) -> None:
    server.stop()


def make_gateway(tmp_path: Path, *, limits: dict[str, Any] | None = None, chunk_delay: float = 0.0,
                 script: str = SCRIPT, idle_timeout: float = 1800.0, retention: str = "keep",
                 rate_clock: Callable[[], float] = time.monotonic, ssl: dict[str, str] | None = None,
                 db_url: str | None = None) -> Running:
    clock = Clock()
    store = Store(db_url or f"sqlite:///{tmp_path / 'gateway.db'}", clock=clock, idle_timeout=idle_timeout,
                  retention=retention)  # type: ignore[arg-type]
    tenants, keys = {}, {}
    run_id = uuid.uuid4().hex[:8]  # a shared PostgreSQL keeps earlier runs' tenants
    for who in ("a", "b"):
        tenant = store.create_tenant(f"tenant-{who}-{run_id}")
        tenants[who] = tenant.id
        keys[who] = store.create_key(tenant.id).secret
    keys["a_read"] = store.create_key(tenants["a"], scopes=("read",)).secret
    overrides = {f"limits.{k}": v for k, v in (limits or {}).items()}
    config = Config.default().with_overrides(**overrides) if overrides else Config.default()
    provider = ScriptedProvider(script=script, chunk_delay=chunk_delay)
    pipeline = Pipeline(config, provider=provider, voice=InstantVoice())
    app = create_app(config, store, pipelines={config.name: pipeline}, clock=rate_clock, warm=False,
                     stt=_stt_for_tests())
    server = FakeServer(app, lifespan="on", ws_max_size=config.limits.max_frame_bytes + 4096,
                        **({"ssl_certfile": ssl["cert"], "ssl_keyfile": ssl["key"]} if ssl else {})).start()
    port = server.port
    scheme = "https" if ssl else "http"
    return Running(f"{scheme}://127.0.0.1:{port}", f"{'wss' if ssl else 'ws'}://127.0.0.1:{port}", store, clock,
                   provider, keys, tenants, app, server)


class _LazyPocketsphinx:
    """Pocketsphinx STT, built on first use: offline, bundled, quick to load (Whisper has its own tests)."""

    def __init__(self) -> None:
        self._stt: Any = None

    async def transcribe(self, samples: Any, sample_rate: int, **kwargs: Any) -> Any:
        if self._stt is None:
            from avatarium_lab.stt import make_stt

            self._stt = make_stt("pocketsphinx")
        return await self._stt.transcribe(samples, sample_rate, **kwargs)


def _stt_for_tests() -> Any:
    return _LazyPocketsphinx()


def frames_until(ws: Any, stop: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> list[dict[str, Any]]:
    """Receive JSON frames until ``stop(frame)`` is true (that frame included)."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; frames so far: {[f.get('type') for f in out]}")
        frame = json.loads(ws.recv(timeout=left))
        out.append(frame)
        if stop(frame):
            return out


def turn_frames(ws: Any, text: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    ws.send(json.dumps({"type": "message", "text": text}))
    return frames_until(ws, lambda f: f.get("type") == "latency_breakdown" or f.get("type") == "error", timeout)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
