// avatar_view.js: the one front-end module of AvatarView (anywidget) and AvatarPane (Panel AnyWidgetComponent).
//
// Renders a GLB avatar with three.js, plays a turn's PCM16 audio through Web Audio and drives the mouth from the
// turn's viseme track against the audio clock (ctx.currentTime), so lip sync holds however late or bursty the
// Python side is. Message protocol: avatarium_lab/widgets/protocol.py.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { Body } from "./motion.js";

const VISEMES = ["sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U"];
const SPOKEN = VISEMES.filter((v) => v !== "sil");

// Coarticulation: a viseme starts to form before its nominal start and lingers after its end, so neighbours
// overlap the way real articulators do; the smoothing below then removes any remaining discontinuity.
const ATTACK = 0.05; // seconds from 0 to full weight, centred a little before the viseme's start
const RELEASE = 0.07; // seconds from full weight back to 0, mostly after the viseme's end
const RISE_TAU = 0.03; // exponential smoothing time constants (seconds) of the morph weights
const FALL_TAU = 0.045;
const STOP_TAU = 0.02; // barge-in: the mouth closes fast but still does not snap

// Streaming schedule: the first chunk of a turn plays LEAD s after it arrives (room to build the buffer); a chunk
// that cannot make its planned time by MIN_LEAD pushes itself and everything after it later.
const LEAD = 0.12;
const MIN_LEAD = 0.03;
const TAIL = 0.15; // a turn counts as playing until its last sound or viseme plus this
const EMOTION_HOLD = 1.2; // an emotion outlives the end of the turn's audio by this, then eases to neutral
const EMOTION_TAU = 0.25;
const APPLIED_THRESHOLD = 0.1; // a frame "applies" a viseme when some viseme weight exceeds this

const EMOTION_ALIASES = {
  joy: "happy", smile: "happy", glad: "happy", sadness: "sad", surprise: "surprised", think: "thinking",
  curious: "thinking", anger: "angry", mad: "angry", calm: "relaxed", fun: "happy", sorrow: "sad",
};
// Emotions, blended on top of speech. What each looks like on a model comes with it in the widget's `rig`
// (protocol.rig_payload, from avatar/rigmaps.yaml: the one emotion table); mouth shapes give way to speech.
const EMOTION_NAMES = ["happy", "sad", "angry", "surprised", "thinking", "relaxed"];
const MOUTH_GIVE = 0.5; // an emotion's mouth shapes are scaled by 1 - MOUTH_GIVE * (how open the mouth speaks)
// Emotions in the body too: head offsets (pivot-space Euler radians at intensity 1; see motion.js for the axes).
const EMOTION_HEAD = {
  happy: [-0.03, 0, 0.02], sad: [0.09, 0, -0.02], angry: [0.05, 0, 0], surprised: [-0.06, 0, 0],
  thinking: [-0.02, 0.06, 0.08], relaxed: [0, 0, 0.03],
};

const smoothstep = (x) => (x <= 0 ? 0 : x >= 1 ? 1 : x * x * (3 - 2 * x));
const perfNow = () => performance.now() / 1000;

/** Bytes as they arrive from anywidget (DataView) or Panel (DataView over an ArrayBuffer), or base64 text. */
function toArrayBuffer(value) {
  if (value == null) return null;
  if (value instanceof ArrayBuffer) return value;
  if (ArrayBuffer.isView(value)) {
    return value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength);
  }
  if (typeof value === "string") return base64ToBytes(value).buffer;
  if (value.buffer instanceof ArrayBuffer) return toArrayBuffer(new Uint8Array(value.buffer));
  return null;
}

