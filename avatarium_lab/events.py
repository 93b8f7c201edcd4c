"""The event vocabulary of a conversation turn, its wire encoding, and the one latency derivation.

A turn is a stream of frozen events. Every event carries the turn it belongs to, a sequence number (its
position in the turn's output stream, stamped by the pipeline when it is emitted) and a monotonic timestamp
``t`` (``time.perf_counter()`` seconds, stamped by the stage that made it). Times *inside* the audio
(phoneme and viseme starts/ends, audio offsets) are seconds on the turn's audio timeline, which starts at 0
with the first sample of the first spoken segment and runs through the segments back to back.

Everything that consumes a turn -- the notebook widget, the Panel page, the CLI, benchmarks, the experiment
recorder -- reads these events and nothing else. ``latency_breakdown`` is the single place where latency
figures are derived from them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

PROTOCOL_VERSION = 1


def now() -> float:
    """The monotonic clock every stage stamps its events with."""
    return time.perf_counter()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: ``turn_id``, ``seq`` (set on emission), ``t`` (monotonic seconds)."""

    type: ClassVar[str] = "event"
    turn_id: str
    t: float = field(default_factory=now)
    seq: int = -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; bytes become base64 strings (see ``docs/protocol.md``)."""
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class TimedPhoneme:
    """One phoneme (IPA) on the turn's audio timeline, seconds."""

    symbol: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TimedViseme:
    """One viseme (Oculus id such as ``"aa"``) on the turn's audio timeline, seconds; weight 0..1."""

    viseme: str
    start: float
    end: float
    weight: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnStarted(Event):
    type: ClassVar[str] = "turn_started"
    text: str
    persona: str
    config: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta(Event):
    type: ClassVar[str] = "text_delta"
    text: str
    provider: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sentence(Event):
    """A sentence or clause ready to be spoken; ``index`` is also its audio segment number."""

    type: ClassVar[str] = "sentence"
    index: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Audio(Event):
    """PCM16 little-endian mono audio of one segment (or part of one), placed at ``offset`` s in the turn."""

    type: ClassVar[str] = "audio"
    segment: int
    pcm: bytes = field(repr=False)
    sample_rate: int
    offset: float
    voice: str = ""

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out["duration"] = self.duration
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Phonemes(Event):
    """Timed phonemes of one segment; ``source`` says where the timings came from (``engine``, an aligner)."""

    type: ClassVar[str] = "phonemes"
    segment: int
    items: tuple[TimedPhoneme, ...]
    source: str = "engine"


