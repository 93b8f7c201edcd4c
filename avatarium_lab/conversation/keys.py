"""API keys of the gateway: their shape, how they are made, and how they are checked.

A key is ``avk_<key_id>_<secret>``: ``key_id`` is 16 hex characters (public: it names the key in listings and
logs), ``secret`` is 32 random bytes in URL-safe base64 (43 characters, 256 bits). Only a per-key random salt
and ``HMAC-SHA256(salt, whole key)`` are stored. The secret is 256 bits of randomness, so a fast hash is as
safe as a slow one here (there is nothing to brute-force) and checking a key costs microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "avk_"
KEY_ID_HEX = 16
SECRET_BYTES = 32
SALT_BYTES = 16
# The scopes a key can grant. ``chat``: run turns; ``read``: read conversations, events, uploads; ``upload``:
# upload avatars/files; ``admin``: manage the tenant's keys.
SCOPES: tuple[str, ...] = ("chat", "read", "upload", "admin")
DEFAULT_SCOPES: tuple[str, ...] = ("chat", "read", "upload")

_KEY_RE = re.compile(r"avk_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")
# A hash to compare against when the key id is unknown, so a miss costs the same work as a hit.
_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)
_DUMMY_HASH = hashlib.sha256(b"avatarium-lab: no such key").hexdigest()


def new_key() -> tuple[str, str]:
    """``(key_id, presented key)`` for a fresh key."""
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_key(presented: object) -> str | None:
    """The key id of a well-formed key, else ``None`` (wrong type, prefix, length or alphabet)."""
    if not isinstance(presented, str) or len(presented) != len(PREFIX) + KEY_ID_HEX + 1 + 43:
        return None
    match = _KEY_RE.fullmatch(presented)
    return match.group(1) if match else None


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def hash_key(presented: str, salt_hex: str) -> str:
    """``HMAC-SHA256(salt, key)`` as hex; what the store keeps instead of the key."""
    return hmac.new(bytes.fromhex(salt_hex), presented.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_key(presented: str, salt_hex: str | None, stored_hash: str | None) -> bool:
    """Constant-time check of ``presented`` against a stored salt and hash; with ``None`` (no such key) it does
    the same work and returns False."""
    if salt_hex is None or stored_hash is None:
        hmac.compare_digest(hash_key(presented, _DUMMY_SALT.hex()), _DUMMY_HASH)
        return False
    return hmac.compare_digest(hash_key(presented, salt_hex), stored_hash)


def normalize_scopes(scopes: object) -> tuple[str, ...]:
    """Scopes as a sorted tuple of known names; accepts an iterable or a comma/space separated string."""
    if isinstance(scopes, str):
        items = [s for s in re.split(r"[,\s]+", scopes) if s]
    else:
        try:
            items = [str(s).strip() for s in scopes]  # type: ignore[attr-defined]
        except TypeError:
            raise ValueError(f"scopes must be names from {SCOPES}, got {scopes!r}") from None
    unknown = sorted({s for s in items if s not in SCOPES})
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; allowed: {', '.join(SCOPES)}")
    if not items:
        raise ValueError(f"a key needs at least one scope from {', '.join(SCOPES)}")
    return tuple(sorted(set(items)))
