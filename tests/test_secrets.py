"""Keys never show: Secret's representations, redaction of text and logs, and where keys come from."""

from __future__ import annotations

import logging
import pickle

import pytest

from avatarium_lab.secrets import RedactingFilter, Secret, redact, resolve_key

KEY = "sk-test-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"


def test_secret_never_shows_its_value() -> None:
    s = Secret(KEY, source="env:OPENAI_API_KEY")
    for text in (str(s), repr(s), f"{s}", f"{s!r}", "%s" % s, format(s, ">10")):  # noqa: UP031
        assert KEY not in text
    assert s.reveal() == KEY
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_redact_hides_known_keys_and_key_shaped_tokens() -> None:
    Secret("my-custom-proxy-token-42")
    text = f"failed with {KEY} and my-custom-proxy-token-42 and AIza{'x' * 35} and xai-{'y' * 20}"
    out = redact(text)
    assert "[redacted]" in out
    for leaked in (KEY, "my-custom-proxy-token-42", "AIza", "xai-y"):
        assert leaked not in out


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    Secret(KEY)
    logger = logging.getLogger("avatarium.test.secrets")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("calling with %s", KEY, extra={"api_key": KEY})
    assert KEY not in caplog.text
    assert all(KEY not in str(getattr(r, "api_key", "")) for r in caplog.records)


def test_key_resolution_order() -> None:
    env = {"OPENAI_API_KEY": "sk-env-key-0000000000000000", "MY_KEY": "sk-other-000000000000000000"}
    tenant = {"openai": Secret("sk-tenant-key-000000000000000")}
    assert resolve_key("openai", byok=tenant, environ=env, use_keyring=False).reveal().startswith("sk-tenant")
    assert resolve_key("openai", environ=env, use_keyring=False).source == "env:OPENAI_API_KEY"
    assert resolve_key("openai", env_var="MY_KEY", environ=env, use_keyring=False).reveal() == env["MY_KEY"]
    assert resolve_key("anthropic", environ=env, use_keyring=False) is None
    google = resolve_key("google", environ={"GOOGLE_API_KEY": "g-key-1234567"}, use_keyring=False)
    assert google is not None and google.source == "env:GOOGLE_API_KEY"
