"""The demo page (`panel serve avatarium_lab/app`) in headless Chromium: type, the avatar answers aloud with lip sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avatarium_lab.config import Config

pytestmark = [pytest.mark.browser, pytest.mark.model]

APP = Path(__file__).resolve().parents[2] / "avatarium_lab" / "app"


def test_typed_message_makes_the_avatar_speak(tmp_path: Path, serve, browser_context, python, lip_sync, page_log,
                                              poll, artifact) -> None:
    config = Config.default().with_overrides(**{"provider.max_tokens": 48, "provider.n_threads": 1, "name": "browser-test"})
    config_path = config.save(tmp_path / "config.yaml")
    server = serve(
        lambda port: [python, "-m", "panel", "serve", str(APP), "--port", str(port), "--address", "127.0.0.1",
                      f"--allow-websocket-origin=127.0.0.1:{port}"],
        ready_path="/app", env={"AVATARIUM_CONFIG": str(config_path)}, timeout=120,
    )
    page = browser_context.new_page()
    log = page_log(page)
    page.goto(f"{server.base}/app", timeout=120_000)
    root = page.locator("[data-status]").first
    root.wait_for(timeout=120_000)
    box = page.get_by_placeholder(re.compile("Say something to"))
    box.wait_for(timeout=60_000)

    def send() -> None:
        box.fill("Tell me about the ocean and the waves.")
        page.get_by_role("button", name="Send").click()

    result = lip_sync(page, root, "demo", play=send, timeout=180)
    reply = page.locator(".avatarium-reply-text").first
    poll(lambda: len(reply.inner_text().strip()) > 10, 30, "the streamed reply text")
    latency = page.locator(".avatarium-latency").first
    poll(lambda: "time to first audio" in latency.inner_text(), 30, "the latency table")
    artifact("demo_page_after.png", page.screenshot(full_page=True))
    assert "Tell me about the ocean" in page.locator(".avatarium-history-text").first.inner_text()

    assert result.visemes_applied > 0
    assert result.difference > max(4.0, 3 * result.baseline), (result.difference, result.baseline)
    assert re.search(r"time to first audio\s+\d+ ms", latency.inner_text())
    foreign = log.foreign_requests()
    assert not foreign, f"the page fetched from outside 127.0.0.1: {foreign}"
    assert not log.errors, log.errors
