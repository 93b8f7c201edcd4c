"""Provider adapters against their loopback fakes: our overhead over a bare SDK call, and failover time.

For each vendor (OpenAI, Anthropic, Google) a fake server on 127.0.0.1 streams the same reply with no added
latency. Time to first token is measured for (a) a bare call of the official SDK and (b) our adapter inside a
``FailoverChain`` (what the pipeline uses), interleaved request by request so both see the same machine state.
The ratio of the p50s is our overhead (goal <= 1.05). Then failover: the primary fails (an immediate 503, or
a stall caught by the first-token timeout) and we time request start -> first token of the fallback (goal p50
<= 50 ms + the configured timeout).

    python benchmarks/providers.py [--requests N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import anthropic
import numpy as np
import openai
from google import genai
from google.genai import types
from tqdm import tqdm

from avatarium_lab.config import Config, FailoverConfig, ProviderConfig, TimeoutsConfig
from avatarium_lab.providers import AttemptReport, Delta, GenerationParams
from avatarium_lab.providers.build import ProviderContext, build_chain
from avatarium_lab.providers.failover import CircuitBreaker
from avatarium_lab.secrets import Secret
from avatarium_lab.testing import FakeBehaviour, FakeServer, Fault
from avatarium_lab.testing.fake_anthropic import make_anthropic_app
from avatarium_lab.testing.fake_google import make_google_app
from avatarium_lab.testing.fake_openai import make_openai_app

KEY = "sk-bench-0123456789abcdefghijklmn"
VENDORS = {"openai": (make_openai_app, "gpt-4o-mini"), "anthropic": (make_anthropic_app, "claude-3-5-haiku-latest"),
           "google": (make_google_app, "gemini-3.1-flash")}
SYSTEM = "You are Aria, a warm and patient tutor."
USER = "Tell me about the ocean."
PARAMS = GenerationParams(max_tokens=128, temperature=0.5)
STALL_TIMEOUT = 0.2
OVERHEAD_GOAL = 1.05
FAILOVER_GOAL_MS = 50.0


def base_url(vendor: str, server: FakeServer) -> str:
    return server.url + "/v1" if vendor == "openai" else server.url


def chain(servers: dict, vendors: list[str], first_token: float = 15.0):
    cfgs = [ProviderConfig(kind=v, model=VENDORS[v][1], base_url=base_url(v, servers[v][0]),
                           timeouts=TimeoutsConfig(first_token=first_token, idle=10.0)) for v in vendors]
    config = Config(provider=cfgs[0], fallbacks=cfgs[1:], failover=FailoverConfig(max_retries=0))
    context = ProviderContext(byok={v: Secret(KEY) for v in VENDORS}, environ={}, use_keyring=False)
    return build_chain(config, context, breaker=CircuitBreaker(failures=10**9))


async def ours_ttft(c) -> float:
    return (await ours_timed(c))[0]


async def ours_timed(c) -> tuple[float, float | None]:
    """Time to the first token, and from the failed attempt's report (the fault seen) to that token."""
    t0 = time.perf_counter()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    first = fault_seen = None
    async for item in c.stream(messages, PARAMS):
        now = time.perf_counter()
        if isinstance(item, AttemptReport) and item.outcome == "failed" and fault_seen is None:
            fault_seen = now
        if first is None and isinstance(item, Delta):
            first = now
    return first - t0, (first - fault_seen) if fault_seen is not None else None


def bare_client(vendor: str, server: FakeServer):
    if vendor == "openai":
        return openai.AsyncOpenAI(api_key=KEY, base_url=base_url(vendor, server), max_retries=0)
    if vendor == "anthropic":
        return anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))


async def bare_ttft(vendor: str, client) -> float:
    """The same request through the SDK directly, consumed to the end as our adapter does."""
    t0 = time.perf_counter()
    first = None
    if vendor == "openai":
        stream = await client.chat.completions.create(
            model=VENDORS[vendor][1], stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
            max_completion_tokens=PARAMS.max_tokens, temperature=PARAMS.temperature)
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
    elif vendor == "anthropic":
        stream = await client.messages.create(
            model=VENDORS[vendor][1], system=SYSTEM, messages=[{"role": "user", "content": USER}],
            max_tokens=PARAMS.max_tokens, stream=True)
        async for event in stream:
            if first is None and event.type == "content_block_delta":
                first = time.perf_counter() - t0
    else:
        stream = await client.aio.models.generate_content_stream(
            model=VENDORS[vendor][1], contents=[types.Content(role="user", parts=[types.Part(text=USER)])],
            config=types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=PARAMS.max_tokens,
                                               temperature=PARAMS.temperature))
        async for chunk in stream:
            if first is None and chunk.text:
                first = time.perf_counter() - t0
    return first


