"""From a configuration to a ready provider chain: catalog lookup, plan gating, key resolution, adapters.

``build_chain(config, context)`` turns ``config.provider`` and ``config.fallbacks`` into a ``FailoverChain``.
Everything that can be checked without the network is checked here, so a bad configuration fails before a turn
starts: an unknown kind or model, a premium model on a plan without it (``PlanRequired``), a cloud model with
no key anywhere (``ProviderAuthError``), a custom endpoint without a base URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import Config, ProviderConfig
from ..errors import ConfigError, ProviderAuthError
from ..secrets import Secret, resolve_key
from . import ChatProvider, ProviderTimeouts, adapter_factory
from .catalog import Catalog, ModelEntry, load_catalog
from .failover import CircuitBreaker, FailoverChain, Member


@dataclass
class ProviderContext:
    """Who is asking: the tenant's plan and its own keys (BYOK), which override the managed keys for it only."""

    plan: str = "free"
    tenant_id: str | None = None
    byok: Mapping[str, Secret] = field(default_factory=dict)
    environ: Mapping[str, str] | None = None
    use_keyring: bool = True

    def __repr__(self) -> str:
        return (f"ProviderContext(plan={self.plan!r}, tenant_id={self.tenant_id!r}, "
                f"byok={sorted(self.byok)!r})")


def _timeouts(cfg: ProviderConfig) -> ProviderTimeouts:
    t = cfg.timeouts
    return ProviderTimeouts(connect=t.connect, first_token=t.first_token, idle=t.idle, queue=t.queue)


def key_for(vendor: str, cfg: ProviderConfig, context: ProviderContext) -> Secret | None:
    return resolve_key(vendor, byok=context.byok, env_var=cfg.api_key_env, environ=context.environ,
                       use_keyring=context.use_keyring)


def build_member(cfg: ProviderConfig, context: ProviderContext, catalog: Catalog | None = None) -> Member:
    """One provider of a chain, with its catalog entry (for prices and context window)."""
    catalog = catalog or load_catalog()
    entry: ModelEntry | None
    model_id: str | None = cfg.model
    key: Secret | None = None
    if cfg.kind == "embedded":
        entry = catalog.find("embedded", "SmolLM2-135M-Instruct") if cfg.model_path is None else None
    elif cfg.kind == "replay":
        entry = catalog.find("custom", cfg.model) if cfg.model else None
    else:
        if not cfg.model:
            raise ConfigError(f"provider.model: a {cfg.kind} provider needs a model (a catalog id or the vendor's id)")
        vendor = cfg.kind
        entry = catalog.find(vendor, cfg.model)
        catalog.check_plan(entry, context.plan)
        model_id = entry.model if entry else cfg.model
        if vendor == "custom":
            if not cfg.base_url:
                raise ConfigError("provider.base_url: a custom provider needs the base URL of an OpenAI-compatible "
                                  "server, e.g. http://127.0.0.1:8000/v1")
            if cfg.api_key_env or "custom" in context.byok:
                key = resolve_key("custom", byok=context.byok, env_var=cfg.api_key_env, environ=context.environ,
                                  use_keyring=False)
        else:
            key = key_for(vendor, cfg, context)
            if key is None:
                info = catalog.vendors.get(vendor)
                env = " or ".join((cfg.api_key_env,) if cfg.api_key_env else (info.env if info else ()))
                raise ProviderAuthError(
                    f"no API key for {vendor}: set {env}, store one in the system keyring (service "
                    f"'avatarium-lab', user '{vendor}'), or give the tenant its own key",
                    provider=f"{vendor}:{model_id}",
                )
    provider: ChatProvider = adapter_factory(cfg.kind)(cfg, model=model_id, key=key, timeouts=_timeouts(cfg))
    if cfg.record_to:
        from .cassette import RecordingProvider

        provider = RecordingProvider(provider, cfg.record_to)
    if cfg.context_window:
        window = cfg.context_window
    elif cfg.kind == "embedded":
        window = cfg.n_ctx
    else:
        window = entry.context_window if entry else 8192
    return Member(provider=provider, timeouts=_timeouts(cfg), entry=entry, price_in=cfg.price_in,
                  price_out=cfg.price_out, context_window=window)


_BREAKER = CircuitBreaker()


def build_chain(config: Config, context: ProviderContext | None = None, *,
                breaker: CircuitBreaker | None = None) -> FailoverChain:
    """The configuration's provider and fallbacks as one chain. Circuit state is shared across chains of one
    process by default, so a dead provider is skipped by every pipeline, not just the one that saw it fail."""
    context = context or ProviderContext(plan=config.plan)
    catalog = load_catalog()
    catalog.plan(context.plan)  # an unknown plan is a configuration error
    members = [build_member(cfg, context, catalog) for cfg in (config.provider, *config.fallbacks)]
    if breaker is None:
        breaker = _BREAKER
        breaker.failures = config.failover.circuit_failures
        breaker.cooldown = config.failover.circuit_cooldown
    return FailoverChain(members, config.failover, breaker=breaker)
