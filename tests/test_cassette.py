"""Record/replay cassettes: what is recorded replays identically, at recorded pace or at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from avatarium_lab.errors import ProviderUnavailable
from avatarium_lab.providers import Delta, GenerationParams, UsageReport
from avatarium_lab.providers.cassette import CassetteMiss, RecordingProvider, ReplayProvider
from avatarium_lab.testing import DEFAULT_SCRIPT
from avatarium_lab.testing.scripted import ScriptedProvider

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about the ocean."}]
PARAMS = GenerationParams(max_tokens=64)


async def collect(provider, messages=MESSAGES) -> list:
    return [item async for item in provider.stream(messages, PARAMS)]


@pytest.mark.asyncio
async def test_record_then_replay_at_recorded_pace_and_instantly(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    recorder = RecordingProvider(ScriptedProvider(name="openai:gpt-4o-mini", chunk_delay=0.01), path)
    original = await collect(recorder)
    record = json.loads(path.read_text().splitlines()[0])
    assert record["provider"] == "openai:gpt-4o-mini" and record["items"][0][1] == "delta"

    t0 = time.perf_counter()
    replayed = await collect(ReplayProvider(path, pace="recorded"))
    paced = time.perf_counter() - t0
    t0 = time.perf_counter()
    instant = await collect(ReplayProvider(path, pace="instant"))
    fast = time.perf_counter() - t0
    assert replayed == instant == original
    assert "".join(i.text for i in replayed if isinstance(i, Delta)) == DEFAULT_SCRIPT
    assert isinstance(replayed[-1], UsageReport)
    recorded_span = record["items"][-1][0]
    assert paced >= recorded_span * 0.9 and fast < recorded_span / 3


@pytest.mark.asyncio
async def test_errors_are_recorded_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    recorder = RecordingProvider(ScriptedProvider(plan=[(ProviderUnavailable("overloaded"), 3)]), path)
    with pytest.raises(ProviderUnavailable):
        await collect(recorder)
    replay = ReplayProvider(path, pace="instant")
    items = []
    with pytest.raises(ProviderUnavailable, match="overloaded"):
        async for item in replay.stream(MESSAGES, PARAMS):
            items.append(item)
    assert len(items) == 3


@pytest.mark.asyncio
async def test_unknown_requests_and_files_are_typed_misses(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    await collect(RecordingProvider(ScriptedProvider(), path))
    other = [MESSAGES[0], {"role": "user", "content": "Something else"}]
    with pytest.raises(CassetteMiss, match="Something else"):
        await collect(ReplayProvider(path), other)
    with pytest.raises(CassetteMiss, match="not found"):
        ReplayProvider(tmp_path / "missing.jsonl")
    # matching on the last user message only ignores a changed system prompt
    changed = [{"role": "system", "content": "Be verbose."}, MESSAGES[1]]
    assert await collect(ReplayProvider(path, pace="instant", match="last_user"), changed)
