"""Configurations and personas: YAML in/out, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarium_lab.config import REPO_CONFIG_DIR, Config, load_config
from avatarium_lab.errors import ConfigError, UnknownPersona
from avatarium_lab.personality import list_personas, load_persona


def test_every_checked_in_config_loads() -> None:
    paths = sorted(REPO_CONFIG_DIR.glob("*.yaml"))
    assert any(p.name == "default.yaml" for p in paths)
    for path in paths:
        cfg = Config.load(path)
        load_persona(cfg.persona)


def test_default_config_is_embedded_and_offline() -> None:
    cfg = load_config()
    assert cfg.provider.kind == "embedded" and cfg.provider.model_path is None


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = Config().with_overrides(**{"voice.id": "espeak:en-gb", "provider.max_tokens": 12})
    back = Config.load(cfg.save(tmp_path / "c.yaml"))
    assert back == cfg and back.voice.id == "espeak:en-gb"


def test_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider:\n  max_tokens: 0\n")
    with pytest.raises(ConfigError, match=r"provider\.max_tokens"):
        Config.load(bad)
    bad.write_text("voice:\n  colour: blue\n")
    with pytest.raises(ConfigError, match=r"voice\.colour"):
        Config.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        Config.load(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown configuration section"):
        Config().with_overrides(**{"nope.x": 1})


def test_personas_are_distinct_and_complete() -> None:
    names = list_personas()
    assert len(names) >= 3
    personas = [load_persona(n) for n in names]
    assert len({p.system_message() for p in personas}) == len(personas)
    assert len({p.voice.id for p in personas}) == len(personas)
    for p in personas:
        assert p.name in p.system_prompt and p.style


def test_unknown_persona_lists_the_known_ones() -> None:
    with pytest.raises(UnknownPersona, match="warm_tutor"):
        load_persona("grumpy_pirate")


def test_persona_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "pirate.yaml"
    path.write_text("id: pirate\nname: Jack\nsystem_prompt: You are Jack, a pirate.\n")
    assert load_persona(str(path)).name == "Jack"


def test_emotion_cues_follow_the_text_and_the_persona() -> None:
    tutor, concierge = load_persona("warm_tutor"), load_persona("concise_concierge")
    assert tutor.emotion_cue("I am so sorry to hear that.")[0] == "sad"
    assert tutor.emotion_cue("That is wonderful!")[0] == "happy"
    assert tutor.emotion_cue("The sea is large.") == ("happy", 0.35)   # resting emotion
    assert concierge.emotion_cue("The sea is large.") == ("neutral", 0.0)
    # the storyteller is more expressive than the concierge for the same cue
    story = load_persona("playful_storyteller")
    assert story.emotion_cue("Wow, look!")[1] > concierge.emotion_cue("Wow, look!")[1]


def test_gesture_cues_follow_the_words_and_the_persona() -> None:
    tutor, concierge = load_persona("warm_tutor"), load_persona("concise_concierge")
    assert concierge.gesture_cues("Plants make food.", index=1) == [("nod", 0.15)]  # its only gesture
    assert tutor.gesture_cues("Hello there!") == [("wave", 0.0)]
    assert tutor.gesture_cues("No, that is not how it works.") == [("head_shake", 0.0)]
    assert tutor.gesture_cues("Shall we try?") == [("head_tilt", 0.8)]  # as the question ends
    at = dict(tutor.gesture_cues("It is good, and yes, we can."))["nod"]
    assert 0.4 < at < 0.6  # where "yes" is in the sentence
    assert tutor.gesture_cues("Maybe it depends on the light.")[0][0] == "shrug"
    # no cue: the persona's own gestures, on every other sentence
    assert tutor.gesture_cues("Plants make food.", index=0) == []
    assert tutor.gesture_cues("Plants make food.", index=1) == [("nod", 0.15)]
    assert tutor.gesture_cues("Plants make food.", index=3) == [("head_tilt", 0.15)]
    assert len(tutor.gesture_cues("Hello! Yes, maybe, who knows? No idea?")) <= 2


def test_unknown_persona_gestures_are_refused(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("id: p\nname: P\nsystem_prompt: hi\ngestures: [moonwalk]\n")
    with pytest.raises(ConfigError, match="moonwalk"):
        load_persona(str(path))
