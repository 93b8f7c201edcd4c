"""Rebuild the provider cassettes used by notebooks/06_providers.ipynb (offline, ~20 s).

- ``embedded.jsonl``: the embedded SmolLM2 model's real replies and real timing on this machine.
- ``openai.jsonl``, ``anthropic.jsonl``, ``google.jsonl``, ``xai.jsonl``: recorded through the official SDKs
  from the loopback vendor fakes, whose pacing below is a *simulation* (time to first token, seconds per
  chunk, words per chunk) chosen to look like a streaming API -- not a measurement of the real services, and
  the text is the fakes' script. Record real ones with ``record_to:`` in a configuration and your own key.

    python datasets/cassettes/make_cassettes.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from avatarium_lab.config import Config, ProviderConfig
from avatarium_lab.personality import load_persona
from avatarium_lab.providers import GenerationParams
from avatarium_lab.providers.build import ProviderContext, build_chain
from avatarium_lab.secrets import Secret
from avatarium_lab.testing import FakeBehaviour, FakeServer
from avatarium_lab.testing.fake_anthropic import make_anthropic_app
from avatarium_lab.testing.fake_google import make_google_app
from avatarium_lab.testing.fake_openai import make_openai_app

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROMPTS = yaml.safe_load((ROOT / "datasets/prompts/everyday.yaml").read_text())["prompts"][:3]
KEY = "sk-cassette-0123456789abcdefghij"
# vendor: (kind, catalog model, fake app, simulated ttft s, s per chunk, words per chunk)
SIMULATED = {
    "openai": ("openai", "gpt-4o-mini", make_openai_app, 0.32, 0.018, 1),
    "anthropic": ("anthropic", "claude-haiku-3.5", make_anthropic_app, 0.45, 0.030, 2),
    "google": ("google", "gemini-3.1-flash", make_google_app, 0.28, 0.060, 5),
    "xai": ("xai", "grok-3-mini", make_openai_app, 0.40, 0.022, 1),
}
PARAMS = GenerationParams(max_tokens=96, temperature=0.7)


def messages_for(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": load_persona("warm_tutor").system_message()},
            {"role": "user", "content": prompt}]


async def record(config: Config, context: ProviderContext | None = None) -> None:
    chain = build_chain(config, context)
    for prompt in PROMPTS:
        async for _ in chain.stream(messages_for(prompt), PARAMS):
            pass
    await chain.aclose()


def main() -> None:
    for name in [*SIMULATED, "embedded"]:
        (HERE / f"{name}.jsonl").unlink(missing_ok=True)
    for name, (kind, model, make_app, ttft, interval, words) in SIMULATED.items():
        behaviour = FakeBehaviour(api_key=KEY, ttft=ttft, chunk_interval=interval, words_per_chunk=words)
        with FakeServer(make_app(behaviour)) as server:
            base = server.url + "/v1" if make_app is make_openai_app else server.url
            cfg = ProviderConfig(kind=kind, model=model, base_url=base, record_to=str(HERE / f"{name}.jsonl"))
            context = ProviderContext(byok={kind: Secret(KEY)}, environ={}, use_keyring=False)
            asyncio.run(record(Config(provider=cfg), context))
        print(f"wrote {name}.jsonl")
    cfg = ProviderConfig(kind="embedded", record_to=str(HERE / "embedded.jsonl"), n_threads=1)
    asyncio.run(record(Config(provider=cfg)))
    print("wrote embedded.jsonl")


if __name__ == "__main__":
    main()
