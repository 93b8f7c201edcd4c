"""Loopback fakes of the cloud vendors' HTTP APIs, for tests, benchmarks and offline notebook demos.

Each fake speaks its vendor's real wire format (status codes, SSE streams, error bodies) on 127.0.0.1 and is
driven by a ``FakeBehaviour``: the reply it streams, its pacing, the key it accepts and a queue of ``Fault``
objects injected one per request. Nothing here patches an SDK: the official clients talk to these servers by
base URL exactly as they would to the vendor.
"""

from .fake_vendors import DEFAULT_SCRIPT, FakeBehaviour, FakeServer, Fault, continuation_of, script_chunks

__all__ = ["DEFAULT_SCRIPT", "FakeBehaviour", "FakeServer", "Fault", "continuation_of", "script_chunks"]
