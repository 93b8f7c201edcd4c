"""The one translator from pipeline events to the avatar front end's messages, shared by AvatarView and AvatarPane.

The front-end module (``js/src/avatar_view.js``) understands these messages, each a JSON object with ``kind``:

``{"kind": "begin", "turn_id"}``
    A new turn: stop anything still playing and reset the turn clock.
``{"kind": "audio", "turn_id", "segment", "offset", "sample_rate"}`` + one binary buffer
    PCM16 little-endian mono, placed at ``offset`` seconds on the turn's audio timeline. Transports that carry
    JSON only (Panel's ``send``) put the bytes in a ``"pcm_b64"`` string instead, see :func:`json_only`.
``{"kind": "visemes", "turn_id", "segment", "items": [[viseme, start, end, weight], ...]}``
    Oculus viseme ids, seconds on the turn's audio timeline.
``{"kind": "emotion", "turn_id", "name", "intensity", "start"}``
``{"kind": "gesture", "turn_id", "name", "start"}``
    ``nod``, ``head_shake``, ``head_tilt``, ``shrug`` or ``wave`` (a bust without visible arms greets with a
    nod instead), from ``start`` seconds on the turn's audio timeline. Without ``turn_id`` it plays at once.
``{"kind": "pose", "visemes": {"aa": 1.0}, "emotion": "happy", "intensity": 1.0, "still": true}``
    Hold a pose outside any turn (stills, screenshots, a gallery of expressions); ``still`` also pauses the idle
    sway, saccades and blinks. ``{"kind": "pose"}`` with nothing else releases it.
``{"kind": "end", "turn_id", "reason"}``
``{"kind": "stop"}``
    Barge-in: silence the audio and relax the mouth at once.

The front end animates the viseme timeline itself against its audio clock; Python never streams per-frame
weights (see FINDINGS, Rendering). This module also holds what both widget classes share beyond the messages:
the bundle's path, avatar resolution and the outbox that waits for the front end.
"""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import AvatarError
from ..events import Audio, Emotion, Event, Gesture, TurnEnded, TurnStarted, Visemes

__all__ = [
    "BUNDLE",
    "AvatarMessaging",
    "AvatarSource",
    "Message",
    "Outbox",
    "begin_message",
    "bundle_path",
    "end_message",
    "frontend_message",
    "json_only",
    "pose_message",
    "resolve_glb",
    "rig_payload",
    "stop_message",
    "turn_messages",
    "with_buffers",
]

logger = logging.getLogger(__name__)

Message = tuple[dict[str, Any], list[bytes]]
"""A front-end message: its JSON part and its binary buffers (at most one, the PCM of an audio message)."""

BUNDLE = Path(__file__).resolve().parent / "static" / "avatar_view.js"
"""The one ES module both widget classes load (built from ``js/`` by ``make js``; three.js bundled in)."""

AvatarSource = str | Path | bytes | bytearray | memoryview | None
"""A library avatar name (``"aria"``), a path to a ``.glb`` file, the GLB bytes themselves, or ``None``."""

GLB_MAGIC = b"glTF"


def resolve_glb(avatar: AvatarSource) -> bytes:
    """GLB bytes for an avatar given by library name, path or bytes (``None`` gives empty bytes)."""
    if avatar is None:
        return b""
    if isinstance(avatar, bytes | bytearray | memoryview):
        data = bytes(avatar)
    elif isinstance(avatar, Path) or (isinstance(avatar, str) and avatar.lower().endswith((".glb", ".gltf"))):
        path = Path(avatar).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AvatarError(f"cannot read avatar file {str(path)!r}: {exc.strerror or exc}") from exc
    elif isinstance(avatar, str):
        # Imported here so the widgets import without the avatar package's dependencies until needed.
        from ..avatar import load_avatar

        data = load_avatar(avatar)
    else:
        raise TypeError(f"avatar must be a library name, a path or GLB bytes, not {type(avatar).__name__}")
    if data[:4] != GLB_MAGIC:
        raise AvatarError("avatar data is not a binary glTF (.glb) file: it does not start with b'glTF'")
    return data