function base64ToBytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** PCM16 little-endian mono -> Float32 samples in [-1, 1). */
function pcm16ToFloat32(buffer) {
  const view = new DataView(buffer);
  const n = Math.floor(buffer.byteLength / 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
  return out;
}

/** Viseme items arrive as [viseme, start, end, weight] lists; objects are accepted too. */
function normaliseViseme(item) {
  if (Array.isArray(item)) {
    return { id: String(item[0]), start: +item[1], end: +item[2], weight: item.length > 3 ? +item[3] : 1 };
  }
  return { id: String(item.viseme ?? item.id), start: +item.start, end: +item.end, weight: item.weight ?? 1 };
}

// ---------------------------------------------------------------------------------------------------------------
// Player: the AudioContext and the current turn's timeline, one per rendered view. (anywidget hands each view its
// own model proxy and Panel its own adapter, so nothing identifies two views of one widget: shown twice, a widget
// plays its audio twice, like two <audio> elements would.)
// ---------------------------------------------------------------------------------------------------------------

class Player {
  constructor(model) {
    this.model = model;
    this.views = new Set();
    this.turn = null;
    this.sources = new Set();
    this.hasPlayed = false;
    this.playing = false;
    this.audioStalled = false; // set when ctx claims to run but its clock does not move (no audio device)
    this.stopUntil = 0; // perf time until which the mouth closes with STOP_TAU
    this.needsGesture = false;
    this.stoppedId = null; // the turn a "stop" interrupted
    this.lastTurnId = null;
    this.lastCtxTime = -1;
    this.lastCtxCheck = 0;
    this.held = null; // a "pose" message's pose, shown while no turn plays
    this.loose = []; // gestures sent outside a turn: play at once
    this.onMessage = (msg, buffers) => {
      try {
        this.handle(msg, buffers);
      } catch (err) {
        console.error("avatar_view: bad message", msg, err);
      }
    };
    this.ctx = null;
    this.ensureContext();
    model.on("msg:custom", this.onMessage);
  }

  ensureContext() {
    if (this.ctx) return this.ctx;
    const AC = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!AC) return null;
    try {
      this.ctx = new AC({ latencyHint: "interactive" });
    } catch (err) {
      console.warn("avatar_view: no AudioContext", err);
      return null;
    }
    this.gain = this.ctx.createGain();
    this.gain.connect(this.ctx.destination);
    this.ctx.addEventListener("statechange", () => this.onStateChange());
    return this.ctx;
  }

  audioUsable() {
    return !!this.ctx && this.ctx.state === "running" && !this.audioStalled;
  }

  resume() {
    const ctx = this.ensureContext();
    if (ctx && ctx.state !== "running" && ctx.state !== "closed") {
      ctx.resume().catch(() => {});
    }
  }

  onStateChange() {
    if (this.ctx && this.ctx.state === "running") {
      this.needsGesture = false;
      if (this.turn) this.scheduleAudio(this.turn);
    } else if (this.turn && this.turn.clock === "audio") {
      // The audio clock froze under us (device lost, tab policy): keep the mouth going on the page clock.
      this.switchToPerfClock(this.turn);
    }
    this.notifyViews();
  }

  now(turn) {
    return turn && turn.clock === "audio" ? this.ctx.currentTime : perfNow();
  }

  newTurn(id) {
    this.stopAll();
    this.lastTurnId = id ?? "";
    this.turn = {
      id: id ?? "",
      clock: null,
      t0: null,
      delay: 0,
      chunks: [],
      visemes: [],
      emotions: [],
      gestures: [],
      ended: false,
      lastVisemeEnd: 0,
    };
    this.setPlaying(true);
    return this.turn;
  }

  /** The turn a message belongs to; null for the rest of a turn that was stopped (barge-in). */
  turnFor(id) {
    if (id != null && id === this.stoppedId) return null;
    if (!this.turn || (id != null && this.turn.id !== id)) return this.newTurn(id);
    return this.turn;
  }

  /** Fix the turn's clock and origin when its first timed content arrives. */
  startClock(turn) {
    if (turn.t0 != null) return;
    this.resume();
    turn.clock = this.audioUsable() ? "audio" : "perf";
    turn.t0 = this.now(turn) + LEAD;
  }

  handle(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    switch (msg.kind) {
      case "begin":
        this.stoppedId = null; // an explicit begin always starts, even a turn id seen before
        this.newTurn(msg.turn_id);
        break;
      case "audio":
        this.onAudio(msg, buffers);
        break;
      case "visemes": {
        const turn = this.turnFor(msg.turn_id);
        if (!turn) break;
        const segment = msg.segment ?? 0;
        for (const raw of msg.items || []) {
          const v = normaliseViseme(raw);
          if (!(v.end > v.start)) continue;
          v.segment = segment;
          turn.visemes.push(v);
          turn.lastVisemeEnd = Math.max(turn.lastVisemeEnd, v.end);
        }
        turn.visemes.sort((a, b) => a.start - b.start);
        break;
      }
      case "emotion": {
        const turn = this.turnFor(msg.turn_id);
        if (!turn) break;
        const name = String(msg.name || "neutral").toLowerCase();
        turn.emotions.push({
          name: EMOTION_ALIASES[name] || name,
          intensity: msg.intensity ?? 1,
          start: msg.start ?? 0,
        });
        turn.emotions.sort((a, b) => a.start - b.start);
        break;
      }
      case "gesture": {
        const name = String(msg.name || "").toLowerCase();
        if (msg.turn_id == null) {
          this.loose.push({ name, intensity: msg.intensity ?? 1 });
          break;
        }
        const turn = this.turnFor(msg.turn_id);
        if (!turn) break;
        turn.gestures.push({ name, intensity: msg.intensity ?? 1, start: +msg.start || 0, sent: false });
        break;
      }
      case "pose":
        this.held = msg.visemes || msg.emotion
          ? { visemes: msg.visemes || {}, emotion: msg.emotion ? String(msg.emotion).toLowerCase() : null,
            intensity: msg.intensity ?? 1, still: !!msg.still }
          : null;
        break;
      case "end": {
        const turn = this.turnFor(msg.turn_id);
        if (!turn) break;
        turn.ended = true;
        // A turn without audio (text-only voice, a test) still animates its visemes on the page clock.
        this.startClock(turn);
        break;
      }
      case "stop":
        // Whatever the pipeline still emits for the interrupted turn must not start it again.
        this.stoppedId = this.turn ? this.turn.id : this.lastTurnId;
        this.stopAll();
        this.stopUntil = perfNow() + 0.3;
        this.setPlaying(false);
        break;
      default:
        console.warn("avatar_view: unknown message kind", msg.kind);
    }
    this.notifyViews();
  }

  onAudio(msg, buffers) {
    const turn = this.turnFor(msg.turn_id);
    if (!turn) return;
    const raw = buffers && buffers.length ? toArrayBuffer(buffers[0]) : msg.pcm_b64 ? base64ToBytes(msg.pcm_b64).buffer : null;
    if (!raw || raw.byteLength < 2) return;
    const samples = pcm16ToFloat32(raw);
    const sampleRate = msg.sample_rate || 22050;
    const duration = samples.length / sampleRate;
    const offset = +msg.offset || 0;
    this.startClock(turn);
    let when = turn.t0 + offset + turn.delay;
    const earliest = this.now(turn) + MIN_LEAD;
    if (when < earliest) {
      // Too late for its planned slot: play it as soon as possible and shift every later chunk by as much.
      turn.delay += earliest - when;
      when = earliest;
    }
    turn.chunks.push({
      segment: msg.segment ?? 0, offset, end: offset + duration, duration, delay: turn.delay, when,
      samples, sampleRate, started: false,
    });
    this.scheduleAudio(turn);
  }

  /** Start every chunk not yet handed to Web Audio (also after a late resume, mid-chunk if need be). */
  scheduleAudio(turn) {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== "running") {
      if (turn.chunks.some((c) => !c.started)) this.needsGesture = true;
      return;
    }
    for (const c of turn.chunks) {
      if (c.started) continue;
      c.started = true;
      let when = turn.clock === "audio" ? c.when : ctx.currentTime + (c.when - perfNow());
      let skip = 0;
      if (when < ctx.currentTime) {
        skip = ctx.currentTime - when;
        when = ctx.currentTime;
      }
      if (skip >= c.duration) continue;
      const buffer = ctx.createBuffer(1, c.samples.length, c.sampleRate);
      buffer.getChannelData(0).set(c.samples);
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      src.connect(this.gain);
      src.onended = () => this.sources.delete(src);
      src.start(when, skip);
      this.sources.add(src);
      c.samples = null; // the AudioBuffer holds them now
    }
  }

  switchToPerfClock(turn) {
    if (turn.clock !== "audio" || !this.ctx) return;
    const shift = perfNow() - this.ctx.currentTime;
    turn.clock = "perf";
    if (turn.t0 != null) turn.t0 += shift;
    for (const c of turn.chunks) c.when += shift;
  }

  stopAll() {
    for (const src of this.sources) {
      try {
        src.stop();
      } catch {
        // already stopped
      }
    }
    this.sources.clear();
    this.turn = null;
  }

  /** Delay of the audio under `t` (turn seconds) in `segment`; null while that audio has not arrived. */
  delayFor(turn, segment, t) {
    let found = null;
    for (const c of turn.chunks) {
      if (c.segment !== segment) continue;
      if (found === null || c.offset <= t + 1e-6) found = c;
      if (c.offset > t) break;
    }
    if (found) return found.delay;
    return turn.ended ? turn.delay : null; // no audio will come for this segment
  }

  /** Delay of the audio playing at turn time `t` in any segment (gestures belong to no segment). */
  delayAt(turn, t) {
    let found = null;
    for (const c of turn.chunks) if (found === null || c.offset <= t + 1e-6) found = c;
    if (found && (found.offset <= t + 1e-6 || turn.ended)) return found.delay;
    return turn.ended ? turn.delay : null;
  }

  /** Turn time at which everything scheduled so far has finished, in the turn's clock. */
  turnEnd(turn) {
    let end = turn.t0 + turn.lastVisemeEnd + turn.delay;
    for (const c of turn.chunks) end = Math.max(end, c.when + c.duration);
    return end;
  }

  /** Viseme targets and emotion for this frame. */
  evaluate() {
    const out = { visemes: {}, emotion: null, emotionIntensity: 0, stopping: perfNow() < this.stopUntil,
      gestures: [], still: false, held: false };
    // Gestures start on the page clock: now for loose ones, at their turn time (or at once, if late) otherwise.
    for (const g of this.loose) out.gestures.push({ name: g.name, at: perfNow(), intensity: g.intensity });
    this.loose = [];
    const turn = this.turn;
    if (!turn || turn.t0 == null) {
      if (this.held) {
        Object.assign(out, { visemes: { ...this.held.visemes }, emotion: this.held.emotion,
          emotionIntensity: this.held.intensity, still: this.held.still, held: true });
        delete out.visemes.sil;
      }
      return out;
    }
    this.checkAudioClock(turn);
    const now = this.now(turn);
    for (const v of turn.visemes) {
      if (v.id === "sil") continue; // silence: every viseme decays to rest
      const d = this.delayFor(turn, v.segment, v.start);
      if (d == null) continue; // waits for its audio
      const s = turn.t0 + v.start + d;
      if (s - ATTACK > now) break; // sorted by start: nothing later is active yet
      const e = turn.t0 + v.end + d;
      if (now > e + RELEASE) continue;
      const rise = smoothstep((now - (s - 0.5 * ATTACK)) / ATTACK);
      const fall = 1 - smoothstep((now - (e - 0.3 * RELEASE)) / RELEASE);
      const w = Math.max(0, Math.min(1, v.weight)) * rise * fall;
      if (w > (out.visemes[v.id] || 0)) out.visemes[v.id] = w;
    }
    for (const g of turn.gestures) {
      if (g.sent) continue;
      const d = this.delayAt(turn, g.start);
      if (d == null) continue;
      const due = turn.t0 + g.start + d - now;
      if (due > 0.1) continue;
      g.sent = true;
      out.gestures.push({ name: g.name, at: perfNow() + Math.max(0, due), intensity: g.intensity });
    }
    const end = this.turnEnd(turn);
    const finished = turn.ended && now > end + TAIL;
    for (const em of turn.emotions) {
      if (turn.t0 + em.start + turn.delay <= now) {
        out.emotion = em.name;
        out.emotionIntensity = em.intensity;
      }
    }
    if (finished) {
      this.setPlaying(false);
      if (now > end + EMOTION_HOLD) this.turn = null;
      out.emotion = now > end + EMOTION_HOLD ? null : out.emotion;
    }
    return out;
  }

  /** A "running" context whose clock does not advance (no audio device) would freeze the mouth. */
  checkAudioClock(turn) {
    if (turn.clock !== "audio") return;
    const p = perfNow();
    const t = this.ctx.currentTime;
    if (t !== this.lastCtxTime) {
      this.lastCtxTime = t;
      this.lastCtxCheck = p;
    } else if (p - this.lastCtxCheck > 0.4) {
      console.warn("avatar_view: audio clock stalled; animating on the page clock");
      this.audioStalled = true;
      this.switchToPerfClock(turn);
    }
  }

  setPlaying(playing) {
    if (this.playing === playing) return;
    this.playing = playing;
    if (playing) this.hasPlayed = true;
    this.notifyViews();
  }

  notifyViews() {
    for (const view of this.views) view.refreshChrome();
  }

  attach(view) {
    this.views.add(view);
  }

  detach(view) {
    this.views.delete(view);
    if (this.views.size) return;
    this.stopAll();
    try {
      this.model.off("msg:custom", this.onMessage);
    } catch {
      // the model is going away anyway
    }
    if (this.ctx) this.ctx.close().catch(() => {});
  }
}

