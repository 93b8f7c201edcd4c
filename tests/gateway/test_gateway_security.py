"""Authentication, tenant isolation, transport security and secrets hygiene of the gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import sys

import httpx
import pytest
from gateway_helpers import frames_until, make_gateway, stop_uvicorn, turn_frames
from websockets.exceptions import ConnectionClosed

from avatarium_lab.gateway import InsecureBind, check_bind
from avatarium_lab.gateway.security import TransportSecurity


def _closed_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(5):
            ws.recv(timeout=5)
    return closed.value.rcvd.code


def test_http_requires_a_valid_unrevoked_key_with_the_right_scope(gateway) -> None:
    with gateway.http() as c:
        assert c.get("/v1/health").status_code == 200  # the only open routes: health, readiness, metrics, openapi
        r = c.get("/v1/conversations")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
        assert c.get("/v1/conversations", headers={"Authorization": "Bearer avk_nope_nope"}).status_code == 401
        assert c.get("/v1/conversations", headers={"Authorization": "Basic abc"}).status_code == 401
        # read-only key: may read, may not create
        assert c.get("/v1/conversations", headers=gateway.auth("a_read")).status_code == 200
        r = c.post("/v1/conversations", json={}, headers=gateway.auth("a_read"))
        assert r.status_code == 403 and "chat" in r.json()["error"]["message"]
        # revocation takes effect at once
        key_id = next(k.key_id for k in gateway.store.list_keys(gateway.tenants["a"]) if k.scopes == ("read",)
                      or set(k.scopes) == {"read"})
        assert gateway.store.revoke_key(key_id)
        assert c.get("/v1/conversations", headers=gateway.auth("a_read")).status_code == 401


def test_websocket_auth_by_header_or_first_frame_and_close_codes(gateway) -> None:
    conv = gateway.create_conversation()
    with gateway.connect(conv, who=None) as ws:  # no header: the first frame must authenticate
        ws.send(json.dumps({"type": "auth", "api_key": gateway.keys["a"]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    with gateway.connect(conv, who=None) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": "avk_forged_key"}))
        assert json.loads(ws.recv(timeout=10))["code"] == "unauthorized"
        assert _closed_code(ws) == 4401
    with gateway.connect(conv, who=None) as ws:
        ws.send(json.dumps({"type": "message", "text": "let me in"}))
        assert json.loads(ws.recv(timeout=10))["code"] == "unauthorized"
        assert _closed_code(ws) == 4401
    with gateway.connect(conv, who="a_read") as ws:  # a read-only key cannot chat
        assert json.loads(ws.recv(timeout=10))["code"] == "forbidden"
        assert _closed_code(ws) == 4403


def test_tenant_b_cannot_see_or_touch_tenant_a(gateway) -> None:
    conv = gateway.create_conversation("a")
    with gateway.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        turn_frames(ws, "A's secret plans")
    with gateway.http() as c:
        b = gateway.auth("b")
        for path in (f"/v1/conversations/{conv}", f"/v1/conversations/{conv}/transcript",
                     f"/v1/conversations/{conv}/events"):
            r = c.get(path, headers=b)
            assert r.status_code == 404 and "secret" not in r.text, (path, r.text)
        assert c.delete(f"/v1/conversations/{conv}", headers=b).status_code == 404
        assert c.post(f"/v1/conversations/{conv}/messages", json={"text": "hi"}, headers=b).status_code == 404
        assert c.get("/v1/conversations", headers=b).json() == []
        assert c.get("/v1/events", headers=b).json() == []
        assert c.get(f"/v1/conversations/{conv}", headers=gateway.auth("a")).status_code == 200
    with gateway.connect(conv, who="b") as ws:
        err = json.loads(ws.recv(timeout=10))
        assert err["code"] == "not_found" and "secret" not in json.dumps(err)
        assert _closed_code(ws) == 4404


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(InsecureBind, match="HTTPS/WSS only"):
        check_bind("0.0.0.0", None, None)
    with pytest.raises(InsecureBind):
        check_bind("192.168.1.20", "cert.pem", None)
    check_bind("127.0.0.1", None, None)
    check_bind("::1", None, None)
    check_bind("0.0.0.0", "cert.pem", "key.pem")
    out = subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "HTTPS/WSS only" in out.stderr


def test_the_middleware_refuses_plain_requests_from_remote_peers() -> None:
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(scheme: str, client: str, kind: str = "http") -> list[dict]:
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request"}

        await TransportSecurity(app)({"type": kind, "scheme": scheme, "client": (client, 5000), "headers": []},
                                     receive, send)
        return sent

    remote_plain = asyncio.run(call("http", "203.0.113.9"))
    assert remote_plain[0]["status"] == 403 and b"https_required" in remote_plain[1]["body"]
    assert asyncio.run(call("ws", "203.0.113.9", "websocket"))[0] == {"type": "websocket.close", "code": 4403,
                                                                     "reason": "WSS only"}
    assert asyncio.run(call("http", "127.0.0.1"))[0]["status"] == 200
    secure = asyncio.run(call("https", "203.0.113.9"))
    assert secure[0]["status"] == 200 and (b"strict-transport-security", b"max-age=31536000") in secure[0]["headers"]


def test_https_and_wss_with_a_self_signed_certificate(tmp_path, tls_cert) -> None:
    gw = make_gateway(tmp_path, ssl=tls_cert)
    try:
        ctx = ssl.create_default_context(cafile=tls_cert["cert"])
        with httpx.Client(base_url=gw.base, verify=ctx, timeout=30) as c:
            r = c.post("/v1/conversations", json={}, headers=gw.auth())
            assert r.status_code == 201 and r.headers["strict-transport-security"]
            conv = r.json()["id"]
        with gw.connect(conv, ssl=ctx) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            assert turn_frames(ws, "Over TLS")[-1]["type"] == "latency_breakdown"
        with pytest.raises(httpx.ConnectError):  # an untrusting client refuses the self-signed certificate
            httpx.get(f"{gw.base}/v1/health", timeout=10)
    finally:
        stop_uvicorn(gw.server)
        gw.store.close()


def test_no_api_key_in_logs_stored_events_or_the_database(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    gw = make_gateway(tmp_path)
    try:
        conv = gw.create_conversation()
        with gw.connect(conv, who=None) as ws:
            ws.send(json.dumps({"type": "auth", "api_key": gw.keys["a"]}))
            json.loads(ws.recv(timeout=10))
            turn_frames(ws, "hello")
            ws.send(json.dumps({"type": "auth", "api_key": gw.keys["a"]}))  # a stray second auth frame
            frames_until(ws, lambda f: f["type"] == "error")
        with gw.http() as c:
            c.get("/v1/conversations", headers={"Authorization": f"Bearer {gw.keys['a']}x"})  # a wrong one
            events = c.get("/v1/events", headers=gw.auth()).text
            metrics = c.get("/metrics").text
        db = (tmp_path / "gateway.db").read_bytes() + b"".join(
            p.read_bytes() for p in tmp_path.glob("gateway.db-*"))
    finally:
        stop_uvicorn(gw.server)
        gw.store.close()
    # the server's records (this test's own websockets client logs what it sends at DEBUG: that is the client)
    logs = "\n".join(r.getMessage() + str(r.args) for r in caplog.records if not r.name.startswith("websockets.client"))
    for secret in gw.keys.values():
        token = secret[-32:]  # the random part
        for where, text in (("logs", logs), ("events", events), ("metrics", metrics)):
            assert token not in text, where
        assert token.encode() not in db
    assert "avatarium_auth_failures_total 1.0" in metrics
