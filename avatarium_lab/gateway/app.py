"""The gateway: an ASGI service (FastAPI) that authenticates every request, keeps conversations and streams each
turn's events over a WebSocket.

``create_app(config, store=...)`` builds it; ``avatarium serve CONFIG`` runs it with uvicorn
(:mod:`avatarium_lab.gateway.server`). The wire protocol (frames, codes) is ``docs/protocol.md``; the OpenAPI
document is served at ``/openapi.json``.

Tenancy lives in the storage layer: a handler only ever holds ``store.for_tenant(principal.tenant_id)``, whose
every query is filtered by tenant, so another tenant's conversation id is simply "not found". The service keeps
no state of its own apart from the database (open sockets, the per-key rate window and the per-tenant
connection count are per process), so replicas can share one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field

from ..config import Config
from ..errors import AvatariumError, InvalidMessage, LipSyncError
from ..events import (
    Error,
    Event,
    LatencyBreakdown,
    ProviderAttempt,
    ProviderSwitched,
    TextDelta,
    TurnEnded,
    TurnStarted,
    Usage,
    latency_breakdown,
)
from .frames import (
    PROTOCOL_VERSION,
    AudioFrame,
    AuthFrame,
    CancelFrame,
    FrameError,
    MessageFrame,
    PingFrame,
    error_frame,
    parse_frame,
)
from .limits import RateLimiter
from .security import TransportSecurity, bearer_token

logger = logging.getLogger(__name__)

_FRAME_LOGGERS = ("websockets.server", "websockets.protocol", "uvicorn.protocols.websockets")
AUTH_TIMEOUT = 10.0  # seconds a WebSocket may take to send its auth frame
_ANALYTICS = (TurnStarted, Usage, ProviderSwitched, TurnEnded, Error)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _record(obj: Any) -> dict[str, Any]:
    return asdict(obj) if is_dataclass(obj) else dict(obj)


class CreateConversation(BaseModel):
    config: str | None = Field(default=None, description="a configuration this server serves (default: the first)")
    metadata: dict[str, Any] = Field(default_factory=dict)


class PostMessage(BaseModel):
    text: str = Field(min_length=1)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("avatarium_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.turns = Counter("avatarium_turns", "turns streamed", ["reason"], registry=r)
        self.sockets = Gauge("avatarium_websockets_open", "open conversation WebSockets", registry=r)
        self.auth_failures = Counter("avatarium_auth_failures", "rejected API keys", registry=r)
        self.rate_limited = Counter("avatarium_rate_limited", "messages refused by the rate limit", registry=r)
        self.first_audio = Histogram("avatarium_first_audio_seconds", "message received -> first audio sent",
                                     registry=r, buckets=(.025, .05, .1, .15, .2, .3, .5, 1, 2, 5))
        self.overhead = Histogram("avatarium_gateway_overhead_seconds", "turn wall time minus the pipeline's own",
                                  registry=r, buckets=(.0005, .001, .002, .003, .005, .01, .02, .05, .1))


class Gateway:
    """The service's parts; ``app.state.gateway``."""

    def __init__(self, configs: list[Config], store: Any, *, pipelines: dict[str, Any] | None = None,
                 stt: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not configs:
            raise ValueError("the gateway needs at least one configuration")
        self.configs = {c.name: c for c in configs}
        self.default = configs[0].name
        self.limits = configs[0].limits
        self.store = store
        self._pipelines = dict(pipelines or {})
        self._stt = stt
        self.limiter = RateLimiter(self.limits.messages_per_minute, clock)
        self.open_by_tenant: dict[str, int] = {}
        self.metrics = _Metrics()
        self.ready = False

    def pipeline(self, name: str) -> Any:
        if name not in self._pipelines:
            from ..pipeline import Pipeline

            self._pipelines[name] = Pipeline(self.configs[name])
        return self._pipelines[name]

    def stt(self) -> Any:
        if self._stt is None:
            from ..stt import make_stt

            self._stt = make_stt(self.configs[self.default].server.stt)
        return self._stt

    async def warm(self) -> None:
        for name in self.configs:
            p = self.pipeline(name)
            if hasattr(p, "warm"):
                await asyncio.to_thread(p.warm)
        self.ready = True

    async def principal(self, presented: str | None, scope: str) -> Any:
        if not presented:
            raise ApiError(401, "unauthorized", "an API key is required (Authorization: Bearer <key>)",
                           {"WWW-Authenticate": "Bearer"})
        principal = await asyncio.to_thread(self.store.authenticate, presented)
        if principal is None:
            self.metrics.auth_failures.inc()
            raise ApiError(401, "unauthorized", "the API key is not valid (unknown, malformed or revoked)",
                           {"WWW-Authenticate": "Bearer"})
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
        return principal


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _needs(scope: str) -> Callable[..., Any]:
    async def dependency(request: Request) -> Any:
        gw = _gateway(request)
        principal = await gw.principal(bearer_token(request.headers), scope)
        return gw.store.for_tenant(principal.tenant_id), principal

    return dependency


def _not_found_as_404(exc: Exception) -> ApiError | None:
    code = getattr(exc, "code", "")
    if code == "not_found" or type(exc).__name__.endswith("NotFound"):
        return ApiError(404, "not_found", str(getattr(exc, "message", exc)))
    if code == "conversation_expired":
        return ApiError(410, "conversation_expired", str(getattr(exc, "message", exc)))
    return None


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except AvatariumError as exc:
        mapped = _not_found_as_404(exc)
        if mapped is not None:
            raise mapped from None
        raise


def create_app(configs: Config | list[Config], store: Any, *, pipelines: dict[str, Any] | None = None,
               stt: Any = None, clock: Callable[[], float] = time.monotonic, warm: bool = True) -> FastAPI:
    """The ASGI app. ``pipelines`` (config name -> Pipeline) and ``stt`` replace the ones the configurations
    would build (tests and benchmarks pass fakes); ``clock`` drives the rate limiter."""
    gw = Gateway(configs if isinstance(configs, list) else [configs], store, pipelines=pipelines, stt=stt,
                 clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep(gw))
        if warm:
            await gw.warm()
        else:
            gw.ready = True
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    app = FastAPI(title="avatarium gateway", version=str(PROTOCOL_VERSION), lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # Swagger UI would load from a CDN: the document is /openapi.json
    app.state.gateway = gw
    app.add_middleware(TransportSecurity)
    for name in _FRAME_LOGGERS:  # they log every frame at DEBUG, an auth frame's API key included
        if logging.getLogger(name).getEffectiveLevel() < logging.INFO:
            logging.getLogger(name).setLevel(logging.INFO)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                             for e in exc.errors()[:5])
        return JSONResponse({"error": {"code": "invalid_request", "message": problems or "invalid request"}}, 422)

    @app.exception_handler(AvatariumError)
    async def avatarium_error(request: Request, exc: AvatariumError) -> JSONResponse:
        status = 422 if isinstance(exc, InvalidMessage) or exc.code.startswith("invalid") else 400
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[..., Any]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        gw.metrics.requests.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    # --- health, metrics -----------------------------------------------------------------------------------------

    @app.get("/v1/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/ready", tags=["ops"])
    async def ready() -> JSONResponse:
        try:
            await asyncio.to_thread(gw.store.get_tenant, "__readiness_probe__")
            db = True
        except Exception:  # noqa: BLE001 - any database failure means not ready
            logger.warning("readiness: database unavailable", exc_info=True)
            db = False
        ok = db and gw.ready
        return JSONResponse({"ready": ok, "database": db, "pipelines_warm": gw.ready}, 200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # --- conversations -------------------------------------------------------------------------------------------

    @app.post("/v1/conversations", status_code=201, tags=["conversations"])
    async def create_conversation(body: CreateConversation, auth: Any = Depends(_needs("chat"))) -> dict[str, Any]:
        tenant, _ = auth
        name = body.config or gw.default
        if name not in gw.configs:
            raise ApiError(422, "unknown_config", f"unknown configuration {name!r}; served: {', '.join(gw.configs)}")
        rec = await _in_thread(tenant.create_conversation, config=name, persona=gw.configs[name].persona,
                               metadata=body.metadata)
        return _record(rec)

    @app.get("/v1/conversations", tags=["conversations"])
    async def list_conversations(status: str | None = Query(default=None, pattern="^(active|expired)$"),
                                 limit: int = Query(default=50, ge=1, le=500), offset: int = Query(default=0, ge=0, le=10_000_000),
                                 auth: Any = Depends(_needs("read"))) -> list[dict[str, Any]]:
        tenant, _ = auth
        return [_record(r) for r in await _in_thread(tenant.list_conversations, status=status, limit=limit,
                                                     offset=offset)]

    @app.get("/v1/conversations/{conversation_id}", tags=["conversations"])
    async def get_conversation(conversation_id: str, auth: Any = Depends(_needs("read"))) -> dict[str, Any]:
        tenant, _ = auth
        return _record(await _in_thread(tenant.get_conversation, conversation_id))

    @app.delete("/v1/conversations/{conversation_id}", status_code=204, tags=["conversations"],
                response_class=Response)
    async def delete_conversation(conversation_id: str, auth: Any = Depends(_needs("chat"))) -> Response:
        tenant, _ = auth
        if not await _in_thread(tenant.delete_conversation, conversation_id):
            raise ApiError(404, "not_found", f"no conversation {conversation_id!r}")
        return Response(status_code=204)

    @app.get("/v1/conversations/{conversation_id}/transcript", tags=["conversations"])
    async def transcript(conversation_id: str, auth: Any = Depends(_needs("read"))) -> dict[str, Any]:
        tenant, _ = auth
        rec = await _in_thread(tenant.get_conversation, conversation_id)
        messages = await _in_thread(tenant.messages, conversation_id)
        return {"conversation": _record(rec), "messages": [_record(m) for m in messages]}

    @app.get("/v1/conversations/{conversation_id}/events", tags=["conversations"])
    async def conversation_events(conversation_id: str, types: str | None = Query(default=None, max_length=500),
                                  auth: Any = Depends(_needs("read"))) -> list[dict[str, Any]]:
        tenant, _ = auth
        await _in_thread(tenant.get_conversation, conversation_id)
        kinds = [t for t in types.split(",") if t] if types else None
        return await _in_thread(tenant.events, conversation_id, types=kinds)

    @app.get("/v1/events", tags=["analytics"])
    async def tenant_events(types: str | None = Query(default=None, max_length=500),
                            since: float | None = Query(default=None),
                            limit: int = Query(default=1000, ge=1, le=10_000),
                            auth: Any = Depends(_needs("read"))) -> list[dict[str, Any]]:
        tenant, _ = auth
        kinds = [t for t in types.split(",") if t] if types else None
        return await _in_thread(tenant.events, None, types=kinds, since=since, limit=limit)

    @app.post("/v1/conversations/{conversation_id}/messages", tags=["conversations"])
    async def post_message(conversation_id: str, body: PostMessage, request: Request,
                           auth: Any = Depends(_needs("chat"))) -> dict[str, Any]:
        """One whole turn without streaming: the reply text, its latency and the turn id (audio: use the socket)."""
        tenant, principal = auth
        retry = gw.limiter.hit(principal.key_id)
        if retry is not None:
            gw.metrics.rate_limited.inc()
            raise ApiError(429, "rate_limited", f"more than {gw.limits.messages_per_minute} messages a minute",
                           {"Retry-After": str(max(1, round(retry)))})
        conv = await _in_thread(tenant.active_conversation, conversation_id)
        pipeline = gw.pipeline(conv.config)
        text = pipeline.validate_message(body.text)
        session = _Turns(gw, tenant, conv, pipeline, send=None)
        result = await session.run_turn(text, frame_received=time.perf_counter())
        return result

    # --- avatars -------------------------------------------------------------------------------------------------

    @app.post("/v1/avatars", status_code=201, tags=["avatars"])
    async def upload_avatar(request: Request, name: str = Query(default="avatar.glb", max_length=200),
                            auth: Any = Depends(_needs("upload"))) -> dict[str, Any]:
        """Upload a GLB/VRM as the raw request body (``Content-Type: model/gltf-binary``); checked before it is
        stored: a broken, truncated, oversized or malicious file gets 413/422 with the checker's typed error."""
        from ..avatar.check import AvatarCheckError, AvatarTooLarge, check_avatar

        tenant, _ = auth
        limit = gw.limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "avatar_too_large", f"the upload is {int(declared):,} bytes; at most {limit:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "avatar_too_large", f"the upload exceeds {limit:,} bytes")
            chunks.append(chunk)
        data = b"".join(chunks)
        try:
            report = await asyncio.to_thread(check_avatar, data, max_bytes=limit, name=name.rsplit(".", 1)[0])
        except AvatarTooLarge as exc:
            raise ApiError(413, "avatar_too_large", str(exc)) from None
        except AvatarCheckError as exc:
            raise ApiError(422, getattr(exc, "code", "invalid_avatar") or "invalid_avatar",
                           f"{type(exc).__name__}: {exc}") from None
        rec = await _in_thread(tenant.add_upload, name, data, report=report.as_dict(),
                               sha256=hashlib.sha256(data).hexdigest())
        return {**_record(rec), "summary": report.summary()}

    @app.get("/v1/avatars", tags=["avatars"])
    async def list_uploads(auth: Any = Depends(_needs("read"))) -> list[dict[str, Any]]:
        tenant, _ = auth
        return [_record(r) for r in await _in_thread(tenant.list_uploads)]

    @app.get("/v1/avatars/{upload_id}", tags=["avatars"])
    async def get_upload(upload_id: str, auth: Any = Depends(_needs("read"))) -> dict[str, Any]:
        tenant, _ = auth
        rec, _data = await _in_thread(tenant.get_upload, upload_id)
        return _record(rec)

    @app.get("/v1/avatars/{upload_id}/glb", tags=["avatars"], response_class=Response)
    async def get_upload_glb(upload_id: str, auth: Any = Depends(_needs("read"))) -> Response:
        tenant, _ = auth
        _rec, data = await _in_thread(tenant.get_upload, upload_id)
        return Response(data, media_type="model/gltf-binary")

    # --- the conversation socket ---------------------------------------------------------------------------------

    @app.websocket("/v1/conversations/{conversation_id}/ws")
    async def conversation_socket(websocket: WebSocket, conversation_id: str) -> None:
        await _socket(gw, websocket, conversation_id)

    return app


async def _sweep(gw: Gateway) -> None:
    """Expire idle conversations now and then (a message to one also checks it on the spot)."""
    interval = max(1.0, min(60.0, gw.store.idle_timeout / 4))
    while True:
        try:
            n = await asyncio.to_thread(gw.store.expire_idle)
            if n:
                logger.info("expired %d idle conversations", n)
        except Exception:  # noqa: BLE001 - the sweeper must survive a database hiccup
            logger.warning("expiry sweep failed", exc_info=True)
        await asyncio.sleep(interval)


def _analytics(ev: Event) -> dict[str, Any] | None:
    if isinstance(ev, ProviderAttempt) and ev.outcome != "ok":
        return ev.to_dict()
    if not isinstance(ev, _ANALYTICS):
        return None
    d = ev.to_dict()
    d.pop("text", None) if isinstance(ev, TurnEnded) else None  # the reply is in the transcript
    return d


class _Turns:
    """Runs turns of one conversation and sends their frames (``send`` None: collect them, for HTTP)."""

    def __init__(self, gw: Gateway, tenant: Any, conv: Any, pipeline: Any,
                 send: Callable[[dict[str, Any]], Any] | None, history: list[Any] | None = None) -> None:
        self.gw, self.tenant, self.conv, self.pipeline, self.send = gw, tenant, conv, pipeline, send
        self.turn_id: str | None = None  # the turn being streamed, for the cancelled frame
        # The conversation's messages as this session knows them, so a turn needs one database write (the user's
        # message) before it starts; reloaded whenever the store's numbering shows someone else added messages.
        self.context: list[dict[str, str]] | None = (
            [{"role": m.role, "content": m.content} for m in history] if history is not None else None)

    async def run_turn(self, text: str, *, frame_received: float, message_id: str | None = None) -> dict[str, Any]:
        from ..pipeline import Conversation

        tenant, conv_id = self.tenant, self.conv.id
        if self.context is None:
            self.context = await _in_thread(tenant.context, conv_id)
        # durable before the ack; raises ConversationExpired for an expired or idle conversation
        msg = await _in_thread(tenant.add_message, conv_id, "user", text)
        if msg.seq != len(self.context) + 1:  # messages were added elsewhere (another socket, another replica)
            self.context = [m for m in await _in_thread(tenant.context, conv_id)][: msg.seq - 1]
        if self.send is not None:
            await self.send({"type": "ack", "id": message_id, "seq": msg.seq})
        context = list(self.context)
        self.context.append({"role": "user", "content": text})
        conversation = Conversation(id=conv_id, messages=context)
        events: list[Event] = []
        reply: list[str] = []
        first_audio = None
        reason = "error"
        try:
            async for ev in self.pipeline.turn(text, conversation=conversation):
                events.append(ev)
                self.turn_id = ev.turn_id
                if isinstance(ev, TextDelta):
                    reply.append(ev.text)
                if self.send is not None:
                    await self.send(ev.to_dict())
                    if first_audio is None and ev.type == "audio":
                        first_audio = time.perf_counter() - frame_received
                        self.gw.metrics.first_audio.observe(first_audio)
                if isinstance(ev, TurnEnded):
                    reason = ev.reason
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            await asyncio.shield(self._finish(events, reply, reason, frame_received))
        lb = latency_breakdown(events)
        return {"turn_id": events[0].turn_id if events else None, "reply": "".join(reply).strip(),
                "reason": reason, "latency": lb.as_ms()}

    async def _finish(self, events: list[Event], reply: list[str], reason: str, frame_received: float) -> None:
        """Keep the reply (also a partial one after barge-in) and the turn's analytics; report the overhead."""
        tenant, conv_id = self.tenant, self.conv.id
        wall = time.perf_counter() - frame_received
        stats: dict[str, Any] = {}
        if events:
            own = events[-1].t - events[0].t
            overhead = max(0.0, wall - own)
            self.gw.metrics.overhead.observe(overhead)
            lb: LatencyBreakdown = latency_breakdown(events)
            stats = {"type": "latency_breakdown", "turn_id": events[0].turn_id, **lb.as_ms(),
                     "gateway_overhead_ms": round(overhead * 1000, 3)}
        self.gw.metrics.turns.labels(reason).inc()
        text = "".join(reply).strip()
        rows = [d for d in (_analytics(e) for e in events) if d is not None]
        if reason == "cancelled":
            rows.append({"type": "turn_cancelled", "turn_id": events[0].turn_id if events else None})
        if stats:
            rows.append(stats)
        try:
            if text:
                await asyncio.to_thread(tenant.add_message, conv_id, "assistant", text,
                                        turn_id=events[0].turn_id if events else None)
                if self.context is not None:
                    self.context.append({"role": "assistant", "content": text})
            if rows:
                await asyncio.to_thread(tenant.add_events, conv_id, rows)
        except Exception:  # noqa: BLE001 - the turn is over; losing analytics must not kill the socket
            logger.warning("could not store the turn of %s", conv_id, exc_info=True)
        if self.send is not None and stats and reason != "cancelled":
            with contextlib.suppress(Exception):
                await self.send(stats)


async def _socket(gw: Gateway, ws: WebSocket, conversation_id: str) -> None:
    await ws.accept()
    send_lock = asyncio.Lock()

    async def send(frame: dict[str, Any]) -> None:
        async with send_lock:
            await ws.send_json(frame)

    # 1. who is it
    presented = bearer_token(ws.headers)
    if presented is None:
        try:
            raw = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT)
            frame = parse_frame(raw)
            presented = frame.api_key if isinstance(frame, AuthFrame) else None
        except (TimeoutError, FrameError, WebSocketDisconnect, KeyError, RuntimeError):
            presented = None
    try:
        principal = await gw.principal(presented, "chat")
    except ApiError as exc:
        with contextlib.suppress(Exception):
            await send(error_frame(exc.code, exc.message))
            await ws.close(4401 if exc.status == 401 else 4403)
        return
    tenant = gw.store.for_tenant(principal.tenant_id)

    # 2. which conversation, and may it be opened now
    try:
        conv = await _in_thread(tenant.active_conversation, conversation_id)
    except ApiError as exc:
        with contextlib.suppress(Exception):
            await send(error_frame(exc.code, exc.message))
            await ws.close(4404 if exc.status == 404 else 4410)
        return
    open_now = gw.open_by_tenant.get(principal.tenant_id, 0)
    if open_now >= gw.limits.max_conversations:
        with contextlib.suppress(Exception):
            await send(error_frame("too_many_conversations",
                                   f"this tenant already has {open_now} open conversations (limit "
                                   f"{gw.limits.max_conversations})"))
            await ws.close(4429)
        return
    gw.open_by_tenant[principal.tenant_id] = open_now + 1
    gw.metrics.sockets.inc()
    turn_task: asyncio.Task[Any] | None = None
    try:
        history = await _in_thread(tenant.messages, conversation_id)
        await send({"type": "hello", "protocol": PROTOCOL_VERSION, "conversation_id": conv.id,
                    "config": conv.config, "resumed": bool(history), "messages": len(history)})
        pipeline = gw.pipeline(conv.config)
        session = _Turns(gw, tenant, conv, pipeline, send, history)

        async def cancel_turn() -> None:
            nonlocal turn_task
            if turn_task is not None and not turn_task.done():
                turn_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await turn_task
                await send({"type": "turn_ended", "turn_id": session.turn_id, "reason": "cancelled"})
            turn_task = None

        async def start_turn(text: str, received: float, message_id: str | None) -> None:
            nonlocal turn_task
            await cancel_turn()  # barge-in: a new message stops the current turn

            async def run() -> None:
                try:
                    await session.run_turn(text, frame_received=received, message_id=message_id)
                except asyncio.CancelledError:
                    raise
                except ApiError as exc:  # conversation_expired (410) or gone (404)
                    await send(error_frame(exc.code, exc.message))
                except AvatariumError as exc:
                    await send(error_frame(exc.code, exc.message, retryable=exc.retryable))
                except Exception:  # noqa: BLE001 - report, keep the socket
                    logger.exception("turn failed in %s", conversation_id)
                    await send(error_frame("internal_error", "the turn failed; see the server log"))

            turn_task = asyncio.create_task(run())

        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            received = time.perf_counter()
            raw = message.get("text")
            if raw is None:
                await send(error_frame("invalid_frame", "send JSON text frames (audio as base64 in an audio frame)"))
                continue
            if len(raw) > gw.limits.max_frame_bytes:
                await send(error_frame("frame_too_large", f"frames are at most {gw.limits.max_frame_bytes:,} bytes"))
                continue
            try:
                frame = parse_frame(raw)
            except FrameError as exc:
                await send(error_frame("invalid_frame", str(exc)))
                continue
            if isinstance(frame, PingFrame):
                await send({"type": "pong"})
            elif isinstance(frame, CancelFrame):
                await cancel_turn()
            elif isinstance(frame, AuthFrame):
                await send(error_frame("invalid_frame", "already authenticated"))
            elif isinstance(frame, MessageFrame | AudioFrame):
                retry = gw.limiter.hit(principal.key_id)
                if retry is not None:
                    gw.metrics.rate_limited.inc()
                    await send(error_frame("rate_limited", f"more than {gw.limits.messages_per_minute} messages a "
                                           "minute", retry_after=round(retry, 3), id=frame.id))
                    continue
                try:
                    if isinstance(frame, AudioFrame):
                        text = await _transcribe(gw, frame, send)
                        received = time.perf_counter()  # the turn starts with the transcript (its time is in it)
                    else:
                        text = pipeline.validate_message(frame.text)
                except AvatariumError as exc:
                    await send(error_frame(exc.code, exc.message, id=frame.id))
                    continue
                if text:
                    await start_turn(text, received, frame.id)
    except WebSocketDisconnect:
        pass
    finally:
        if turn_task is not None and not turn_task.done():
            turn_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await turn_task
        gw.open_by_tenant[principal.tenant_id] = max(0, gw.open_by_tenant.get(principal.tenant_id, 1) - 1)
        gw.metrics.sockets.dec()


async def _transcribe(gw: Gateway, frame: AudioFrame, send: Callable[[dict[str, Any]], Any]) -> str:
    """Speech input: decode the WAV (typed errors), bound its length, transcribe, tell the client what was heard."""
    from ..lipsync.audio_io import load_wav

    try:
        wav = base64.b64decode(frame.wav_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage("audio.wav_b64 is not valid base64") from None
    try:
        samples, rate = load_wav(wav)
    except LipSyncError as exc:
        raise InvalidMessage(f"audio: {exc.message}", code="invalid_audio") from None
    seconds = len(samples) / rate if rate else 0.0
    if seconds > gw.limits.max_audio_seconds:
        raise InvalidMessage(f"the audio is {seconds:.1f} s long; at most {gw.limits.max_audio_seconds:g} s",
                             code="audio_too_long")
    transcript = await gw.stt().transcribe(samples, rate)
    await send({"type": "transcript", "text": transcript.text, "engine": transcript.engine,
                "audio_seconds": round(seconds, 3), "elapsed_ms": round(transcript.elapsed * 1000, 1)})
    if not transcript.text.strip():
        raise InvalidMessage("no speech was recognised in the audio", code="no_speech")
    return transcript.text.strip()
