"""The checked-in vendor configurations drive real turns (text, speech, visemes) against the loopback fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatarium_lab.config import REPO_CONFIG_DIR, Config
from avatarium_lab.errors import PlanRequired, ProviderAuthError
from avatarium_lab.events import ProviderAttempt, ProviderSwitched, Sentence, Usage
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.providers.build import ProviderContext, build_chain
from avatarium_lab.providers.catalog import load_catalog
from avatarium_lab.secrets import Secret
from avatarium_lab.testing import DEFAULT_SCRIPT, FakeBehaviour, FakeServer, Fault
from avatarium_lab.testing.fake_anthropic import make_anthropic_app
from avatarium_lab.testing.fake_google import make_google_app
from avatarium_lab.testing.fake_openai import make_openai_app

KEY = "sk-pipeline-0123456789abcdefghij"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, tuple[FakeServer, FakeBehaviour]]]:
    out = {}
    for vendor, app in (("openai", make_openai_app), ("anthropic", make_anthropic_app), ("google", make_google_app)):
        behaviour = FakeBehaviour(api_key=KEY)
        out[vendor] = (FakeServer(app(behaviour)).start(), behaviour)
    yield out
    for server, _ in out.values():
        server.stop()


def base_url(vendor: str, server: FakeServer) -> str:
    return server.url + "/v1" if vendor in ("openai", "xai", "custom") else server.url


@pytest.mark.parametrize(("config_name", "vendor", "env"), [
    ("openai", "openai", "OPENAI_API_KEY"),
    ("anthropic", "anthropic", "ANTHROPIC_API_KEY"),
    ("google", "google", "GEMINI_API_KEY"),
    ("xai", "openai", "XAI_API_KEY"),
])
def test_vendor_config_streams_a_spoken_reply(fakes, monkeypatch, config_name, vendor, env) -> None:
    server, behaviour = fakes[vendor]
    monkeypatch.setenv(env, KEY)
    config = Config.load(REPO_CONFIG_DIR / f"{config_name}.yaml")
    pipeline = Pipeline.from_config(config, **{"provider.base_url": base_url(vendor, server)})
    turn = pipeline.run("Tell me about the ocean.", conversation=None)
    pipeline.close()
    assert turn.ended.reason == "complete", turn.error
    assert turn.text == DEFAULT_SCRIPT.strip()
    assert turn.of(ProviderSwitched) == []
    usage = turn.of(Usage)[0]
    entry = load_catalog().find(config.provider.kind, config.provider.model)
    assert usage.cost == pytest.approx(entry.cost(usage.prompt_tokens, usage.completion_tokens))
    assert turn.visemes and len(turn.audio) > 0
    sent = behaviour.requests[-1]["body"]
    assert "Aria" in str(sent)  # the persona's system prompt went to the vendor


def test_custom_openai_compatible_endpoint_needs_no_code_change(fakes) -> None:
    server, behaviour = fakes["openai"]
    behaviour.api_key = ""  # a local server without authentication
    try:
        config = Config.load(REPO_CONFIG_DIR / "custom.yaml")
        pipeline = Pipeline.from_config(config, **{"provider.base_url": server.url + "/v1",
                                                   "provider.headers": {"X-Team": "lab"}})
        turn = pipeline.run("Hello!", conversation=None)
        pipeline.close()
    finally:
        behaviour.api_key = KEY
    assert turn.text == DEFAULT_SCRIPT.strip()
    assert behaviour.requests[-1]["headers"].get("x-team") == "lab"
    assert behaviour.requests[-1]["body"]["model"] == "llama3.2"


def test_a_mid_stream_failure_is_visible_in_the_turn_and_the_reply_is_whole(fakes) -> None:
    fakes["openai"][1].faults.append(Fault("truncate", after_chunks=7))
    config = Config.from_dict({
        "provider": {"kind": "openai", "model": "gpt-4o-mini", "base_url": base_url("openai", fakes["openai"][0])},
        "fallbacks": [{"kind": "anthropic", "model": "claude-haiku-3.5", "base_url": fakes["anthropic"][0].url}],
        "failover": {"max_retries": 0},
    })
    context = ProviderContext(byok={"openai": Secret(KEY), "anthropic": Secret(KEY)}, environ={}, use_keyring=False)
    pipeline = Pipeline(config, context=context)
    turn = pipeline.run("Tell me about the ocean.", conversation=None)
    pipeline.close()
    assert turn.text == DEFAULT_SCRIPT.strip()
    switch = turn.of(ProviderSwitched)[0]
    assert switch.mid_stream and switch.reason == "malformed_stream"
    assert [(a.provider.split(":")[0], a.outcome) for a in turn.of(ProviderAttempt)] == [
        ("openai", "failed"), ("anthropic", "ok")]
    # the spoken sentences add up to the reply: nothing said twice
    spoken = " ".join(s.text for s in turn.of(Sentence))
    assert " ".join(spoken.split()) == " ".join(DEFAULT_SCRIPT.split())


def test_plan_gating_and_missing_keys_fail_before_any_request(fakes) -> None:
    server, behaviour = fakes["anthropic"]
    before = len(behaviour.requests)
    premium = Config.load(REPO_CONFIG_DIR / "premium.yaml").with_overrides(plan="free")
    byok = {"anthropic": Secret(KEY), "openai": Secret(KEY)}
    with pytest.raises(PlanRequired, match="premium"):
        build_chain(premium, ProviderContext(plan="free", byok=byok, environ={}, use_keyring=False))
    build_chain(premium, ProviderContext(plan="premium", byok=byok, environ={}, use_keyring=False))
    with pytest.raises(ProviderAuthError, match="ANTHROPIC_API_KEY"):
        build_chain(Config.load(REPO_CONFIG_DIR / "anthropic.yaml"),
                    ProviderContext(environ={}, use_keyring=False))
    assert len(behaviour.requests) == before


def test_byok_overrides_the_managed_key_for_that_tenant_only(fakes) -> None:
    server, behaviour = fakes["openai"]
    config = Config.load(REPO_CONFIG_DIR / "openai.yaml").with_overrides(
        **{"provider.base_url": server.url + "/v1", "fallbacks": []})
    managed = {"OPENAI_API_KEY": "sk-managed-wrong-000000000000"}
    tenant_a = Pipeline(config, context=ProviderContext(byok={"openai": Secret(KEY)}, environ=managed,
                                                        use_keyring=False))
    tenant_b = Pipeline(config, context=ProviderContext(environ=managed, use_keyring=False))
    assert tenant_a.run("Hi", conversation=None).text == DEFAULT_SCRIPT.strip()
    failed = tenant_b.run("Hi", conversation=None)
    assert failed.error is not None and failed.error.code == "all_providers_failed"
    assert "provider_auth" in failed.error.message and "sk-managed" not in failed.error.message
    tenant_a.close()
    tenant_b.close()
