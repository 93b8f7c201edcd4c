"""AvatarPane: the Panel component (``panel.custom.AnyWidgetComponent``) that shows the avatar in ``panel serve`` apps.

It loads the same ES module as :class:`~avatarium_lab.widgets.AvatarView` and speaks the same messages. Panel's
``send`` carries JSON only, so audio travels base64-encoded (``pcm_b64``, see :func:`protocol.json_only`); on the
browser side Panel calls the module's ``model.on("msg:custom", cb)`` handler with that one object and no buffers.
Do not name parameters ``width``/``height`` here: those are Panel's layout parameters, which this class sets from
the canvas size so the layout reserves the right space. Panel never syncs a parameter named ``background`` either,
so the colour travels as ``canvas_background``.
"""

from __future__ import annotations

import logging
from typing import Any

import param
from panel.custom import AnyWidgetComponent

from .protocol import (
    AvatarMessaging,
    AvatarSource,
    Outbox,
    avatar_label,
    esm_source,
    json_only,
    resolve_glb,
    rig_payload,
)

__all__ = ["AvatarPane"]

logger = logging.getLogger(__name__)


class AvatarPane(AvatarMessaging, AnyWidgetComponent):
    """A 3D talking avatar for Panel apps; same front end, methods and messages as ``AvatarView``.

    >>> pane = AvatarPane(avatar="aria", canvas_width=360, canvas_height=440)
    >>> pn.Column(pane).servable()
    >>> pane.play(events)      # a finished turn
    >>> pane.send_event(ev)    # or stream
    >>> pane.stop()            # barge-in

    Messages sent before the browser shows the avatar wait here and are delivered once it reports ``ready``.
    """

    _esm = esm_source()

    glb = param.Bytes(default=b"", doc="The avatar as binary glTF (GLB) bytes.")
    rig = param.Dict(default={}, doc="How to animate this model (protocol.rig_payload); set with the avatar.")
    canvas_width = param.Integer(default=320, bounds=(16, 4096), doc="Canvas width in CSS pixels.")
    canvas_height = param.Integer(default=400, bounds=(16, 4096), doc="Canvas height in CSS pixels.")
    background = param.String(default="#eef1f5", doc="Any CSS colour behind the avatar.")
    # Panel deliberately never syncs a parameter called "background"; this one carries it to the browser.
    canvas_background = param.String(default="#eef1f5", doc="Synced copy of ``background``; set ``background``.")
    status = param.String(default="", doc="Reported by the browser; read-only from Python.")

    def __init__(self, avatar: AvatarSource = "aria", **params: Any) -> None:
        if "glb" not in params:
            params["glb"] = resolve_glb(avatar)
        params.setdefault("rig", rig_payload(params["glb"]) if params["glb"] else {})
        params.setdefault("width", params.get("canvas_width", self.param.canvas_width.default))
        params.setdefault("height", params.get("canvas_height", self.param.canvas_height.default))
        params["canvas_background"] = params.get("background", self.param.background.default)
        self._avatar_label = avatar_label(avatar)
        self._outbox = Outbox(self._deliver)
        super().__init__(**params)
        self.param.watch(self._on_status, "status")
        self.param.watch(self._on_canvas_size, ["canvas_width", "canvas_height"])
        self.param.watch(self._on_background, "background")

    def _deliver(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        self.send(json_only(msg, buffers))

    def _on_status(self, event: param.parameterized.Event) -> None:
        if event.new.startswith("error"):
            logger.warning("avatar pane reports %s", event.new)
        self._outbox.on_status(event.new)

    def _on_canvas_size(self, event: param.parameterized.Event) -> None:
        # Keep the layout box in step with the canvas.
        self.param.update(width=self.canvas_width, height=self.canvas_height)

    def _on_background(self, event: param.parameterized.Event) -> None:
        self.canvas_background = event.new

    def __repr__(self) -> str:
        return (
            f"AvatarPane(avatar={self._avatar_label!r}, glb={len(self.glb or b'')} bytes, "
            f"canvas={self.canvas_width}x{self.canvas_height}, status={self.status!r})"
        )
