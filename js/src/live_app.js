// live_app.js: the served chat page's client (avatarium_lab/app/live.py). Everything it does goes through the
// gateway's public API on the same server -- the same endpoint and protocol any external client uses
// (docs/protocol.md): an API key typed into the page (kept in this tab only, never in a URL), conversations over
// HTTP, the conversation WebSocket for text and microphone messages, and the streamed events played on the same
// avatar renderer as the notebook widget. A dropped connection reconnects and resumes the conversation.
import { AvatarRenderer } from "./avatar_view.js";

const KEY_STORE = "avatarium-api-key";
const CSS = `
.av-live{display:flex;gap:24px;font:14px/1.45 system-ui,sans-serif;color:#111827}
.av-live input[type=text],.av-live input[type=password]{padding:6px 8px;border:1px solid #d1d5db;border-radius:6px;font:inherit}
.av-live button{padding:6px 12px;border:1px solid #2563eb;background:#2563eb;color:#fff;border-radius:6px;font:inherit;cursor:pointer}
.av-live button.av-secondary{background:#fff;color:#2563eb}
.av-live button:disabled{opacity:.5;cursor:default}
.av-live .av-row{display:flex;gap:8px;align-items:center;margin-top:8px}
.av-live .av-status{min-height:1.4em;color:#6b7280;margin-top:6px}
.av-live .av-reply{min-height:3em;margin-top:6px;font-size:16px}
.av-live .av-side{width:340px}
.av-live table{border-collapse:collapse;width:100%;font-size:13px}
.av-live td{padding:1px 4px;border-bottom:1px solid #f3f4f6}
.av-live .av-convs button{display:block;width:100%;margin:3px 0;text-align:left;background:#fff;color:#111827;border-color:#e5e7eb}
.av-live .av-convs button.av-current{border-color:#2563eb;font-weight:600}
.av-live .av-login{padding:16px;border:1px solid #e5e7eb;border-radius:8px;max-width:460px}
.av-live .av-error{color:#b91c1c}
`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

/** A gateway event -> the avatar renderer's message (widgets/protocol.py does the same for Python events). */
export function avatarMessage(ev) {
  switch (ev.type) {
    case "turn_started": return { kind: "begin", turn_id: ev.turn_id };
    case "audio": return { kind: "audio", turn_id: ev.turn_id, segment: ev.segment, offset: ev.offset,
      sample_rate: ev.sample_rate, pcm_b64: ev.pcm };
    case "visemes": return { kind: "visemes", turn_id: ev.turn_id, segment: ev.segment,
      items: (ev.items || []).map((v) => [v.viseme, v.start, v.end, v.weight ?? 1]) };
    case "emotion": return { kind: "emotion", turn_id: ev.turn_id, name: ev.name, intensity: ev.intensity, start: ev.start };
    case "gesture": return { kind: "gesture", turn_id: ev.turn_id, name: ev.name, start: ev.start };
    case "turn_ended": return ev.turn_id ? { kind: "end", turn_id: ev.turn_id, reason: ev.reason } : { kind: "stop" };
    default: return null;
  }
}

