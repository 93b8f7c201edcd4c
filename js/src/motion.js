// motion.js: the avatar's body language on its skeleton -- gestures (nod, head shake, head tilt, shrug, wave)
// and eye saccades -- for any rig whose bone roles the Python side mapped (protocol.rig_payload: VRM humanoid role
// -> three.js node name, from avatar/rigmaps.yaml). Library, Ready Player Me, Mixamo, CC and VRM models all work,
// whatever their bones' rest orientations.
//
// Every rotation here is written in the avatar's own upright frame ("pivot space": x = the character's left,
// y = up, z = forward, out of the screen) and applied as an absolute offset from the bone's rest orientation in
// that frame: bone world = R * rest world. A bone's local rotation is then parent_now^-1 * R * rest_world, so the
// same numbers nod a bone whose local axes point anywhere.
import * as THREE from "three";

const smoothstep = (x) => (x <= 0 ? 0 : x >= 1 ? 1 : x * x * (3 - 2 * x));

/** Rise over `rise` s, hold, fall over the last `fall` s of `dur`. */
const envelope = (t, dur, rise, fall) => smoothstep(t / rise) * (1 - smoothstep((t - (dur - fall)) / fall));

export const GESTURE_SECONDS = { nod: 0.9, head_shake: 1.0, head_tilt: 1.6, shrug: 1.2, wave: 2.4 };
export const GESTURE_ALIASES = { tilt: "head_tilt", shake: "head_shake", headshake: "head_shake", greet: "wave" };

// Bones in parent-first order (a parent's new rotation must be in place before its children are solved).
const ROLES = [
  "hips", "spine", "chest", "upperChest", "neck", "head", "leftEye", "rightEye",
  "leftShoulder", "leftUpperArm", "leftLowerArm", "leftHand",
  "rightShoulder", "rightUpperArm", "rightLowerArm", "rightHand",
];

/**
 * Pose offsets of one gesture `t` s after it started, at intensity `k`: {role: [x, y, z] radians} (Euler XYZ about
 * the pivot-space axes; +x pitches the head down, +y turns it to the character's left, +z tilts it to its right)
 * and, for the wave, arm directions {role: [direction, weight]}.
 */
function gesturePose(name, t, k, canWave) {
  const rot = {};
  const aim = {};
  const add = (role, x, y, z) => {
    const r = rot[role] || (rot[role] = [0, 0, 0]);
    r[0] += k * x;
    r[1] += k * y;
    r[2] += k * z;
  };
  switch (name) {
    case "nod": {
      // Two dips, the second smaller; the neck takes a third of it.
      const a = 0.14 * Math.sin((Math.PI * t) / 0.45) ** 2 * (t < 0.45 ? 1 : 0.6);
      add("neck", 0.35 * a, 0, 0);
      add("head", a, 0, 0);
      break;
    }
    case "head_shake": {
      const a = 0.22 * Math.sin((2 * Math.PI * t) / 0.5) * envelope(t, 1.0, 0.12, 0.35);
      add("neck", 0, 0.3 * a, 0);
      add("head", 0, a, 0);
      break;
    }
    case "head_tilt": {
      const e = envelope(t, 1.6, 0.3, 0.45);
      add("neck", 0, 0.02 * e, 0.06 * e);
      add("head", -0.03 * e, 0.06 * e, 0.17 * e);
      break;
    }
    case "shrug": {
      const e = envelope(t, 1.2, 0.25, 0.5);
      add("leftShoulder", 0, 0, 0.2 * e);
      add("rightShoulder", 0, 0, -0.2 * e);
      add("head", -0.05 * e, 0, 0.05 * e);
      add("neck", -0.02 * e, 0, 0);
      break;
    }
    case "wave": {
      if (!canWave) {
        // A bust has no arms to wave: it greets with a small tilt and nod instead.
        const e = envelope(t, 1.2, 0.25, 0.4);
        add("head", 0.08 * Math.sin((Math.PI * Math.min(t, 0.9)) / 0.9) ** 2, 0, 0.08 * e);
        break;
      }
      const e = envelope(t, 2.4, 0.45, 0.5);
      const swing = 0.45 * Math.sin((2 * Math.PI * t) / 0.6) * smoothstep((t - 0.35) / 0.2);
      aim.rightUpperArm = [new THREE.Vector3(-0.55, 0.72, 0.3).normalize(), e];
      aim.rightLowerArm = [new THREE.Vector3(-0.08, 1, 0.12).normalize().applyAxisAngle(Z_AXIS, swing), e];
      add("head", 0, -0.04 * e, 0.05 * e);
      break;
    }
    default:
      break;
  }
  return { rot, aim };
}
const Z_AXIS = new THREE.Vector3(0, 0, 1);

