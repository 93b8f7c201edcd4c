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
          forwarded_allow_ips: str | None = None, log_level: str = "info") -> None:
    """Run the gateway until interrupted. The first configuration is the default for new conversations."""
    import uvicorn

    from ..conversation import Store
    from .app import create_app

    check_bind(host, certfile, keyfile)
    configs = [Config.load(p) for p in config_paths] if config_paths else [Config.default()]
    first = configs[0]
    store = Store(database_url(first, db), idle_timeout=first.server.idle_timeout, retention=first.server.retention)
    app = create_app(configs, store)
    scheme = "https" if certfile else "http"
    logger.info("avatarium gateway on %s://%s:%d (configurations: %s)", scheme, host, port,
                ", ".join(c.name for c in configs))
    uvicorn.run(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level=log_level,
                ws_max_size=first.limits.max_frame_bytes + 1024, proxy_headers=bool(forwarded_allow_ips),
                forwarded_allow_ips=forwarded_allow_ips, workers=1)
