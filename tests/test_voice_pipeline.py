"""Every voice tier in a real turn: cloud voices through their loopback fakes, lip sync from timings or aligned."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from avatarium_lab.config import Config
from avatarium_lab.errors import PlanRequired
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.providers.build import ProviderContext
from avatarium_lab.secrets import Secret
from avatarium_lab.testing import FakeBehaviour, FakeServer
from avatarium_lab.testing.fake_tts import make_elevenlabs_app, make_gemini_tts_app, make_openai_tts_app

pytestmark = pytest.mark.model
KEY = "sk-voice-0123456789abcdefghijklm"
CLOUD = {  # engine: (voice id, fake app, vendor of the key, timing source the turn should report)
    "openai": ("openai:alloy", make_openai_tts_app, "openai", "text-proportional"),
    "elevenlabs": ("elevenlabs:21m00Tcm4TlvDq8ikWAM", make_elevenlabs_app, "elevenlabs", "engine"),
    "gemini": ("gemini:Kore", make_gemini_tts_app, "google", "text-proportional"),
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeServer]]:
    servers = {engine: FakeServer(app(FakeBehaviour(api_key=KEY))).start() for engine, (_, app, _, _) in CLOUD.items()}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("engine", list(CLOUD))
def test_cloud_voice_speaks_a_turn_with_lip_sync(pipeline: Pipeline, fakes, engine: str) -> None:
    voice_id, _, vendor, source = CLOUD[engine]
    url = fakes[engine].url + ("/v1" if engine == "openai" else "")
    config = pipeline.config.with_overrides(plan="premium", **{"voice.id": voice_id, "voice.base_url": url})
    context = ProviderContext(plan="premium", byok={vendor: Secret(KEY)}, environ={}, use_keyring=False)
    p = Pipeline(config, provider=pipeline.provider, context=context)
    turn = p.run("Tell me about the sea.", conversation=None)
    p.close()
    assert turn.ended.reason == "complete", turn.error
    audio = [e for e in turn if e.type == "audio"]
    assert audio and {a.voice for a in audio} == {voice_id}
    phonemes = [e for e in turn if e.type == "phonemes"]
    assert phonemes and {e.source for e in phonemes} == {source}
    assert turn.visemes
    for ev in phonemes:
        seg = [a for a in audio if a.segment == ev.segment]
        start, end = seg[0].offset, seg[-1].offset + seg[-1].duration
        assert all(start - 1e-6 <= ph.start < ph.end <= end + 1e-6 for ph in ev.items)


def test_premium_voice_on_a_free_plan_fails_before_any_request(fakes) -> None:
    config = Config.default().with_overrides(**{"voice.id": "openai:alloy", "voice.base_url": fakes["openai"].url})
    with pytest.raises(PlanRequired):
        Pipeline(config, context=ProviderContext(plan="free", byok={"openai": Secret(KEY)}, environ={},
                                                 use_keyring=False))
