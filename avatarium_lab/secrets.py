"""API keys: a ``Secret`` type that never shows its value, where keys come from, and redaction of any text.

Keys are looked up, in this order: the tenant's own key for the vendor (bring-your-own-key), the
environment variable of the vendor (e.g. ``OPENAI_API_KEY``), the system keyring (service
``avatarium-lab``, user = the vendor). Every key that is ever loaded is registered, and ``redact`` removes
registered keys (and anything shaped like a vendor key) from text: log records pass through
``RedactingFilter``, error messages and MLflow params through ``redact``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping

KEYRING_SERVICE = "avatarium-lab"

VENDOR_ENV: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "xai": ("XAI_API_KEY",),
    "elevenlabs": ("ELEVENLABS_API_KEY", "ELEVEN_API_KEY"),
}

_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
# Shapes of vendor keys, so a key that never went through Secret (pasted into a message, echoed by a server)
# is still hidden: sk-..., sk-ant-..., xai-..., Google's AIza..., the gateway's avk_...
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,}|xai-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}"
                         r"|avk_[A-Za-z0-9_\-]{20,})")  # the last: the gateway's own API keys
REDACTED = "[redacted]"


class Secret:
    """A secret string: ``str()``, ``repr()`` and f-strings show ``[redacted]``; ``reveal()`` gives the value."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str = "") -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret is a non-empty string")
        self._value = value
        self.source = source
        if len(value) >= 6:
            with _KNOWN_LOCK:
                _KNOWN.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED}{', source=' + repr(self.source) if self.source else ''})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def redact(text: str) -> str:
    """``text`` with every known key and every vendor-key-shaped token replaced by ``[redacted]``."""
    if not text:
        return text
    with _KNOWN_LOCK:
        known = sorted(_KNOWN, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts keys from the message, its arguments and structured extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is not ours to fix here
            return True
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in ("msg", "name", "levelname", "pathname", "filename", "module"):
                record.__dict__[key] = redact(value)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach ``RedactingFilter`` to every handler of ``logger`` (the root logger by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def _keyring_key(vendor: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, vendor)
    except (KeyringError, RuntimeError, OSError):
        return None


def resolve_key(vendor: str, *, byok: Mapping[str, Secret | str] | None = None, env_var: str | None = None,
                environ: Mapping[str, str] | None = None, use_keyring: bool = True) -> Secret | None:
    """The key to use for ``vendor``: the tenant's own (BYOK), then the environment, then the keyring."""
    if byok and byok.get(vendor):
        value = byok[vendor]
        return value if isinstance(value, Secret) else Secret(value, source=f"tenant:{vendor}")
    env = os.environ if environ is None else environ
    for name in ((env_var,) if env_var else VENDOR_ENV.get(vendor, ())):
        if name and env.get(name):
            return Secret(env[name], source=f"env:{name}")
    if use_keyring:
        value = _keyring_key(vendor)
        if value:
            return Secret(value, source=f"keyring:{vendor}")
    return None