/** Whether WebGL runs on the CPU (SwiftShader, llvmpipe): there 4x MSAA halves an already low frame rate. */
let softwareRenderer = null;
function isSoftwareRenderer() {
  if (softwareRenderer !== null) return softwareRenderer;
  softwareRenderer = false;
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    if (gl) {
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
      softwareRenderer = /swiftshader|llvmpipe|softpipe|software/i.test(name);
      gl.getExtension("WEBGL_lose_context")?.loseContext();
    }
  } catch {
    // keep the default: antialiasing on
  }
  return softwareRenderer;
}

// ---------------------------------------------------------------------------------------------------------------
// View: one per rendered element: renderer, scene, framing, idle motion, blinks, morph smoothing.
// ---------------------------------------------------------------------------------------------------------------

const HINT_STYLE =
  "position:absolute;left:8px;bottom:8px;padding:3px 9px;border-radius:10px;font:11px/1.4 system-ui,sans-serif;" +
  "color:#fff;background:rgba(0,0,0,0.45);cursor:pointer;user-select:none;display:none;";
const NOTE_STYLE =
  "position:absolute;inset:0;display:flex;align-items:center;justify-content:center;padding:12px;" +
  "font:12px/1.4 system-ui,sans-serif;color:#888;text-align:center;pointer-events:none;";

