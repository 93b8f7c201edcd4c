"""AvatarUpload in a real JupyterLab: files picked through the FileUpload button's file chooser reach the kernel,
are checked, reported and previewed; a broken file is reported in red and the avatar already loaded stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarium_lab.avatar import avatar_path
from avatarium_lab.avatar.testing_glb import make_rpm_like

pytestmark = pytest.mark.browser


def test_upload_report_preview_and_broken_file(run_notebook_in_lab, poll, artifact, lab_outputs,
                                               tmp_path: Path) -> None:
    wolf = tmp_path / "wolf.glb"
    wolf.write_bytes(make_rpm_like())
    broken = tmp_path / "broken.vrm"
    broken.write_bytes(make_rpm_like()[:3000])
    aria = avatar_path("aria")

    cells = ["from avatarium_lab.widgets import AvatarUpload\nupload = AvatarUpload(preview=True)\nupload"]
    page, log = run_notebook_in_lab(cells, "upload.ipynb")
    widget = page.locator(".avatarium-avatar-upload").first
    button = widget.locator(".widget-upload")
    report = widget.locator(".avatarium-upload-report")
    try:
        poll(lambda: button.count() == 1 and report.get_attribute("data-state") == "empty", 180,
             "the upload widget")
    except AssertionError:
        artifact("avatar_upload_failed.png", page.screenshot(full_page=True))
        raise AssertionError(f"outputs:\n{lab_outputs(page)}") from None
    assert widget.locator(".avatarium-avatar-view").count() == 0  # no preview before the first file

    def pick(path: Path) -> None:
        # FileUpload's <input type=file> is never attached to the page: the click opens a file chooser, whose
        # element is that input.
        with page.expect_file_chooser() as chooser:
            button.click()
        assert chooser.value.element.get_attribute("accept") == ".glb,.vrm"
        chooser.value.element.set_input_files(str(path))

    # A good file: the report and the preview.
    pick(wolf)
    poll(lambda: report.get_attribute("data-state") == "ok", 60, "the report of wolf.glb")
    text = report.inner_text()
    assert "wolf.glb loaded" in text
    for badge in ("lipsync: full", "emotions: full", "blinks: full", "gestures: full"):
        assert badge in text
    assert "Rig detected: rpm" in text and "presets: face rpm, bones rpm" in text and "No problems found." in text
    view = widget.locator(".avatarium-avatar-view[data-status]")
    poll(lambda: view.count() == 1 and view.get_attribute("data-status") in ("ready", "idle"), 120,
         "the preview of wolf.glb")

    # A broken file: the error in red, the preview keeps the avatar it has.
    before = view.locator("canvas").screenshot()
    # Every status the preview goes through from here: a reload would pass through "loading".
    view.evaluate("""el => { el.__statuses = []; new MutationObserver(() => el.__statuses.push(el.dataset.status))
                                 .observe(el, {attributes: true, attributeFilter: ["data-status"]}); }""")
    pick(broken)
    poll(lambda: report.get_attribute("data-state") == "error", 60, "the error for broken.vrm")
    text = report.inner_text()
    assert "broken.vrm was not loaded" in text
    assert f"TruncatedAvatar: truncated: the header says {wolf.stat().st_size} bytes, the file has 3000" in text
    assert "The previous avatar, wolf.glb, is still loaded." in text
    assert report.evaluate("el => getComputedStyle(el).color") == "rgb(185, 28, 28)"
    page.wait_for_timeout(1000)
    assert view.get_attribute("data-status") in ("ready", "idle")
    statuses = view.evaluate("el => el.__statuses")
    assert set(statuses) <= {"ready", "idle"}, f"the preview reloaded after a refused file: {statuses}"
    artifact("avatar_upload_error.png", widget.screenshot())

    # The page and the kernel are still working: the library avatar is accepted next.
    pick(aria)
    poll(lambda: report.get_attribute("data-state") == "ok" and "aria.glb loaded" in report.inner_text(), 60,
         "the report of aria.glb")
    poll(lambda: view.get_attribute("data-status") in ("ready", "idle"), 120, "the preview of aria.glb")
    assert widget.locator(".avatarium-avatar-view").count() == 1  # the same preview, not a second one
    poll(lambda: view.locator("canvas").screenshot() != before, 30, "the preview to show aria")
    widget.scroll_into_view_if_needed()
    artifact("avatar_upload.png", widget.screenshot())
    artifact("avatar_upload_page.png", page.screenshot(full_page=True))
    assert not [e for e in log.errors if "upload" in e.lower() or "avatar" in e.lower()], log.errors
    assert not log.foreign_requests(), log.foreign_requests()
