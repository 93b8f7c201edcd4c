"""Gateway fixtures (helpers in gateway_helpers.py): a real uvicorn server on 127.0.0.1 per test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import Running, make_gateway, stop_uvicorn


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Running]:
    running = make_gateway(tmp_path)
    yield running
    stop_uvicorn(running.server)
    running.store.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def build(**kwargs: Any) -> Running:
        sub = tmp_path / f"gw{len(made)}"
        sub.mkdir()
        running = make_gateway(sub, **kwargs)
        made.append(running)
        return running

    yield build
    for running in made:
        stop_uvicorn(running.server)
        running.store.close()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1 / localhost (openssl, as FINDINGS says: with subjectAltName)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return {"cert": str(cert), "key": str(key)}


