"""Gateway benchmark (loopback only, bounded): overhead per turn, concurrent WebSocket conversations, and the time
from a user message to the first audio and visemes at the client on the embedded defaults.

    .venv/bin/python benchmarks/gateway.py                  # all three parts
    .venv/bin/python benchmarks/gateway.py --part overhead  # or: sockets, embedded
    .venv/bin/python benchmarks/gateway.py --sockets 250,500,1000,1500

1. **Overhead**: a zero-latency provider (scripted) and voice (instant) behind a real server process; one
   conversation, sequential turns; the server reports each turn's wall time minus the pipeline's own
   (``latency_breakdown.gateway_overhead_ms``). Goal p50 <= 3 ms.
2. **Sockets**: the same fake server; N conversations each open a WebSocket and send one message, all at once;
   the largest N in the ladder with zero errors is reported. Goal >= 1,000 on 2 cores.
3. **Embedded**: ``avatarium serve`` on the default configuration (SmolLM2 + espeak-ng); message -> first
   ``audio`` frame and first ``visemes`` frame at the client, p50/p95, at 1 and at 50 concurrent conversations.
   Goal p50 <= 150 ms.

Servers run in their own process (the client would otherwise share the GIL with them); every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# --- the fake server (run in a child process) ---------------------------------------------------------------------

def serve_fake(port: int, db: str, key_file: str) -> None:
    raise_fd_limit()
    import uvicorn

    from avatarium_lab.config import Config
    from avatarium_lab.conversation import Store
    from avatarium_lab.gateway import create_app
    from avatarium_lab.pipeline import Pipeline
    from avatarium_lab.testing.instant import InstantVoice
    from avatarium_lab.testing.scripted import ScriptedProvider

    config = Config.default().with_overrides(**{"limits.max_conversations": 100_000,
                                                "limits.messages_per_minute": 1_000_000})
    store = Store(db)
    tenant = store.create_tenant("bench")
    Path(key_file).write_text(store.create_key(tenant.id).secret)
    pipeline = Pipeline(config, provider=ScriptedProvider(script="Hello there! The ocean is deep."),
                        voice=InstantVoice())
    app = create_app(config, store, pipelines={config.name: pipeline}, warm=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096,
                ws_max_size=config.limits.max_frame_bytes + 1024)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cmd: list[str], port: int, key: str | None = None, key_file: Path | None = None) -> None:
        self.port, self.key, self.key_file = port, key, key_file
        self.log = tempfile.NamedTemporaryFile(prefix="gateway-bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited; log: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/ready", timeout=2).status_code == 200:
                    if self.key is None and self.key_file is not None:
                        self.key = self.key_file.read_text().strip()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_fake(tmp: Path) -> Server:
    port = free_port()
    key_file = tmp / "key.txt"
    server = Server([sys.executable, __file__, "--serve-fake", str(port), f"sqlite:///{tmp / 'fake.db'}",
                     str(key_file)], port, key_file=key_file)
    server.wait_ready()
    return server


# --- clients ------------------------------------------------------------------------------------------------------

async def create_conversations(base: str, key: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as c:
        sem = asyncio.Semaphore(20)

        async def one() -> str:
            async with sem:
                r = await c.post("/v1/conversations", json={})
                r.raise_for_status()
                return r.json()["id"]

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def one_turn(ws_url: str, key: str, text: str, step_timeout: float) -> dict[str, float | None]:
    """Open, say one thing, read to the end of the turn. Times are seconds from sending the message."""
    from websockets.asyncio.client import connect

    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=step_timeout,
                       max_size=None) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), step_timeout))
        if hello.get("type") != "hello":
            raise RuntimeError(f"no hello: {hello}")
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type": "message", "text": text}))
        first_audio = first_visemes = None
        overhead = None
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), step_timeout))
            kind = frame.get("type")
            if kind == "audio" and first_audio is None:
                first_audio = time.perf_counter() - t0
            elif kind == "visemes" and first_visemes is None:
                first_visemes = time.perf_counter() - t0
            elif kind == "error":
                raise RuntimeError(f"error frame: {frame}")
            elif kind == "latency_breakdown":
                overhead = frame.get("gateway_overhead_ms")
                break
        return {"first_audio": first_audio, "first_visemes": first_visemes, "overhead_ms": overhead,
                "total": time.perf_counter() - t0}


async def overhead(server: Server, turns: int) -> None:
    from websockets.asyncio.client import connect

    base = f"http://127.0.0.1:{server.port}"
    (conv,) = await create_conversations(base, server.key, 1)
    url = f"ws://127.0.0.1:{server.port}/v1/conversations/{conv}/ws"
    values: list[float] = []
    async with connect(url, additional_headers={"Authorization": f"Bearer {server.key}"}, max_size=None) as ws:
        json.loads(await ws.recv())
        for i in range(turns):
            await ws.send(json.dumps({"type": "message", "text": f"question {i}"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame["type"] == "latency_breakdown":
                    values.append(frame["gateway_overhead_ms"])
                    break
                if frame["type"] == "error":
                    raise SystemExit(f"error: {frame}")
    warm = values[10:] or values
    p50, p99 = pct(warm, 50), pct(warm, 99)
    print(f"overhead per turn ({len(warm)} turns after 10 warm-up, zero-latency provider and voice): "
          f"p50 {p50:.2f} ms, p90 {pct(warm, 90):.2f} ms, p99 {p99:.2f} ms, mean {statistics.fmean(warm):.2f} ms "
          f"-> goal p50 <= 3 ms: {'met' if p50 <= 3 else 'NOT met'} (ratio {p50 / 3:.2f})")


async def sockets(server: Server, ladder: list[int], step_timeout: float) -> None:
    base = f"http://127.0.0.1:{server.port}"
    best = 0
    for n in ladder:
        convs = await create_conversations(base, server.key, n)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_turn(f"ws://127.0.0.1:{server.port}/v1/conversations/{c}/ws",
                                                  server.key, "hello", step_timeout) for c in convs),
                                       return_exceptions=True)
        elapsed = time.perf_counter() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        ok = [r for r in results if not isinstance(r, BaseException)]
        totals = [r["total"] for r in ok]
        kinds = {}
        for e in errors:
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        print(f"{n:5d} concurrent conversations: {len(errors)} errors {kinds or ''}; {elapsed:.1f} s wall; "
              f"turn p50 {pct(totals, 50) * 1000:.0f} ms, p95 {pct(totals, 95) * 1000:.0f} ms")
        if errors:
            break
        best = n
    print(f"largest number of concurrent WebSocket conversations with 0 errors: {best} "
          f"-> goal >= 1000: {'met' if best >= 1000 else 'NOT met'} (ratio {best / 1000:.2f})")


async def embedded(server: Server, levels: list[int], turns_each: int, step_timeout: float) -> None:
    base = f"http://127.0.0.1:{server.port}"
    prompts = ["Tell me about the ocean.", "What is a rainbow?", "Why do cats purr?", "How do plants grow?"]
    for level in levels:
        audio, visemes = [], []
        rounds = max(1, turns_each // level)
        for r in range(rounds):
            convs = await create_conversations(base, server.key, level)
            results = await asyncio.gather(*(one_turn(f"ws://127.0.0.1:{server.port}/v1/conversations/{c}/ws",
                                                      server.key, prompts[(i + r) % len(prompts)], step_timeout)
                                             for i, c in enumerate(convs)), return_exceptions=True)
            for res in results:
                if isinstance(res, BaseException):
                    print(f"  error: {type(res).__name__}: {res}")
                    continue
                audio.append(res["first_audio"])
                visemes.append(res["first_visemes"])
        a = [x * 1000 for x in audio if x is not None]
        v = [x * 1000 for x in visemes if x is not None]
        p50 = pct(a, 50)
        print(f"embedded defaults, {level:3d} concurrent ({len(a)} turns): first audio p50 {p50:.0f} ms, "
              f"p95 {pct(a, 95):.0f} ms; first visemes p50 {pct(v, 50):.0f} ms, p95 {pct(v, 95):.0f} ms "
              f"-> goal p50 <= 150 ms: {'met' if p50 <= 150 else 'NOT met'} (ratio {p50 / 150:.2f})")


def start_embedded(tmp: Path) -> Server:
    port = free_port()
    db = f"sqlite:///{tmp / 'embedded.db'}"
    made = subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "keys", "create", "--tenant", "bench", "--db",
                           db, "--json"], capture_output=True, text=True, check=True, cwd=ROOT)
    key = json.loads(made.stdout)["secret"]
    config = tmp / "embedded.yaml"
    from avatarium_lab.config import Config

    Config.default().with_overrides(**{"limits.max_conversations": 1000,
                                       "limits.messages_per_minute": 100_000}).save(config)
    server = Server([sys.executable, "-m", "avatarium_lab.cli", "serve", str(config), "--port", str(port), "--db",
                     db], port, key=key)
    server.wait_ready()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["overhead", "sockets", "embedded", "all"], default="all")
    parser.add_argument("--turns", type=int, default=300, help="overhead: sequential turns")
    parser.add_argument("--sockets", default="250,500,1000,1500", help="sockets: the ladder of concurrency levels")
    parser.add_argument("--levels", default="1,50", help="embedded: concurrency levels")
    parser.add_argument("--embedded-turns", type=int, default=50, help="embedded: turns per level (at least)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds any one step may take")
    parser.add_argument("--serve-fake", nargs=3, metavar=("PORT", "DB", "KEYFILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(int(args.serve_fake[0]), args.serve_fake[1], args.serve_fake[2])
        return 0
    fds = raise_fd_limit()
    print(f"gateway benchmark on {os.cpu_count()} cores, loopback only; open-file limit {fds}")
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as d:
        tmp = Path(d)
        if args.part in ("overhead", "sockets", "all"):
            server = start_fake(tmp)
            try:
                if args.part in ("overhead", "all"):
                    asyncio.run(overhead(server, args.turns))
                if args.part in ("sockets", "all"):
                    asyncio.run(sockets(server, [int(x) for x in args.sockets.split(",")], args.timeout))
            finally:
                server.stop()
        if args.part in ("embedded", "all"):
            server = start_embedded(tmp)
            try:
                asyncio.run(embedded(server, [int(x) for x in args.levels.split(",")], args.embedded_turns,
                                     args.timeout))
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