/** Saccades: quick gaze jumps every 0.4-3 s, mostly back to the viewer; more often, and closer, while talking. */
class Gaze {
  constructor() {
    this.yaw = 0;
    this.pitch = 0;
    this.target = [0, 0];
    this.next = performance.now() / 1000 + 0.8;
  }

  update(now, dt, speaking, thinking) {
    if (now >= this.next) {
      const r = Math.random();
      if (thinking) this.target = [0.12 + 0.06 * Math.random(), -0.12 - 0.05 * Math.random()]; // up and aside
      else if (r < (speaking ? 0.55 : 0.4)) this.target = [0, 0]; // back to the viewer
      else {
        const spread = speaking ? 0.6 : 1;
        this.target = [spread * (Math.random() - 0.5) * 0.28, spread * (Math.random() - 0.5) * 0.14];
      }
      this.next = now + (speaking ? 0.4 + Math.random() * 1.4 : 0.6 + Math.random() * 2.4);
    }
    const k = 1 - Math.exp(-dt / 0.025); // a saccade takes ~40-60 ms
    this.yaw += (this.target[0] - this.yaw) * k;
    this.pitch += (this.target[1] - this.pitch) * k;
  }

  reset() {
    this.yaw = this.pitch = 0;
    this.target = [0, 0];
  }
}

/** The bones of one loaded avatar, their rest pose in pivot space, and the gestures and gaze played on them. */
export class Body {
  /**
   * @param avatar the loaded glTF scene (already placed under `pivot`, rest pose)
   * @param bones {role: three.js node name} from the rig payload
   * @param full whether the whole figure is on screen (only then can it wave)
   */
  constructor(avatar, pivot, bones, full) {
    this.pivot = pivot;
    this.full = full;
    this.bones = new Map();
    this.gaze = new Gaze();
    this.gestures = [];
    pivot.updateMatrixWorld(true);
    const pivotInv = pivot.getWorldQuaternion(new THREE.Quaternion()).invert();
    const pivotMatInv = pivot.matrixWorld.clone().invert();
    for (const role of ROLES) {
      const name = bones?.[role];
      const obj = name ? avatar.getObjectByName(name) : null;
      if (!obj) continue;
      this.bones.set(role, {
        obj, q0: obj.quaternion.clone(),
        w0: pivotInv.clone().multiply(obj.getWorldQuaternion(new THREE.Quaternion())),
        pos: obj.getWorldPosition(new THREE.Vector3()).applyMatrix4(pivotMatInv),
      });
    }
    // Rest directions of the arm segments (for aiming them), from each joint to the next.
    for (const [a, b] of [["rightUpperArm", "rightLowerArm"], ["rightLowerArm", "rightHand"],
      ["leftUpperArm", "leftLowerArm"], ["leftLowerArm", "leftHand"]]) {
      const A = this.bones.get(a);
      const B = this.bones.get(b);
      if (A && B) A.dir = B.pos.clone().sub(A.pos).normalize();
    }
    this.canWave = full && ["rightUpperArm", "rightLowerArm"].every((r) => this.bones.get(r)?.dir);
    this.hasHead = this.bones.has("head") || this.bones.has("neck");
    this.hasEyes = this.bones.has("leftEye") && this.bones.has("rightEye");
    this._q = new THREE.Quaternion();
    this._p = new THREE.Quaternion();
    this._e = new THREE.Euler();
    this._pivotInv = new THREE.Quaternion();
  }

