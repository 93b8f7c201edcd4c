"""The live page: chat with the configured avatar in a browser, through the gateway's own API.

``LiveChat`` is a Panel ``AnyWidgetComponent`` whose front end (``js/src/live_app.js``) is a complete client of
the gateway: an API-key prompt (the key stays in the browser tab, never in a URL), the conversation list,
text and microphone messages over the conversation WebSocket, streamed text, the avatar (the same renderer as
the notebook widget) playing audio with lip sync, emotions and gestures, and the latency breakdown of each turn.
A dropped connection reconnects and resumes the conversation.

``create_server(configs, store)`` puts the page (``/app``) and the gateway API (``/v1/...``) on one FastAPI app,
so the page and any external client use the same endpoint; ``avatarium serve CONFIG --ui`` runs it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import param
from panel.custom import AnyWidgetComponent

from ..config import Config
from ..widgets.protocol import resolve_glb, rig_payload

LIVE_BUNDLE = Path(__file__).resolve().parents[1] / "widgets" / "static" / "live_app.js"

_MISSING = """export default { render({ el }) { el.textContent =
  "avatarium-lab: the live page bundle is not built; run `make js`."; } };"""


class LiveChat(AnyWidgetComponent):
    """The page's client; see the module docstring."""

    _esm = LIVE_BUNDLE if LIVE_BUNDLE.is_file() else _MISSING

    glb = param.Bytes(default=b"", doc="The avatar as GLB bytes.")
    rig = param.Dict(default={}, doc="How to animate the model (protocol.rig_payload).")
    canvas_width = param.Integer(default=440, bounds=(16, 4096))
    canvas_height = param.Integer(default=460, bounds=(16, 4096))
    canvas_background = param.String(default="#eef1f5")
    status = param.String(default="", doc="Reported by the avatar renderer.")
    api_base = param.String(default="", doc="The gateway's base URL; empty: the page's own origin.")
    persona_name = param.String(default="")

    def __init__(self, config: Config, **params: Any) -> None:
        glb = resolve_glb(config.avatar)
        params.setdefault("glb", glb)
        params.setdefault("rig", rig_payload(glb))
        params.setdefault("width", params.get("canvas_width", 440) + 380)
        params.setdefault("height", params.get("canvas_height", 460) + 160)
        super().__init__(**params)


def build_page(config: Config, *, api_base: str = "") -> Any:
    """The whole page: a title and the live client."""
    import panel as pn

    from ..personality import load_persona

    persona = load_persona(config.persona)
    title = pn.pane.HTML(
        f"<h1 style='margin:0;font:600 22px system-ui,sans-serif;color:#1f2937'>avatarium-lab · "
        f"{html.escape(persona.name)}</h1><div style='color:#6b7280;font:14px system-ui,sans-serif'>"
        f"{html.escape(persona.description)} — configuration <code>{html.escape(config.name)}</code></div>")
    return pn.Column(title, LiveChat(config, api_base=api_base, persona_name=persona.name), margin=(12, 24))


_FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="7" r="6" '
            b'fill="#f1c27d"/><ellipse cx="8" cy="10" rx="2.5" ry="1.2" fill="#b45353"/></svg>')


class PageOriginCheck:
    """ASGI middleware: the page's own Bokeh WebSocket (``/app/ws``) only from this server's pages.

    bokeh-fastapi does not check the Origin of that socket (FINDINGS); a foreign page could otherwise drive a
    session. The API's WebSocket needs no such check: it authenticates every connection with a key.
    """

    def __init__(self, app: Any, prefix: str = "/app") -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "websocket" and scope.get("path", "").startswith(self.prefix):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            origin, host = headers.get("origin", ""), headers.get("host", "")
            if origin and origin.split("://", 1)[-1] != host:
                await send({"type": "websocket.close", "code": 4403, "reason": "foreign origin"})
                return
        await self.app(scope, receive, send)


def create_server(configs: list[Config], store: Any, **gateway_options: Any) -> Any:
    """The gateway (``/v1``, ``/metrics``, ``/openapi.json``) and the live page (``/app``) on one FastAPI app."""
    from fastapi.responses import Response
    from panel.io.fastapi import add_applications

    from ..gateway import create_app

    app = create_app(configs, store, **gateway_options)
    first = configs[0]

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:  # browsers ask for it; a 404 would be an error in every page's console
        return Response(_FAVICON, media_type="image/svg+xml")

    add_applications({"/app": lambda: build_page(first)}, app=app, title="avatarium-lab")
    app.add_middleware(PageOriginCheck)
    return app
