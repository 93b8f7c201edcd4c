"""AvatarUpload without a browser: real files (the library avatar and the synthetic exports of testing_glb) go
through ``load`` or through the FileUpload's own state deserialisation, and the report, the state and the HTML
shown are checked."""

from __future__ import annotations

import random
import time

import pytest

from avatarium_lab.avatar import avatar_path
from avatarium_lab.avatar.check import AvatarReport, AvatarTooLarge, NotAGlb, TruncatedAvatar, check_avatar
from avatarium_lab.avatar.testing_glb import make_arkit_only, make_mixamo, make_rpm_like, make_vrm1
from avatarium_lab.widgets import AvatarUpload
from avatarium_lab.widgets.gallery import _LEVEL_COLOURS

GREEN, AMBER, RED = _LEVEL_COLOURS["full"], _LEVEL_COLOURS["reduced"], _LEVEL_COLOURS["none"]


def badge(label: str, level: str) -> str:
    """The badge as the report area writes it: label, level and the gallery's colour for that level."""
    return f"background:{_LEVEL_COLOURS[level]}'>{label}: {level}</span>"


def state(upload: AvatarUpload) -> str:
    html = upload.status.value
    marker = "data-state='"
    start = html.index(marker) + len(marker)
    return html[start : html.index("'", start)]


@pytest.fixture(scope="module")
def aria() -> bytes:
    return avatar_path("aria").read_bytes()


def browser_upload(upload: AvatarUpload, data: bytes, name: str) -> None:
    """What the front end sends for one picked file, deserialised by FileUpload itself."""
    upload.uploader.set_state({"value": [{"name": name, "type": "model/gltf-binary", "size": len(data),
                                          "content": memoryview(data), "last_modified": int(time.time() * 1000)}]})


def test_library_avatar(aria: bytes) -> None:
    upload = AvatarUpload()
    assert state(upload) == "empty" and upload.report is None and upload.glb is None and upload.name is None
    # The default limit (50 MB) is above what Jupyter Server lets through by default: the idle text says so.
    assert "drops a file over 10 MB" in upload.status.value and "websocket_max_message_size" in upload.status.value
    report = upload.load(aria, "aria.glb")
    expected = check_avatar(aria, name="aria")
    assert isinstance(report, AvatarReport) and report is upload.report
    assert upload.glb == aria and upload.name == "aria.glb" and upload.error is None
    assert (report.lipsync, report.emotions, report.blinks, report.gestures) == ("full",) * 4
    assert report.as_dict() == expected.as_dict()
    html = upload.status.value
    assert state(upload) == "ok"
    assert f"color:{GREEN}'><b>&#10003; aria.glb loaded</b>" in html
    for capability in ("lipsync", "emotions", "blinks", "gestures"):
        assert badge(capability, "full") in html
    assert f"Rig detected: <b>{expected.rig}</b>" in html
    assert (f"presets: face <code>{expected.mapping.face_preset}</code>, bones "
            f"<code>{expected.mapping.bone_preset}</code>") in html
    assert f"{expected.counts.morph_targets} morph targets, {expected.counts.joints} joints" in html
    assert "visemes 15 direct, 0 mapped" in html
    assert "No problems found." in html and "avatarium-upload-issues" not in html
    assert "aria: GLB, rig" in html  # the checker's own summary, under "Full report"


def test_rpm_like_with_preview() -> None:
    data = make_rpm_like()
    upload = AvatarUpload(preview=True)
    assert upload.view is None  # no avatar to show before the first file
    report = upload.load(data, "wolf.glb")
    assert report is not None and report.rig == "rpm" and report.lipsync == "full"
    assert upload.view is not None and upload.view.glb == data
    assert upload._preview_box.children == (upload.view,)
    html = upload.status.value
    assert "&#10003; wolf.glb loaded" in html
    assert "Rig detected: <b>rpm</b> &middot; presets: face <code>rpm</code>, bones <code>rpm</code>" in html
    assert "made by Ready Player Me (synthetic test file)" in html
    assert "ARKit shapes 52/52" in html and "visemes 15 direct" in html
    assert "No problems found." in html


def test_vrm1_file() -> None:
    data = make_vrm1()
    upload = AvatarUpload()
    report = upload.load(data, "test.vrm")
    assert report is not None and report.format == "vrm1" and report.name == "test"
    html = upload.status.value
    assert state(upload) == "ok"
    assert "&#10003; test.vrm loaded" in html and "VRM1 &middot;" in html
    assert "Rig detected: <b>vrm</b> &middot; presets: face <code>vrm</code>, bones <code>vrm</code>" in html
    assert "visemes 5 direct, 10 mapped" in html
    assert "VRM title: Test VRM 1, author: avatarium-lab" in html
    assert "<b>2 problems:</b>" in html
    assert "<li>emotions without shapes (shown as neutral): thinking</li>" in html
    assert ("<li>mesh 0 (&#x27;Face&#x27;): its 13 morph targets have no names (no mesh.extras.targetNames); "
            "they can be driven by index only</li>") in html


