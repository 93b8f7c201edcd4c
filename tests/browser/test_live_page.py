"""The live page (`avatarium serve CONFIG --ui`: the page at /app and the gateway API on one server) in headless
Chromium: key prompt, a typed message streamed back with the avatar's mouth moving and the latency panel filled,
a dropped connection that reconnects and resumes the conversation; and a spoken message through Chromium's fake
microphone, transcribed and answered."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from avatarium_lab.config import Config
from avatarium_lab.conversation import Store
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.testing.fake_vendors import FakeServer
from avatarium_lab.testing.instant import InstantVoice
from avatarium_lab.testing.scripted import ScriptedProvider

pytestmark = pytest.mark.browser

SCRIPT = "Hello there! The ocean is wide and deep. Whales sing across the water."


def _server(tmp_path: Path, ssl: dict[str, str] | None = None) -> tuple[FakeServer, str, Store]:
    from avatarium_lab.app.live import create_server
    from avatarium_lab.stt import make_stt

    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    tenant = store.create_tenant("browser")
    key = store.create_key(tenant.id).secret
    config = Config.default()
    pipeline = Pipeline(config, provider=ScriptedProvider(script=SCRIPT, chunk_delay=0.03), voice=InstantVoice())
    app = create_server([config], store, pipelines={config.name: pipeline}, warm=False,
                        stt=make_stt("whisper-tiny"))
    tls = {"ssl_certfile": ssl["cert"], "ssl_keyfile": ssl["key"]} if ssl else {}
    return FakeServer(app, lifespan="on", **tls).start(), key, store


def _login(page: Any, key: str, poll: Any) -> Any:
    root = page.locator("[data-connection]").first
    root.wait_for(timeout=60_000)
    assert root.get_attribute("data-connection") == "login"
    assert key not in page.url
    page.locator("input.av-key").fill(key)
    page.get_by_role("button", name="Connect").click()
    poll(lambda: root.get_attribute("data-connection") == "open", 60, "the conversation socket to open")
    return root


def test_type_stream_mouth_latency_and_reconnect(tmp_path: Path, browser_context, poll, lip_sync, page_log,
                                                 artifact) -> None:
    server, key, store = _server(tmp_path)
    try:
        page = browser_context.new_page()
        log = page_log(page)
        page.goto(f"{server.url}/app", timeout=120_000)
        root = _login(page, key, poll)
        conversation = root.get_attribute("data-conversation")
        avatar = page.locator(".avatarium-avatar-view[data-status]").first

        def send(text: str = "Tell me about the sea") -> None:
            page.locator("input.av-input").fill(text)
            page.get_by_role("button", name="Send").click()

        result = lip_sync(page, avatar, "live", play=send, timeout=120)
        assert result.visemes_applied > 0
        assert result.difference > max(4.0, 3 * result.baseline), (result.difference, result.baseline)
        poll(lambda: "ocean is wide" in page.locator(".av-reply").inner_text(), 30, "the streamed reply")
        poll(lambda: page.locator(".av-latency tr").count() >= 4, 30, "the latency panel")
        assert "time to first audio" in page.locator(".av-latency").inner_text()
        artifact("live_page_after_turn.png", page.screenshot())

        # a dropped connection reconnects and resumes the same conversation
        root.evaluate("r => r.__avatariumLive.drop()")
        poll(lambda: root.get_attribute("data-connection") == "reconnecting", 10, "the page to notice")
        poll(lambda: root.get_attribute("data-connection") == "open", 30, "the reconnect")
        assert root.get_attribute("data-resumed") == "true"
        assert root.get_attribute("data-conversation") == conversation
        send("And the whales?")
        poll(lambda: root.get_attribute("data-turns") == "2", 60, "the second turn")
        artifact("live_page_resumed.png", page.screenshot())
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
            messages = c.get(f"/v1/conversations/{conversation}/transcript").json()["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
            # the same server answers external clients with the same API
            assert c.get("/openapi.json").status_code == 200
        assert not log.foreign_requests(), log.foreign_requests()
        assert not [e for e in log.errors if "avatar" in e.lower()], log.errors
    finally:
        server.stop()
        store.close()


def test_a_wrong_key_is_refused_on_the_page(tmp_path: Path, browser_context, poll) -> None:
    server, _key, store = _server(tmp_path)
    try:
        page = browser_context.new_page()
        page.goto(f"{server.url}/app", timeout=120_000)
        page.locator("input.av-key").fill("avk_not_a_real_key_0000000000000000")
        page.get_by_role("button", name="Connect").click()
        poll(lambda: "not accepted" in page.locator(".av-login").inner_text(), 30, "the refusal")
    finally:
        server.stop()
        store.close()


def _utterance_wav(path: Path) -> Path:
    """A spoken sentence from the project's offline voice, as the fake microphone's input."""
    import asyncio

    from scipy.io import wavfile

    from avatarium_lab.tts import get_voice
    from avatarium_lab.tts.audio import pcm16_to_float

    voice = get_voice("espeak:en-us", rate=150)

    async def speak() -> tuple[np.ndarray, int]:
        chunks = [c async for c in voice.synthesize("Hello, what is the weather like today?")]
        return pcm16_to_float(b"".join(c.pcm for c in chunks)), chunks[0].sample_rate

    samples, rate = asyncio.run(speak())
    from avatarium_lab.tts.audio import resample

    samples, rate = resample(samples, rate, 48000), 48000  # the fake capture device runs at 48 kHz
    pad = np.zeros(int(rate * 0.5), np.float32)
    audio = np.concatenate([pad, samples, pad, samples, pad])  # Chromium loops the file: say it twice
    buf = io.BytesIO()
    wavfile.write(buf, rate, (audio * 32767).astype(np.int16))
    path.write_bytes(buf.getvalue())
    return path


def test_speaking_into_the_microphone(tmp_path: Path, browser_with, poll, artifact) -> None:
    wav = _utterance_wav(tmp_path / "utterance.wav")
    context = browser_with(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={wav}"])
    server, key, store = _server(tmp_path)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/app", timeout=120_000)
        root = _login(page, key, poll)
        page.get_by_role("button", name="Speak").click()
        poll(lambda: page.get_by_role("button", name="Stop").count() == 1, 20,
             f"recording to start ({page.locator('.av-status').first.inner_text()!r})")
        page.wait_for_timeout(6000)
        page.get_by_role("button", name="Stop").click()
        poll(lambda: root.get_attribute("data-heard"), 90, "the transcript of the spoken message")
        heard = root.get_attribute("data-heard").lower()
        assert "weather" in heard or "hello" in heard, heard
        poll(lambda: root.get_attribute("data-turns") == "1", 60, "the reply to the spoken message")
        poll(lambda: "ocean" in page.locator(".av-reply").inner_text(), 30, "the reply text")
        artifact("live_page_microphone.png", page.screenshot())
        conversation = root.get_attribute("data-conversation")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
            messages = c.get(f"/v1/conversations/{conversation}/transcript").json()["messages"]
        assert messages[0]["role"] == "user" and messages[0]["content"].lower() == heard
        json.dumps(messages)
    finally:
        server.stop()
        store.close()


def test_the_external_python_client_talks_to_the_served_app(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("avatarium_example_client",
                                                  Path(__file__).resolve().parents[2] / "examples" / "client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    server, key, store = _server(tmp_path)
    try:
        result = client.talk(server.url, key, "Hello from outside")
        assert result["reason"] == "complete" and "ocean is wide" in result["reply"]
        assert result["visemes"] > 0 and result["audio_seconds"] > 0
        assert httpx.get(f"{server.url}/app", timeout=30).status_code == 200  # the page, on the same server
    finally:
        server.stop()
        store.close()


def test_the_page_over_https_with_a_self_signed_certificate(tmp_path: Path, browser_with, poll, artifact) -> None:
    import subprocess

    cert, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(keyfile), "-out", str(cert)],
                   check=True, capture_output=True)
    context = browser_with(["--ignore-certificate-errors"])  # the test's own self-signed certificate
    server, key, store = _server(tmp_path, ssl={"cert": str(cert), "key": str(keyfile)})
    try:
        assert server.url.startswith("https://")
        page = context.new_page()
        page.goto(f"{server.url}/app", timeout=120_000)
        root = _login(page, key, poll)
        page.locator("input.av-input").fill("Hello over TLS")
        page.get_by_role("button", name="Send").click()
        poll(lambda: root.get_attribute("data-turns") == "1", 60, "a turn over WSS")
        assert "ocean is wide" in page.locator(".av-reply").inner_text()
        artifact("live_page_https.png", page.screenshot())
    finally:
        server.stop()
        store.close()
