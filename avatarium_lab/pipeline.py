"""The ``Pipeline``: one conversation turn as a stream of events, from user text to timed audio and visemes.

Stages run concurrently and hand work on through queues, so speech starts while the model is still writing:

    provider ──Delta──▶ splitter ──Sentence──▶ voice ──Audio (+engine phoneme timings)──▶ visemes

Each stage stamps the events it makes (monotonic ``t``) and reports its busy intervals as ``StageTiming``
events; the pipeline numbers events as it emits them (``seq``) and ends every turn with exactly one
``TurnEnded`` (``complete``, ``cancelled`` or ``error``, the latter after an ``Error`` event). Closing the
event stream early (barge-in) cancels the turn's stages and the model's generation at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Config, load_config
from .errors import AvatariumError, InvalidMessage
from .events import (
    Audio,
    Emotion,
    Error,
    Event,
    Gesture,
    LatencyBreakdown,
    Phonemes,
    ProviderAttempt,
    ProviderSwitched,
    Sentence,
    StageTiming,
    TextDelta,
    TimedPhoneme,
    TimedViseme,
    TurnEnded,
    TurnStarted,
    Usage,
    Visemes,
    latency_breakdown,
    now,
)
from .lipsync.aligners import Aligner, get_aligner
from .lipsync.visemes import phonemes_to_visemes
from .personality import Persona, load_persona
from .providers import (
    AttemptReport,
    ChatMessage,
    ChatProvider,
    Delta,
    GenerationParams,
    SwitchReport,
    UsageReport,
)
from .providers.build import ProviderContext, build_chain
from .providers.failover import FailoverChain, Member
from .providers.prompting import fit_messages
from .splitter import SentenceSplitter, speakable
from .tts import Voice
from .tts.audio import pcm16_to_float
from .tts.build import build_voice

if TYPE_CHECKING:
    from .widgets import AvatarView

log = logging.getLogger(__name__)

_OUT_QUEUE_SIZE = 256
_CLAUSE_FINAL = frozenset(".!?…,;:")


@dataclass
class Conversation:
    """The running context of a chat: prior user and assistant messages (the system prompt is the persona's)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    messages: list[ChatMessage] = field(default_factory=list)

    def context(self) -> list[ChatMessage]:
        """Every earlier message; ``Pipeline.build_messages`` fits them to the model's context window."""
        return list(self.messages)

    def add(self, role: str, content: str) -> None:
        self.messages.append({"role": role, "content": content})  # type: ignore[typeddict-item]


@dataclass
class TurnResult:
    """A finished turn: its events and what can be derived from them."""

    events: list[Event]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def turn_id(self) -> str:
        return self.events[0].turn_id

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.of(TextDelta)).strip()

    @property
    def ended(self) -> TurnEnded | None:
        ended = self.of(TurnEnded)
        return ended[-1] if ended else None

    @property
    def error(self) -> Error | None:
        errors = self.of(Error)
        return errors[0] if errors else None

    @property
    def sample_rate(self) -> int:
        chunks = self.of(Audio)
        return chunks[0].sample_rate if chunks else 22050

    @property
    def audio(self) -> np.ndarray:
        """The whole reply as int16 samples, each chunk placed at its offset."""
        chunks: list[Audio] = self.of(Audio)
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        sr = chunks[0].sample_rate
        total = max(int(round(c.offset * sr)) + len(c.pcm) // 2 for c in chunks)
        out = np.zeros(total, dtype=np.int16)
        for c in chunks:
            start = int(round(c.offset * sr))
            pcm = np.frombuffer(c.pcm, dtype="<i2")
            out[start:start + len(pcm)] = pcm
        return out

    @property
    def phonemes(self) -> list[TimedPhoneme]:
        return [p for e in self.of(Phonemes) for p in e.items]

    @property
    def visemes(self) -> list[TimedViseme]:
        return [v for e in self.of(Visemes) for v in e.items]

    @property
    def latency(self) -> LatencyBreakdown:
        return latency_breakdown(self.events)

    def to_jsonl(self) -> str:
        return "\n".join(e.to_json() for e in self.events)

    def __repr__(self) -> str:
        lat = self.latency
        fa = "-" if lat.time_to_first_audio is None else f"{lat.time_to_first_audio * 1000:.0f} ms"
        return (f"TurnResult(turn_id={self.turn_id!r}, events={len(self.events)}, text={self.text[:60]!r}, "
                f"audio={len(self.audio) / self.sample_rate:.2f} s, first_audio={fa})")


class Pipeline:
    """Runs turns for one configuration. Build it with ``Pipeline.from_config(path_or_config)``."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        provider: ChatProvider | None = None,
        voice: Voice | None = None,
        persona: Persona | None = None,
        context: ProviderContext | None = None,
    ) -> None:
        self.config = config or Config.default()
        self.persona = persona or load_persona(self.config.persona)
        context = context or ProviderContext(plan=self.config.plan)
        if provider is None:
            self.provider = build_chain(self.config, context)
        elif isinstance(provider, FailoverChain):
            self.provider = provider
        else:
            self.provider = FailoverChain([Member(provider)], self.config.failover)
        self.voice = voice or build_voice(self.config.voice, self.persona, context)
        lip = self.config.lipsync
        # "engine": the voice's own timings, the fallback aligner for voices without; any other name aligns
        # every voice from its audio (to compare aligners on the same voice).
        self.aligner: Aligner | None = None if lip.aligner == "engine" else get_aligner(lip.aligner)
        self.fallback_aligner: Aligner = self.aligner or get_aligner(lip.fallback)
        self.conversation = Conversation()
        self._runner: _LoopThread | None = None

    @classmethod
    def from_config(cls, config: Config | str | Path | None = None, **overrides: Any) -> Pipeline:
        """A pipeline from a YAML path, a ``Config``, or the default configuration (None)."""
        cfg = config if isinstance(config, Config) else load_config(config)
        if overrides:
            cfg = cfg.with_overrides(**overrides)
        return cls(cfg)

    def __repr__(self) -> str:
        return (f"Pipeline(config={self.config.name!r}, persona={self.persona.id!r}, "
                f"provider={self.provider!r}, voice={self.voice.id!r})")

    # -- warm-up ------------------------------------------------------------------------------------------

    def warm(self) -> None:
        """Load the model and cache the persona's prompt prefix so the first turn is as fast as later ones."""
        warm = getattr(self.provider, "warm", None)
        if callable(warm):
            warm(self.persona.system_message())
        self._run_sync(self._warm_voice())

    async def _warm_voice(self) -> None:
        calibrate = getattr(self.voice, "calibrate", None)
        if callable(calibrate):
            await calibrate()  # measure the voice's loudness now rather than during the first turn
        async for chunk in self.voice.synthesize("Hi there."):
            if chunk.phonemes:
                phonemes_to_visemes(chunk.phonemes)  # loads the viseme tables now, not during the first turn

    # -- one turn -----------------------------------------------------------------------------------------

    def validate_message(self, message: str) -> str:
        if not isinstance(message, str):
            raise InvalidMessage(f"a message is text, got {type(message).__name__}")
        text = message.strip()
        if not text:
            raise InvalidMessage("the message is empty")
        limit = self.config.limits.max_message_chars
        if len(text) > limit:
            raise InvalidMessage(f"the message has {len(text)} characters; the limit is {limit} "
                                 "(limits.max_message_chars)")
        return text

    def build_messages(self, text: str, conversation: Conversation | None) -> list[ChatMessage]:
        """The persona's system prompt, as much recent context as fits, and the new message."""
        history = conversation.context() if conversation is not None else []
        return fit_messages(self.persona.system_message(), history, text, window=self.provider.context_window,
                            reserve=self.config.provider.max_tokens, count=self.provider.count_tokens)

    async def turn(
        self, message: str, *, conversation: Conversation | None = None, turn_id: str | None = None,
        seed: int | None = None,
    ) -> AsyncIterator[Event]:
        """Stream the events of one turn. Raises ``InvalidMessage`` before any event for bad input.

        ``seed`` overrides the configuration's sampling seed for this turn (experiments give each repeat its own).
        """
        text = self.validate_message(message)
        turn_id = turn_id or uuid.uuid4().hex[:12]
        out: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=_OUT_QUEUE_SIZE)
        stage = _TurnStages(self, turn_id, out, seed=seed)
        seq = 0

        def numbered(ev: Event) -> Event:
            nonlocal seq
            ev = dataclasses.replace(ev, seq=seq)
            seq += 1
            return ev

        messages = self.build_messages(text, conversation)
        yield numbered(TurnStarted(turn_id=turn_id, text=text, persona=self.persona.id, config=self.config.name))
        task = asyncio.create_task(stage.run(messages))
        finished = False
        try:
            while True:
                ev = await out.get()
                if ev is None:
                    break
                yield numbered(ev)
            finished = True
            await task
        finally:
            if not finished:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        if conversation is not None and stage.reply_text.strip():
            conversation.add("user", text)
            conversation.add("assistant", stage.reply_text.strip())

    async def arun(self, message: str, *, conversation: Conversation | None = None, turn_id: str | None = None,
                   seed: int | None = None) -> TurnResult:
        """Run one turn to the end and return all its events."""
        return TurnResult([ev async for ev in self.turn(message, conversation=conversation, turn_id=turn_id,
                                                        seed=seed)])

    def stream(self, message: str, *, conversation: Conversation | None | bool = True) -> Iterator[Event]:
        """Synchronous event stream (works inside Jupyter, whose own loop is already running).

        ``conversation=True`` continues this pipeline's own conversation; None or False runs a one-off turn.
        """
        conv = self.conversation if conversation is True else (conversation or None)
        text = self.validate_message(message)
        q: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()

        async def pump() -> None:
            agen = self.turn(text, conversation=conv)
            try:
                async for ev in agen:
                    q.put(ev)
                    if stop.is_set():
                        break
            except BaseException as exc:  # delivered to the caller's thread
                q.put(exc)
            finally:
                await agen.aclose()
                q.put(_DONE)

        self._loop().submit(pump())
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def run(self, message: str, *, conversation: Conversation | None | bool = True) -> TurnResult:
        """Run one turn synchronously and return it."""
        return TurnResult(list(self.stream(message, conversation=conversation)))

    def chat(self, view: AvatarView, message: str) -> TurnResult:
        """Run one turn and stream it into an ``AvatarView`` as it happens (audio plays, mouth moves)."""
        events = []
        for ev in self.stream(message):
            view.send_event(ev)
            events.append(ev)
        return TurnResult(events)

    async def achat(self, view: AvatarView, message: str) -> TurnResult:
        events = []
        async for ev in self.turn(message, conversation=self.conversation):
            view.send_event(ev)
            events.append(ev)
        return TurnResult(events)

    # -- a private event loop for the synchronous API -----------------------------------------------------

    def _loop(self) -> _LoopThread:
        if self._runner is None:
            self._runner = _LoopThread()
        return self._runner

    def _run_sync(self, coro: Any) -> Any:
        return self._loop().submit(coro).result()

    def close(self) -> None:
        """Release the provider clients and the private event loop (if the synchronous API started one)."""
        if self._runner is not None:
            self._runner.submit(self.provider.aclose()).result(timeout=10)
            self._runner.close()
            self._runner = None


