"""Transport security and authentication for the gateway.

- **HTTPS/WSS only off loopback.** :func:`check_bind` refuses to start plain HTTP on any address other than
  127.0.0.1 / ::1 / localhost, and :class:`TransportSecurity` (ASGI middleware) refuses any plain ``http`` /
  ``ws`` request whose peer is not on loopback (behind a TLS-terminating load balancer, run uvicorn with
  ``--proxy-headers --forwarded-allow-ips=<balancer>``: the scheme it reports is then the client's).
- **API keys**, per tenant, as ``Authorization: Bearer <key>``; a browser WebSocket (which cannot set headers)
  sends ``{"type": "auth", "api_key": "..."}`` as its first frame instead. Never in the URL.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from ..errors import ConfigError

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InsecureBind(ConfigError):
    code = "insecure_bind"


def check_bind(host: str, certfile: str | None, keyfile: str | None) -> None:
    """Refuse plain HTTP anywhere but loopback; a certificate needs its key."""
    if bool(certfile) != bool(keyfile):
        raise InsecureBind("give both --certfile and --keyfile (or neither, on loopback only)")
    if not certfile and not is_loopback(host):
        raise InsecureBind(f"refusing to serve plain HTTP on {host}: off loopback the gateway speaks HTTPS/WSS only; "
                           "give --certfile and --keyfile, or bind 127.0.0.1")


def bearer_token(headers: Any) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header (case-insensitive scheme), else None."""
    value = headers.get("authorization") if headers is not None else None
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class TransportSecurity:
    """ASGI middleware: plain HTTP/WS only from loopback peers; HSTS on HTTPS responses."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scheme = scope.get("scheme", "http")
        secure = scheme in ("https", "wss")
        peer = (scope.get("client") or (None, None))[0]
        if not secure and not is_loopback(peer):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 4403, "reason": "WSS only"})
                return
            body = json.dumps({"error": {"code": "https_required",
                                         "message": "this gateway accepts HTTPS only from this address"}}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if not secure or kind != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      (b"strict-transport-security", b"max-age=31536000")]
            await send(message)

        await self.app(scope, receive, send_with_hsts)
