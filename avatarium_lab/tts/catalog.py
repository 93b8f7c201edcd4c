"""The voice catalog (``voices.yaml``): tiers, engines, costs, timing support, and what each voice needs to run.

``available(entry)`` says whether a voice can be used on this machine now: its Python package imports, its
program is on PATH, or a key for its vendor is configured. Plan gating (premium voices need a plan that
includes premium) uses the plans of the model catalog, so one plan definition governs models and voices.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, PlanRequired

VOICES_PATH = Path(__file__).resolve().parent / "voices.yaml"
Tier = Literal["basic", "standard", "premium"]
# The tier of a voice that is not in the catalog (an espeak language, a Piper model on disk) follows its engine.
ENGINE_TIER: dict[str, Tier] = {"espeak": "basic", "flite": "basic", "piper": "standard", "festival": "standard",
                                "openai": "premium", "elevenlabs": "premium", "gemini": "premium"}
ENGINE_VENDOR = {"openai": "openai", "elevenlabs": "elevenlabs", "gemini": "google"}


class Requires(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    python: str | None = None
    binary: str | None = None
    key: str | None = None


class VoiceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    tier: Tier
    engine: str
    language: str
    sample_rate: int = Field(gt=0)
    cost_per_million_chars: float = Field(ge=0)
    timings: Literal["engine", "characters", "none"]
    requires: Requires = Requires()

    def cost(self, text: str) -> float:
        return len(text) * self.cost_per_million_chars / 1_000_000


class VoiceCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    voices: tuple[VoiceEntry, ...]

    def find(self, voice_id: str) -> VoiceEntry | None:
        return next((v for v in self.voices if v.id == voice_id), None)

    def tier_of(self, voice_id: str) -> Tier | None:
        """The catalog's tier, else the engine's; None for an engine nobody knows (``get_voice`` says so)."""
        entry = self.find(voice_id)
        if entry is not None:
            return entry.tier
        return ENGINE_TIER.get(voice_id.partition(":")[0])


@functools.lru_cache(maxsize=4)
def load_voice_catalog(path: str | Path = VOICES_PATH) -> VoiceCatalog:
    path = Path(path)
    try:
        return VoiceCatalog.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: invalid voice catalog: {exc}") from None


def missing_requirement(entry: VoiceEntry) -> str | None:
    """What keeps ``entry`` from running here (a package, a program, a key), or None when it can run."""
    from ..secrets import resolve_key

    req = entry.requires
    if req.python and importlib.util.find_spec(req.python) is None:
        return f"the Python package providing {req.python!r}"
    if req.binary and shutil.which(req.binary) is None:
        return f"the program {req.binary!r} (Debian: apt-get install {req.binary})"
    if req.key and resolve_key(req.key) is None:
        return f"an API key for {req.key}"
    return None


def available(entry: VoiceEntry) -> bool:
    return missing_requirement(entry) is None


def check_voice_plan(voice_id: str, plan: str) -> None:
    """``PlanRequired`` when the voice is premium and ``plan`` has no premium tier (before any network call)."""
    from ..providers.catalog import load_catalog

    if load_voice_catalog().tier_of(voice_id) != "premium":
        return
    catalog = load_catalog()
    if not catalog.plan(plan).premium_models:
        allowed = [name for name, p in catalog.plans.items() if p.premium_models]
        raise PlanRequired(f"the voice {voice_id!r} is a premium voice; the {plan!r} plan does not include premium "
                           f"voices (plans that do: {', '.join(allowed)})", provider=voice_id)