class AvatarRenderer {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.player = new Player(model);
    this.loaded = false;
    this.error = null;
    this.loadToken = 0;
    this.morphs = new Map(); // morph name -> [[mesh, index], ...]
    this.meshesByIndex = new Map(); // glTF mesh index -> its three.js meshes (rig drives address morphs by index)
    this.acc = new Map(); // this frame's morph weights: mesh -> Map(index -> weight), summed over every source
    this.touched = new Map(); // what the previous frame set, so a morph no source drives returns to 0
    this.body = null;
    this.emoLevels = Object.fromEntries(EMOTION_NAMES.map((e) => [e, 0]));
    this.still = false;
    this.visWeights = Object.fromEntries(SPOKEN.map((v) => [v, 0]));
    this.applied = 0;
    this.lastFrame = perfNow();
    this.clockStart = perfNow();
    this.nextBlink = perfNow() + 1 + Math.random() * 2;
    this.blinkStart = -1;
    this.blink = 0;
    this.peak = 0;
    this.speech = 0;
    this.mouthBoxText = "";
    this.disposed = false;

    this.root = document.createElement("div");
    this.root.className = "avatarium-avatar-view";
    this.root.dataset.visemesApplied = "0";
    this.root.dataset.viseme = "sil";
    this.root.style.cssText = "position:relative;display:inline-block;overflow:hidden;border-radius:6px;line-height:0;";
    this.hint = document.createElement("div");
    this.hint.textContent = "click for sound";
    this.hint.title = "The browser blocked audio until you interact with the page";
    this.hint.style.cssText = HINT_STYLE;
    this.note = document.createElement("div");
    this.note.style.cssText = NOTE_STYLE;
    this.note.style.display = "none";
    this.onClick = () => this.player.resume();
    this.root.addEventListener("click", this.onClick);

    try {
      // preserveDrawingBuffer: the last frame stays readable (screenshots, toDataURL) between animation frames.
      this.renderer = new THREE.WebGLRenderer({
        antialias: !isSoftwareRenderer(), alpha: true, preserveDrawingBuffer: true,
      });
    } catch (err) {
      this.renderer = null;
      this.root.append(this.note, this.hint);
      el.appendChild(this.root);
      this.applySize();
      this.applyBackground();
      this.fail(`WebGL unavailable (${err.message || err})`);
      this.player.attach(this);
      return;
    }
    this.renderer.setPixelRatio(Math.min(globalThis.devicePixelRatio || 1, 2));
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;
    this.renderer.toneMapping = THREE.NeutralToneMapping;
    this.renderer.toneMappingExposure = 1.0;
    this.renderer.setClearColor(0x000000, 0); // the CSS background shows through: any CSS colour works
    this.canvas = this.renderer.domElement;
    this.canvas.style.display = "block";
    this.root.append(this.canvas, this.note, this.hint);
    el.appendChild(this.root);

    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(26, 1, 0.01, 100);
    this.addLights();
    this.pivot = new THREE.Group(); // idle motion rotates the avatar about its neck
    this.scene.add(this.pivot);

    this.applySize();
    this.applyBackground();
    this.player.attach(this);

    this.listeners = [
      ["change:glb", () => this.load()],
      ["change:canvas_width", () => this.applySize()],
      ["change:canvas_height", () => this.applySize()],
      ["change:background", () => this.applyBackground()],
      ["change:canvas_background", () => this.applyBackground()],
      ["change:status", () => this.refreshChrome()],
      ["change:rig", () => this.loaded && this.bindRig()],
    ];
    for (const [event, cb] of this.listeners) model.on(event, cb);

