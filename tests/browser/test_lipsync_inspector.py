"""LipSyncInspector in a real JupyterLab: tracks rendered, and Replay makes the avatar speak the segment."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CELLS = [
    "from avatarium_lab.tts import get_voice\n"
    "from avatarium_lab.tts.audio import pcm16_to_float\n"
    "from avatarium_lab.widgets import LipSyncInspector\n"
    "text = 'Peter picked a peck of pickled peppers by the bay.'\n"
    "chunk = get_voice('espeak:en-us').synthesize_sync(text)\n"
    "inspector = LipSyncInspector(pcm16_to_float(chunk.pcm), chunk.sample_rate, text, reference=chunk.phonemes,\n"
    "                             aligners=['text-proportional'])\n"
    "inspector",
]


def test_inspector_shows_tracks_and_replays_on_the_avatar(run_notebook_in_lab, poll, artifact, lab_outputs) -> None:
    page, log = run_notebook_in_lab(CELLS, "inspector.ipynb")
    root = page.locator(".avatarium-lipsync-inspector").first
    try:
        root.wait_for(timeout=180_000)
    except Exception:
        artifact("inspector_failed.png", page.screenshot(full_page=True))
        raise AssertionError(f"no inspector; outputs:\n{lab_outputs(page)}") from None
    image = root.locator("img").first
    poll(lambda: image.evaluate("img => img.complete && img.naturalWidth > 600"), 60, "the track image")
    assert "text-proportional" in root.locator(".avatarium-lipsync-scores").inner_text()
    avatar = root.locator(".avatarium-avatar-view[data-status]").first
    poll(lambda: avatar.get_attribute("data-status") in ("ready", "idle"), 120, "the avatar to load")
    root.get_by_role("button", name="Replay").click()
    poll(lambda: avatar.get_attribute("data-status") == "playing", 60, "the replay to start")
    poll(lambda: avatar.get_attribute("data-status") == "idle", 60, "the replay to finish")
    assert int(avatar.get_attribute("data-visemes-applied") or 0) > 0
    root.scroll_into_view_if_needed()
    artifact("lipsync_inspector.png", page.screenshot(full_page=True))
    assert not log.foreign_requests(), log.foreign_requests()
