"""AvatarUpload: upload a custom avatar (GLB, Ready Player Me export, VRM 0.x/1.0) in a notebook, see what it can
do, and preview it.

Stock ipywidgets: a ``FileUpload`` button (``.glb,.vrm``, one file), a report area and optionally an
``AvatarView`` preview. Every file goes through :func:`~avatarium_lab.avatar.check.check_avatar` (with the widget's
``max_bytes``) before anything else sees it. A file that passes shows its capability badges (the same colours as
``AvatarGallery``), the rig and rig-map presets the checker chose and every issue it found, in the checker's own
words; it becomes ``upload.glb`` / ``upload.name`` / ``upload.report`` and is loaded into the preview. A file that
fails (a typed :class:`~avatarium_lab.avatar.check.AvatarCheckError`, or anything else) shows the error's class and
message in red and sets ``upload.error``; the previous good avatar stays loaded everywhere. Nothing raises out of
the widget: an upload is handled in a traitlets observer, where an exception would only reach the kernel log.

``upload.load(data, name)`` does from Python exactly what an upload does (notebooks and tests call it), and
``upload.on_avatar(callback)`` registers ``callback(name, glb, report)`` to run after each accepted file.

The browser sends the whole file to the kernel in one websocket message; Jupyter Server (tornado) refuses messages
over 10 MiB by default and drops the connection, so a larger file never reaches the kernel and the widget cannot
report it (checked in JupyterLab: nothing happens at all). Larger avatars need
``c.ServerApp.tornado_settings = {"websocket_max_message_size": 64 * 1024 * 1024}`` in the server's config, or
``upload.load(path.read_bytes(), path.name)`` from Python.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..avatar.check import MAX_FILE_BYTES, AvatarCheckError, AvatarReport, check_avatar
from .gallery import _LEVEL_COLOURS, _badge

__all__ = ["AvatarCallback", "AvatarUpload"]

logger = logging.getLogger(__name__)

AvatarCallback = Callable[[str, bytes, AvatarReport], Any]
"""``callback(name, glb, report)``: called after a file passed the check and was loaded."""

_RED = _LEVEL_COLOURS["none"]
_AMBER = _LEVEL_COLOURS["reduced"]
_GREEN = _LEVEL_COLOURS["full"]
_GREY = "#374151"
_CAPABILITIES = ("lipsync", "emotions", "blinks", "gestures")
_WEBSOCKET_DEFAULT_LIMIT = 10 * 1024 * 1024
"""tornado's default ``websocket_max_message_size``, which Jupyter Server keeps: the largest upload that arrives."""


def _size(n: int) -> str:
    """Bytes for people: ``812 bytes``, ``48.2 KB``, ``50.0 MB`` (powers of 1024)."""
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


