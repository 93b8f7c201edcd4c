"""Every library avatar in a real `panel serve` page: it speaks a sentence (real espeak-ng speech, engine visemes,
the persona's emotions and gestures), the mouth region differs between silence and ``aa``, a happy and a sad face
differ, and a nod moves the head.

One Panel app serves all of them (a select switches the avatar), so the page and its WebGL context load once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarium_lab.avatar import list_avatars

pytestmark = pytest.mark.browser

SENTENCE = "Hello! Yes, a happy day. What a wonderful sight, so calm."

APP = f'''
import panel as pn

from avatarium_lab.avatar import list_avatars
from avatarium_lab.config import Config
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.testing.scripted import ScriptedProvider
from avatarium_lab.widgets import AvatarPane

pipeline = Pipeline(Config.default(), provider=ScriptedProvider(script={SENTENCE!r}))
pane = AvatarPane(avatar="aria", canvas_width=360, canvas_height=440, background="#ffffff")
select = pn.widgets.Select(name="avatar", options=[a.id for a in list_avatars()])
select.param.watch(lambda e: pane.set_avatar(e.new), "value")


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
    button("Nod", lambda: pane.gesture("nod")),
    button("Release", lambda: pane.pose()),
]
pn.Column(select, pn.Row(*buttons), pane).servable(title="Library avatars")
'''


def test_every_library_avatar_speaks_and_emotes(tmp_path: Path, serve, browser_context, python, poll, lip_sync,
                                                 grab, pixel_diff, page_log, artifact) -> None:
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

    results = {}
    for info in list_avatars():
        size = str(info.path.stat().st_size)
        if root.get_attribute("data-glb-bytes") != size:
            page.locator("select").first.select_option(info.id)
        poll(lambda s=size: root.get_attribute("data-glb-bytes") == s, 60, f"{info.id} to load")
        poll(lambda: root.get_attribute("data-status") in ("ready", "idle"), 60, f"{info.id} ready")
        assert int(root.get_attribute("data-bones") or 0) >= 10, f"{info.id}: skeleton not bound"

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
