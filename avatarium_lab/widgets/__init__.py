"""Notebook and Panel widgets: the inline 3D avatar (``AvatarView``, ``AvatarPane``) and their shared protocol.

The classes are imported on first use so that ``avatarium_lab.widgets.protocol`` works without anywidget or
Panel being imported (and without the front-end bundle having been built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .avatar_view import AvatarView
    from .experiments import ABCompare, LatencyWaterfall, ResultsExplorer
    from .gallery import AvatarGallery
    from .lipsync_inspector import LipSyncInspector
    from .panel_view import AvatarPane
    from .upload import AvatarUpload
    from .voice_compare import VoiceCompare

__all__ = ["ABCompare", "AvatarGallery", "AvatarPane", "AvatarUpload", "AvatarView", "LatencyWaterfall",
           "LipSyncInspector", "ResultsExplorer", "VoiceCompare"]


def __getattr__(name: str) -> Any:
    if name == "AvatarView":
        from .avatar_view import AvatarView

        return AvatarView
    if name == "AvatarPane":
        from .panel_view import AvatarPane

        return AvatarPane
    if name == "LipSyncInspector":
        from .lipsync_inspector import LipSyncInspector

        return LipSyncInspector
    if name == "VoiceCompare":
        from .voice_compare import VoiceCompare

        return VoiceCompare
    if name == "AvatarGallery":
        from .gallery import AvatarGallery

        return AvatarGallery
    if name == "AvatarUpload":
        from .upload import AvatarUpload

        return AvatarUpload
    if name in ("ABCompare", "LatencyWaterfall", "ResultsExplorer"):
        from . import experiments

        return getattr(experiments, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
