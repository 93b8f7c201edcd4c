#!/usr/bin/env node
// A minimal external client of the avatarium gateway (docs/protocol.md, "The gateway API") for Node >= 22, which
// has a global fetch and WebSocket (Node 20.10+: run it with `node --experimental-websocket`). No dependencies.
//
//   export AVATARIUM_URL=http://127.0.0.1:8000   # the gateway (https://... anywhere but loopback)
//   export AVATARIUM_API_KEY=...                  # from `avatarium keys create --tenant NAME`
//   export AVATARIUM_CA_FILE=ca.pem               # optional: a private CA (or self-signed certificate) to trust
//   node examples/client.mjs "Tell me about the ocean."
//
// It creates a conversation, opens its WebSocket, sends one message, prints the reply as it streams (text_delta
// frames), then the visemes count, the audio length and the turn's latency breakdown (ms). Node's WebSocket cannot
// set headers, so the key travels in the protocol's first frame {"type": "auth", "api_key"}: never in the URL.
import { spawnSync } from "node:child_process";

const base = (process.env.AVATARIUM_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
const key = process.env.AVATARIUM_API_KEY;
const ca = process.env.AVATARIUM_CA_FILE;
if (ca && process.env.NODE_EXTRA_CA_CERTS !== ca) {  // Node reads extra CAs at startup only: rerun trusting it
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: ca };
  const rerun = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: "inherit", env });
  process.exit(rerun.status ?? 1);
}
const text = process.argv.slice(2).join(" ");
if (!key || !text) {
  console.error("usage: AVATARIUM_API_KEY=... node client.mjs MESSAGE  (the key is never an argument)");
  process.exit(2);
}

const created = await fetch(`${base}/v1/conversations`, {
  method: "POST", body: "{}", headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
});
if (!created.ok) {
  console.error(`POST /v1/conversations: HTTP ${created.status} ${await created.text()}`);
  process.exit(1);
}
const { id } = await created.json();
const ws = new WebSocket(`${base.replace(/^http/, "ws")}/v1/conversations/${id}/ws`);  // ws:// or wss://
let visemes = 0, audioSeconds = 0, reason = null, done = false;
ws.onopen = () => {
  ws.send(JSON.stringify({ type: "auth", api_key: key }));
  ws.send(JSON.stringify({ type: "message", text }));
};
ws.onmessage = ({ data }) => {
  const frame = JSON.parse(data);
  if (frame.type === "text_delta") process.stdout.write(frame.text);
  else if (frame.type === "visemes") visemes += frame.items.length;
  else if (frame.type === "audio") audioSeconds += frame.duration;  // base64 PCM16 in frame.pcm, at sample_rate
  else if (frame.type === "turn_ended") reason = frame.reason;  // complete, cancelled or error
  else if (frame.type === "error" && !frame.turn_id) fail(`${frame.code}: ${frame.message}`);  // refused, no turn
  else if (frame.type === "latency_breakdown") {  // the turn's last frame
    const { type, turn_id, ...latency } = frame;
    console.log(`\n\n[${reason}] visemes: ${visemes}, audio: ${audioSeconds.toFixed(2)} s`);
    for (const [name, ms] of Object.entries(latency)) console.log(`  ${name.padEnd(26)} ${ms?.toFixed(1) ?? "-"}`);
    done = true;
    ws.close();
  }
};
ws.onerror = (event) => fail(`WebSocket error: ${event.message ?? event.type}`);
ws.onclose = (event) => done || fail(`the socket closed (${event.code} ${event.reason})`);

function fail(message) {
  if (done) return;
  done = true;
  console.error(`\nclient.mjs: error: ${message}`);
  process.exitCode = 1;
  ws.close();
}