def test_arkit_only_maps_every_viseme_but_has_no_bones() -> None:
    upload = AvatarUpload()
    report = upload.load(make_arkit_only(), "face.glb")
    assert report is not None
    # The checker maps all 15 visemes onto ARKit shapes: lip sync counts as full, none of them direct.
    assert report.lipsync == "full" and set(report.visemes.values()) == {"mapped"}
    assert report.gestures == "none"
    html = upload.status.value
    assert badge("lipsync", "full") in html and badge("gestures", "none") in html
    assert "visemes 0 direct, 15 mapped &middot; ARKit shapes 52/52" in html
    assert "presets: face <code>arkit</code>, bones <code>-</code>" in html
    assert "<b>1 problem:</b>" in html
    assert "<li>no head or neck bone: head gestures (nod, tilt) will sway the whole model</li>" in html


def test_reduced_lip_sync_lists_each_approximated_viseme() -> None:
    """A Ready Player Me export made without the morphTargets parameter: RPM's default morphs only."""
    upload = AvatarUpload()
    report = upload.load(make_rpm_like(False, default_morphs=True), "default.glb")
    assert report is not None and report.lipsync == "reduced" and report.ok
    html = upload.status.value
    assert state(upload) == "ok"
    assert badge("lipsync", "reduced") in html and badge("blinks", "reduced") in html
    assert badge("gestures", "full") in html
    assert "<li>no viseme_aa: the open vowel (a as in &#x27;car&#x27;) will use mouthOpen 0.7 instead</li>" in html
    assert "<li>only a both-eyes blink: winks are not available</li>" in html
    assert "Ready Player Me export without the Oculus visemes (viseme_*) or the 52 ARKit blendshapes" in html
    assert html.count("<li>") == len(report.issues) == 17


def test_no_lip_sync_is_loaded_with_a_warning() -> None:
    upload = AvatarUpload()
    report = upload.load(make_mixamo(), "mixamo.glb")
    assert report is not None and not report.ok and upload.name == "mixamo.glb"
    html = upload.status.value
    assert state(upload) == "warning"
    assert f"color:{AMBER}'><b>&#9888; mixamo.glb loaded, but it cannot lip sync</b>" in html
    assert badge("lipsync", "none") in html
    assert "lip sync is off, the mouth will not move</li>" in html
    assert "presets: face <code>-</code>, bones <code>mixamo</code>" in html


