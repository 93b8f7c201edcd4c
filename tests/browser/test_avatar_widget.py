"""AvatarView in a real JupyterLab: a notebook run top to bottom shows the avatar and lip-syncs a turn."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_widget_plays_a_turn_in_jupyterlab(run_notebook_in_lab, turn_code, avatar_source, lip_sync, artifact,
                                          lab_outputs) -> None:
    view = f"""from avatarium_lab.widgets import AvatarView

view = AvatarView(avatar={avatar_source}, canvas_width=320, canvas_height=400)
view"""
    page, log = run_notebook_in_lab([turn_code.strip(), view, 'view.play(make_turn("notebook-turn"))'],
                                    "avatar.ipynb")

    root = page.locator(".avatarium-avatar-view[data-status]").first
    try:
        root.wait_for(timeout=120_000)
    except Exception as exc:
        artifact("widget_page_failed.png", page.screenshot())
        raise AssertionError(f"the avatar widget never appeared; cell outputs:\n{lab_outputs(page)}") from exc

    # The play cell ran right after the display cell; the widget holds the turn until the avatar is ready.
    result = lip_sync(page, root, "widget", play=None)
    artifact("widget_page_after.png", page.screenshot())

    assert result.visemes_applied > 0
    assert result.difference > max(4.0, 3 * result.baseline), (result.difference, result.baseline)
    # data-mouth-box is in canvas CSS pixels: a real screenshot cropped with it shows the same mouth.
    assert result.screenshot_vs_canvas < max(8.0, result.difference / 3), result.screenshot_vs_canvas
    assert root.get_attribute("data-status") == "idle"
    foreign = log.foreign_requests()
    assert not foreign, f"the page fetched from outside 127.0.0.1: {foreign}"
