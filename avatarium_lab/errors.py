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
    """A chat provider failed. ``provider`` names it (``openai:gpt-4o-mini``), ``status`` is the HTTP status if any.

    Subclasses say what kind of failure it was; ``retryable`` says whether trying again (the same provider after
    a pause, or the next one in a failover chain) can help.
    """

    code = "provider_error"

    def __init__(self, message: str, *, provider: str = "", status: int | None = None, code: str | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.provider = provider
        self.status = status


class ProviderAuthError(ProviderError):
    """The key was missing, invalid or revoked (401/403): another attempt with the same key cannot help."""

    code = "provider_auth"


class ProviderBadRequest(ProviderError):
    """The provider rejected the request itself (400/404/422): an unknown model, a bad parameter."""

    code = "provider_bad_request"


class RateLimited(ProviderError):
    """429 (or a vendor's rate-limit body); ``retry_after`` seconds when the provider said how long to wait."""

    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx, overloaded (Anthropic's 529), connection refused or reset."""

    code = "provider_unavailable"
    retryable = True


class ProviderTimeout(ProviderError):
    """No connection, no first token or too long a gap between chunks within the configured time."""

    code = "provider_timeout"
    retryable = True


class MalformedStream(ProviderError):
    """The stream broke its wire format: invalid JSON in a chunk, truncated, or ended without its final event."""

    code = "malformed_stream"
    retryable = True


class PlanRequired(ProviderError):
    """The model is premium and the tenant's plan does not include it (raised before any network call)."""

    code = "plan_required"


class AllProvidersFailed(ProviderError):
    """Every provider of a failover chain failed; ``attempts`` lists what was tried and why it failed."""

    code = "all_providers_failed"

    def __init__(self, message: str, *, attempts: list[dict[str, object]] | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.attempts = attempts or []


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


class NotFound(AvatariumError):
    """A stored object (tenant, conversation, upload) does not exist -- or belongs to another tenant, which looks
    exactly the same from outside."""

    code = "not_found"


class ConversationNotFound(NotFound):
    code = "not_found"


class UploadNotFound(NotFound):
    code = "not_found"


class ConversationExpired(AvatariumError):
    """The conversation was idle longer than the idle timeout (30 minutes by default); start a new one."""

    code = "conversation_expired"


class AuthError(AvatariumError):
    """An API key is missing, malformed, unknown, revoked, or lacks the scope the request needs."""

    code = "unauthorized"


class AlreadyExists(AvatariumError):
    """A uniquely named object (a tenant) exists already."""

    code = "already_exists"


class SpeechToTextError(AvatariumError):
    """A speech-to-text engine failed or cannot run (``avatarium_lab.stt``); ``engine`` names it.

    Codes: ``stt_error`` (the engine failed), ``stt_model_missing`` (weights not installed or not the pinned
    files), ``invalid_audio``, ``audio_too_long``, ``unsupported_language``. Cloud engines raise the
    ``ProviderError`` family instead, as cloud voices do.
    """

    code = "stt_error"

    def __init__(self, message: str, *, engine: str = "", code: str | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.engine = engine


class UnknownSpeechToText(ConfigError):
    """``make_stt`` got a name it does not know."""

    code = "unknown_stt"