    this.load();
    this.frame = this.frame.bind(this);
    this.raf = requestAnimationFrame(this.frame);
  }

  addLights() {
    // Three-point portrait lighting: warm key high left, cool soft fill right, rim behind for separation.
    // The hemisphere's ground colour is a warm mid tone: a dark one paints the underside of the jaw like stubble.
    const hemi = new THREE.HemisphereLight(0xf4f6ff, 0x9a8a80, 1.0);
    const key = new THREE.DirectionalLight(0xfff1e0, 2.4);
    key.position.set(-1.1, 1.4, 2.2);
    const fill = new THREE.DirectionalLight(0xe4ecff, 1.1);
    fill.position.set(1.5, 0.1, 1.6);
    const rim = new THREE.DirectionalLight(0xffffff, 1.4);
    rim.position.set(0.4, 1.8, -2.2);
    this.lights = [hemi, key, fill, rim];
    // Directional lights aim at their target; it follows the head once a model is framed.
    for (const light of [key, fill, rim]) this.scene.add(light.target);
    this.scene.add(hemi, key, fill, rim);
  }

  get width() {
    return Math.max(16, +this.model.get("canvas_width") || 320);
  }

  get height() {
    return Math.max(16, +this.model.get("canvas_height") || 400);
  }

  applySize() {
    this.root.style.width = `${this.width}px`;
    this.root.style.height = `${this.height}px`;
    if (!this.renderer) return;
    this.renderer.setSize(this.width, this.height, true);
    this.camera.aspect = this.width / this.height;
    if (this.framing) this.frameCamera();
    this.camera.updateProjectionMatrix();
  }

  applyBackground() {
    // Panel never syncs a parameter named "background", so AvatarPane sends it as "canvas_background".
    this.root.style.background = this.model.get("canvas_background") || this.model.get("background") || "transparent";
  }

  setStatus(status) {
    this.root.dataset.status = status;
    if (this.model.get("status") !== status) {
      this.model.set("status", status);
      this.model.save_changes();
    }
  }

  /** Status, sound hint and note follow the player and this view's load state. */
  refreshChrome() {
    if (this.disposed) return;
    const p = this.player;
    let status;
    if (this.error) status = `error: ${this.error}`;
    else if (!this.loaded) status = "loading";
    else if (p.playing) status = "playing";
    else status = p.hasPlayed ? "idle" : "ready";
    this.setStatus(status);
    this.hint.style.display = p.needsGesture && !p.audioUsable() ? "block" : "none";
  }

  fail(message) {
    this.error = String(message || "unknown error");
    this.note.textContent = `Avatar could not be shown: ${this.error}`;
    this.note.style.display = "flex";
    this.refreshChrome();
  }

  load() {
    const token = ++this.loadToken;
    this.loaded = false;
    this.error = null;
    this.note.style.display = "none";
    this.refreshChrome();
    const buffer = toArrayBuffer(this.model.get("glb"));
    if (!buffer || buffer.byteLength === 0) {
      this.fail("no GLB data");
      return;
    }
    const loader = new GLTFLoader();
    try {
      loader.parse(
        buffer,
        "",
        (gltf) => {
          if (token === this.loadToken && !this.disposed) this.onLoaded(gltf);
        },
        (err) => {
          if (token === this.loadToken) this.fail(err?.message || String(err));
        },
      );
    } catch (err) {
      this.fail(err?.message || String(err));
    }
  }

  onLoaded(gltf) {
    this.disposeModel();
    const avatar = gltf.scene;
    // VRM 0.x models face -z (away from the glTF front): turn them to the camera.
    if ((this.model.get("rig") || {}).facing === "-z") avatar.rotation.y = Math.PI;
    avatar.updateMatrixWorld(true);
    this.morphs = new Map();
    this.meshesByIndex = new Map();
    avatar.traverse((obj) => {
      if (!obj.isMesh || !obj.morphTargetInfluences) return;
      obj.frustumCulled = false; // morphs move vertices beyond the rest-pose bounds
      const assoc = gltf.parser?.associations?.get(obj);
      if (assoc && assoc.meshes != null) {
        if (!this.meshesByIndex.has(assoc.meshes)) this.meshesByIndex.set(assoc.meshes, []);
        this.meshesByIndex.get(assoc.meshes).push(obj);
      }
      for (const [name, index] of Object.entries(obj.morphTargetDictionary || {})) {
        if (!this.morphs.has(name)) this.morphs.set(name, []);
        this.morphs.get(name).push([obj, index]);
      }
    });
    this.computeFraming(avatar);
    this.avatar = avatar;
    this.pivot.add(avatar);
    this.bindRig();
    this.root.dataset.glbBytes = String(toArrayBuffer(this.model.get("glb"))?.byteLength || 0);
    this.frameCamera();
    this.loaded = true;
    this.refreshChrome();
  }

  /** Decide, per target, whether the model's own names or the rig's drives animate it; bind the skeleton. */
  bindRig() {
    const rig = this.model.get("rig") || {};
    const has = (name) => this.morphs.has(name);
    this.visemeDrives = {};
    for (const v of SPOKEN) {
      if (!has(`viseme_${v}`)) this.visemeDrives[v] = rig.visemes?.[`viseme_${v}`] || null;
    }
    this.emotionDrives = rig.emotions || {};
    this.blinksByName = has("eyeBlinkLeft") || has("eyeBlinkRight");
    const blinks = rig.blinks || {};
    this.blinkDrives = this.blinksByName ? null
      : blinks.blinkLeft && blinks.blinkRight ? [...blinks.blinkLeft, ...blinks.blinkRight] : blinks.blink || null;
    // The rest pose (all gestures off) before measuring the skeleton again.
    if (this.body) for (const b of this.body.bones.values()) b.obj.quaternion.copy(b.q0);
    this.pivot.rotation.set(0, 0, 0);
    this.pivot.position.copy(this.pivotRest || this.pivot.position);
    this.body = new Body(this.avatar, this.pivot, rig.bones || {}, !!this.framing?.full);
    this.root.dataset.bones = String(this.body.roleCount);
    this.root.dataset.canWave = String(this.body.canWave);
  }

  /** Head-and-shoulders framing from the bounding box and the HeadAnchor / MouthAnchor nodes. */
  computeFraming(avatar) {
    const box = new THREE.Box3().setFromObject(avatar, true);
    if (box.isEmpty()) box.set(new THREE.Vector3(-0.5, 0, -0.5), new THREE.Vector3(0.5, 1.8, 0.5));
    const size = box.getSize(new THREE.Vector3());
    const centre = box.getCenter(new THREE.Vector3());
    const headNode = avatar.getObjectByName("HeadAnchor");
    const mouthNode = avatar.getObjectByName("MouthAnchor");
    const head = headNode
      ? headNode.getWorldPosition(new THREE.Vector3())
      : new THREE.Vector3(centre.x, box.max.y - 0.12 * size.y, centre.z);
    const radius = Math.max(box.max.y - head.y, 0.04 * size.y, 1e-3); // ~ half a head
    const top = box.max.y;
    // A full-body figure (extras.framing "full" on the scene's root node) is framed whole; a bust down to the
    // upper chest.
    let full = false;
    avatar.traverse((obj) => { if (obj.userData?.framing === "full") full = true; });
    const bottom = full ? box.min.y : Math.max(box.min.y, head.y - 2.6 * radius);
    const mouth = mouthNode
      ? mouthNode.getWorldPosition(new THREE.Vector3())
      : new THREE.Vector3(head.x, head.y - 0.55 * radius, box.max.z);
    const neck = new THREE.Vector3(head.x, head.y - 0.9 * radius, head.z);
    // The avatar hangs from the pivot at its neck so that idle rotations look like head and torso sway.
    avatar.position.sub(neck);
    this.pivot.position.copy(neck);
    this.pivotRest = neck.clone();
    this.framing = {
      head: head.clone(), top, bottom, radius, full, shoulders: full ? size.x : Math.min(size.x, 6 * radius),
      mouthLocal: mouth.clone().sub(neck), mouthBoxLocal: this.mouthBox(avatar, mouth, radius, neck),
    };
  }

  /** Box (pivot space) that the lips and jaw can reach: the vertices moved by the open-mouth morphs. */
  mouthBox(avatar, mouth, radius, neck) {
    const box = new THREE.Box3();
    const v = new THREE.Vector3();
    const d = new THREE.Vector3();
    for (const name of ["viseme_aa", "jawOpen"]) {
      for (const [mesh, index] of this.morphs.get(name) || []) {
        const geo = mesh.geometry;
        const pos = geo.attributes.position;
        const delta = geo.morphAttributes.position?.[index];
        if (!pos || !delta) continue;
        const relative = geo.morphTargetsRelative;
        const moves = new Float32Array(delta.count);
        let max = 0;
        for (let i = 0; i < delta.count; i++) {
          d.fromBufferAttribute(delta, i);
          if (!relative) d.sub(v.fromBufferAttribute(pos, i));
          moves[i] = d.length();
          max = Math.max(max, moves[i]);
        }
        // Vertices that move at least a quarter of the largest move: lips, teeth, chin; not the faint falloff.
        for (let i = 0; i < delta.count; i++) {
          if (max === 0 || moves[i] < 0.25 * max) continue;
          d.fromBufferAttribute(delta, i);
          v.fromBufferAttribute(pos, i);
          if (!relative) d.sub(v);
          box.expandByPoint(v.clone().applyMatrix4(mesh.matrixWorld));
          box.expandByPoint(v.add(d).applyMatrix4(mesh.matrixWorld));
        }
      }
    }
    if (box.isEmpty()) {
      // No mouth morphs: a box around the MouthAnchor sized from the head.
      box.set(
        new THREE.Vector3(mouth.x - 0.4 * radius, mouth.y - 0.5 * radius, mouth.z),
        new THREE.Vector3(mouth.x + 0.4 * radius, mouth.y + 0.15 * radius, mouth.z),
      );
    }
    box.expandByPoint(mouth);
    // What the camera sees is the front of that region (teeth and tongue sit behind the lips): flatten the
    // box onto the mouth's plane so that depth does not inflate its projection, then add a margin for the lip
    // outline, smoothing overshoot and idle sway.
    box.min.z = box.max.z = mouth.z;
    const size = box.getSize(new THREE.Vector3());
    box.expandByVector(new THREE.Vector3(0.1 * size.x + 0.02 * radius, 0.1 * size.y + 0.02 * radius, 0));
    box.min.sub(neck);
    box.max.sub(neck);
    return box;
  }

  frameCamera() {
    const f = this.framing;
    if (!f) return;
    const fov = THREE.MathUtils.degToRad(this.camera.fov);
    const span = (f.top - f.bottom) * 1.12;
    const distV = span / 2 / Math.tan(fov / 2);
    const distH = (f.shoulders * 1.05) / 2 / (Math.tan(fov / 2) * this.camera.aspect);
    const dist = Math.max(distV, distH);
    const targetY = (f.top + f.bottom) / 2 + 0.01 * span;
    const target = new THREE.Vector3(f.head.x, targetY, f.head.z);
    if (this.root) this.root.dataset.framing = f.full ? "full" : "bust";
    // Slightly above eye level, looking a touch down: the usual portrait angle.
    this.camera.position.set(f.head.x, targetY + 0.06 * dist, f.head.z + dist);
    this.camera.near = dist / 50;
    this.camera.far = dist * 50;
    this.camera.lookAt(target);
    this.camera.updateProjectionMatrix();
    for (const light of this.lights) {
      if (light.target) light.target.position.copy(f.head);
    }
    for (const light of this.lights.slice(1)) {
      // Keep the lights' directions, placed around the head at the camera's scale.
      light.position.copy(light.userData.dir || (light.userData.dir = light.position.clone().normalize()))
        .multiplyScalar(dist * 2).add(f.head);
    }
  }

  frame() {
    if (this.disposed) return;
    this.raf = requestAnimationFrame(this.frame);
    const now = perfNow();
    const dt = Math.min(0.1, Math.max(0, now - this.lastFrame));
    this.lastFrame = now;
    const sample = this.player.evaluate();
    this.still = sample.still;
    if (this.root.dataset.pose !== (sample.held ? "held" : "")) this.root.dataset.pose = sample.held ? "held" : "";
    this.updateMouth(sample, dt);
    this.updateEmotion(sample, dt);
    if (!this.loaded || !this.renderer) return;
    for (const g of sample.gestures) {
      if (!this.body?.play(g.name, g.at, g.intensity)) continue;
      // What was played, in order (the last ten): tests and tools can see a gesture happened.
      this.played = [...(this.played || []), g.name].slice(-10);
      this.root.dataset.gesturesPlayed = this.played.join(",");
    }
    this.updateBlink(now);
    this.applyMorphs();
    this.updateIdle(now, dt, sample);
    this.renderer.render(this.scene, this.camera);
    this.updateMouthBox();
  }

  updateMouth(sample, dt) {
    let peak = 0;
    let dominant = "sil";
    const tauFor = (target, current) => (sample.stopping ? STOP_TAU : target > current ? RISE_TAU : FALL_TAU);
    for (const v of SPOKEN) {
      const target = sample.visemes[v] || 0;
      const current = this.visWeights[v];
      const k = sample.held ? 1 : 1 - Math.exp(-dt / tauFor(target, current)); // a held pose shows at once
      const next = current + (target - current) * k;
      this.visWeights[v] = next < 1e-4 ? 0 : next;
      if (this.visWeights[v] > peak) {
        peak = this.visWeights[v];
        dominant = v;
      }
    }
    this.speech += (peak - this.speech) * (1 - Math.exp(-dt / 0.15));
    if (peak > APPLIED_THRESHOLD) {
      this.applied += 1;
      this.root.dataset.visemesApplied = String(this.applied);
    }
    // Which viseme shapes the mouth in the frame being drawn: lets tests and debugging tools line up a capture.
    const shown = peak > APPLIED_THRESHOLD ? dominant : "sil";
    if (this.root.dataset.viseme !== shown) this.root.dataset.viseme = shown;
    const open = peak.toFixed(2);
    if (this.root.dataset.mouthOpen !== open) this.root.dataset.mouthOpen = open;
    this.peak = peak;
  }

  updateEmotion(sample, dt) {
    const intensity = Math.max(0, Math.min(1, sample.emotionIntensity ?? 1));
    const k = sample.held ? 1 : 1 - Math.exp(-dt / (sample.stopping ? 0.1 : EMOTION_TAU)); // a held pose: at once
    // One level per emotion, eased: it scales the emotion's shapes (from the rig) and the head's attitude.
    for (const e of EMOTION_NAMES) {
      const target = e === sample.emotion ? intensity : 0;
      this.emoLevels[e] += (target - this.emoLevels[e]) * k;
    }
    if (this.root.dataset.emotion !== (sample.emotion || "neutral")) this.root.dataset.emotion = sample.emotion || "neutral";
  }

  updateBlink(now) {
    if (this.still) {
      this.blink = 0;
      this.blinkStart = -1;
      return;
    }
    if (this.blinkStart < 0 && now >= this.nextBlink) this.blinkStart = now;
    let w = 0;
    if (this.blinkStart >= 0) {
      const phase = (now - this.blinkStart) / 0.15; // ~150 ms: quick close, slower open
      if (phase >= 1) {
        this.blinkStart = -1;
        // Now and then a double blink, otherwise 2-6 s apart.
        this.nextBlink = now + (Math.random() < 0.12 ? 0.2 : 2 + Math.random() * 4);
      } else {
        w = phase < 0.4 ? smoothstep(phase / 0.4) : 1 - smoothstep((phase - 0.4) / 0.6);
      }
    }
    this.blink = w;
  }

  /** Add `weight` to a morph target of `mesh` for this frame. */
  addMorph(mesh, index, weight) {
    let m = this.acc.get(mesh);
    if (!m) this.acc.set(mesh, (m = new Map()));
    m.set(index, (m.get(index) || 0) + weight);
  }

  addByName(name, weight) {
    if (!(weight > 0)) return;
    for (const [mesh, index] of this.morphs.get(name) || []) this.addMorph(mesh, index, weight);
  }

  /** Rig drives: [[glTF mesh index, morph index, weight], ...] (VRM expressions, ARKit-only, CC mappings). */
  addDrives(drives, weight, mouthScale = 1) {
    if (!(weight > 0) || !drives) return;
    for (const [meshIndex, index, w, mouth] of drives) {
      const scale = mouth ? mouthScale : 1;
      for (const mesh of this.meshesByIndex.get(meshIndex) || []) {
        if (index < mesh.morphTargetInfluences.length) this.addMorph(mesh, index, w * weight * scale);
      }
    }
  }

  /** Every source of morph weights adds into one frame (two visemes mapped onto the same jawOpen sum up). */
  applyMorphs() {
    this.acc = new Map();
    for (const v of SPOKEN) {
      const drives = this.visemeDrives?.[v];
      if (drives) this.addDrives(drives, this.visWeights[v]);
      else this.addByName(`viseme_${v}`, this.visWeights[v]);
    }
    const give = 1 - MOUTH_GIVE * (this.peak || 0);
    for (const e of EMOTION_NAMES) this.addDrives(this.emotionDrives?.[e], this.emoLevels[e], give);
    if (this.blinksByName) {
      this.addByName("eyeBlinkLeft", this.blink);
      this.addByName("eyeBlinkRight", this.blink);
    } else this.addDrives(this.blinkDrives, this.blink);
    for (const [mesh, indices] of this.touched) {
      const now = this.acc.get(mesh);
      for (const index of indices) if (!now || !now.has(index)) mesh.morphTargetInfluences[index] = 0;
    }
    this.touched = new Map();
    for (const [mesh, weights] of this.acc) {
      for (const [index, w] of weights) mesh.morphTargetInfluences[index] = Math.min(1, w);
      this.touched.set(mesh, new Set(weights.keys()));
    }
  }

  updateIdle(now, dt, sample) {
    if (!this.pivotRest) return;
    const t = now - this.clockStart;
    const r = this.framing.radius;
    const still = this.still;
    // The emotion shows in the head's attitude too; speech adds a small forward lean.
    const head = [0, 0, 0];
    for (const e of EMOTION_NAMES) {
      const o = EMOTION_HEAD[e];
      if (o) for (let i = 0; i < 3; i++) head[i] += o[i] * this.emoLevels[e];
    }
    let leftover = null;
    if (this.body) {
      leftover = this.body.update(now, dt, {
        speaking: this.speech > 0.1, thinking: sample.emotion === "thinking", still, extra: { head },
      });
      const active = this.body.active(now).join(",");
      if (this.root.dataset.gesture !== active) this.root.dataset.gesture = active;
      const gaze = `${this.body.gaze.yaw.toFixed(2)},${this.body.gaze.pitch.toFixed(2)}`;
      if (this.root.dataset.gaze !== gaze) this.root.dataset.gaze = gaze;
    }
    // Breathing (~4 s), a slow head sway made of incommensurate sines, and a small nod that follows speech; a
    // rig without head or neck bones shows its head gestures by moving the whole model.
    const sway = still ? 0 : 1;
    const [lx, ly, lz] = leftover || [0, 0, 0];
    this.pivot.position.y = this.pivotRest.y + sway * 0.015 * r * Math.sin((2 * Math.PI * t) / 4.2);
    this.pivot.rotation.y = sway * (0.022 * Math.sin(0.55 * t) + 0.008 * Math.sin(1.31 * t + 0.7)) + 0.5 * ly;
    this.pivot.rotation.x = sway * (0.012 * Math.sin(0.43 * t + 1.1) + 0.02 * this.speech) + 0.5 * lx;
    this.pivot.rotation.z = sway * 0.008 * Math.sin(0.37 * t + 2.3) + 0.5 * lz;
  }

  updateMouthBox() {
    const f = this.framing;
    if (!f) return;
    this.pivot.updateMatrixWorld(true);
    const b = f.mouthBoxLocal;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    const p = new THREE.Vector3();
    for (let i = 0; i < 8; i++) {
      p.set(i & 1 ? b.max.x : b.min.x, i & 2 ? b.max.y : b.min.y, i & 4 ? b.max.z : b.min.z);
      p.applyMatrix4(this.pivot.matrixWorld).project(this.camera);
      const sx = ((p.x + 1) / 2) * this.width;
      const sy = ((1 - p.y) / 2) * this.height;
      x0 = Math.min(x0, sx); x1 = Math.max(x1, sx); y0 = Math.min(y0, sy); y1 = Math.max(y1, sy);
    }
    x0 = Math.max(0, Math.floor(x0)); y0 = Math.max(0, Math.floor(y0));
    x1 = Math.min(this.width, Math.ceil(x1)); y1 = Math.min(this.height, Math.ceil(y1));
    const text = `${x0},${y0},${Math.max(0, x1 - x0)},${Math.max(0, y1 - y0)}`;
    if (text !== this.mouthBoxText) {
      this.mouthBoxText = text;
      this.root.dataset.mouthBox = text;
    }
  }

  disposeModel() {
    if (!this.avatar) return;
    this.pivot.remove(this.avatar);
    this.avatar.traverse((obj) => {
      if (obj.geometry) obj.geometry.dispose();
      const materials = Array.isArray(obj.material) ? obj.material : obj.material ? [obj.material] : [];
      for (const m of materials) {
        for (const value of Object.values(m)) if (value && value.isTexture) value.dispose();
        m.dispose();
      }
    });
    this.avatar = null;
  }

  dispose() {
    this.disposed = true;
    cancelAnimationFrame(this.raf);
    for (const [event, cb] of this.listeners || []) {
      try {
        this.model.off(event, cb);
      } catch {
        // Panel's adapter may already be gone
      }
    }
    this.root.removeEventListener("click", this.onClick);
    this.disposeModel();
    if (this.renderer) {
      this.renderer.dispose();
      this.renderer.forceContextLoss();
    }
    this.root.remove();
    this.player.detach(this);
  }
}

export { AvatarRenderer };

export default {
  render({ model, el }) {
    const view = new AvatarRenderer(model, el);
    return () => view.dispose();
  },
};
