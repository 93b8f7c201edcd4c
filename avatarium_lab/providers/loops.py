"""One SDK client per event loop: pooled HTTP connections belong to the loop that opened them.

Used from another loop (a second ``asyncio.run``, the pipeline's loop thread beside Jupyter's) a client's
connections fail or hang, so chat providers and cloud voices keep one client per loop -- in an application
that is one client for the object's life.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import httpx

C = TypeVar("C")

# SDK clients whose event loop closed before they did: their connections died with the loop and closing them
# from the garbage collector later fails noisily ("Event loop is closed"), so they stay referenced.
_ABANDONED: list[Any] = []


class LoopClients(Generic[C]):
    """One SDK client per event loop, built on first use by ``build`` and closed by ``close``.

    Pooled HTTP connections belong to the loop that opened them; used from another loop (a second
    ``asyncio.run``, the pipeline's loop thread beside Jupyter's) they fail or hang. In an application this is
    one client for the object's life.
    """

    def __init__(self, build: Callable[[], C], close: Callable[[C], Awaitable[None]], *,
                 spare: C | None = None) -> None:
        self._build = build
        self._close = close
        self._spare = spare  # built up front (so bad settings fail early); the first loop to ask takes it
        self._clients: dict[asyncio.AbstractEventLoop, C] = {}

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for stale in [other for other in self._clients if other.is_closed()]:
                _ABANDONED.append(self._clients.pop(stale))
            client, self._spare = (self._spare if self._spare is not None else self._build()), None
            self._clients[loop] = client
        return client

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        clients, self._clients = self._clients, {}
        if self._spare is not None:  # never used, so bound to no loop
            spare, self._spare = self._spare, None
            with contextlib.suppress(Exception):
                await self._close(spare)
        for owner, client in clients.items():
            if owner is loop:
                with contextlib.suppress(Exception):
                    await self._close(client)
            elif owner.is_running():  # another thread's loop: close there, without waiting for it
                asyncio.run_coroutine_threadsafe(self._close(client), owner)  # type: ignore[arg-type]
            else:
                _ABANDONED.append(client)




class PerLoopTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` async transport with one connection pool per event loop (see :class:`LoopClients`).

    Given to an SDK that builds its own ``httpx.AsyncClient`` once (google-genai), it keeps that client usable from
    successive event loops; passing an explicit transport also keeps google-genai on httpx when aiohttp is
    installed (otherwise it switches to aiohttp and ignores the httpx hooks that carry our timeouts).
    """

    def __init__(self, **options: Any) -> None:
        self._pools: LoopClients[httpx.AsyncHTTPTransport] = LoopClients(
            lambda: httpx.AsyncHTTPTransport(**options), lambda transport: transport.aclose())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pools.get().handle_async_request(request)

    async def aclose(self) -> None:
        await self._pools.aclose()
