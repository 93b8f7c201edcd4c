"""Every library avatar in a real `panel serve` page: it speaks a sentence (real espeak-ng speech, engine visemes,
the persona's emotions and gestures), the mouth region differs between silence and ``aa``, a happy and a sad face
differ, and a nod moves the head.

One Panel app serves all of them (a select switches the avatar), so the page and its WebGL context load once.
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from avatarium_lab.avatar import list_avatars, load_avatar
from avatarium_lab.avatar.convert import to_rpm_export, to_vrm1

pytestmark = pytest.mark.browser

SENTENCE = "Hello! Yes, a happy day. What a wonderful sight, so calm."

APP = f'''
import panel as pn

from avatarium_lab.avatar import list_avatars, load_avatar
from avatarium_lab.avatar.convert import to_rpm_export, to_vrm1
from avatarium_lab.config import Config
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.testing.scripted import ScriptedProvider
from avatarium_lab.widgets import AvatarPane

pipeline = Pipeline(Config.default(), provider=ScriptedProvider(script={SENTENCE!r}))
pane = AvatarPane(avatar="aria", canvas_width=360, canvas_height=440, background="#ffffff")
# the library, and one character re-packaged as a Ready Player Me export and as a VRM 1.0 model (morphs by index)
SOURCES = {{a.id: a.id for a in list_avatars()}}
SOURCES["kenji-rpm"] = to_rpm_export(load_avatar("kenji"))
SOURCES["kenji-vrm"] = to_vrm1(load_avatar("kenji"))
select = pn.widgets.Select(name="avatar", options=list(SOURCES))
select.param.watch(lambda e: pane.set_avatar(SOURCES[e.new]), "value")


def speak(event):
    pane.play(pipeline.run("hi", conversation=False))


def button(name, action):
    b = pn.widgets.Button(name=name)
    b.on_click(lambda event: action())
    return b


buttons = [
    button("Speak", lambda: speak(None)),
    button("Pose sil", lambda: pane.pose(visemes={{"sil": 1.0}})),
    button("Pose aa", lambda: pane.pose(visemes={{"aa": 1.0}})),
    button("Pose neutral", lambda: pane.pose(emotion="neutral")),
    button("Pose happy", lambda: pane.pose(emotion="happy")),
    button("Pose sad", lambda: pane.pose(emotion="sad")),
    button("Release", lambda: pane.pose()),
]
for emotion in ("angry", "surprised", "thinking", "relaxed"):
    buttons.append(button(f"Pose {{emotion}}", lambda e=emotion: pane.pose(emotion=e)))
for gesture in ("nod", "head_shake", "head_tilt", "shrug", "wave"):
    buttons.append(button(gesture.replace("_", " ").capitalize(), lambda g=gesture: pane.gesture(g)))
pn.Column(select, pn.Row(*buttons), pane).servable(title="Library avatars")
'''


def _open_app(tmp_path: Path, serve, browser_context, python, page_log):
    app = tmp_path / "library_app.py"
    app.write_text(APP)
    server = serve(
        lambda port: [python, "-m", "panel", "serve", str(app), "--port", str(port), "--address", "127.0.0.1",
                      f"--allow-websocket-origin=127.0.0.1:{port}"],
        ready_path="/library_app",
    )
    page = browser_context.new_page()
    log = page_log(page)
    page.goto(f"{server.base}/library_app")
    root = page.locator("[data-status]").first
    root.wait_for(timeout=60_000)

    def click(name: str) -> None:
        page.get_by_role("button", name=name, exact=True).click()

    return page, root, log, click


def test_every_library_avatar_speaks_and_emotes(tmp_path: Path, serve, browser_context, python, poll, lip_sync,
                                                 grab, pixel_diff, page_log, artifact) -> None:
    page, root, log, click = _open_app(tmp_path, serve, browser_context, python, page_log)

    results = {}
    kenji = load_avatar("kenji")
    sources = [(a.id, a.path.stat().st_size) for a in list_avatars()]
    sources += [("kenji-rpm", len(to_rpm_export(kenji))), ("kenji-vrm", len(to_vrm1(kenji)))]
    for avatar_id, nbytes in sources:
        info = SimpleNamespace(id=avatar_id)
        if root.get_attribute("data-glb-bytes") != str(nbytes):
            page.locator("select").first.select_option(avatar_id)
        poll(lambda n=str(nbytes): root.get_attribute("data-glb-bytes") == n, 60, f"{avatar_id} to load")
        poll(lambda: root.get_attribute("data-status") in ("ready", "idle"), 60, f"{avatar_id} ready")
        assert int(root.get_attribute("data-bones") or 0) >= 10, f"{avatar_id}: skeleton not bound"

        # 1. Speaking a real sentence: silence vs the widest "aa" frame, as the page drew them.
        click("Release")
        speech = lip_sync(page, root, f"library_{info.id}", play=lambda: click("Speak"), timeout=120)
        assert speech.visemes_applied > 0
        assert speech.difference > max(4.0, 3 * speech.baseline), (info.id, speech.difference, speech.baseline)
        played = (root.get_attribute("data-gestures-played") or "").split(",")
        assert "wave" in played and "nod" in played, (info.id, played)  # "Hello!" waves, "Yes," nods

        # 2. Held poses, idle motion paused: sil vs aa on the mouth, happy vs sad on the whole face.
        def posed(button: str, attr: str, value: str, avatar: str = info.id):
            click(button)
            poll(lambda: root.get_attribute("data-pose") == "held" and root.get_attribute(attr) == value, 30,
                 f"{avatar}: {button}")
            page.wait_for_timeout(250)  # a few frames at the held pose
            return grab(root)

        sil = posed("Pose sil", "data-viseme", "sil")
        sil_again = grab(root)
        aa = posed("Pose aa", "data-viseme", "aa")
        mouth_still = pixel_diff(sil.mouth(), sil_again.mouth())
        mouth_diff = pixel_diff(sil.mouth(), aa.mouth(), max_shift=2)
        neutral = posed("Pose neutral", "data-emotion", "neutral")
        happy = posed("Pose happy", "data-emotion", "happy")
        sad = posed("Pose sad", "data-emotion", "sad")
        face_diff = pixel_diff(happy.image(), sad.image())
        # 3. A nod moves the head (skeleton), measured against the neutral still.
        click("Nod")
        poll(lambda: "nod" in (root.get_attribute("data-gesture") or ""), 10, f"{info.id}: nod playing")
        page.wait_for_timeout(200)
        nod_diff = pixel_diff(neutral.image(), grab(root).image())
        click("Release")
        for name, cap in (("sil", sil), ("aa", aa), ("happy", happy), ("sad", sad)):
            artifact(f"library_{info.id}_pose_{name}.png", cap.png)
        results[info.id] = (mouth_still, mouth_diff, face_diff, nod_diff)
        assert mouth_still < 0.5, (info.id, mouth_still)
        assert mouth_diff > 4.0, (info.id, mouth_diff)
        assert face_diff > 0.5, (info.id, face_diff)
        assert nod_diff > 0.5, (info.id, nod_diff)

    artifact("library_avatars_numbers.txt", "\n".join(
        f"{k}: mouth still {v[0]:.3f}, sil vs aa {v[1]:.2f}, happy vs sad {v[2]:.2f}, nod {v[3]:.2f}"
        for k, v in results.items()).encode())
    foreign = log.foreign_requests()
    assert not foreign, f"the page fetched from outside 127.0.0.1: {foreign}"
    assert not [e for e in log.errors if "avatar" in e.lower()], log.errors


# Keeps a copy of the canvas every ~120 ms while a gesture plays (round trips per capture are too slow).
_FILMSTRIP_JS = """async (root) => {
  const canvas = root.querySelector("canvas");
  const frames = [];
  const t0 = performance.now();
  while (performance.now() - t0 < 2600 && frames.length < 24) {
    await new Promise((r) => setTimeout(r, 120));
    frames.push({ png: canvas.toDataURL("image/png"), gesture: root.dataset.gesture || "" });
  }
  return frames;
}"""


def test_one_avatar_shows_every_emotion_and_gesture(tmp_path: Path, serve, browser_context, python, poll, grab,
                                                    pixel_diff, png_pixels, page_log, artifact) -> None:
    """Pip (full body, so the wave uses the arm): each emotion differs from neutral, each gesture moves it."""
    page, root, log, click = _open_app(tmp_path, serve, browser_context, python, page_log)
    size = str(len(load_avatar("pip")))
    page.locator("select").first.select_option("pip")
    poll(lambda: root.get_attribute("data-glb-bytes") == size, 60, "pip to load")
    poll(lambda: root.get_attribute("data-status") in ("ready", "idle"), 60, "pip ready")
    assert root.get_attribute("data-can-wave") == "true"

    def posed(emotion: str):
        click(f"Pose {emotion}")
        poll(lambda: root.get_attribute("data-pose") == "held" and root.get_attribute("data-emotion") == emotion,
             30, f"pose {emotion}")
        page.wait_for_timeout(250)
        return grab(root)

    neutral = posed("neutral")
    sheet = [neutral.image()]
    emotion_diffs = {}
    for emotion in ("happy", "sad", "angry", "surprised", "thinking", "relaxed"):
        cap = posed(emotion)
        emotion_diffs[emotion] = pixel_diff(neutral.image(), cap.image())
        sheet.append(cap.image())
    posed("neutral")
    gesture_diffs = {}
    for gesture in ("nod", "head_shake", "head_tilt", "shrug", "wave"):
        click(gesture.replace("_", " ").capitalize())
        frames = root.evaluate(_FILMSTRIP_JS)
        seen = {f["gesture"] for f in frames}
        assert gesture in ",".join(seen), (gesture, seen)
        images = [png_pixels(base64.b64decode(f["png"].split(",", 1)[1]), neutral.background) for f in frames]
        diffs = [pixel_diff(neutral.image(), im) for im in images]
        gesture_diffs[gesture] = max(diffs)
        sheet.append(images[int(np.argmax(diffs))])
        poll(lambda: not root.get_attribute("data-gesture"), 10, f"{gesture} to finish")
    click("Release")
    h = min(im.shape[0] for im in sheet)
    artifact("pip_emotions_and_gestures.png", np.concatenate([im[:h] for im in sheet], axis=1))
    artifact("pip_emotions_and_gestures.txt", repr({"emotions": emotion_diffs, "gestures": gesture_diffs}).encode())
    for emotion, d in emotion_diffs.items():
        assert d > 0.3, (emotion, d)
    for gesture, d in gesture_diffs.items():
        # the held pose is still (two frames differ by 0.000), so any change is the gesture; a head shake turns a
        # small round head and changes the fewest pixels
        assert d > 0.15, (gesture, d)
    assert gesture_diffs["wave"] > 2 * gesture_diffs["nod"], gesture_diffs  # the arm moves much more than the head
    assert not [e for e in log.errors if "avatar" in e.lower()], log.errors
