"""AvatarGallery in a real JupyterLab: a card per library avatar with its thumbnail and capabilities, and
picking a card loads that avatar into the preview."""

from __future__ import annotations

import pytest

from avatarium_lab.avatar import list_avatars

pytestmark = pytest.mark.browser


def test_gallery_cards_and_preview(run_notebook_in_lab, poll, artifact, lab_outputs) -> None:
    avatars = list_avatars()
    cells = ["from avatarium_lab.widgets import AvatarGallery\ngallery = AvatarGallery(preview=True)\ngallery",
             "gallery.selected"]
    page, log = run_notebook_in_lab(cells, "gallery.ipynb")
    cards = page.locator(".avatarium-avatar-card")
    try:
        poll(lambda: cards.count() == len(avatars), 180, "a card per avatar")
    except AssertionError:
        artifact("gallery_failed.png", page.screenshot(full_page=True))
        raise AssertionError(f"cards: {cards.count()}; outputs:\n{lab_outputs(page)}") from None
    for i, info in enumerate(avatars):
        card = cards.nth(i)
        poll(lambda c=card: c.locator("img").evaluate("img => img.complete && img.naturalWidth == 256"), 30,
             f"{info.id}'s thumbnail")
        text = card.inner_text()
        assert info.name in text and "lipsync: full" in text and "blinks: full" in text
    view = page.locator(".avatarium-avatar-gallery .avatarium-avatar-view[data-status]").first
    poll(lambda: view.get_attribute("data-status") in ("ready", "idle"), 120, "the preview to load")
    assert view.get_attribute("data-framing") == "bust"
    before = view.locator("canvas").screenshot()
    page.locator(".avatarium-avatar-gallery").first.get_by_role("button", name="Use Pip").click()
    poll(lambda: view.locator("canvas").screenshot() != before, 60, "the preview to show Pip")
    poll(lambda: view.get_attribute("data-status") in ("ready", "idle"), 120, "Pip to load")
    poll(lambda: view.get_attribute("data-framing") == "full", 30, "Pip, a full-body figure, framed whole")
    page.locator(".avatarium-avatar-gallery").first.scroll_into_view_if_needed()
    artifact("avatar_gallery.png", page.screenshot(full_page=True))
    artifact("avatar_gallery_preview.png", view.screenshot())
    assert not log.foreign_requests(), log.foreign_requests()
