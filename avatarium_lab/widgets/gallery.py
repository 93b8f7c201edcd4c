"""AvatarGallery: the avatar library as cards (thumbnail, name, description, what each avatar can do), with an
optional ``AvatarView`` that loads the card you pick.

Stock ipywidgets; the capability badges come from ``avatar.check.check_avatar`` (the same report as
``avatarium avatars check``), so what the gallery promises is what the file carries.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from ..avatar import AvatarInfo, list_avatars
from ..avatar.check import AvatarReport, check_avatar

_LEVEL_COLOURS = {"full": "#15803d", "reduced": "#b45309", "none": "#b91c1c"}


def _badge(label: str, level: str) -> str:
    colour = _LEVEL_COLOURS.get(level, "#374151")
    return (f"<span style='display:inline-block;margin:1px 3px 1px 0;padding:0 6px;border-radius:9px;"
            f"font-size:11px;color:white;background:{colour}'>{label}: {level}</span>")


class AvatarGallery(widgets.VBox):
    """``AvatarGallery()`` shows every library avatar; ``AvatarGallery(preview=True)`` adds a live 3D view of the
    selected one. ``selected`` is the chosen id; ``reports`` maps id -> capability report."""

    def __init__(self, avatars: Sequence[AvatarInfo] | None = None, *, preview: bool = False,
                 columns: int = 4) -> None:
        self.avatars = list(avatars) if avatars is not None else list_avatars()
        self.reports: dict[str, AvatarReport] = {a.id: check_avatar(a.path) for a in self.avatars}
        self.selected: str | None = self.avatars[0].id if self.avatars else None
        self.view: Any = None
        cards = [self._card(a) for a in self.avatars]
        grid = widgets.GridBox(cards, layout=widgets.Layout(
            grid_template_columns=f"repeat({columns}, minmax(180px, 1fr))", grid_gap="8px", width="100%"))
        children: list[widgets.Widget] = [grid]
        if preview and self.selected is not None:
            from .avatar_view import AvatarView

            self.view = AvatarView(self.selected)
            children.append(self.view)
        super().__init__(children=children)
        self.add_class("avatarium-avatar-gallery")

    def _card(self, info: AvatarInfo) -> widgets.Widget:
        report = self.reports[info.id]
        image = widgets.Image(value=info.thumbnail.read_bytes() if info.thumbnail else b"", format="png",
                              layout=widgets.Layout(width="160px", height="160px"))
        badges = "".join(_badge(k, getattr(report, k)) for k in ("lipsync", "emotions", "blinks", "gestures"))
        text = widgets.HTML(
            f"<b>{html.escape(info.name)}</b> <code>{info.id}</code> · {info.framing}<br>"
            f"<span style='font-size:12px'>{html.escape(info.description)}</span><br>{badges}<br>"
            f"<span style='font-size:11px;color:#555'>{len(info.morph_targets)} morph targets · "
            f"{len(report.bones)} bones</span>")
        button = widgets.Button(description=f"Use {info.name}", layout=widgets.Layout(width="100%"))
        button.on_click(lambda _: self.select(info.id))
        card = widgets.VBox([image, text, button], layout=widgets.Layout(border="1px solid #ddd", padding="6px"))
        card.add_class("avatarium-avatar-card")
        return card

    def select(self, avatar_id: str) -> None:
        """Choose ``avatar_id`` (and load it into the preview)."""
        if avatar_id not in self.reports:
            raise KeyError(f"unknown avatar {avatar_id!r}; known: {', '.join(self.reports)}")
        self.selected = avatar_id
        if self.view is not None:
            self.view.set_avatar(avatar_id)
