"""The example clients in examples/ against a real gateway: Python's ``talk()`` in process, ``client.py`` and
``client.mjs`` as the commands a user runs (key and URL from the environment only), and the Python client over
HTTPS/WSS with a self-signed certificate trusted through ``AVATARIUM_CA_FILE``."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from gateway_helpers import SCRIPT, Running, make_gateway, stop_uvicorn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("avatarium_example_client", EXAMPLES / "client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(running: Running, key: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVATARIUM_")}
    env.update(AVATARIUM_URL=running.base, AVATARIUM_API_KEY=key or running.keys["a"], **extra)
    return env


def _assert_latency_lines(out: str) -> None:
    for name in ("time_to_first_token_ms", "time_to_first_audio_ms", "total_ms", "gateway_overhead_ms"):
        assert re.search(rf"^\s+{name}\s+\d+\.\d$", out, re.M), (name, out)


def test_talk_returns_the_reply_audio_visemes_and_latency(gateway: Running, tmp_path: Path) -> None:
    client = _client()
    pieces: list[str] = []
    wav = tmp_path / "reply.wav"
    result = client.talk(gateway.base, gateway.keys["a"], "Hello", wav=str(wav), on_text=pieces.append)
    assert result["reply"] == SCRIPT and "".join(pieces).strip() == SCRIPT and len(pieces) > 1  # streamed
    assert result["reason"] == "complete"
    assert result["visemes"] > 10
    latency = result["latency"]
    assert 0 <= latency["time_to_first_token_ms"] <= latency["time_to_first_audio_ms"] <= latency["total_ms"]
    assert latency["gateway_overhead_ms"] >= 0 and "busy_tts_ms" in latency
    with wave.open(str(wav), "rb") as w:  # the audio frames, concatenated, at their sample rate
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() / w.getframerate() == pytest.approx(result["audio_seconds"])
    assert 2.0 < result["audio_seconds"] < 10.0  # three sentences of the instant voice
    with gateway.http() as http:  # the conversation was really kept
        t = http.get(f"/v1/conversations/{result['conversation_id']}/transcript", headers=gateway.auth()).json()
    assert [(m["role"], m["content"]) for m in t["messages"]] == [("user", "Hello"), ("assistant", SCRIPT)]


def test_talk_reports_refusals_as_errors(gateway: Running) -> None:
    client = _client()
    with pytest.raises(RuntimeError, match="HTTP 401"):
        client.talk(gateway.base, "avk_not-a-real-key", "Hello")
    with pytest.raises(RuntimeError, match="HTTP 403"):  # a read-only key cannot chat
        client.talk(gateway.base, gateway.keys["a_read"], "Hello")
    with pytest.raises(RuntimeError, match="invalid_message"):  # refused on the socket: no turn, no hang
        client.talk(gateway.base, gateway.keys["a"], "x" * 2001, timeout=20)


def test_main_prints_the_streamed_reply_and_latency(gateway: Running, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    client = _client()
    monkeypatch.setenv("AVATARIUM_URL", gateway.base)
    monkeypatch.setenv("AVATARIUM_API_KEY", gateway.keys["a"])
    monkeypatch.delenv("AVATARIUM_CA_FILE", raising=False)
    wav = tmp_path / "out.wav"
    assert client.main(["Hello", "there", "--wav", str(wav)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(SCRIPT.split()[0]) and SCRIPT in out
    assert re.search(r"\[complete\] visemes: \d+, audio: \d+\.\d\d s -> .*out\.wav", out)
    _assert_latency_lines(out)
    assert wav.stat().st_size > 44
    monkeypatch.delenv("AVATARIUM_API_KEY")
    with pytest.raises(SystemExit) as exited:  # no key: a usage error, never a key argument
        client.main(["Hello"])
    assert exited.value.code == 2 and "AVATARIUM_API_KEY" in capsys.readouterr().err


def test_client_py_as_a_command(gateway: Running) -> None:
    run = subprocess.run([sys.executable, str(EXAMPLES / "client.py"), "Hello"], env=_env(gateway),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert SCRIPT in run.stdout and "visemes:" in run.stdout
    _assert_latency_lines(run.stdout)
    bad = subprocess.run([sys.executable, str(EXAMPLES / "client.py"), "Hello"],
                         env=_env(gateway, key="avk_wrong-key-0123456789"), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "HTTP 401" in bad.stderr and "avk_wrong-key" not in bad.stderr + bad.stdout


def _node() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the JavaScript client needs Node >= 22 (or 20.10+)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major, minor = (int(p) for p in version.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 10):
        pytest.skip(f"node {version} has no WebSocket; examples/client.mjs needs Node >= 22 (or 20.10+)")
    # Node 22 has a global WebSocket; 20.10+ has it behind a flag
    return [node, *([] if major >= 22 else ["--experimental-websocket"])]


def test_client_mjs_with_node(gateway: Running) -> None:
    run = subprocess.run([*_node(), str(EXAMPLES / "client.mjs"), "Hello"], env=_env(gateway),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert SCRIPT in run.stdout and re.search(r"\[complete\] visemes: [1-9]\d*, audio: \d+\.\d\d s", run.stdout)
    _assert_latency_lines(run.stdout)
    with gateway.http() as http:  # it authenticated with the first-frame auth and the turn was kept
        convs = http.get("/v1/conversations", headers=gateway.auth()).json()
    assert len(convs) == 1 and convs[0]["message_count"] == 2
    bad = subprocess.run([*_node(), str(EXAMPLES / "client.mjs"), "Hello"],
                         env=_env(gateway, key="avk_wrong-key-0123456789"), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "HTTP 401" in bad.stderr


def test_python_client_over_https_and_wss_with_a_private_ca(tmp_path: Path, tls_cert: dict[str, str]) -> None:
    running = make_gateway(tmp_path, ssl=tls_cert)
    try:
        assert running.base.startswith("https://")
        client = _client()
        result = client.talk(running.base, running.keys["a"], "Hello", ca_file=tls_cert["cert"])
        assert result["reply"] == SCRIPT and result["visemes"] > 0 and result["latency"]["total_ms"] > 0
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted by default
            client.talk(running.base, running.keys["a"], "Hello")
        run = subprocess.run([sys.executable, str(EXAMPLES / "client.py"), "Hello"],
                             env=_env(running, AVATARIUM_CA_FILE=tls_cert["cert"]), capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        assert SCRIPT in run.stdout
        if shutil.which("node"):  # the JavaScript client trusts the same file (NODE_EXTRA_CA_CERTS)
            node = subprocess.run([*_node(), str(EXAMPLES / "client.mjs"), "Hello"],
                                  env=_env(running, AVATARIUM_CA_FILE=tls_cert["cert"]), capture_output=True,
                                  text=True, timeout=120)
            assert node.returncode == 0, node.stderr
            assert SCRIPT in node.stdout
    finally:
        stop_uvicorn(running.server)
        running.store.close()