def pct(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "n": len(values)}


async def main_async(n: int) -> dict:
    servers = {}
    for vendor, (make_app, _) in VENDORS.items():
        behaviour = FakeBehaviour(api_key=KEY)
        servers[vendor] = (FakeServer(make_app(behaviour)).start(), behaviour)
    report: dict = {"overhead": {}, "failover": {}}
    try:
        for vendor in VENDORS:
            ours_chain = chain(servers, [vendor])
            client = bare_client(vendor, servers[vendor][0])
            for _ in range(10):  # warm connections and code paths on both sides
                await ours_ttft(ours_chain)
                await bare_ttft(vendor, client)
            ours, bare = [], []
            for i in tqdm(range(n), desc=f"{vendor} ttft", file=sys.stderr):
                if i % 2:
                    ours.append(await ours_ttft(ours_chain))
                    bare.append(await bare_ttft(vendor, client))
                else:
                    bare.append(await bare_ttft(vendor, client))
                    ours.append(await ours_ttft(ours_chain))
            o, b = pct(ours), pct(bare)
            report["overhead"][vendor] = {"ours": o, "bare_sdk": b, "ratio_p50": o["p50"] / b["p50"]}

        order = list(VENDORS)
        for kind in ("status503", "stall"):
            for vendor in order:
                fallback = order[(order.index(vendor) + 1) % len(order)]
                timeout = STALL_TIMEOUT if kind == "stall" else 15.0
                c = chain(servers, [vendor, fallback], first_token=timeout)
                totals, after_fault = [], []
                for _ in tqdm(range(max(10, n // 5)), desc=f"failover {kind} {vendor}", file=sys.stderr):
                    fault = Fault("status", status=503) if kind == "status503" else \
                        Fault("stall_before_first", stall=2.0)
                    servers[vendor][1].faults.append(fault)
                    total, since_fault = await ours_timed(c)
                    totals.append(total)
                    after_fault.append(since_fault)
                stats = pct(totals)
                stats["minus_timeout_p50"] = stats["p50"] - (timeout * 1000 if kind == "stall" else 0.0)
                stats["fault_to_first_token"] = pct(after_fault)
                report["failover"][f"{kind}:{vendor}->{fallback}"] = stats
    finally:
        for server, _ in servers.values():
            server.stop()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = asyncio.run(main_async(args.requests))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\ntime to first token against the loopback fakes ({args.requests} requests each, interleaved)")
    print(f"{'vendor':<11}{'bare p50':>10}{'bare p95':>10}{'ours p50':>10}{'ours p95':>10}{'ratio p50':>11}")
    for vendor, r in report["overhead"].items():
        print(f"{vendor:<11}{r['bare_sdk']['p50']:>8.2f}ms{r['bare_sdk']['p95']:>8.2f}ms{r['ours']['p50']:>8.2f}ms"
              f"{r['ours']['p95']:>8.2f}ms{r['ratio_p50']:>10.3f}  (goal <= {OVERHEAD_GOAL})")
    print(f"\nfailover: request start -> first token of the fallback (a stall is caught by a "
          f"{STALL_TIMEOUT * 1000:.0f} ms first-token timeout); and from the fault being seen -> that token")
    print(f"{'case':<32}{'total p50':>11}{'total p95':>11}{'p50 - timeout':>15}{'fault->token p50':>18}"
          f"{'p95':>9}")
    for case, r in report["failover"].items():
        f = r["fault_to_first_token"]
        print(f"{case:<32}{r['p50']:>9.1f}ms{r['p95']:>9.1f}ms{r['minus_timeout_p50']:>13.1f}ms"
              f"{f['p50']:>16.1f}ms{f['p95']:>7.1f}ms")
    print(f"goal: p50 <= {FAILOVER_GOAL_MS:.0f} ms plus the configured timeout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