@dataclass(frozen=True, slots=True, kw_only=True)
class Visemes(Event):
    """Timed visemes of one segment in the Oculus-15 set."""

    type: ClassVar[str] = "visemes"
    segment: int
    items: tuple[TimedViseme, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Emotion(Event):
    type: ClassVar[str] = "emotion"
    name: str
    intensity: float = 1.0
    start: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Gesture(Event):
    type: ClassVar[str] = "gesture"
    name: str
    start: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage(Event):
    type: ClassVar[str] = "usage"
    prompt_tokens: int
    completion_tokens: int
    cost: float = 0.0
    estimated: bool = False
    model: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderAttempt(Event):
    """One attempt at a provider during the turn: ``outcome`` ok / failed / skipped (circuit open)."""

    type: ClassVar[str] = "provider_attempt"
    provider: str
    attempt: int
    outcome: str
    code: str = ""
    message: str = ""
    elapsed: float = 0.0
    chars: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSwitched(Event):
    """The reply moved to another provider. With ``mid_stream`` the text already sent stays; the next provider
    continues after its first ``committed_chars`` characters, so the reply has no gap and no repetition."""

    type: ClassVar[str] = "provider_switched"
    from_provider: str
    to_provider: str
    reason: str
    mid_stream: bool
    committed_chars: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StageTiming(Event):
    """One busy interval of a stage (``llm``, ``split``, ``tts``, ``lipsync``), in monotonic seconds."""

    type: ClassVar[str] = "stage_timing"
    stage: str
    start: float
    end: float
    segment: int = -1

    @property
    def busy(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnEnded(Event):
    type: ClassVar[str] = "turn_ended"
    reason: Literal["complete", "cancelled", "error"] = "complete"
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool = False


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        TurnStarted, TextDelta, Sentence, Audio, Phonemes, Visemes, Emotion, Gesture, Usage, ProviderAttempt,
        ProviderSwitched, StageTiming, TurnEnded, Error,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of ``Event.to_dict`` (used by clients and the recorder)."""
    from .errors import ProtocolError

    kind = data.get("type")
    cls = EVENT_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown event type {kind!r}; expected one of {sorted(EVENT_TYPES)}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "pcm":
            value = base64.b64decode(value)
        elif f.name == "items" and cls is Phonemes:
            value = tuple(TimedPhoneme(**v) for v in value)
        elif f.name == "items" and cls is Visemes:
            value = tuple(TimedViseme(**v) for v in value)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(f"malformed {kind} event: {exc}") from exc


@dataclass(frozen=True, slots=True)
class LatencyBreakdown:
    """Latency figures of one turn, all in seconds from the ``TurnStarted`` event (``None`` if never reached)."""

    time_to_first_token: float | None
    time_to_first_sentence: float | None
    time_to_first_audio: float | None
    time_to_first_viseme: float | None
    total: float | None
    busy: dict[str, float]
    """Summed busy time per stage."""
    first_segment_compute: float | None
    """Model + voice compute on the path to the first audio: LLM time until the last text delta before the first
    sentence was emitted, plus the voice's busy time for segment 0."""
    pipeline_overhead: float | None
    """Time to first audio minus ``first_segment_compute``: what the pipeline itself adds (queues, splitting,
    scheduling, event stamping)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def as_ms(self) -> dict[str, float | None]:
        """Flat dict of milliseconds, handy for tables and MLflow metrics."""
        out: dict[str, float | None] = {}
        for key in ("time_to_first_token", "time_to_first_sentence", "time_to_first_audio",
                    "time_to_first_viseme", "total", "first_segment_compute", "pipeline_overhead"):
            value = getattr(self, key)
            out[key + "_ms"] = None if value is None else value * 1000.0
        for stage, busy in self.busy.items():
            out[f"busy_{stage}_ms"] = busy * 1000.0
        return out


def latency_breakdown(events: Iterable[Event]) -> LatencyBreakdown:
    """Derive every latency figure of one turn from its events (the only place this is computed)."""
    start: float | None = None
    first: dict[str, float] = {}
    busy: dict[str, float] = {}
    tts_segment0 = 0.0
    first_sentence_t: float | None = None
    deltas: list[TextDelta] = []
    end: float | None = None
    for ev in events:
        if isinstance(ev, TurnStarted):
            start = ev.t
        elif isinstance(ev, StageTiming):
            busy[ev.stage] = busy.get(ev.stage, 0.0) + ev.busy
            if ev.stage == "tts" and ev.segment == 0:
                tts_segment0 += ev.busy
        elif isinstance(ev, TurnEnded):
            end = ev.t
        if isinstance(ev, TextDelta):
            deltas.append(ev)
        if isinstance(ev, Sentence) and ev.index == 0:
            first_sentence_t = ev.t
        if ev.type not in first:
            first[ev.type] = ev.t
    if start is None:
        raise ValueError("latency_breakdown needs the turn's TurnStarted event")

    def since(kind: str) -> float | None:
        return first[kind] - start if kind in first else None

    # The model's share of the wait: until the last delta that arrived before sentence 0 was emitted (the
    # splitter may need one more delta than the sentence's own text to know where it ends).
    llm_first_sentence: float | None = None
    if first_sentence_t is not None:
        before = [d.t for d in deltas if d.t <= first_sentence_t]
        if before:
            llm_first_sentence = before[-1] - start
    compute = None
    overhead = None
    ttfa = since("audio")
    if llm_first_sentence is not None and ttfa is not None:
        compute = llm_first_sentence + tts_segment0
        overhead = ttfa - compute
    return LatencyBreakdown(
        time_to_first_token=since("text_delta"),
        time_to_first_sentence=since("sentence"),
        time_to_first_audio=ttfa,
        time_to_first_viseme=since("visemes"),
        total=None if end is None else end - start,
        busy=busy,
        first_segment_compute=compute,
        pipeline_overhead=overhead,
    )
