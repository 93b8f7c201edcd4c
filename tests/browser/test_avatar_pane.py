"""AvatarPane in a real `panel serve` page: the avatar loads offline, a button plays a turn, the mouth moves."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


def _app_source(turn_code: str, avatar: str) -> str:
    return (
        turn_code
        + f"""
import panel as pn

from avatarium_lab.widgets import AvatarPane

pane = AvatarPane(avatar={avatar}, canvas_width=320, canvas_height=400)
button = pn.widgets.Button(name="Play turn", button_type="primary")
button.on_click(lambda event: pane.play(make_turn("pane-turn")))
pn.Column(button, pane).servable(title="AvatarPane test")
"""
    )


def test_pane_plays_a_turn_offline(
    tmp_path: Path, serve, browser_context, python, turn_code, avatar_source, lip_sync, page_log, artifact
) -> None:
    app = tmp_path / "avatar_app.py"
    app.write_text(_app_source(turn_code, avatar_source))
    server = serve(
        lambda port: [
            python, "-m", "panel", "serve", str(app), "--port", str(port), "--address", "127.0.0.1",
            f"--allow-websocket-origin=127.0.0.1:{port}",
        ],
        ready_path="/avatar_app",
    )

    page = browser_context.new_page()
    log = page_log(page)
    page.goto(f"{server.base}/avatar_app")
    root = page.locator("[data-status]").first  # Playwright's CSS engine pierces Panel's shadow roots
    root.wait_for(timeout=60_000)

    result = lip_sync(
        page, root, "pane", play=lambda: page.get_by_role("button", name="Play turn").click()
    )
    artifact("pane_page_after.png", page.screenshot())

    assert result.visemes_applied > 0
    # The open mouth must stand well clear of what idle motion alone changes.
    assert result.difference > max(4.0, 3 * result.baseline), (result.difference, result.baseline)
    # data-mouth-box is in canvas CSS pixels: a real screenshot cropped with it shows the same mouth.
    assert result.screenshot_vs_canvas < max(8.0, result.difference / 3), result.screenshot_vs_canvas
    assert root.get_attribute("data-status") == "idle"
    foreign = log.foreign_requests()
    assert not foreign, f"the page fetched from outside 127.0.0.1: {foreign}"
    assert not [e for e in log.errors if "avatar" in e.lower()], log.errors


# Headless Chromium lets every AudioContext run, so the test plays the strict browser's part: contexts start
# suspended and refuse to resume until the page has been clicked.
_BLOCK_AUDIO_JS = """(() => {
  const Original = window.AudioContext;
  let clicked = false;
  window.addEventListener("click", () => { clicked = true; }, true);
  window.AudioContext = class extends Original {
    constructor(options) { super(options); super.suspend(); }
    resume() { return clicked ? super.resume() : Promise.resolve(); }
  };
})()"""


def test_pane_animates_without_sound_until_clicked(
    tmp_path: Path, serve, browser_context, python, turn_code, avatar_source, page_log, poll
) -> None:
    app = tmp_path / "autoplay_app.py"
    app.write_text(
        turn_code
        + f"""
import panel as pn

from avatarium_lab.widgets import AvatarPane

pane = AvatarPane(avatar={avatar_source})
pane.play(make_turn("on-load"))  # held in Python until the browser reports the avatar ready
pn.Column(pane).servable()
"""
    )
    server = serve(
        lambda port: [
            python, "-m", "panel", "serve", str(app), "--port", str(port), "--address", "127.0.0.1",
            f"--allow-websocket-origin=127.0.0.1:{port}",
        ],
        ready_path="/autoplay_app",
    )
    page = browser_context.new_page()
    page.add_init_script(_BLOCK_AUDIO_JS)
    log = page_log(page)
    page.goto(f"{server.base}/autoplay_app")
    root = page.locator("[data-status]").first
    root.wait_for(timeout=60_000)

    statuses: set[str] = set()

    def finished() -> bool:
        statuses.add(root.get_attribute("data-status") or "")
        return "playing" in statuses and root.get_attribute("data-status") == "idle"

    poll(finished, 60, "the turn to play through on the page clock", interval=0.05)
    # The mouth followed the page clock although the audio could not start.
    assert int(root.get_attribute("data-visemes-applied") or 0) > 0
    hint = root.get_by_text("click for sound")
    assert hint.is_visible()
    hint.click()
    hint.wait_for(state="hidden", timeout=10_000)
    assert not log.foreign_requests()