  get roleCount() {
    return this.bones.size;
  }

  /** Start a gesture at pivot-clock time `at` (seconds, performance clock). */
  play(name, at, intensity = 1) {
    const key = GESTURE_ALIASES[name] || name;
    if (!(key in GESTURE_SECONDS)) return false;
    this.gestures = this.gestures.filter((g) => g.name !== key); // the same gesture restarts
    this.gestures.push({ name: key, at, k: Math.max(0, Math.min(1.5, intensity)) });
    return true;
  }

  /** Gestures still playing at `now`, as "nod,shrug" (for data attributes). */
  active(now) {
    return this.gestures.filter((g) => now >= g.at && now < g.at + GESTURE_SECONDS[g.name]).map((g) => g.name);
  }

  /**
   * Pose the skeleton for this frame. `extra` adds pivot-space Euler offsets per role (emotions, speech).
   * Returns the head offset this rig could not show (no head/neck bone), for the caller to put on the pivot.
   */
  update(now, dt, { speaking = false, thinking = false, still = false, extra = {} } = {}) {
    this.gestures = this.gestures.filter((g) => now < g.at + GESTURE_SECONDS[g.name]);
    const rot = {};
    const aim = {};
    for (const g of this.gestures) {
      if (now < g.at) continue;
      const pose = gesturePose(g.name, now - g.at, g.k, this.canWave);
      for (const [role, r] of Object.entries(pose.rot)) {
        const acc = rot[role] || (rot[role] = [0, 0, 0]);
        for (let i = 0; i < 3; i++) acc[i] += r[i];
      }
      Object.assign(aim, pose.aim);
    }
    for (const [role, r] of Object.entries(extra)) {
      const acc = rot[role] || (rot[role] = [0, 0, 0]);
      for (let i = 0; i < 3; i++) acc[i] += r[i];
    }
    if (still) this.gaze.reset();
    else this.gaze.update(now, dt, speaking, thinking);

    // Targets are absolute, so a driven child carries its driven parent's offset too: the head adds the neck's,
    // the eyes the head's plus their gaze. (An undriven bone keeps its rest local rotation and simply follows.)
    const sum = (...rs) => rs.reduce((a, r) => (r ? a.map((v, i) => v + r[i]) : a), [0, 0, 0]);
    if (rot.neck) rot.head = sum(rot.head, rot.neck);
    const headTotal = sum(rot.head);
    if (this.hasEyes) {
      const gaze = [this.gaze.pitch, this.gaze.yaw, 0];
      rot.leftEye = sum(headTotal, gaze);
      rot.rightEye = sum(headTotal, gaze);
    }
    if (!this.bones.has("head") && rot.head) rot.neck = headTotal; // a neck-only rig nods with its neck

    for (const b of this.bones.values()) b.obj.quaternion.copy(b.q0);
    this.pivot.getWorldQuaternion(this._pivotInv).invert();
    for (const role of ROLES) {
      const b = this.bones.get(role);
      if (!b) continue;
      let R = null;
      const a = aim[role];
      if (a && b.dir) {
        R = new THREE.Quaternion().setFromUnitVectors(b.dir, a[0]);
        R.slerp(this._q.identity(), 1 - a[1]);
        // The upper arm's rotation carries the forearm; the forearm's aim is absolute, so nothing to undo.
      } else if (rot[role]) {
        const r = rot[role];
        R = new THREE.Quaternion().setFromEuler(this._e.set(r[0], r[1], r[2], "XYZ"));
      }
      if (!R) continue;
      // local = parent_now^-1 * R * rest_world   (all in pivot space)
      const parent = b.obj.parent;
      this._p.identity();
      if (parent) {
        parent.getWorldQuaternion(this._p);
        this._p.premultiply(this._pivotInv);
      }
      b.obj.quaternion.copy(this._p.invert().multiply(R).multiply(b.w0));
    }
    return this.hasHead ? null : headTotal;
  }
}
