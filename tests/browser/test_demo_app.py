"""`avatarium demo` (what `make demo` runs) in headless Chromium: the live page and the gateway on the embedded
defaults, with a one-time key printed by the server; type, the avatar answers aloud with lip sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avatarium_lab.config import Config

pytestmark = [pytest.mark.browser, pytest.mark.model]


def test_demo_serves_the_live_page_on_the_embedded_defaults(tmp_path: Path, serve, browser_context, python, lip_sync,
                                                            page_log, poll, artifact) -> None:
    config = Config.default().with_overrides(**{"provider.max_tokens": 48, "provider.n_threads": 1,
                                                "name": "browser-test"})
    config_path = config.save(tmp_path / "config.yaml")
    server = serve(
        lambda port: [python, "-m", "avatarium_lab.cli", "demo", "--config", str(config_path), "--port", str(port),
                      "--db", f"sqlite:///{tmp_path / 'demo.db'}"],
        ready_path="/v1/ready", timeout=180,
    )
    printed = server.log.read_text()
    url = re.search(r"serving (http://\S+/app)", printed)
    key = re.search(r"API key for this demo \(shown once; paste it into the page\): (\S+)", printed)
    assert url and key, printed[-2000:]
    page = browser_context.new_page()
    log = page_log(page)
    page.goto(url.group(1).replace("localhost", "127.0.0.1"), timeout=120_000)
    root = page.locator("[data-connection]").first
    root.wait_for(timeout=120_000)
    page.locator("input.av-key").fill(key.group(1))
    page.get_by_role("button", name="Connect").click()
    poll(lambda: root.get_attribute("data-connection") == "open", 60, "the conversation socket")
    avatar = page.locator(".avatarium-avatar-view[data-status]").first

    def send() -> None:
        page.locator("input.av-input").fill("Tell me about the ocean and the waves.")
        page.get_by_role("button", name="Send").click()

    result = lip_sync(page, avatar, "demo", play=send, timeout=180)
    poll(lambda: len(page.locator(".av-reply").inner_text().strip()) > 10, 30, "the streamed reply text")
    poll(lambda: "time to first audio" in page.locator(".av-latency").inner_text(), 30, "the latency table")
    artifact("demo_page_after.png", page.screenshot(full_page=True))
    assert result.visemes_applied > 0
    assert result.difference > max(4.0, 3 * result.baseline), (result.difference, result.baseline)
    assert re.search(r"time to first audio\s*\d+ ms", page.locator(".av-latency").inner_text())
    foreign = log.foreign_requests()
    assert not foreign, f"the page fetched from outside 127.0.0.1: {foreign}"
    assert not log.errors, log.errors
