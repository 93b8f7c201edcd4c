"""Smoke tests against the real vendor APIs: run only by `make live-providers`, each only when its key is set.

Never part of `make test` or CI (no network there). Each test streams one short reply through the same
configuration files a notebook uses and checks that text and usage came back.
"""

from __future__ import annotations

import os

import pytest

from avatarium_lab.config import REPO_CONFIG_DIR, Config
from avatarium_lab.pipeline import Pipeline

pytestmark = pytest.mark.live

CASES = [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"), ("google", "GEMINI_API_KEY"),
         ("xai", "XAI_API_KEY")]


@pytest.mark.parametrize(("name", "env"), CASES)
def test_vendor_streams_a_reply(name: str, env: str) -> None:
    if not (os.environ.get(env) or (name == "google" and os.environ.get("GOOGLE_API_KEY"))):
        pytest.skip(f"{env} is not set")
    config = Config.load(REPO_CONFIG_DIR / f"{name}.yaml").with_overrides(fallbacks=[], **{"provider.max_tokens": 40})
    pipeline = Pipeline(config)
    turn = pipeline.run("Say hello in one short sentence.", conversation=None)
    pipeline.close()
    assert turn.error is None, turn.error
    assert turn.text and turn.ended is not None and turn.ended.reason == "complete"
    usage = [e for e in turn if e.type == "usage"]
    assert usage and usage[0].completion_tokens > 0
