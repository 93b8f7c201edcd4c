"""Shared fixtures: one real embedded pipeline per test session (the model loads once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatarium_lab.config import Config
from avatarium_lab.pipeline import Pipeline


@pytest.fixture(scope="session")
def pipeline() -> Iterator[Pipeline]:
    """The default configuration with short replies, warmed up."""
    # one llama thread: robust while other tests (a browser, a server) share the two cores
    p = Pipeline(Config.default().with_overrides(**{"provider.max_tokens": 40, "provider.n_threads": 1}))
    p.warm()
    yield p
    p.close()