/** 16-bit PCM WAV of mono float samples, base64. */
function wavBase64(samples, rate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const str = (o, s) => [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
  str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data");
  v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) v.setInt16(44 + i * 2, Math.max(-1, Math.min(1, samples[i])) * 32767, true);
  let bin = "";
  const bytes = new Uint8Array(buf);
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

class LiveApp {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.key = sessionStorage.getItem(KEY_STORE) || "";
    this.ws = null;
    this.conversation = null;
    this.closedByUs = false;
    this.retry = 0;
    this.turns = 0;
    this.reply = "";
    root.append(el("style", {}, CSS));
    this.box = el("div", { class: "av-live" });
    root.append(this.box);
    this.setState("login");
    if (this.key) this.start();
    else this.showLogin();
  }

  get base() {
    return (this.model.get("api_base") || window.location.origin).replace(/\/$/, "");
  }

  setState(state) {
    this.root.dataset.connection = state;
  }

  async api(method, path, body) {
    const r = await fetch(this.base + path, {
      method, headers: { Authorization: `Bearer ${this.key}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw Object.assign(new Error(data?.error?.message || `HTTP ${r.status}`), { status: r.status });
    return data;
  }

  showLogin(message = "") {
    this.setState("login");
    const input = el("input", { type: "password", placeholder: "API key (avatarium keys create)", size: "40",
      class: "av-key", autocomplete: "off" });
    const go = el("button", { class: "av-login-button" }, "Connect");
    const error = el("div", { class: "av-status av-error" }, message);
    const submit = () => {
      this.key = input.value.trim();
      if (!this.key) return;
      sessionStorage.setItem(KEY_STORE, this.key);
      this.start();
    };
    go.addEventListener("click", submit);
    input.addEventListener("keydown", (e) => e.key === "Enter" && submit());
    this.box.replaceChildren(el("div", { class: "av-login" },
      el("div", {}, el("b", {}, `Talk to ${this.model.get("persona_name") || "the avatar"}`)),
      el("div", { class: "av-status" }, "Enter an API key for this server. It stays in this browser tab."),
      el("div", { class: "av-row" }, input, go), error));
    input.focus();
  }

  async start() {
    try {
      const list = await this.api("GET", "/v1/conversations?status=active&limit=20");
      this.buildChat();
      this.renderConversations(list);
      const id = new URLSearchParams(window.location.hash.slice(1)).get("c");
      const chosen = list.find((c) => c.id === id) || null;
      await this.open(chosen ? chosen.id : (await this.api("POST", "/v1/conversations", {})).id);
    } catch (err) {
      sessionStorage.removeItem(KEY_STORE);
      this.showLogin(err.status === 401 ? "That key was not accepted." : `Cannot reach the server: ${err.message}`);
    }
  }

  buildChat() {
    if (this.renderer) return;
    const avatarBox = el("div", { class: "av-avatar" });
    this.input = el("input", { type: "text", size: "38", class: "av-input", placeholder: "Say something…" });
    this.send = el("button", { class: "av-send" }, "Send");
    this.mic = el("button", { class: "av-mic av-secondary" }, "Speak");
    this.status = el("div", { class: "av-status" });
    this.replyBox = el("div", { class: "av-reply" });
    this.heard = el("div", { class: "av-status av-heard" });
    this.latency = el("table", { class: "av-latency" });
    this.convs = el("div", { class: "av-convs" });
    const newConv = el("button", { class: "av-new av-secondary" }, "New conversation");
    const logout = el("button", { class: "av-logout av-secondary" }, "Log out");
    this.send.addEventListener("click", () => this.sendText());
    this.input.addEventListener("keydown", (e) => e.key === "Enter" && this.sendText());
    this.mic.addEventListener("click", () => this.toggleMic());
    newConv.addEventListener("click", async () => this.open((await this.api("POST", "/v1/conversations", {})).id));
    logout.addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      this.closedByUs = true;
      this.ws?.close();
      window.location.reload();
    });
    const left = el("div", {}, avatarBox, el("div", { class: "av-row" }, this.input, this.send, this.mic),
      this.heard, this.status, this.replyBox);
    const side = el("div", { class: "av-side" }, el("b", {}, "Latency of the last turn"), this.latency,
      el("div", { class: "av-row" }, el("b", {}, "Conversations"), newConv, logout), this.convs);
    this.box.replaceChildren(left, side);
    this.renderer = new AvatarRenderer(this.model, avatarBox);
  }

  renderConversations(list) {
    this.convs.replaceChildren(...list.map((c) => {
      const b = el("button", { class: c.id === this.conversation ? "av-current" : "" },
        `${new Date(c.last_active_at * 1000).toLocaleTimeString()} · ${c.message_count} messages`);
      b.dataset.conversation = c.id;
      b.addEventListener("click", () => this.open(c.id));
      return b;
    }));
  }

  async open(id) {
    this.closedByUs = true;
    this.ws?.close();
    this.conversation = id;
    this.root.dataset.conversation = id;
    history.replaceState(null, "", `#c=${id}`);
    this.replyBox.textContent = "";
    this.connect();
    this.renderConversations(await this.api("GET", "/v1/conversations?status=active&limit=20"));
  }

  connect() {
    this.closedByUs = false;
    this.setState(this.retry ? "reconnecting" : "connecting");
    const url = `${this.base.replace(/^http/, "ws")}/v1/conversations/${this.conversation}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", api_key: this.key }));
    ws.onmessage = (e) => this.onFrame(JSON.parse(e.data));
    ws.onclose = (e) => {
      if (ws !== this.ws || this.closedByUs) return;
      if ([4401, 4403, 4404, 4410].includes(e.code)) return; // answered with an error frame: not transient
      const wait = Math.min(4000, 500 * 2 ** this.retry++);
      this.setState("reconnecting");
      this.status.textContent = `connection lost; reconnecting in ${(wait / 1000).toFixed(1)} s…`;
      setTimeout(() => this.ws === ws && this.connect(), wait);
    };
  }

  /** Drop the socket as a network failure would (tests and a manual "reconnect" use it). */
  drop() {
    this.ws?.close(4000, "dropped");
  }

  onFrame(f) {
    const m = avatarMessage(f);
    if (m) this.renderer.player.handle(m, []);
    switch (f.type) {
      case "hello":
        this.retry = 0;
        this.setState("open");
        this.root.dataset.resumed = String(f.resumed);
        this.status.textContent = f.resumed ? `resumed (${f.messages} messages so far)` : "connected";
        break;
      case "transcript":
        this.heard.textContent = `You said: “${f.text}”`;
        this.root.dataset.heard = f.text;
        break;
      case "turn_started":
        this.reply = "";
        this.status.textContent = "thinking…";
        break;
      case "text_delta":
        this.reply += f.text;
        this.replyBox.textContent = this.reply.trim();
        this.status.textContent = "speaking";
        break;
      case "turn_ended":
        this.status.textContent = f.reason === "complete" ? "" : f.reason;
        break;
      case "latency_breakdown":
        this.turns += 1;
        this.root.dataset.turns = String(this.turns);
        this.latency.replaceChildren(...Object.entries(f).filter(([k, v]) => k.endsWith("_ms") && v != null)
          .map(([k, v]) => el("tr", {}, el("td", {}, k.replace(/_ms$/, "").replaceAll("_", " ")),
            el("td", { style: "text-align:right" }, `${Math.round(v)} ms`))));
        this.api("GET", "/v1/conversations?status=active&limit=20").then((l) => this.renderConversations(l))
          .catch(() => {});
        break;
      case "error":
        this.status.innerHTML = "";
        this.status.append(el("span", { class: "av-error" }, `${f.code}: ${f.message}`));
        if (f.code === "conversation_expired") this.status.append(" — start a new conversation.");
        break;
      default:
        break;
    }
  }

  sendText() {
    const text = this.input.value.trim();
    if (!text || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.renderer.player.resume(); // a click: audio may play now
    this.ws.send(JSON.stringify({ type: "message", text }));
    this.input.value = "";
  }

  async toggleMic() {
    // MediaRecorder records off the main thread (a ScriptProcessor on it drops audio while the page renders);
    // the recording is decoded back to PCM here and sent as the WAV the protocol takes.
    if (this.recording) {
      const recorder = this.recording;
      this.recording = null;
      const done = new Promise((resolve) => { recorder.onstop = resolve; });
      recorder.stop();
      await done;
      recorder.stream.getTracks().forEach((t) => t.stop());
      this.mic.textContent = "Speak";
      const blob = new Blob(recorder.chunks, { type: recorder.mimeType });
      const ctx = new AudioContext();
      try {
        const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
        if (audio.duration > 0.3 && this.ws?.readyState === WebSocket.OPEN) {
          this.ws.send(JSON.stringify({ type: "audio", wav_b64: wavBase64(audio.getChannelData(0), audio.sampleRate) }));
          this.status.textContent = "transcribing…";
        }
      } catch (err) {
        this.status.textContent = `could not read the recording: ${err.message || err}`;
      } finally {
        ctx.close();
      }
      return;
    }
    this.renderer.player.resume();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      this.status.textContent = `no microphone: ${err.message || err}`;
      return;
    }
    const recorder = new MediaRecorder(stream);
    recorder.chunks = [];
    recorder.ondataavailable = (e) => e.data.size && recorder.chunks.push(e.data);
    recorder.start(250);
    this.recording = recorder;
    this.mic.textContent = "Stop";
    this.status.textContent = "listening…";
  }
}

export default {
  render({ model, el: root }) {
    const app = new LiveApp(model, root);
    root.__avatariumLive = app;
    return () => {
      app.closedByUs = true;
      app.ws?.close();
      app.renderer?.dispose();
    };
  },
};
