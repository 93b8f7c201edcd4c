"""The model catalog (managed / premium / embedded models, prices, context windows) and plan gating.

The data lives in ``catalog.yaml`` next to this file; ``load_catalog(path)`` reads another file with the same
shape. ``Catalog.check_plan`` is what raises ``PlanRequired`` before any network call.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, PlanRequired

CATALOG_PATH = Path(__file__).resolve().parent / "catalog.yaml"
Vendor = Literal["embedded", "openai", "anthropic", "google", "xai"]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    premium_models: bool = False


class VendorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    env: tuple[str, ...] = ()
    base_url: str


class ModelEntry(BaseModel):
    """One catalog model; prices in USD per million tokens, as configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    vendor: Vendor
    model: str
    tier: Literal["embedded", "managed", "premium"]
    context_window: int = Field(gt=0)
    price_in: float = Field(ge=0)
    price_out: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1_000_000


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    plans: dict[str, Plan]
    vendors: dict[str, VendorInfo]
    models: tuple[ModelEntry, ...]

    def find(self, vendor: str, model: str | None) -> ModelEntry | None:
        """The entry whose id or vendor model id is ``model`` (for that vendor; xAI/OpenAI-compatible too)."""
        for entry in self.models:
            if model in (entry.id, entry.model) and (vendor == entry.vendor or vendor == "custom"):
                return entry
        return None

    def get(self, model_id: str) -> ModelEntry:
        for entry in self.models:
            if entry.id == model_id:
                return entry
        raise ConfigError(f"unknown model {model_id!r}; the catalog has {', '.join(e.id for e in self.models)}")

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            raise ConfigError(f"unknown plan {name!r}; plans are {', '.join(self.plans)}") from None

    def check_plan(self, entry: ModelEntry | None, plan: str) -> None:
        """Raise ``PlanRequired`` when ``entry`` is premium and ``plan`` does not include premium models."""
        if entry is None or entry.tier != "premium":
            return
        if not self.plan(plan).premium_models:
            allowed = [name for name, p in self.plans.items() if p.premium_models]
            raise PlanRequired(
                f"{entry.name} ({entry.id}) is a premium model; the {plan!r} plan does not include it "
                f"(plans with premium models: {', '.join(allowed)})",
                provider=f"{entry.vendor}:{entry.model}",
            )


@functools.lru_cache(maxsize=8)
def load_catalog(path: str | Path = CATALOG_PATH) -> Catalog:
    path = Path(path)
    try:
        return Catalog.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: invalid model catalog: {exc}") from None