def rig_payload(glb: bytes) -> dict[str, Any]:
    """What the front end needs to animate this model, from the same rig mapping as ``avatarium avatars check``.

    ``visemes`` / ``emotions`` / ``blinks``: our target -> ``[[mesh, morph, weight], ...]`` (glTF mesh index and
    morph target index, so VRM expressions whose morphs have no names still work; an emotion's drives carry a
    fourth item, 1 when the shape moves the mouth, which the renderer eases off while the mouth speaks); ``bones``: bone role (VRM
    humanoid names) -> the node name three.js gives it; ``facing``: ``"-z"`` for VRM 0.x models, which face away
    from the glTF front. The renderer drives emotions only through this mapping (``rigmaps.yaml`` is the one
    emotion table), and visemes and blinks by the model's own names where it has them. Empty for data that does not pass the checker (the renderer then reports the load error).
    """
    from ..avatar.check import AvatarCheckError, check_avatar

    try:
        report = check_avatar(glb)
    except AvatarCheckError as exc:
        logger.debug("no rig for this avatar: %s", exc)
        return {}
    res = report.mapping

    def drives(group: Any, only_available: bool, flag_mouth: bool = False) -> dict[str, list[list[float]]]:
        out = {}
        for name, r in group.items():
            if not r.terms or (only_available and not r.available):
                continue
            out[name] = [[d.mesh, d.index, round(d.weight, 4)] + ([int(_moves_mouth(t.shape))] if flag_mouth else [])
                         for t in r.terms for d in t.drives]
        return out

    return {
        "rig": report.rig,
        "format": report.format,
        "facing": "-z" if report.format == "vrm0" else "+z",
        "visemes": drives(res.visemes, only_available=False),  # approximations beat a still mouth
        "emotions": drives(res.emotions, only_available=True, flag_mouth=True),
        "blinks": drives(res.blinks, only_available=True),
        "bones": {role: ref.three_name for role, ref in res.bones.items()},
    }


_MOUTH_PREFIXES = ("mouth", "jaw", "tongue", "v_", "vrm:")  # ARKit, CC (Mouth_*, V_*), VRM expressions


def _moves_mouth(shape: str) -> bool:
    return shape.lower().startswith(_MOUTH_PREFIXES)


def bundle_path() -> Path:
    """The bundled front-end module, with a clear error when it has not been built."""
    if not BUNDLE.is_file():
        raise FileNotFoundError(
            f"the avatar front-end bundle {BUNDLE} is missing: build it with `make js` (npm ci && npm run build in js/)"
        )
    return BUNDLE


def begin_message(turn_id: str) -> dict[str, Any]:
    return {"kind": "begin", "turn_id": turn_id}


def end_message(turn_id: str, reason: str = "complete") -> dict[str, Any]:
    return {"kind": "end", "turn_id": turn_id, "reason": reason}


def stop_message() -> dict[str, Any]:
    return {"kind": "stop"}


def pose_message(visemes: dict[str, float] | None = None, emotion: str | None = None, intensity: float = 1.0,
                 *, still: bool = True) -> dict[str, Any]:
    if not visemes and not emotion:
        return {"kind": "pose"}
    return {"kind": "pose", "visemes": {k: float(v) for k, v in (visemes or {}).items()}, "emotion": emotion,
            "intensity": float(intensity), "still": bool(still)}


def frontend_message(event: Event) -> Message | None:
    """Translate one pipeline event into a front-end message, or ``None`` if the avatar has no use for it."""
    if isinstance(event, TurnStarted):
        return begin_message(event.turn_id), []
    if isinstance(event, Audio):
        msg = {
            "kind": "audio",
            "turn_id": event.turn_id,
            "segment": event.segment,
            "offset": float(event.offset),
            "sample_rate": int(event.sample_rate),
        }
        return msg, [bytes(event.pcm)]
    if isinstance(event, Visemes):
        items = [[v.viseme, float(v.start), float(v.end), float(v.weight)] for v in event.items]
        return {"kind": "visemes", "turn_id": event.turn_id, "segment": event.segment, "items": items}, []
    if isinstance(event, Emotion):
        msg = {
            "kind": "emotion",
            "turn_id": event.turn_id,
            "name": event.name,
            "intensity": float(event.intensity),
            "start": float(event.start),
        }
        return msg, []
    if isinstance(event, Gesture):
        return {"kind": "gesture", "turn_id": event.turn_id, "name": event.name, "start": float(event.start)}, []
    if isinstance(event, TurnEnded):
        return end_message(event.turn_id, event.reason), []
    return None


def json_only(msg: dict[str, Any], buffers: list[bytes] | None = None) -> dict[str, Any]:
    """The JSON-only form of a message: its binary buffer (if any) becomes a base64 ``pcm_b64`` string."""
    if not buffers:
        return dict(msg)
    if len(buffers) > 1:
        raise ValueError(f"a front-end message carries at most one buffer, got {len(buffers)}")
    out = dict(msg)
    out["pcm_b64"] = base64.b64encode(bytes(buffers[0])).decode("ascii")
    return out


def with_buffers(msg: dict[str, Any]) -> Message:
    """Inverse of :func:`json_only`: move a ``pcm_b64`` string back into a binary buffer."""
    if "pcm_b64" not in msg:
        return dict(msg), []
    out = dict(msg)
    pcm = base64.b64decode(out.pop("pcm_b64"), validate=True)
    return out, [pcm]


