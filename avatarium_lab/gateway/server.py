"""``avatarium serve CONFIG``: the gateway under uvicorn, HTTPS when given a certificate, plain HTTP on loopback only.

One process, one event loop (``workers=1``): scale out with more replicas on the same PostgreSQL behind a load
balancer (README, *Gateway*), not with uvicorn workers in one container.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..config import Config
from .security import check_bind

logger = logging.getLogger(__name__)


def database_url(config: Config, override: str | None = None) -> str | None:
    return override or config.server.database_url or os.environ.get("AVATARIUM_DB_URL") or None


def serve(config_paths: list[str | Path] | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          certfile: str | None = None, keyfile: str | None = None, db: str | None = None,
          forwarded_allow_ips: str | None = None, log_level: str = "info", ui: bool = False,
          demo_key: bool = False) -> None:
    """Run the gateway until interrupted. The first configuration is the default for new conversations.

    ``ui``: also serve the live chat page at ``/app`` (same server, same API). ``demo_key``: create an API key for
    the ``demo`` tenant and print it once (``avatarium demo``).
    """
    import uvicorn

    from ..conversation import Store
    from .app import create_app

    check_bind(host, certfile, keyfile)
    configs = [Config.load(p) for p in config_paths] if config_paths else [Config.default()]
    first = configs[0]
    store = Store(database_url(first, db), idle_timeout=first.server.idle_timeout, retention=first.server.retention)
    if ui:
        from ..app.live import create_server

        app = create_server(configs, store)
    else:
        app = create_app(configs, store)
    scheme = "https" if certfile else "http"
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    url = f"{scheme}://{shown}:{port}" + ("/app" if ui else "")
    if demo_key:
        tenant = store.get_tenant("demo") or store.create_tenant("demo")
        key = store.create_key(tenant.id, label="avatarium demo")
        print(f"API key for this demo (shown once; paste it into the page): {key.secret}", flush=True)
    print(f"avatarium: serving {url}  (API under {scheme}://{shown}:{port}/v1, Ctrl+C to stop)", flush=True)
    logger.info("avatarium gateway on %s (configurations: %s)", url, ", ".join(c.name for c in configs))
    uvicorn.run(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level=log_level,
                ws_max_size=first.limits.max_frame_bytes + 1024, proxy_headers=bool(forwarded_allow_ips),
                forwarded_allow_ips=forwarded_allow_ips, workers=1)