_DONE = object()


class _LoopThread:
    """A daemon thread running an asyncio loop, for callers that are not async themselves."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="avatarium-loop", daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class _TurnStages:
    """The concurrent stages of one turn, writing their events into the turn's output queue."""

    def __init__(self, pipeline: Pipeline, turn_id: str, out: asyncio.Queue[Event | None], *,
                 seed: int | None = None) -> None:
        self.p = pipeline
        self.seed = seed
        self.turn_id = turn_id
        self.out = out
        self.reply_text = ""
        cfg = pipeline.config.splitter
        self.splitter = SentenceSplitter(min_chars=cfg.min_chars, first_clause_chars=cfg.first_clause_chars,
                                         max_chars=cfg.max_chars, first_words=cfg.first_words)
        self.sentences: asyncio.Queue[tuple[Sentence, str] | None] = asyncio.Queue()

    async def emit(self, ev: Event) -> None:
        await self.out.put(ev)

    async def run(self, messages: list[ChatMessage]) -> None:
        reason = "complete"
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.think(messages))
                tg.create_task(self.speak())
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure ends the turn with a typed Error event
            reason = "error"
            err = _first_error(exc)
            code = err.code if isinstance(err, AvatariumError) else "internal_error"
            retryable = err.retryable if isinstance(err, AvatariumError) else False
            log.warning("turn failed", extra={"turn_id": self.turn_id, "code": code}, exc_info=err)
            await self.emit(Error(turn_id=self.turn_id, code=code, message=str(err), retryable=retryable))
        finally:
            if reason != "cancelled":
                await self.emit(TurnEnded(turn_id=self.turn_id, reason=reason, text=self.reply_text.strip()))
                await self.out.put(None)

    async def think(self, messages: list[ChatMessage]) -> None:
        """Stream the model's reply, cut it into sentences, hand them to the voice."""
        p = self.p
        params = GenerationParams.from_config(p.config.provider)
        if self.seed is not None:
            params = dataclasses.replace(params, seed=self.seed)
        start = now()
        index = 0
        current = p.provider.name
        try:
            async with aclosing(p.provider.stream(messages, params)) as stream:
                async for item in stream:
                    if isinstance(item, Delta):
                        self.reply_text += item.text
                        await self.emit(TextDelta(turn_id=self.turn_id, text=item.text, provider=current))
                        for piece in self.splitter.feed(item.text):
                            index = await self._sentence(index, piece, continues=True)
                    elif isinstance(item, UsageReport):
                        await self.emit(Usage(turn_id=self.turn_id, prompt_tokens=item.prompt_tokens,
                                              completion_tokens=item.completion_tokens, estimated=item.estimated,
                                              cost=item.cost or 0.0, model=item.provider or current))
                    elif isinstance(item, SwitchReport):
                        current = item.to_provider
                        await self.emit(ProviderSwitched(
                            turn_id=self.turn_id, from_provider=item.from_provider, to_provider=item.to_provider,
                            reason=item.reason, mid_stream=item.mid_stream, committed_chars=item.committed_chars))
                    elif isinstance(item, AttemptReport):
                        await self.emit(ProviderAttempt(
                            turn_id=self.turn_id, provider=item.provider, attempt=item.attempt, outcome=item.outcome,
                            code=item.code, message=item.message, elapsed=item.elapsed, chars=item.chars))
            for piece in self.splitter.flush():
                index = await self._sentence(index, piece, continues=False)
        finally:
            await self.emit(StageTiming(turn_id=self.turn_id, stage="llm", start=start, end=now()))
            await self.sentences.put(None)

    async def _sentence(self, index: int, piece: str, *, continues: bool) -> int:
        spoken = speakable(piece)
        if not any(ch.isalnum() for ch in spoken):  # stray punctuation ("!" after "Hi!") has nothing to say
            return index
        if continues and spoken[-1] not in _CLAUSE_FINAL:
            # A piece cut mid-sentence (for a fast first audio) is spoken with a continuing intonation.
            spoken += ","
        sentence = Sentence(turn_id=self.turn_id, index=index, text=piece)
        await self.emit(sentence)
        await self.sentences.put((sentence, spoken))
        return index + 1

    async def speak(self) -> None:
        """Synthesize each sentence as it arrives; turn its phoneme timings (the engine's, or an aligner's for
        voices without timings) into visemes."""
        p = self.p
        offset = 0.0
        last_emotion: tuple[str, float] | None = None
        while (item := await self.sentences.get()) is not None:
            sentence, spoken = item
            seg = sentence.index
            emotion = p.persona.emotion_cue(sentence.text)
            if emotion != last_emotion:
                await self.emit(Emotion(turn_id=self.turn_id, name=emotion[0], intensity=emotion[1],
                                        start=offset))
                last_emotion = emotion
            segment_start = offset
            untimed: list[bytes] = []
            untimed_rate = 0
            t0 = now()
            async with aclosing(p.voice.synthesize(spoken)) as chunks:
                async for chunk in chunks:
                    t1 = now()
                    if not chunk.pcm:
                        continue
                    await self.emit(Audio(turn_id=self.turn_id, segment=seg, pcm=chunk.pcm,
                                          sample_rate=chunk.sample_rate, offset=offset, voice=p.voice.id))
                    await self.emit(StageTiming(turn_id=self.turn_id, stage="tts", start=t0, end=t1, segment=seg))
                    if chunk.phonemes is not None and p.aligner is None:
                        await self._lip_sync(seg, chunk.phonemes, offset, "engine")
                    else:
                        if chunk.phonemes is not None and p.config.lipsync.emit_reference:
                            await self.emit(Phonemes(turn_id=self.turn_id, segment=seg, source="reference",
                                                     items=tuple(TimedPhoneme(ph.symbol, ph.start + offset,
                                                                              ph.end + offset)
                                                                 for ph in chunk.phonemes)))
                        untimed.append(chunk.pcm)
                        untimed_rate = chunk.sample_rate
                    offset += chunk.duration
                    t0 = now()
            duration = offset - segment_start
            for name, at in p.persona.gesture_cues(sentence.text, seg):
                # After synthesis the sentence's length is known, so the gesture lands on its cue word; the audio
                # plays behind real time (TTS is faster), so this still reaches the renderer before it is due.
                await self.emit(Gesture(turn_id=self.turn_id, name=name, start=segment_start + at * duration))
            if untimed:
                # Timings from audio: align the sentence's audio against its text once it is complete. The audio
                # is already playing; the visemes reach the renderer before playback reaches them.
                aligner = p.fallback_aligner
                samples = pcm16_to_float(b"".join(untimed))
                phonemes = await asyncio.to_thread(aligner.align, samples, untimed_rate, spoken)
                await self._lip_sync(seg, phonemes, segment_start, aligner.name)

    async def _lip_sync(self, seg: int, phonemes: Sequence[TimedPhoneme], offset: float, source: str) -> None:
        l0 = now()
        timed = tuple(TimedPhoneme(ph.symbol, ph.start + offset, ph.end + offset) for ph in phonemes)
        visemes = phonemes_to_visemes(timed)
        await self.emit(Phonemes(turn_id=self.turn_id, segment=seg, items=timed, source=source))
        await self.emit(Visemes(turn_id=self.turn_id, segment=seg, items=visemes))
        await self.emit(StageTiming(turn_id=self.turn_id, stage="lipsync", start=l0, end=now(), segment=seg))


def _first_error(exc: BaseException) -> BaseException:
    """The underlying error of a TaskGroup failure."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
