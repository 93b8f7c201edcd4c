"""Experiment specs: a base configuration, the factors to vary, a prompt set, repeats and a seed (YAML).

```yaml
name: voices-ab
description: espeak-ng vs Piper on everyday prompts
base: experiments/configs/default.yaml     # a configuration file (relative to the spec or the repository)
overrides: {provider.max_tokens: 48}       # applied to the base, for every variant
factors:                                   # full factorial; a value is a config override or a named variant
  voice.id: [espeak:en-us, piper:en_US-joe-medium]
variants:                                  # or/and explicit variants: name + overrides
  - {name: tutor-neural, overrides: {persona: warm_tutor, lipsync.aligner: neural}}
prompts: {file: datasets/prompts/everyday.yaml, limit: 10}
repeats: 2
seed: 7
concurrency: 2                             # trials in flight at once (per process)
judge: null                                # or a provider configuration: scores persona adherence and quality
```

Factor keys are configuration paths (``persona``, ``voice.id``, ``lipsync.aligner``, ``provider.kind``,
``avatar``, ...). A factor value may also be a mapping of several overrides with a ``name``::

    factors:
      provider: [{name: embedded}, {name: openai, provider.kind: replay, provider.cassette: ...}]

Every trial has a stable id (a hash of the variant's overrides, the prompt, the repeat and the seed), so a rerun
knows which trials are finished.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import Config, ProviderConfig, _describe
from ..errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class PromptSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    items: list[str] = Field(default_factory=list, description="prompts given inline")
    limit: int | None = Field(default=None, ge=1)


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    base: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    factors: dict[str, list[Any]] = Field(default_factory=dict)
    variants: list[VariantSpec] = Field(default_factory=list)
    prompts: PromptSpec = PromptSpec(file="datasets/prompts/everyday.yaml", limit=5)
    repeats: int = Field(default=1, ge=1, le=1000)
    seed: int = 7
    concurrency: int = Field(default=1, ge=1, le=64)
    judge: ProviderConfig | None = None
    source: str | None = Field(default=None, exclude=True, description="the file the spec was read from")

    @field_validator("factors")
    @classmethod
    def _non_empty(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, levels in value.items():
            if not levels:
                raise ValueError(f"factor {key!r} has no levels")
        return value

    # -- resolution -------------------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        path = Path(name)
        if path.is_absolute():
            return path
        if self.source:
            near = Path(self.source).parent / path
            if near.exists():
                return near
        return ROOT / path

    def base_config(self) -> Config:
        config = Config.load(self._path(self.base)) if self.base else Config.default()
        return config.with_overrides(**self.overrides) if self.overrides else config

    def variant_list(self) -> list[VariantSpec]:
        """Explicit variants, then the full factorial of the factors (each level named ``key=value``)."""
        out = list(self.variants)
        if self.factors:
            keys = list(self.factors)
            for combo in itertools.product(*(self.factors[k] for k in keys)):
                names, overrides = [], {}
                for key, level in zip(keys, combo, strict=True):
                    if isinstance(level, dict):
                        level = dict(level)
                        names.append(str(level.pop("name", json.dumps(level, sort_keys=True))))
                        overrides.update(level)
                    else:
                        plain = len(keys) == 1 and not self.variants
                        names.append(str(level) if plain else f"{key}={level}")
                        overrides[key] = level
                out.append(VariantSpec(name=" · ".join(names) if len(keys) > 1 else names[0], overrides=overrides))
        if not out:
            out = [VariantSpec(name="base")]
        names = [v.name for v in out]
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment {self.name!r}: variant names repeat: {names}")
        return out

    def variant_config(self, variant: VariantSpec) -> Config:
        try:
            config = self.base_config().with_overrides(**variant.overrides)
        except ConfigError as exc:
            raise ConfigError(f"experiment {self.name!r}, variant {variant.name!r}: {exc.message}") from None
        # Files named in the configuration are found relative to the spec (or the repository), not the cwd.
        providers = [config.provider, *config.fallbacks]
        resolved = [p.model_copy(update={"cassette": str(self._path(p.cassette))})
                    if p.cassette and not Path(p.cassette).is_absolute() else p for p in providers]
        return config.model_copy(update={"name": f"{self.name}/{variant.name}", "provider": resolved[0],
                                         "fallbacks": resolved[1:]})

    def prompt_list(self) -> list[tuple[str, str]]:
        """``(prompt_id, text)`` pairs: ids are stable (the prompt file's name and index)."""
        out: list[tuple[str, str]] = []
        if self.prompts.file:
            path = self._path(self.prompts.file)
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"experiment {self.name!r}: prompt file not found: {path}") from None
            items = data.get("prompts", []) if isinstance(data, dict) else data
            stem = path.stem
            for i, item in enumerate(items or []):
                text = item["text"] if isinstance(item, dict) else str(item)
                pid = item.get("id", f"{stem}-{i:03d}") if isinstance(item, dict) else f"{stem}-{i:03d}"
                out.append((str(pid), text))
        out += [(f"inline-{i:03d}", t) for i, t in enumerate(self.prompts.items)]
        if self.prompts.limit is not None:
            out = out[: self.prompts.limit]
        if not out:
            raise ConfigError(f"experiment {self.name!r} has no prompts")
        return out


def trial_id(spec: ExperimentSpec, variant: VariantSpec, prompt_id: str, prompt: str, repeat: int) -> str:
    key = json.dumps([spec.name, variant.name, variant.overrides, spec.overrides, spec.base, prompt_id, prompt,
                      repeat, spec.seed], sort_keys=True, default=str)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def trial_seed(spec: ExperimentSpec, repeat: int) -> int:
    """Each repeat samples with its own seed; the same repeat of every variant shares it (paired designs)."""
    return spec.seed * 1000 + repeat


def load_spec(spec: ExperimentSpec | dict[str, Any] | str | Path) -> ExperimentSpec:
    """An experiment spec from a YAML file, a mapping or an ``ExperimentSpec``; errors are ``ConfigError``s."""
    if isinstance(spec, ExperimentSpec):
        return spec
    source = None
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.exists() and not path.is_absolute() and (ROOT / path).exists():
            path = ROOT / path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"experiment spec not found: {spec}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{spec}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{spec}: an experiment spec is a YAML mapping")
        source = str(path)
    else:
        data = dict(spec)
    try:
        parsed = ExperimentSpec.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(f"{source or 'experiment spec'}: {_describe(exc)}") from None
    parsed.variant_list()  # fail early on duplicate names
    for variant in parsed.variant_list():
        parsed.variant_config(variant)  # and on overrides that are not configuration fields
    return parsed
