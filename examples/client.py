#!/usr/bin/env python3
"""A minimal external client of the avatarium gateway (``docs/protocol.md``, "The gateway API").

    export AVATARIUM_URL=http://127.0.0.1:8000   # the gateway (https://... anywhere but loopback)
    export AVATARIUM_API_KEY=...                  # from `avatarium keys create --tenant NAME`
    export AVATARIUM_CA_FILE=ca.pem               # optional: a private CA (or self-signed certificate) to trust
    python examples/client.py "Tell me about the ocean." --wav reply.wav

It creates a conversation (``POST /v1/conversations``), opens its WebSocket with the key in an
``Authorization: Bearer`` header (the key is never put in a URL or on the command line), sends one message, prints
the reply as it streams (``text_delta`` frames), keeps the audio (``audio`` frames: base64 PCM16 mono at their
``sample_rate``) and counts the visemes, and ends with the turn's latency breakdown (milliseconds). Dependencies:
``httpx`` and ``websockets`` only. ``talk()`` is the same as a function, for use from Python.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import wave
from collections.abc import Callable
from typing import Any

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect


def talk(base: str, key: str, text: str, *, wav: str | None = None, ca_file: str | None = None,
         on_text: Callable[[str], Any] | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """One turn in a new conversation. Returns ``conversation_id``, ``reply``, ``reason`` (``complete``...),
    ``visemes`` (count), ``audio_seconds`` and ``latency`` (the ``latency_breakdown`` frame's figures, ms)."""
    tls = ssl.create_default_context(cafile=ca_file) if base.startswith("https:") else None
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, verify=tls or True, timeout=30) as http:
        r = http.post("/v1/conversations", json={})
        if r.is_error:
            raise RuntimeError(f"POST /v1/conversations: HTTP {r.status_code} {r.text}")
        conversation = r.json()["id"]
    url = base.rstrip("/").replace("http", "ws", 1) + f"/v1/conversations/{conversation}/ws"  # ws:// or wss://
    reply, pcm, rate, visemes, reason = [], bytearray(), 0, 0, None
    with connect(url, additional_headers=headers, ssl=tls, open_timeout=30, max_size=16 * 2**20) as ws:
        ws.send(json.dumps({"type": "message", "text": text}))
        while (frame := json.loads(ws.recv(timeout=timeout)))["type"] != "latency_breakdown":  # a turn's last frame
            kind = frame["type"]
            if kind == "text_delta":
                reply.append(frame["text"])
                if on_text:
                    on_text(frame["text"])
            elif kind == "audio":
                pcm += base64.b64decode(frame["pcm"])
                rate = frame["sample_rate"]
            elif kind == "visemes":
                visemes += len(frame["items"])
            elif kind == "turn_ended":
                reason = frame["reason"]
            elif kind == "error" and "turn_id" not in frame:  # refused before a turn started (no turn follows)
                raise RuntimeError(f"{frame['code']}: {frame['message']}")
    if wav and pcm:
        with wave.open(wav, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)  # PCM16 little-endian, as sent
            out.setframerate(rate)
            out.writeframes(bytes(pcm))
    latency = {k: v for k, v in frame.items() if k not in ("type", "turn_id")}
    return {"conversation_id": conversation, "reply": "".join(reply).strip(), "reason": reason, "visemes": visemes,
            "audio_seconds": len(pcm) / 2 / rate if rate else 0.0, "latency": latency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Say something to an avatarium gateway and hear the reply.")
    parser.add_argument("text", nargs="+", help="the message")
    parser.add_argument("--wav", metavar="FILE", help="save the reply's audio to this WAV file")
    args = parser.parse_args(argv)
    key = os.environ.get("AVATARIUM_API_KEY")
    if not key:
        parser.error("set AVATARIUM_API_KEY (from `avatarium keys create`); keys never go on the command line")
    base = os.environ.get("AVATARIUM_URL", "http://127.0.0.1:8000")
    try:
        result = talk(base, key, " ".join(args.text), wav=args.wav, ca_file=os.environ.get("AVATARIUM_CA_FILE"),
                      on_text=lambda piece: print(piece, end="", flush=True))
    except (httpx.HTTPError, WebSocketException, OSError, RuntimeError) as exc:  # OSError: refused, TLS, timeout
        print(f"\nclient.py: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"\n\n[{result['reason']}] visemes: {result['visemes']}, audio: {result['audio_seconds']:.2f} s"
          + (f" -> {args.wav}" if args.wav and result["audio_seconds"] else ""))
    for name, ms in result["latency"].items():  # every figure in milliseconds (None: the turn had no such event)
        print(f"  {name:<26} {'-' if ms is None else f'{ms:9.1f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
