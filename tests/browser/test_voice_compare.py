"""VoiceCompare in a real JupyterLab: every voice gets a playable player, a waveform with its viseme track, stats."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

VOICES = ["espeak:en-us+f3", "espeak:en-gb+m3", "flite:slt"]


def test_voice_compare_renders_players_and_tracks(run_notebook_in_lab, poll, artifact, lab_outputs) -> None:
    cells = [
        "from avatarium_lab.widgets import VoiceCompare\n"
        f"compare = VoiceCompare({VOICES!r}, text='Hello there, how are you today?')\ncompare",
        "compare.run()\ncompare.results",
    ]
    page, log = run_notebook_in_lab(cells, "voices.ipynb")
    takes = page.locator(".avatarium-voice-take")
    try:
        poll(lambda: takes.count() == len(VOICES), 180, "a row per voice")
    except AssertionError:
        artifact("voice_compare_failed.png", page.screenshot(full_page=True))
        raise AssertionError(f"rows: {takes.count()}; outputs:\n{lab_outputs(page)}") from None
    for i in range(len(VOICES)):
        take = takes.nth(i)
        take.scroll_into_view_if_needed()
        # the audio element loaded our WAV (a real duration), and the track image decoded
        poll(lambda t=take: t.locator("audio").evaluate("a => a.readyState >= 1 && a.duration > 0.5"), 30,
             f"audio of {VOICES[i]} to load")
        assert take.locator("img").evaluate("img => img.complete && img.naturalWidth > 300")
        assert "first audio" in take.inner_text() and "RTF" in take.inner_text()
    page.locator(".avatarium-voice-compare").first.scroll_into_view_if_needed()
    artifact("voice_compare.png", page.screenshot(full_page=True))
    assert not log.foreign_requests(), log.foreign_requests()
