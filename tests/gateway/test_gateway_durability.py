"""Durability: `avatarium serve` (a real process, the embedded defaults) is killed with SIGKILL in the middle of a
conversation and started again on the same database; every message it acknowledged is there, and the conversation
goes on. Keys are made with `avatarium keys create`, as an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from gateway_helpers import frames_until, free_port


def _serve(config: Path, db: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "avatarium_lab.cli", "serve", str(config), "--port", str(port),
                             "--db", db], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"server not ready: {log.read_text()[-2000:]}")


def test_kill_9_mid_conversation_loses_no_acknowledged_message(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    from avatarium_lab.config import Config

    config = tmp_path / "serve.yaml"
    Config.default().with_overrides(**{"provider.max_tokens": 60, "provider.n_threads": 1}).save(config)
    db = f"sqlite:///{tmp_path / 'durable.db'}"
    made = subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "keys", "create", "--tenant", "acme", "--db", db,
                           "--json"], capture_output=True, text=True, timeout=120, check=True)
    key = json.loads(made.stdout)["secret"]
    headers = {"Authorization": f"Bearer {key}"}
    port, log = free_port(), tmp_path / "server.log"
    proc = _serve(config, db, port, log)
    acked: list[str] = []
    try:
        conv = httpx.post(f"http://127.0.0.1:{port}/v1/conversations", json={}, headers=headers).json()["id"]
        with connect(f"ws://127.0.0.1:{port}/v1/conversations/{conv}/ws", additional_headers=headers) as ws:
            json.loads(ws.recv(timeout=30))
            ws.send(json.dumps({"type": "message", "text": "Tell me about whales."}))
            frames_until(ws, lambda f: f["type"] == "latency_breakdown", timeout=120)
            acked.append("Tell me about whales.")
            ws.send(json.dumps({"type": "message", "text": "And about dolphins?"}))
            frames_until(ws, lambda f: f["type"] == "ack", timeout=30)
            acked.append("And about dolphins?")
            frames_until(ws, lambda f: f["type"] == "text_delta", timeout=60)  # mid-turn
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(config, db, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as c:
            messages = c.get(f"/v1/conversations/{conv}/transcript").json()["messages"]
            users = [m["content"] for m in messages if m["role"] == "user"]
            assert users == acked
            assert messages[1]["role"] == "assistant" and messages[1]["content"]  # the finished turn's reply
            # the conversation continues after the restart, with its context
            r = c.post(f"/v1/conversations/{conv}/messages", json={"text": "Thanks!"})
            assert r.status_code == 200 and r.json()["reason"] == "complete"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
