"""Every exception avatarium-lab raises, in one hierarchy a user can catch.

Each error has a stable machine ``code`` (used in ``Error`` events and API responses) and a ``retryable``
flag. Messages name what was wrong and what is allowed; they never contain secrets.
"""

from __future__ import annotations


class AvatariumError(Exception):
    """Base of every avatarium-lab error."""

    code: str = "avatarium_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(AvatariumError):
    """A configuration file or value is invalid; the message names the field."""

    code = "invalid_config"


class InvalidMessage(AvatariumError):
    """A user message is empty, too long or otherwise unusable."""

    code = "invalid_message"


class UnknownPersona(ConfigError):
    code = "unknown_persona"


class UnknownVoice(ConfigError):
    code = "unknown_voice"


class UnknownAvatar(ConfigError):
    code = "unknown_avatar"


class ModelNotFound(ConfigError):
    """A model file (e.g. a GGUF path) does not exist or cannot be loaded."""

    code = "model_not_found"


class ProviderError(AvatariumError):
    """A chat provider failed."""

    code = "provider_error"


class VoiceError(AvatariumError):
    """A text-to-speech engine failed."""

    code = "voice_error"


class LipSyncError(AvatariumError):
    code = "lipsync_error"


class AvatarError(AvatariumError):
    """An avatar file is broken or unusable."""

    code = "invalid_avatar"


class ProtocolError(AvatariumError):
    """A wire message does not follow ``docs/protocol.md``."""

    code = "protocol_error"


class TurnCancelled(AvatariumError):
    code = "cancelled"
