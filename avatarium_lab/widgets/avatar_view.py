"""AvatarView: the notebook widget (anywidget) that shows a 3D avatar and plays turns with lip-synced audio.

The widget's state is a handful of traitlets (the GLB bytes, the canvas size, the background, a status the
browser reports back); a turn travels as custom messages made by :mod:`avatarium_lab.widgets.protocol`. The
browser schedules the audio with Web Audio and animates the visemes against the audio clock, so the kernel
may be slow or bursty without breaking sync.
"""

from __future__ import annotations

import logging
from typing import Any

import anywidget
import traitlets

from .protocol import AvatarMessaging, AvatarSource, Outbox, avatar_label, esm_source, resolve_glb, rig_payload

__all__ = ["AvatarView"]

logger = logging.getLogger(__name__)


class AvatarView(AvatarMessaging, anywidget.AnyWidget):
    """An inline 3D talking avatar for JupyterLab.

    >>> view = AvatarView()                      # the library avatar "aria"
    >>> view = AvatarView(avatar="avatars/me.glb", canvas_width=480, background="#fff")
    >>> view                                     # displays it
    >>> view.play(events)                        # a finished turn: begin, its events, end
    >>> for event in pipeline_stream:            # or stream a turn as it is produced
    ...     view.send_event(event)
    >>> view.stop()                              # barge-in

    ``status`` is reported by the browser: ``"loading"``, ``"ready"``, ``"playing"``, ``"idle"`` or
    ``"error: <message>"``; it stays ``""`` until the widget is displayed. Messages sent before the avatar is on
    screen wait in Python and are delivered when it is ready, so a turn played in the same cell that displays the
    widget is seen from its start.
    """

    _esm = esm_source()

    glb = traitlets.Bytes(b"", help="The avatar as binary glTF (GLB) bytes.").tag(sync=True)
    rig = traitlets.Dict({}, help="How to animate this model (protocol.rig_payload); set with the avatar.").tag(
        sync=True)
    canvas_width = traitlets.Int(320, help="Canvas width in CSS pixels.").tag(sync=True)
    canvas_height = traitlets.Int(400, help="Canvas height in CSS pixels.").tag(sync=True)
    background = traitlets.Unicode("#eef1f5", help="Any CSS colour behind the avatar.").tag(sync=True)
    status = traitlets.Unicode("", help="Reported by the browser; read-only from Python.").tag(sync=True)

    def __init__(self, avatar: AvatarSource = "aria", **kwargs: Any) -> None:
        """``avatar`` is a library name (``"aria"``), a path to a ``.glb`` file or GLB bytes.

        Keyword arguments set traits (``canvas_width``, ``canvas_height``, ``background``); ``glb=`` given
        directly wins over ``avatar``.
        """
        if "glb" not in kwargs:
            kwargs["glb"] = resolve_glb(avatar)
        kwargs.setdefault("rig", rig_payload(kwargs["glb"]) if kwargs["glb"] else {})
        self._avatar_label = avatar_label(avatar)
        self._outbox = Outbox(self._deliver)
        super().__init__(**kwargs)
        self.observe(self._on_status, names="status")

    def _deliver(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        self.send(msg, buffers or None)

    def _on_status(self, change: dict[str, Any]) -> None:
        status = change["new"]
        if status.startswith("error"):
            logger.warning("avatar view reports %s", status)
        self._outbox.on_status(status)

    def __repr__(self) -> str:
        return (
            f"AvatarView(avatar={self._avatar_label!r}, glb={len(self.glb)} bytes, "
            f"canvas={self.canvas_width}x{self.canvas_height}, status={self.status!r})"
        )
