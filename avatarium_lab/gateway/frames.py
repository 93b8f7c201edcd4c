"""Client -> server WebSocket frames (protocol version 1, ``docs/protocol.md``), validated by pydantic.

Every frame is one JSON object with a ``type``. A frame that is not JSON, has an unknown ``type`` or a bad field
gets an ``error`` frame (code ``invalid_frame``) naming the problem; the connection stays open.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthFrame(_Frame):
    type: Literal["auth"]
    api_key: str = Field(min_length=1, max_length=512)


class MessageFrame(_Frame):
    type: Literal["message"]
    text: str = Field(min_length=1)
    id: str | None = Field(default=None, max_length=128, description="client's id, echoed in the ack")


class AudioFrame(_Frame):
    type: Literal["audio"]
    wav_b64: str = Field(min_length=4, description="a WAV file (any rate, mono or stereo), base64")
    id: str | None = Field(default=None, max_length=128)


class CancelFrame(_Frame):
    type: Literal["cancel"]


class PingFrame(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[AuthFrame | MessageFrame | AudioFrame | CancelFrame | PingFrame, Field(discriminator="type")]
_ADAPTER: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


class FrameError(ValueError):
    pass


def parse_frame(text: str) -> AuthFrame | MessageFrame | AudioFrame | CancelFrame | PingFrame:
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("auth", "message", "audio", "cancel",
                                                                           "ping"))
        raise FrameError(f"{where or 'frame'}: {first.get('msg', 'invalid')} (frame types: auth, message, audio, "
                         "cancel, ping)") from None


def error_frame(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"type": "error", "code": code, "message": message, **extra}
