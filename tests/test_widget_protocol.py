"""The widget protocol: pipeline events -> front-end messages, the JSON-only (base64) form, the outbox."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from avatarium_lab.errors import AvatarError
from avatarium_lab.events import (
    Audio,
    Emotion,
    Gesture,
    Sentence,
    TextDelta,
    TimedViseme,
    TurnEnded,
    TurnStarted,
    Usage,
    Visemes,
)
from avatarium_lab.widgets.protocol import (
    Outbox,
    frontend_message,
    json_only,
    pose_message,
    resolve_glb,
    rig_payload,
    stop_message,
    turn_messages,
    with_buffers,
)

PCM = struct.pack("<4h", 0, 1000, -1000, 32767)


def test_turn_started_becomes_begin() -> None:
    msg, buffers = frontend_message(TurnStarted(turn_id="t1", text="hi", persona="aria"))
    assert msg == {"kind": "begin", "turn_id": "t1"}
    assert buffers == []


def test_audio_carries_pcm_as_a_buffer() -> None:
    event = Audio(turn_id="t1", segment=2, pcm=PCM, sample_rate=22050, offset=1.25)
    msg, buffers = frontend_message(event)
    assert msg == {"kind": "audio", "turn_id": "t1", "segment": 2, "offset": 1.25, "sample_rate": 22050}
    assert buffers == [PCM]
    json.dumps(msg)  # the JSON part stays JSON


def test_visemes_become_compact_items() -> None:
    event = Visemes(
        turn_id="t1",
        segment=0,
        items=(TimedViseme("sil", 0.0, 0.1), TimedViseme("aa", 0.1, 0.3, 0.8), TimedViseme("PP", 0.3, 0.4)),
    )
    msg, buffers = frontend_message(event)
    assert msg == {
        "kind": "visemes",
        "turn_id": "t1",
        "segment": 0,
        "items": [["sil", 0.0, 0.1, 1.0], ["aa", 0.1, 0.3, 0.8], ["PP", 0.3, 0.4, 1.0]],
    }
    assert buffers == []


def test_emotion_and_end() -> None:
    msg, _ = frontend_message(Emotion(turn_id="t1", name="happy", intensity=0.6, start=0.5))
    assert msg == {"kind": "emotion", "turn_id": "t1", "name": "happy", "intensity": 0.6, "start": 0.5}
    msg, _ = frontend_message(TurnEnded(turn_id="t1", reason="cancelled"))
    assert msg == {"kind": "end", "turn_id": "t1", "reason": "cancelled"}


def test_gesture_and_pose_messages() -> None:
    msg, buffers = frontend_message(Gesture(turn_id="t1", name="nod", start=1.25))
    assert msg == {"kind": "gesture", "turn_id": "t1", "name": "nod", "start": 1.25} and buffers == []
    assert pose_message(visemes={"aa": 1}) == {"kind": "pose", "visemes": {"aa": 1.0}, "emotion": None,
                                               "intensity": 1.0, "still": True}
    assert pose_message(emotion="sad", intensity=0.5, still=False)["still"] is False
    assert pose_message() == {"kind": "pose"}  # releases the held pose


def test_rig_payload_of_a_library_avatar_names_every_part() -> None:
    from avatarium_lab.avatar import load_avatar

    rig = rig_payload(load_avatar("aria"))
    assert rig["facing"] == "+z" and rig["rig"] == "oculus"
    assert set(rig["visemes"]) >= {f"viseme_{v}" for v in ("PP", "aa", "O", "U")}
    assert all(len(d) == 3 and isinstance(d[1], int) for drives in rig["visemes"].values() for d in drives)
    assert {"happy", "sad", "angry", "surprised"} <= set(rig["emotions"])
    assert rig["bones"]["head"] == "Head" and rig["bones"]["neck"] == "Neck"
    assert {"leftShoulder", "rightUpperArm", "rightLowerArm", "rightHand", "leftEye"} <= set(rig["bones"])
    json.dumps(rig)  # travels as a widget trait


def test_rig_payload_of_vrm0_addresses_unnamed_morphs_by_index_and_turns_it_around() -> None:
    from avatarium_lab.avatar.testing_glb import make_vrm0

    rig = rig_payload(make_vrm0())
    assert rig["format"] == "vrm0" and rig["facing"] == "-z"
    assert rig["visemes"]["viseme_aa"] == [[0, 0, 1.0]]  # the VRM "aa" expression's morph, by index
    assert rig["emotions"]["happy"] and rig["blinks"]["blinkLeft"]
    assert rig["bones"]["head"] == "J_Bip_C_Head"


def test_rig_payload_of_a_broken_file_is_empty() -> None:
    from avatarium_lab.avatar import load_avatar

    assert rig_payload(load_avatar("aria")[:500]) == {}


@pytest.mark.parametrize(
    "event",
    [
        TextDelta(turn_id="t1", text="Hel"),
        Sentence(turn_id="t1", index=0, text="Hello."),
        Usage(turn_id="t1", prompt_tokens=3, completion_tokens=4),
    ],
)
def test_events_the_avatar_does_not_use_are_dropped(event) -> None:
    assert frontend_message(event) is None


def test_base64_fallback_roundtrip() -> None:
    msg, buffers = frontend_message(Audio(turn_id="t1", segment=0, pcm=PCM, sample_rate=16000, offset=0.0))
    flat = json_only(msg, buffers)
    assert base64.b64decode(flat["pcm_b64"]) == PCM
    assert json.loads(json.dumps(flat)) == flat  # travels through a JSON-only channel unchanged
    assert "pcm_b64" not in msg  # the original is left alone
    back, back_buffers = with_buffers(flat)
    assert back == msg
    assert back_buffers == [PCM]


def test_json_only_leaves_messages_without_buffers_alone() -> None:
    msg = {"kind": "end", "turn_id": "t1"}
    assert json_only(msg, []) == msg
    assert with_buffers(msg) == (msg, [])
    with pytest.raises(ValueError, match="at most one buffer"):
        json_only({"kind": "audio"}, [b"a", b"b"])


def test_turn_messages_wrap_a_finished_turn_once() -> None:
    audio = Audio(turn_id="t9", segment=0, pcm=PCM, sample_rate=22050, offset=0.0)
    visemes = Visemes(turn_id="t9", segment=0, items=(TimedViseme("aa", 0.0, 0.2),))
    kinds = [m["kind"] for m, _ in turn_messages([audio, TextDelta(turn_id="t9", text="x"), visemes])]
    assert kinds == ["begin", "audio", "visemes", "end"]

    started = TurnStarted(turn_id="t9", text="x", persona="p")
    ended = TurnEnded(turn_id="t9")
    kinds = [m["kind"] for m, _ in turn_messages(iter([started, audio, visemes, ended]))]
    assert kinds == ["begin", "audio", "visemes", "end"]
    assert turn_messages([]) == []


def test_outbox_holds_messages_until_the_front_end_is_ready() -> None:
    delivered: list[tuple[dict, list[bytes]]] = []
    box = Outbox(lambda msg, buffers: delivered.append((msg, buffers)))
    box.post({"kind": "begin", "turn_id": "a"})
    box.post({"kind": "audio", "turn_id": "a"}, [PCM])
    box.on_status("")
    box.on_status("loading")
    assert delivered == [] and box.pending == 2
    box.on_status("ready")
    assert [m["kind"] for m, _ in delivered] == ["begin", "audio"]
    assert delivered[1][1] == [PCM]
    box.post(stop_message())
    assert delivered[-1] == ({"kind": "stop"}, [])
    box.on_status("loading")  # a new avatar loading later does not hold messages again
    box.post({"kind": "end", "turn_id": "a"})
    assert delivered[-1][0]["kind"] == "end"


def test_outbox_clear_drops_a_turn_not_yet_delivered() -> None:
    delivered: list[dict] = []
    box = Outbox(lambda msg, buffers: delivered.append(msg))
    box.post({"kind": "begin", "turn_id": "a"})
    box.clear()
    box.post(stop_message())
    box.open()
    assert delivered == [{"kind": "stop"}]


def test_outbox_keeps_only_the_latest_turn_while_nobody_watches() -> None:
    delivered: list[dict] = []
    box = Outbox(lambda msg, buffers: delivered.append(msg))
    for turn in "abc":
        box.post({"kind": "begin", "turn_id": turn})
        box.post({"kind": "audio", "turn_id": turn}, [PCM])
        box.post({"kind": "end", "turn_id": turn})
    assert box.pending == 3
    box.open()
    assert [(m["kind"], m["turn_id"]) for m in delivered] == [("begin", "c"), ("audio", "c"), ("end", "c")]


def test_resolve_glb_accepts_bytes_and_paths(tmp_path: Path) -> None:
    glb = b"glTF" + struct.pack("<II", 2, 12)
    path = tmp_path / "a.glb"
    path.write_bytes(glb)
    assert resolve_glb(glb) == glb
    assert resolve_glb(bytearray(glb)) == glb
    assert resolve_glb(path) == glb
    assert resolve_glb(str(path)) == glb
    assert resolve_glb(None) == b""
    with pytest.raises(AvatarError, match="not a binary glTF"):
        resolve_glb(b"PK\x03\x04 not a glb")
    with pytest.raises(AvatarError, match="cannot read"):
        resolve_glb(tmp_path / "missing.glb")
    with pytest.raises(TypeError):
        resolve_glb(42)  # type: ignore[arg-type]


def _glb() -> bytes:
    return b"glTF" + struct.pack("<II", 2, 12)


def _turn() -> list:
    return [
        TurnStarted(turn_id="w", text="x", persona="p"),
        Audio(turn_id="w", segment=0, pcm=PCM, sample_rate=22050, offset=0.0),
        Visemes(turn_id="w", segment=0, items=(TimedViseme("aa", 0.0, 0.2),)),
        Sentence(turn_id="w", index=0, text="x"),
    ]


def test_avatar_view_sends_binary_buffers_once_the_front_end_is_ready(monkeypatch) -> None:
    from avatarium_lab.widgets import AvatarView

    view = AvatarView(avatar=_glb())
    sent: list[tuple[dict, list | None]] = []
    monkeypatch.setattr(view, "send", lambda msg, buffers=None: sent.append((msg, buffers)))
    view.play(_turn())
    assert sent == []  # not displayed yet
    view.status = "ready"  # what the browser reports once the avatar is on screen
    assert [m["kind"] for m, _ in sent] == ["begin", "audio", "visemes", "end"]
    assert sent[1][1] == [PCM]
    assert view.send_event(TextDelta(turn_id="w", text="x")) is False
    view.stop()
    assert sent[-1] == ({"kind": "stop"}, None)
    assert "AvatarView(" in repr(view) and "status='ready'" in repr(view)


def test_avatar_pane_sends_json_only(monkeypatch) -> None:
    from avatarium_lab.widgets import AvatarPane

    pane = AvatarPane(avatar=_glb(), canvas_width=200, canvas_height=260)
    assert (pane.width, pane.height) == (200, 260)  # Panel's layout box follows the canvas
    sent: list[dict] = []
    monkeypatch.setattr(pane, "send", sent.append)
    pane.play(_turn())
    pane.status = "ready"
    assert [m["kind"] for m in sent] == ["begin", "audio", "visemes", "end"]
    assert base64.b64decode(sent[1]["pcm_b64"]) == PCM
    assert all(json.loads(json.dumps(m)) == m for m in sent)
    pane.canvas_width = 300
    assert pane.width == 300
    pane.background = "#202830"
    assert pane.canvas_background == "#202830"  # the synced copy (Panel never syncs "background")
    assert AvatarPane(avatar=_glb(), background="black").canvas_background == "black"