class Outbox:
    """Holds messages until the front end listens, then delivers them in order.

    A message sent before the browser has rendered the widget would be lost (the listener is registered at
    render time), so both widget classes post through an outbox that opens when the front end first reports a
    status other than ``""`` or ``"loading"``: the avatar is on screen and the turn will be seen in full.
    """

    def __init__(self, deliver: Callable[[dict[str, Any], list[bytes]], None]) -> None:
        self._deliver = deliver
        self._pending: deque[Message] = deque()
        self.is_open = False

    def post(self, msg: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        if self.is_open:
            self._deliver(msg, list(buffers or []))
            return
        if msg.get("kind") == "begin":
            # Nobody is watching yet (a notebook run headless, a widget never displayed): only the latest turn
            # is worth playing later, and holding every earlier one would grow without bound.
            self._pending.clear()
        self._pending.append((msg, list(buffers or [])))

    def open(self) -> None:
        """The front end is listening: flush what waited, then deliver directly."""
        if self.is_open:
            return
        self.is_open = True
        if self._pending:
            logger.debug("delivering %d queued avatar messages", len(self._pending))
        while self._pending:
            msg, buffers = self._pending.popleft()
            self._deliver(msg, buffers)

    def clear(self) -> None:
        """Drop queued messages (a stop before the front end was ready: the turn should not play later)."""
        self._pending.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def on_status(self, status: str) -> None:
        """Feed every status the front end reports; the first one past loading opens the outbox."""
        if status not in ("", "loading"):
            self.open()


MISSING_BUNDLE_ESM = """
export default { render({ model, el }) {
  el.textContent = "avatarium-lab: the avatar front-end bundle is not built; run `make js`.";
  el.dataset.status = "error: front-end bundle missing";
  model.set("status", "error: front-end bundle missing"); model.save_changes();
} };
"""
"""Shown instead of the avatar when the bundle was never built, so the page says what to do instead of failing."""


def esm_source() -> Path | str:
    """What both widget classes load as their ES module: the bundle, or a module explaining it is missing."""
    return BUNDLE if BUNDLE.is_file() else MISSING_BUNDLE_ESM


def avatar_label(avatar: AvatarSource) -> str:
    return avatar if isinstance(avatar, str) else type(avatar).__name__


class AvatarMessaging:
    """What ``AvatarView`` and ``AvatarPane`` share: they differ only in how one message reaches the browser.

    Subclasses set ``_outbox`` (an :class:`Outbox` around their transport) and have a ``glb`` attribute.
    """

    _outbox: Outbox
    _avatar_label: str
    glb: Any

    rig: Any

    def set_avatar(self, avatar: AvatarSource) -> None:
        """Show another avatar (library name, path or GLB bytes)."""
        glb = resolve_glb(avatar)
        self.rig = rig_payload(glb)  # before the GLB, so the model loads with its mapping
        self.glb = glb
        self._avatar_label = avatar_label(avatar)

    def pose(self, visemes: dict[str, float] | None = None, emotion: str | None = None, intensity: float = 1.0,
             *, still: bool = True) -> None:
        """Hold a pose outside any turn (``pose(visemes={"aa": 1})``, ``pose(emotion="happy")``); ``pose()``
        releases it. ``still`` pauses the idle sway, saccades and blinks so screenshots compare pose alone."""
        self._outbox.post(pose_message(visemes, emotion, intensity, still=still))

    def gesture(self, name: str) -> None:
        """Play a gesture now (``nod``, ``head_shake``, ``head_tilt``, ``shrug``, ``wave``)."""
        self._outbox.post({"kind": "gesture", "name": name, "start": 0.0})

    def send_event(self, event: Event) -> bool:
        """Forward one pipeline event to the browser; returns whether the avatar uses this kind of event."""
        message = frontend_message(event)
        if message is None:
            return False
        self._outbox.post(*message)
        return True

    def play(self, events: Iterable[Event]) -> None:
        """Play a finished turn: ``begin``, every event the avatar uses, ``end`` (any iterable of events)."""
        for msg, buffers in turn_messages(events):
            self._outbox.post(msg, buffers)

    def stop(self) -> None:
        """Barge-in: stop the audio and relax the mouth now; a turn still waiting to be delivered is dropped."""
        self._outbox.clear()
        self._outbox.post(stop_message())


def turn_messages(events: Iterable[Event]) -> list[Message]:
    """Messages for a finished turn: ``begin``, every translatable event, ``end`` (each once)."""
    out: list[Message] = []
    turn_id: str | None = None
    began = ended = False
    for event in events:
        if turn_id is None:
            turn_id = event.turn_id
            if not isinstance(event, TurnStarted):
                out.append((begin_message(turn_id), []))
                began = True
        if isinstance(event, TurnStarted):
            if began:
                continue  # already announced
            began = True
        if isinstance(event, TurnEnded):
            ended = True
        message = frontend_message(event)
        if message is not None:
            out.append(message)
    if turn_id is not None and not ended:
        out.append((end_message(turn_id), []))
    return out