def test_truncated_glb() -> None:
    data = make_rpm_like()
    upload = AvatarUpload(preview=True)
    assert upload.load(data[: len(data) // 2], "cut.glb") is None
    assert isinstance(upload.error, TruncatedAvatar)
    assert upload.report is None and upload.glb is None and upload.name is None and upload.view is None
    html = upload.status.value
    assert state(upload) == "error" and f"color:{RED}" in html
    assert "&#10007; cut.glb was not loaded" in html
    assert (f"<code style='color:{RED}'>TruncatedAvatar</code>: truncated: the header says {len(data)} bytes, the "
            f"file has {len(data) // 2}") in html
    assert "No avatar has been loaded yet." in html


def test_random_bytes() -> None:
    junk = random.Random(7).randbytes(4096)
    assert junk[:4] != b"glTF"
    upload = AvatarUpload()
    assert upload.load(junk, "random.glb") is None
    assert isinstance(upload.error, NotAGlb)
    html = upload.status.value
    assert "<code style='color:#b91c1c'>NotAGlb</code>: not a GLB: it starts with" in html
    assert "instead of the magic b&#x27;glTF&#x27;" in html


def test_oversized_file() -> None:
    data = make_rpm_like()
    upload = AvatarUpload(max_bytes=10_000)
    assert "at most 9.8 KB" in upload.children[0].children[1].value  # the hint next to the button
    assert "websocket_max_message_size" not in upload.status.value  # under the server's limit: no warning
    assert upload.load(data, "big.glb") is None
    assert isinstance(upload.error, AvatarTooLarge)
    html = upload.status.value
    assert f"AvatarTooLarge</code>: too large: {len(data):,} bytes, the limit is 10,000" in html
    assert (f"The file is {len(data) / 1024:.1f} KB ({len(data):,} bytes); this upload accepts at most 9.8 KB "
            "(10,000 bytes).") in html
    assert "<code>max_bytes</code>" in html
    # Exactly at the limit is fine.
    assert AvatarUpload(max_bytes=len(data)).load(data, "exact.glb") is not None
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        AvatarUpload(max_bytes=0)


def test_failure_keeps_the_previous_avatar(aria: bytes) -> None:
    upload = AvatarUpload(preview=True)
    good = upload.load(aria, "aria.glb")
    view = upload.view
    assert good is not None and view is not None and view.glb == aria
    for bad, name, error in ((aria[:-4], "cut.glb", TruncatedAvatar), (b"<html>404</html>", "page.vrm", NotAGlb),
                             (aria + b"\0" * 64, "big.glb", AvatarTooLarge)):
        if error is AvatarTooLarge:
            upload.max_bytes = len(aria)
        assert upload.load(bad, name) is None
        assert isinstance(upload.error, error)
        assert upload.report is good and upload.glb == aria and upload.name == "aria.glb"
        assert upload.view is view and view.glb == aria
        html = upload.status.value
        assert f"&#10007; {name} was not loaded" in html and type(upload.error).__name__ in html
        assert "The previous avatar, aria.glb, is still loaded." in html
    assert "this looks like an HTML/XML page" not in html  # only the last error is shown
    # The next good file replaces it and clears the error.
    upload.max_bytes = 50 * 1024 * 1024
    vrm = make_vrm1()
    assert upload.load(vrm, "next.vrm") is not None
    assert upload.error is None and upload.glb == vrm and view.glb == vrm and state(upload) == "ok"


def test_upload_through_the_file_upload_widget() -> None:
    data = make_vrm1()
    upload = AvatarUpload(preview=True)
    seen: list[tuple[str, bytes, str]] = []
    upload.on_avatar(lambda name, glb, report: seen.append((name, glb, report.format)))
    browser_upload(upload, data, "uploaded.vrm")
    assert upload.name == "uploaded.vrm" and upload.glb == data and upload.view.glb == data
    assert seen == [("uploaded.vrm", data, "vrm1")]
    assert upload.uploader.value == ()  # the bytes are not kept twice; the same file can be sent again
    browser_upload(upload, b"glTF\x02\x00\x00\x00", "short.glb")
    assert isinstance(upload.error, TruncatedAvatar) and upload.glb == data
    assert "&#10007; short.glb was not loaded" in upload.status.value
    assert len(seen) == 1  # not called for a refused file
    upload.uploader.set_state({"error": "NotReadableError"})
    assert "the browser could not read the file: NotReadableError" in upload.status.value


def test_any_exception_is_shown_not_raised(aria: bytes) -> None:
    upload = AvatarUpload()
    upload.load(aria, "aria.glb")
    # Not bytes at all: a TypeError, not an AvatarCheckError.
    assert upload.load("aria.glb", "text.glb") is None  # type: ignore[arg-type]
    assert isinstance(upload.error, TypeError)
    html = upload.status.value
    assert "<code style='color:#b91c1c'>TypeError</code>" in html and "unexpected error" in html
    assert upload.glb == aria
    # A front-end value whose content is not bytes: the observer reports it instead of raising.
    upload.uploader.set_state({"value": [{"name": "empty.glb", "type": "", "size": 0, "content": None,
                                          "last_modified": 0}]})
    assert isinstance(upload.error, TypeError) and "empty.glb was not loaded" in upload.status.value
    assert upload.glb == aria and upload.uploader.value == ()


def test_on_avatar_callbacks(aria: bytes) -> None:
    upload = AvatarUpload()
    calls: list[str] = []

    def record(name: str, glb: bytes, report: AvatarReport) -> None:
        calls.append(f"{name}:{len(glb)}:{report.lipsync}")

    def broken(name: str, glb: bytes, report: AvatarReport) -> None:
        raise RuntimeError("callback exploded")

    upload.on_avatar(record)
    upload.on_avatar(record)  # registered once
    upload.on_avatar(broken)
    assert upload.load(aria, "aria.glb") is not None
    assert calls == [f"aria.glb:{len(aria)}:full"]
    assert upload.glb == aria and upload.error is None  # a failing callback does not undo the upload
    assert "failed: RuntimeError: callback exploded" in upload.status.value
    upload.on_avatar(broken, remove=True)
    upload.on_avatar(record, remove=True)
    upload.load(make_rpm_like(), "wolf.glb")
    assert len(calls) == 1 and "callback exploded" not in upload.status.value


def test_names_and_messages_are_escaped() -> None:
    upload = AvatarUpload()
    upload.load(make_arkit_only(), "<img src=x onerror=alert(1)>.glb")
    html = upload.status.value
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;.glb loaded" in html
    upload.load(b"<script>alert(1)</script>", "<b>.glb")
    html = upload.status.value
    assert "<script>" not in html and "&lt;b&gt;.glb was not loaded" in html


def test_initial_avatar_and_repr(aria: bytes) -> None:
    upload = AvatarUpload(preview=True, avatar=aria, canvas_width=200, canvas_height=240)
    assert upload.view is not None and upload.view.glb == aria
    assert (upload.view.canvas_width, upload.view.canvas_height) == (200, 240)
    assert upload.glb is None and upload.report is None  # the placeholder is not an upload
    assert repr(upload) == "AvatarUpload(name=None, max_bytes=52,428,800)"
    upload.load(b"nope", "x.glb")
    assert "No avatar has been loaded yet." in upload.status.value and upload.view.glb == aria
    upload.load(make_vrm1(), "v.vrm")
    assert repr(upload).startswith("AvatarUpload(name='v.vrm', ") and "lipsync='full'" in repr(upload)