class AvatarUpload(widgets.VBox):
    """Upload a ``.glb`` or ``.vrm`` avatar, check it and (with ``preview=True``) show it in an ``AvatarView``.

    >>> upload = AvatarUpload(preview=True)          # display it, then pick a file
    >>> upload.load(Path("me.vrm").read_bytes(), "me.vrm")   # or give the bytes from Python
    >>> upload.report.lipsync, upload.name, upload.error
    ('full', 'me.vrm', None)

    ``max_bytes`` caps the file (and what its ``data:`` URIs decode to). ``avatar`` is shown in the preview until
    the first file is accepted (a library name, a path or GLB bytes); without it the preview appears with the first
    accepted file. ``canvas_width``/``canvas_height`` size the preview.

    After each file: ``report`` is the last accepted file's :class:`~avatarium_lab.avatar.check.AvatarReport`,
    ``glb`` its bytes and ``name`` its file name (all ``None`` until one is accepted, and never replaced by a file
    that fails); ``error`` is the exception of the last file if it failed, else ``None``.
    """

    def __init__(self, *, preview: bool = False, max_bytes: int = MAX_FILE_BYTES, avatar: Any = None,
                 canvas_width: int = 320, canvas_height: int = 400, description: str = "Upload avatar") -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.max_bytes = max_bytes
        self.preview = preview
        self.glb: bytes | None = None
        self.name: str | None = None
        self.error: Exception | None = None
        self._report: AvatarReport | None = None
        self._callbacks: list[AvatarCallback] = []
        self._view_size = {"canvas_width": canvas_width, "canvas_height": canvas_height}
        self.view: Any = None

        self.uploader = widgets.FileUpload(accept=".glb,.vrm", multiple=False, description=description,
                                           button_style="primary", layout=widgets.Layout(width="auto"))
        hint = widgets.HTML(f"<span style='font-size:12px;color:#555'>GLB (Ready Player Me, ARKit, CC...) or "
                            f"VRM 0.x/1.0, at most {_esc(_size(max_bytes))}</span>")
        self.status = widgets.HTML(self._idle_html(), layout=widgets.Layout(flex="1 1 auto", min_width="260px"))
        self.status.add_class("avatarium-upload-status")
        self._preview_box = widgets.Box(layout=widgets.Layout(flex="0 0 auto"))
        if preview and avatar is not None:
            self._make_view(avatar)
        body = widgets.HBox([self._preview_box, self.status], layout=widgets.Layout(width="100%", grid_gap="12px"))
        controls = widgets.HBox([self.uploader, hint], layout=widgets.Layout(align_items="center", grid_gap="8px"))
        super().__init__(children=[controls, body])
        self.add_class("avatarium-avatar-upload")
        self.uploader.observe(self._on_upload, names="value")
        self.uploader.observe(self._on_upload_error, names="error")

    # --- public API ---------------------------------------------------------------------------------------------

    @property
    def report(self) -> AvatarReport | None:
        """The capability report of the avatar in use (the last accepted file), or ``None``."""
        return self._report

    def load(self, data: bytes | bytearray | memoryview, name: str = "avatar.glb") -> AvatarReport | None:
        """Check ``data`` as the file ``name`` and use it if it passes, exactly like an upload.

        Returns the report of an accepted file, ``None`` for a refused one (``error`` says why). Never raises for
        a bad file: the widget shows what happened either way.
        """
        try:
            raw = bytes(data)
            report = check_avatar(raw, max_bytes=self.max_bytes, name=Path(name).stem or name)
            if self.preview:
                if self.view is None:
                    self._make_view(raw)
                else:
                    self.view.set_avatar(raw)
        except Exception as exc:  # noqa: BLE001 - any failure is shown, never raised into the observer
            self._refuse(name, data, exc)
            return None
        self._report, self.glb, self.name, self.error = report, raw, name, None
        notes = self._notify(name, raw, report)
        self.status.value = self._report_html(name, report, notes)
        return report

    def on_avatar(self, callback: AvatarCallback, remove: bool = False) -> None:
        """Call ``callback(name, glb, report)`` after every accepted file (``remove=True`` unregisters it).

        A callback that raises does not undo the upload; its error is shown under the report.
        """
        if remove:
            self._callbacks = [c for c in self._callbacks if c is not callback]
        elif callback not in self._callbacks:
            self._callbacks.append(callback)

    def __repr__(self) -> str:
        error = f", error={type(self.error).__name__}" if self.error is not None else ""
        caps = (f", lipsync={self._report.lipsync!r}" if self._report is not None else "")
        size = f", {len(self.glb):,} bytes" if self.glb is not None else ""
        return f"AvatarUpload(name={self.name!r}{size}{caps}{error}, max_bytes={self.max_bytes:,})"

    # --- upload handling ----------------------------------------------------------------------------------------

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        files = change.get("new") or ()
        if not files:
            return  # the value was cleared (below)
        name = "upload"
        try:
            item = files[-1]
            name = str(item.get("name") or "upload")
            content = item["content"]
        except Exception as exc:  # noqa: BLE001 - a malformed value from the front end
            self._refuse(name, b"", exc)
        else:
            self.load(content, name)
        finally:
            try:
                self.uploader.value = ()  # drop the bytes from the upload widget's state; the same file can be re-sent
            except Exception:  # noqa: BLE001 - clearing is housekeeping; the result is already shown
                logger.warning("could not clear the upload widget's value", exc_info=True)

    def _on_upload_error(self, change: Mapping[str, Any]) -> None:
        message = change.get("new")
        if message:
            self._refuse("the file", b"", OSError(f"the browser could not read the file: {message}"))

    def _make_view(self, avatar: Any) -> None:
        from .avatar_view import AvatarView

        self.view = AvatarView(avatar, **self._view_size)
        self._preview_box.children = (self.view,)

    def _notify(self, name: str, glb: bytes, report: AvatarReport) -> list[str]:
        notes = []
        for callback in list(self._callbacks):
            try:
                callback(name, glb, report)
            except Exception as exc:  # noqa: BLE001 - a user's callback must not break the widget
                label = getattr(callback, "__qualname__", None) or repr(callback)
                logger.warning("on_avatar callback %s failed", label, exc_info=True)
                notes.append(f"on_avatar callback {label} failed: {type(exc).__name__}: {exc}")
        return notes

    def _refuse(self, name: str, data: Any, exc: Exception) -> None:
        self.error = exc
        if not isinstance(exc, AvatarCheckError):
            logger.warning("avatar upload %r failed unexpectedly", name, exc_info=exc)
        try:
            size = memoryview(data).nbytes
        except TypeError:
            size = None
        try:
            self.status.value = self._error_html(name, size, exc)
        except Exception:  # noqa: BLE001 - last resort: a plain message
            self.status.value = f"<b style='color:{_RED}'>{_esc(type(exc).__name__)}</b>"

    # --- HTML ---------------------------------------------------------------------------------------------------

    def _idle_html(self) -> str:
        websocket = ""
        if self.max_bytes > _WEBSOCKET_DEFAULT_LIMIT:
            websocket = ("<br><span style='font-size:11px'>Jupyter Server drops a file over 10 MB on the way to the "
                         "kernel (nothing happens, not even an error) unless its "
                         "<code>websocket_max_message_size</code> is raised.</span>")
        return ("<div class='avatarium-upload-report' data-state='empty' style='color:#555;font-size:13px'>"
                "No avatar uploaded yet. Each file is checked before it is used: its capabilities and any problems "
                f"are listed here.{websocket}</div>")

    def _report_html(self, name: str, report: AvatarReport, notes: list[str]) -> str:
        c = report.counts
        if report.ok:
            state, colour, head = "ok", _GREEN, f"&#10003; {_esc(name)} loaded"
        else:
            state, colour, head = "warning", _AMBER, f"&#9888; {_esc(name)} loaded, but it cannot lip sync"
        lines = [f"<div style='font-size:14px;color:{colour}'><b>{head}</b></div>",
                 "<div>" + "".join(_badge(k, getattr(report, k)) for k in _CAPABILITIES) + "</div>"]
        made = f" &middot; made by {_esc(report.generator)}" if report.generator else ""
        lines.append(f"<div>{_esc(report.format.upper())} &middot; {_esc(_size(c.bytes))}{made}</div>")
        presets = report.mapping
        lines.append(f"<div>Rig detected: <b>{_esc(report.rig)}</b> &middot; presets: face "
                     f"<code>{_esc(presets.face_preset or '-')}</code>, bones "
                     f"<code>{_esc(presets.bone_preset or '-')}</code></div>")
        direct = sum(1 for s in report.visemes.values() if s == "direct")
        mapped = sum(1 for s in report.visemes.values() if s == "mapped")
        lines.append(f"<div style='color:#555'>{c.meshes} meshes, {c.vertices:,} vertices, {c.morph_targets} morph "
                     f"targets, {c.joints} joints &middot; visemes {direct} direct, {mapped} mapped &middot; ARKit "
                     f"shapes {len(report.arkit_shapes)}/52</div>")
        if report.vrm_meta:
            meta = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.vrm_meta.items())
            lines.append(f"<div style='color:#555'>VRM {_esc(meta)}</div>")
        if report.issues:
            items = "".join(f"<li>{_esc(issue)}</li>" for issue in report.issues)
            lines.append(f"<div style='margin-top:4px'><b>{len(report.issues)} "
                         f"{'problem' if len(report.issues) == 1 else 'problems'}:</b>"
                         f"<ul class='avatarium-upload-issues' style='margin:2px 0;padding-left:18px'>{items}</ul>"
                         "</div>")
        else:
            lines.append("<div style='margin-top:4px'>No problems found.</div>")
        for note in notes:
            lines.append(f"<div style='color:{_RED}'>{_esc(note)}</div>")
        lines.append("<details><summary style='cursor:pointer'>Full report</summary>"
                     f"<pre style='font-size:11px;white-space:pre-wrap'>{_esc(report.summary())}</pre></details>")
        return (f"<div class='avatarium-upload-report' data-state='{state}' style='font-size:13px;line-height:1.5'>"
                + "".join(lines) + "</div>")

    def _error_html(self, name: str, size: int | None, exc: Exception) -> str:
        kind = type(exc).__name__
        expected = isinstance(exc, AvatarCheckError)
        lines = [f"<div style='font-size:14px'><b>&#10007; {_esc(name)} was not loaded</b></div>",
                 f"<div><code style='color:{_RED}'>{_esc(kind)}</code>: {_esc(exc)}</div>"]
        if size is not None and size > self.max_bytes:
            lines.append(f"<div>The file is {_esc(_size(size))} ({size:,} bytes); this upload accepts at most "
                         f"{_esc(_size(self.max_bytes))} ({self.max_bytes:,} bytes). Use a smaller file, or create "
                         "the widget with a higher <code>max_bytes</code>.</div>")
        if not expected:
            lines.append("<div>This is an unexpected error while checking the file (details in the kernel log).</div>")
        if self.name is not None:
            keep = f"The previous avatar, {_esc(self.name)}, is still loaded."
        else:
            keep = "No avatar has been loaded yet."
        lines.append(f"<div style='color:{_GREY}'>{keep}</div>")
        return (f"<div class='avatarium-upload-report' data-state='error' style='font-size:13px;line-height:1.5;"
                f"color:{_RED}'>" + "".join(lines) + "</div>")
