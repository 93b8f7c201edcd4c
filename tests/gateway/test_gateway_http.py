"""The HTTP API: conversations, analytics, avatar uploads, health and metrics; a hypothesis property over API call
sequences by two tenants; and a schemathesis fuzz of the OpenAPI document (no 5xx)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avatarium_lab.avatar import load_avatar


def test_conversation_crud_and_listing(gateway) -> None:
    with gateway.http() as c:
        h = gateway.auth()
        created = c.post("/v1/conversations", json={"metadata": {"user": "u1"}}, headers=h).json()
        assert created["status"] == "active" and created["config"] == "default" and created["metadata"] == {"user": "u1"}
        assert c.post("/v1/conversations", json={"config": "nope"}, headers=h).status_code == 422
        listed = c.get("/v1/conversations", headers=h).json()
        assert [x["id"] for x in listed] == [created["id"]]
        assert c.get("/v1/conversations?status=active", headers=h).json()
        assert c.get("/v1/conversations?status=bogus", headers=h).status_code == 422
        r = c.post(f"/v1/conversations/{created['id']}/messages", json={"text": "Hi there"}, headers=h)
        assert r.status_code == 200 and "ocean" in r.json()["reply"] and r.json()["reason"] == "complete"
        assert c.post(f"/v1/conversations/{created['id']}/messages", json={"text": ""}, headers=h).status_code == 422
        assert c.delete(f"/v1/conversations/{created['id']}", headers=h).status_code == 204
        assert c.get(f"/v1/conversations/{created['id']}", headers=h).status_code == 404
        assert c.delete(f"/v1/conversations/{created['id']}", headers=h).status_code == 404


def test_health_readiness_metrics_and_openapi(gateway) -> None:
    with gateway.http() as c:
        assert c.get("/v1/health").json() == {"status": "ok"}
        assert c.get("/v1/ready").json()["ready"] is True
        c.post("/v1/conversations", json={}, headers=gateway.auth())
        text = c.get("/metrics").text
        assert 'avatarium_http_requests_total{method="POST",route="/v1/conversations",status="201"} 1.0' in text
        assert "avatarium_websockets_open 0.0" in text
        doc = c.get("/openapi.json").json()
        assert "/v1/conversations/{conversation_id}/transcript" in doc["paths"] and "/v1/avatars" in doc["paths"]
        assert c.get("/docs").status_code == 404  # Swagger UI would need a CDN


def test_avatar_upload_is_checked_and_owned_by_the_tenant(gateway) -> None:
    glb = load_avatar("kenji")
    with gateway.http() as c:
        r = c.post("/v1/avatars?name=kenji.glb", content=glb, headers={**gateway.auth(),
                                                                       "Content-Type": "model/gltf-binary"})
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["report"]["lipsync"] == "full" and "kenji" in up["summary"] and up["size"] == len(glb)
        assert c.get(f"/v1/avatars/{up['id']}/glb", headers=gateway.auth()).content == glb
        assert [u["id"] for u in c.get("/v1/avatars", headers=gateway.auth()).json()] == [up["id"]]
        assert c.get(f"/v1/avatars/{up['id']}", headers=gateway.auth("b")).status_code == 404
        assert c.get("/v1/avatars", headers=gateway.auth("b")).json() == []
        broken = c.post("/v1/avatars", content=glb[:5000], headers=gateway.auth())
        assert broken.status_code == 422 and "TruncatedAvatar" in broken.json()["error"]["message"]
        junk = c.post("/v1/avatars", content=b"not a glb at all", headers=gateway.auth())
        assert junk.status_code == 422
        assert c.post("/v1/avatars", content=glb, headers=gateway.auth("a_read")).status_code == 403


def test_oversized_upload_is_refused_before_it_is_read(make) -> None:
    gw = make(limits={"max_upload_bytes": 100_000})
    with gw.http() as c:
        r = c.post("/v1/avatars", content=b"glTF" + b"\0" * 200_000, headers=gw.auth())
        assert r.status_code == 413 and r.json()["error"]["code"] == "avatar_too_large"


def test_analytics_export_to_pandas(gateway) -> None:
    with gateway.http() as c:
        conv = c.post("/v1/conversations", json={}, headers=gateway.auth()).json()["id"]
        for text in ("One", "Two"):
            c.post(f"/v1/conversations/{conv}/messages", json={"text": text}, headers=gateway.auth())
    frame = gateway.store.for_tenant(gateway.tenants["a"]).events_frame()
    assert (frame["type"] == "turn_started").sum() == 2 and (frame["type"] == "latency_breakdown").sum() == 2
    assert set(frame["conversation_id"]) == {conv}
    assert gateway.store.for_tenant(gateway.tenants["b"]).events_frame().empty


# --- property: no sequence of API calls by one tenant reads another tenant's data --------------------------------

_OPS = st.lists(st.tuples(st.sampled_from(["a", "b"]),
                          st.sampled_from(["create", "message", "get", "transcript", "events", "list", "delete",
                                           "all_events"]),
                          st.integers(min_value=0, max_value=5)), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=_OPS)
def test_no_api_call_sequence_leaks_across_tenants(gateway, ops) -> None:
    owned: dict[str, list[str]] = {"a": [], "b": []}
    marker = {"a": "ALPHA-ONLY", "b": "BRAVO-ONLY"}
    with gateway.http() as c:
        for who, op, i in ops:
            other = "b" if who == "a" else "a"
            ids = owned[who] + owned[other]
            cid = ids[i % len(ids)] if ids else "missing"
            h = gateway.auth(who)
            if op == "create":
                owned[who].append(c.post("/v1/conversations", json={"metadata": {"m": marker[who]}},
                                         headers=h).json()["id"])
                continue
            if op == "message":
                r = c.post(f"/v1/conversations/{cid}/messages", json={"text": marker[who]}, headers=h)
            elif op == "get":
                r = c.get(f"/v1/conversations/{cid}", headers=h)
            elif op == "transcript":
                r = c.get(f"/v1/conversations/{cid}/transcript", headers=h)
            elif op == "events":
                r = c.get(f"/v1/conversations/{cid}/events", headers=h)
            elif op == "list":
                r = c.get("/v1/conversations", headers=h)
            elif op == "all_events":
                r = c.get("/v1/events", headers=h)
            else:
                r = c.delete(f"/v1/conversations/{cid}", headers=h)
                if r.status_code == 204:
                    owned[who].remove(cid)
            assert r.status_code < 500, r.text
            assert marker[other] not in r.text, (who, op)
            if cid in owned[other] and op not in ("list", "all_events"):
                assert r.status_code in (404, 429), (who, op, r.status_code)


# --- fuzz the HTTP API from its OpenAPI document ------------------------------------------------------------------

def test_openapi_fuzz_never_gives_5xx(gateway) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    import httpx

    schema = schemathesis.openapi.from_url(f"{gateway.base}/openapi.json")
    failures = []

    for operation in schema.get_all_operations():
        op = operation.ok()
        strategy = op.as_strategy()

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=strategy)
        def run(case) -> None:
            case.headers = {**(case.headers or {}), **gateway.auth()}
            response = case.call(base_url=gateway.base, timeout=30)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code, response.text[:200]))

        run()
    assert not failures, failures
    assert httpx.get(f"{gateway.base}/v1/health").status_code == 200
