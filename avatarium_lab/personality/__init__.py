"""Personas: who the avatar is (system prompt, speaking style, default voice, emotion and gesture tendencies).

Built-in personas are YAML files in ``personality/personas/``; any YAML file path with the same fields works
too. ``emotion_cue`` is the persona's post-processing of each spoken sentence: it reads the sentence for
emotional cues and scales them by the persona's expressiveness, on top of its resting emotion.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError, UnknownPersona

PERSONA_DIR = Path(__file__).resolve().parent / "personas"
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "thinking")
GESTURES = ("nod", "head_shake", "head_tilt", "shrug", "wave")
"""Gestures the renderer plays from cues (idle breathing, sway, saccades and blinks run on their own)."""


class PersonaVoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = "espeak:en-us"
    rate: int = Field(default=175, ge=80, le=450)
    pitch: int = Field(default=50, ge=0, le=100)


class PersonaEmotion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: str = "neutral"
    intensity: float = Field(default=0.0, ge=0.0, le=1.0)
    expressiveness: float = Field(default=0.5, ge=0.0, le=1.0)


class PersonaChecks(BaseModel):
    """Cheap offline checks of whether a reply keeps to the persona (experiments score them per turn)."""

    model_config = ConfigDict(extra="forbid")
    sentences: tuple[int, int] = Field(default=(1, 3), description="allowed number of sentences, inclusive")
    markers: tuple[str, ...] = Field(default=(), description="words or phrases typical of the persona's style; "
                                     "a reply should contain at least one")
    banned: tuple[str, ...] = Field(default=(), description="phrases the persona never says")


class Persona(BaseModel):
    """One personality."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    description: str = ""
    system_prompt: str = Field(min_length=1)
    style: tuple[str, ...] = ()
    voice: PersonaVoice = PersonaVoice()
    emotion: PersonaEmotion = PersonaEmotion()
    gestures: tuple[str, ...] = Field(default=(), description="gestures this persona also makes on sentences "
                                      "without a cue (every other one), besides the gestures cues trigger")
    checks: PersonaChecks = PersonaChecks()

    @field_validator("gestures")
    @classmethod
    def _known_gestures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [g for g in value if g not in GESTURES]
        if unknown:
            raise ValueError(f"unknown gestures {unknown}; known: {', '.join(GESTURES)}")
        return value

    def system_message(self) -> str:
        """The full system prompt sent to the model: identity, then the speaking-style rules."""
        if not self.style:
            return self.system_prompt
        return self.system_prompt.strip() + " " + " ".join(s.strip() for s in self.style)

    def emotion_cue(self, sentence: str) -> tuple[str, float]:
        """The emotion to show while ``sentence`` is spoken, and its intensity (0..1)."""
        cue = _sentence_emotion(sentence)
        if cue is None:
            return self.emotion.default, self.emotion.intensity
        name, strength = cue
        return name, min(1.0, max(self.emotion.intensity, strength * self.emotion.expressiveness))

    def gesture_cues(self, sentence: str, index: int = 0) -> list[tuple[str, float]]:
        """Gestures to make while ``sentence`` (the turn's ``index``-th) is spoken: ``(name, at)`` with ``at`` the
        fraction of the sentence's duration where the gesture starts (where its cue word is).

        Cues: a greeting or farewell waves, an affirmation nods, a leading "no" shakes the head, uncertainty
        shrugs, a question tilts the head as it ends. A sentence without a cue gets the persona's own gestures in
        turn on every other sentence, so a tutor keeps nodding while it explains. At most two per sentence.
        """
        found: list[tuple[str, float]] = []
        n = max(len(sentence), 1)
        for name, pattern in _GESTURE_CUES:
            m = pattern.search(sentence)
            if m and all(g != name for g, _ in found):
                at = 0.8 if name == "head_tilt" else m.start() / n
                found.append((name, round(min(at, 0.9), 3)))
        if not found and self.gestures and index % 2 == 1:
            found.append((self.gestures[(index // 2) % len(self.gestures)], 0.15))
        return sorted(found, key=lambda g: g[1])[:2]


_CUES: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("sad", re.compile(r"\b(sorry|sad|unfortunately|regret|miss(ed)?|lost|alas)\b", re.I), 0.8),
    ("angry", re.compile(r"\b(angry|furious|unacceptable|outrageous)\b", re.I), 0.7),
    ("surprised", re.compile(r"\b(wow|whoa|oh|amazing|incredible|imagine|suddenly)\b", re.I), 0.8),
    ("happy", re.compile(r"\b(great|glad|happy|wonderful|love|fun|delight\w*|welcome|hello|hi)\b|!", re.I), 0.8),
    ("thinking", re.compile(r"\?|\b(perhaps|maybe|let me think|hmm|wonder)\b", re.I), 0.6),
)


_GESTURE_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("wave", re.compile(r"\b(hello|hi|hey|welcome|goodbye|bye|see you|farewell)\b", re.I)),
    ("head_shake", re.compile(r"^\W*(no|nope|not really|never)\b", re.I)),
    ("shrug", re.compile(r"\b(i don'?t know|not sure|who knows|hard to say|maybe|perhaps|it depends)\b", re.I)),
    ("nod", re.compile(r"\b(yes|yeah|yep|sure|exactly|right|indeed|of course|absolutely|certainly|okay|ok|"
                       r"agreed|correct)\b", re.I)),
    ("head_tilt", re.compile(r"\?\s*$")),
)


def _sentence_emotion(sentence: str) -> tuple[str, float] | None:
    for name, pattern, strength in _CUES:
        if pattern.search(sentence):
            return name, strength
    return None


@functools.lru_cache(maxsize=64)
def load_persona(name_or_path: str) -> Persona:
    """A built-in persona by id (``warm_tutor``) or a persona YAML file by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PERSONA_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownPersona(
                f"unknown persona {name_or_path!r}; built-in personas: {', '.join(list_personas())} "
                "(or give the path of a persona YAML file)"
            )
    elif not path.exists():
        raise UnknownPersona(f"persona file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Persona.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: invalid persona: {exc}") from None


def list_personas() -> list[str]:
    return sorted(p.stem for p in PERSONA_DIR.glob("*.yaml"))
