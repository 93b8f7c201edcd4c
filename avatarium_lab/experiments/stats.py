"""Statistics for experiment results: bootstrap CIs, paired variant comparisons, Holm correction, winner tables.

Input is the tidy trials frame (one row per trial: ``variant``, ``prompt_id``, ``repeat``, numeric metrics,
``error``). Choices made here, in one place:

- Missing values are dropped (NaN metric = the metric does not apply). By default (``drop_errors=True``) the
  metrics of failed trials (non-null ``error``) are treated as missing too: a timeout's ``total_ms`` is not a
  latency. Failures are reported separately as ``error_rate`` and are not hidden by this.
- CIs are BCa bootstraps (``scipy.stats.bootstrap``); when BCa is undefined (degenerate or very skewed bootstrap
  distributions, common for medians and p95 of small samples) the percentile interval of the same resamples is
  used. Every bootstrap is seeded with ``seed`` itself, so a CI does not change when other groups or metrics are
  added to a table.
- Variants are compared *paired*: trials of two variants on the same prompt (and repeat -- repeats share the
  sampling seed across variants) are matched and the differences ``b - a`` are analysed. Prompt difficulty then
  cancels out, which is usually most of the variance.
- Significance is a two-sided Wilcoxon signed-rank test (no normality assumption; latencies are skewed). Across a
  table of comparisons p-values are Holm-Bonferroni adjusted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as st

__all__ = [
    "METRIC_DIRECTIONS",
    "NO_DIFFERENCE",
    "PairedComparison",
    "bootstrap_ci",
    "compare_all",
    "default_metrics",
    "direction",
    "holm",
    "paired_comparison",
    "summarize",
    "winner_table",
]

Stat = Literal["mean", "median", "p95"]

METRIC_DIRECTIONS: dict[str, str] = {
    # latency (ms), cost, speed: lower is better
    "time_to_first_token_ms": "lower",
    "time_to_first_sentence_ms": "lower",
    "time_to_first_audio_ms": "lower",
    "time_to_first_viseme_ms": "lower",
    "first_token_ms": "lower",
    "first_sentence_ms": "lower",
    "first_audio_ms": "lower",
    "first_viseme_ms": "lower",
    "pipeline_overhead_ms": "lower",
    "total_ms": "lower",
    "cost_usd": "lower",
    "rtf": "lower",
    "lipsync_rtf": "lower",
    "onset_mae_ms": "lower",
    # accuracy and quality: higher is better
    "frame_accuracy_oculus": "higher",
    "frame_accuracy_rhubarb": "higher",
    "pp_recall": "higher",
    "pp_precision": "higher",
    "persona_score": "higher",
    "quality_score": "higher",
    "style_score": "higher",
    "judge_persona": "higher",  # LLM-judge scores, 1-5
    "judge_quality": "higher",
}

NO_DIFFERENCE = "no significant difference"

_LOWER_SUFFIXES = ("_ms", "_usd")
_HIGHER_TOKENS = frozenset({"accuracy", "recall", "precision", "score"})
_ID_NAMES = frozenset({"repeat", "seed", "trial", "index", "idx"})
_ID_SUFFIXES = ("_id", "_seed", "_idx", "_index", "_repeat")
_MIN_PAIRS = 6  # exact two-sided Wilcoxon: n=5 gives p >= 0.0625, so fewer pairs can never reach 0.05

_STATS: dict[str, Callable[..., Any]] = {
    "mean": lambda x, axis=-1: np.mean(x, axis=axis),
    "median": lambda x, axis=-1: np.median(x, axis=axis),
    "p95": lambda x, axis=-1: np.percentile(x, 95, axis=axis),
}


def direction(metric: str, default: str | None = None) -> str:
    """``"lower"`` or ``"higher"``: which way a metric is better.

    Looks up :data:`METRIC_DIRECTIONS`, then name rules: a ``_ms``/``_usd`` suffix or an ``rtf`` token means lower,
    an ``accuracy``/``recall``/``precision``/``score`` token means higher (the unit suffix wins over the tokens).
    Unknown metrics raise ``ValueError`` unless ``default`` is given.
    """
    if default is not None and default not in ("lower", "higher"):
        raise ValueError(f"default must be 'lower' or 'higher', not {default!r}")
    if metric in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[metric]
    name = metric.lower()
    tokens = set(name.split("_"))
    if name.endswith(_LOWER_SUFFIXES) or "rtf" in tokens:
        return "lower"
    if tokens & _HIGHER_TOKENS:
        return "higher"
    if default is not None:
        return default
    raise ValueError(f"unknown metric {metric!r}: no known direction (pass default='lower' or 'higher')")


def _direction_or_none(metric: str, directions: Mapping[str, str] | None) -> str | None:
    if directions and metric in directions:
        return _validated(directions[metric])
    try:
        return direction(metric)
    except ValueError:
        return None


def _validated(d: str) -> str:
    if d not in ("lower", "higher"):
        raise ValueError(f"a direction is 'lower' or 'higher', not {d!r}")
    return d


def _as_float(values: Any) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


def bootstrap_ci(values: Iterable[float] | np.ndarray | pd.Series, stat: Stat = "mean", n_resamples: int = 2000,
                 confidence: float = 0.95, seed: int = 0, method: Literal["BCa", "percentile"] = "BCa",
                 ) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the statistic of the sample and its bootstrap confidence interval.

    NaNs are dropped. ``stat`` is ``"mean"``, ``"median"`` or ``"p95"`` (numpy's linear-interpolation percentile).
    BCa by default, falling back to the percentile interval of the same resamples when BCa is undefined.
    Edge cases: no values -> ``(nan, nan, nan)``; one value -> ``(x, nan, nan)`` (one trial says nothing about
    spread, and a NaN bound keeps "CI excludes 0" false); all values equal -> ``(x, x, x)`` (every resample is
    identical, so the interval has zero width). Percentile-type intervals of ``p95`` are unreliable for small
    samples (they hinge on the few largest values); read them as rough.
    """
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {sorted(_STATS)}, not {stat!r}")
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', not {method!r}")
    func = _STATS[stat]
    x = _as_float(values)
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan
    estimate = float(func(x))
    if n == 1:
        return estimate, math.nan, math.nan
    if np.all(x == x[0]):
        return estimate, estimate, estimate
    batch = max(1, 4_000_000 // n)  # bounds memory: resamples (and BCa's jackknife) are n-wide rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's DegenerateDataWarning / divide warnings: handled by the fallback
        res = st.bootstrap((x,), func, n_resamples=n_resamples, confidence_level=confidence, method=method,
                           vectorized=True, batch=batch, rng=np.random.default_rng(seed))
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            res = st.bootstrap((x,), func, n_resamples=0, confidence_level=confidence, method="percentile",
                               vectorized=True, batch=batch, bootstrap_result=res)
            low, high = res.confidence_interval
    return estimate, float(low), float(high)


def default_metrics(df: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """Numeric, non-boolean columns that are not ids: not ``repeat``/``seed``/``trial``/``index``, no ``_id``,
    ``_seed``, ``_idx``, ``_index`` suffix, and not in ``exclude`` (the grouping and pairing columns)."""
    skip = set(exclude)
    out = []
    for col in df.columns:
        if not isinstance(col, str) or col in skip or col.lower() in _ID_NAMES or col.lower().endswith(_ID_SUFFIXES):
            continue
        dtype = df[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        out.append(col)
    return out


def _error_mask(df: pd.DataFrame) -> pd.Series:
    if "error" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["error"].notna()


def _metric_values(df: pd.DataFrame, metric: str, drop_errors: bool) -> pd.Series:
    if metric not in df.columns:
        raise KeyError(f"no metric column {metric!r}")
    values = df[metric].astype(float)
    if drop_errors:
        values = values.mask(_error_mask(df))
    return values


def summarize(df: pd.DataFrame, metrics: Sequence[str] | None = None, by: str | Sequence[str] = "variant",
              n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
              drop_errors: bool = True) -> pd.DataFrame:
    """Per level of ``by`` and per metric: n, mean and median with bootstrap CIs, p95, std and error_rate.

    Tidy: one row per (level, metric), columns ``*by, metric, n, mean, mean_low, mean_high, median, median_low,
    median_high, p95, std, error_rate``; levels in order of appearance, then metrics in the given order.
    ``n`` counts the non-missing values used; ``std`` is the sample standard deviation (ddof=1); ``error_rate`` is
    the share of the level's rows with a non-null ``error`` (NaN when there is no ``error`` column, so the columns
    are always the same). Metrics default to :func:`default_metrics`.
    """
    by_cols = [by] if isinstance(by, str) else list(by)
    if metrics is None:
        metrics = default_metrics(df, exclude=by_cols)
    errors = _error_mask(df).to_numpy() if "error" in df.columns else None
    values = {m: _metric_values(df, m, drop_errors).to_numpy() for m in metrics}
    rows: list[dict[str, Any]] = []
    grouper = by_cols[0] if len(by_cols) == 1 else by_cols  # a scalar key per level for a single column
    for level, idx in df.groupby(grouper, sort=False, dropna=False, observed=True).indices.items():
        level = level if isinstance(level, tuple) else (level,)
        keys = dict(zip(by_cols, level, strict=True))
        error_rate = float(errors[idx].mean()) if errors is not None else math.nan
        for metric in metrics:
            x = _as_float(values[metric][idx])
            mean, mean_low, mean_high = bootstrap_ci(x, "mean", n_resamples, confidence, seed)
            median, median_low, median_high = bootstrap_ci(x, "median", n_resamples, confidence, seed)
            rows.append({**keys, "metric": metric, "n": int(x.size), "mean": mean, "mean_low": mean_low,
                         "mean_high": mean_high, "median": median, "median_low": median_low,
                         "median_high": median_high, "p95": float(np.percentile(x, 95)) if x.size else math.nan,
                         "std": float(np.std(x, ddof=1)) if x.size > 1 else math.nan, "error_rate": error_rate})
    columns = [*by_cols, "metric", "n", "mean", "mean_low", "mean_high", "median", "median_low", "median_high",
               "p95", "std", "error_rate"]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class PairedComparison:
    """Variant ``b`` against variant ``a`` on one metric; differences are ``b - a``.

    ``better`` is the variant the estimate favours (the sign of the rank-biserial correlation, i.e. of what the
    Wilcoxon test tests; the mean difference breaks a 0 tie) given ``direction``; it is set whether or not the
    difference is significant -- ``significant`` (p < alpha) says whether to believe it. ``None`` when the
    direction is unknown or there is no difference at all.
    """

    metric: str
    a: Hashable
    b: Hashable
    n_pairs: int
    n_nonzero: int
    paired_on: str
    mean_a: float
    mean_b: float
    mean_diff: float
    median_diff: float
    ci_low: float
    ci_high: float
    ci_excludes_zero: bool
    relative_change_pct: float
    wilcoxon_statistic: float
    p_value: float
    rank_biserial: float
    cohen_dz: float
    direction: str
    better: Hashable | None
    significant: bool
    low_power: bool
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pairs(df: pd.DataFrame, metric: str, a: Hashable, b: Hashable, by: str, pair_on: Sequence[str],
           drop_errors: bool) -> tuple[pd.DataFrame, str]:
    """Wide frame (columns a, b; one row per pair, complete pairs only) and a description of the pairing.

    Pairs are matched on all of ``pair_on``. If, on prompts both variants ran, the last key (``repeat``) values
    differ between the variants (e.g. 3 repeats vs 5), matching repeats is meaningless: each variant is then
    averaged over the last key per remaining key (per prompt) and the prompt means are paired. Duplicate rows of
    a key are averaged. Missing values are dropped before averaging, so a pair is lost only if one side has no
    value at all -- the decision itself depends on which trials exist, not on which values are missing.
    """
    keys = list(pair_on)
    missing = [c for c in [by, *keys] if c not in df.columns]
    if missing:
        raise KeyError(f"missing columns {missing}")
    if a == b:
        raise ValueError("compare two different variants")
    sub = df.loc[df[by].isin([a, b])]
    for v in (a, b):
        if not (sub[by] == v).any():
            raise ValueError(f"no rows with {by} == {v!r}")
    paired_on = ", ".join(keys)
    if len(keys) > 1:
        coarse = keys[:-1]
        design = sub[[by, *keys]].drop_duplicates()
        key_a = design.loc[design[by] == a, keys]
        key_b = design.loc[design[by] == b, keys]
        shared = pd.MultiIndex.from_frame(key_a[coarse]).intersection(pd.MultiIndex.from_frame(key_b[coarse]))

        def tuples(k: pd.DataFrame) -> set[tuple[Any, ...]]:
            return set(k.loc[pd.MultiIndex.from_frame(k[coarse]).isin(shared)].itertuples(index=False, name=None))

        if tuples(key_a) != tuples(key_b):
            keys = coarse
            paired_on = f"{', '.join(coarse)} (mean over {pair_on[-1]})"
    values = _metric_values(sub, metric, drop_errors).rename("_value")
    frame = pd.concat([sub[[by, *keys]], values], axis=1).dropna(subset=["_value"])
    means = frame.groupby([by, *keys], sort=False, observed=True)["_value"].mean()
    wide = means.unstack(by).reindex(columns=[a, b]).dropna(how="any")
    return wide, paired_on


def _rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014): (R+ - R-) / (R+ + R-) over the non-zero differences,
    ranked by magnitude with average ranks for ties -- the effect size that goes with the Wilcoxon test (zeros are
    discarded like ``zero_method='wilcox'``). In [-1, 1], positive when ``b > a``; 0 when all differences are 0."""
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0 if d.size else math.nan
    ranks = st.rankdata(np.abs(nz))
    return float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())


def _cohen_dz(d: np.ndarray) -> float:
    """Mean difference / sd of the differences (ddof=1). NaN for < 2 pairs; for a constant difference (sd 0),
    0 when it is 0 and +-inf otherwise (a perfectly consistent shift)."""
    if d.size < 2:
        return math.nan
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    if sd == 0:
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / sd


def paired_comparison(df: pd.DataFrame, metric: str, a: Hashable, b: Hashable, by: str = "variant",
                      pair_on: str | Sequence[str] = ("prompt_id", "repeat"), n_resamples: int = 5000, seed: int = 0,
                      alpha: float = 0.05, confidence: float = 0.95, drop_errors: bool = True,
                      metric_direction: str | None = None) -> PairedComparison:
    """Paired comparison of variant ``b`` against variant ``a`` on ``metric`` (differences ``b - a``).

    Pairing: see :func:`_pairs` (match on ``pair_on``; average over repeats per prompt when the variants' repeats
    differ). NaNs are dropped pairwise. Reported: means of both sides over the pairs, mean and median difference,
    a bootstrap CI of the mean difference (resampling pairs), the relative change ``mean_diff / mean_a`` in %,
    the two-sided Wilcoxon signed-rank p-value (``zero_method='wilcox'``: zero differences are discarded; exact
    for <= 50 differences without ties, else scipy's deterministic choice), matched-pairs rank-biserial
    correlation and Cohen's dz. All differences zero -> p = 1. ``low_power`` when fewer than 6 non-zero
    differences remain (the test then cannot reach p < 0.05; it is still computed). ``metric_direction``
    overrides :func:`direction`; an unknown direction gives ``direction="unknown"`` and ``better=None``.
    """
    keys = [pair_on] if isinstance(pair_on, str) else list(pair_on)
    if metric_direction is not None:
        dirn: str | None = _validated(metric_direction)
    else:
        dirn = _direction_or_none(metric, None)
    wide, paired_on = _pairs(df, metric, a, b, by, keys, drop_errors)
    xa, xb = wide[a].to_numpy(float), wide[b].to_numpy(float)
    d = xb - xa
    n = d.size
    n_nonzero = int(np.count_nonzero(d))
    nan = math.nan
    if n == 0:
        return PairedComparison(metric, a, b, 0, 0, paired_on, nan, nan, nan, nan, nan, nan, False, nan, nan, nan,
                                nan, nan, dirn or "unknown", None, False, True, alpha)
    mean_a, mean_b = float(xa.mean()), float(xb.mean())
    mean_diff, ci_low, ci_high = bootstrap_ci(d, "mean", n_resamples, confidence, seed)
    if n_nonzero == 0:
        statistic, p = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = st.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        statistic, p = float(res.statistic), float(res.pvalue)
    rb = _rank_biserial(d)
    sign = np.sign(rb) if rb != 0 else np.sign(mean_diff)
    better: Hashable | None = None
    if dirn is not None and sign != 0:
        better = (b if sign > 0 else a) if dirn == "higher" else (a if sign > 0 else b)
    return PairedComparison(
        metric=metric, a=a, b=b, n_pairs=int(n), n_nonzero=n_nonzero, paired_on=paired_on, mean_a=mean_a,
        mean_b=mean_b, mean_diff=mean_diff, median_diff=float(np.median(d)), ci_low=ci_low, ci_high=ci_high,
        ci_excludes_zero=bool(ci_low > 0 or ci_high < 0),
        relative_change_pct=mean_diff / mean_a * 100 if mean_a != 0 else nan,
        wilcoxon_statistic=statistic, p_value=p, rank_biserial=rb, cohen_dz=_cohen_dz(d),
        direction=dirn or "unknown", better=better, significant=bool(p < alpha), low_power=n_nonzero < _MIN_PAIRS,
        alpha=alpha)


def holm(p_values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down; controls the family-wise error rate). NaNs stay NaN and are
    not counted in the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    order = np.argsort(p[ok], kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[ok][order]))
    out[np.flatnonzero(ok)[order]] = adjusted
    return out


def compare_all(df: pd.DataFrame, metrics: Sequence[str] | None = None, baseline: Hashable | None = None,
                by: str = "variant", pair_on: str | Sequence[str] = ("prompt_id", "repeat"), n_resamples: int = 5000,
                seed: int = 0, alpha: float = 0.05, confidence: float = 0.95, drop_errors: bool = True,
                directions: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every variant against ``baseline`` (default: the first variant in order of appearance) on every metric.

    One row per (metric, variant) with the :class:`PairedComparison` fields (``a`` = baseline, ``b`` = variant)
    and ``p_adjusted``: Holm-Bonferroni over all rows of the table (the family is every test in it). Here
    ``significant`` means ``p_adjusted < alpha``. Baseline-vs-rest rather than all pairs: k-1 tests instead of
    k(k-1)/2 keeps power under correction, and an experiment usually has a reference configuration. Metrics
    default to :func:`default_metrics`; ``directions`` adds or overrides metric directions.
    """
    keys = [pair_on] if isinstance(pair_on, str) else list(pair_on)
    variants = list(pd.unique(df[by].dropna()))
    if baseline is None:
        if not variants:
            raise ValueError(f"no {by} values")
        baseline = variants[0]
    elif baseline not in variants:
        raise ValueError(f"baseline {baseline!r} not among {by} values {variants}")
    others = [v for v in variants if v != baseline]
    if not others:
        raise ValueError(f"need at least two {by} values to compare, got {variants}")
    if metrics is None:
        metrics = default_metrics(df, exclude=[by, *keys])
    rows = []
    for metric in metrics:
        dirn = directions[metric] if directions and metric in directions else None
        for v in others:
            rows.append(paired_comparison(df, metric, baseline, v, by=by, pair_on=keys, n_resamples=n_resamples,
                                          seed=seed, alpha=alpha, confidence=confidence, drop_errors=drop_errors,
                                          metric_direction=dirn).as_dict())
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", holm(table["p_value"]))
    table["significant"] = table["p_adjusted"] < alpha
    return table


def winner_table(df: pd.DataFrame, metrics: Sequence[str] | None = None, baseline: Hashable | None = None,
                 by: str = "variant", pair_on: str | Sequence[str] = ("prompt_id", "repeat"), n_resamples: int = 5000,
                 seed: int = 0, alpha: float = 0.05, confidence: float = 0.95, drop_errors: bool = True,
                 directions: Mapping[str, str] | None = None, comparisons: pd.DataFrame | None = None,
                 ) -> pd.DataFrame:
    """Which variant wins on which metric, and is it significant: one row per metric.

    Built on :func:`compare_all` (pass its result as ``comparisons`` to reuse it; Holm-adjusted p-values). Columns:
    ``metric, direction, better, baseline, variant, diff, diff_low, diff_high, relative_change_pct, p_adjusted,
    significant, n_pairs``; ``diff`` is ``variant - baseline`` (mean of paired differences, with its CI). ``better``:

    - the variant that is significantly better than the baseline; with several, the one with the largest mean
      improvement (note: challengers are not tested against each other);
    - the baseline, if every other variant is significantly worse (the row shown is the closest challenger);
    - otherwise :data:`NO_DIFFERENCE` (the row shown is the comparison with the smallest adjusted p).

    Metrics default to the default metrics whose direction is known (a winner needs a direction); an explicitly
    requested metric of unknown direction with a significant difference gets ``"significant difference
    (direction unknown)"``.
    """
    if comparisons is None:
        keys = [pair_on] if isinstance(pair_on, str) else list(pair_on)
        if metrics is None:
            metrics = [m for m in default_metrics(df, exclude=[by, *keys])
                       if _direction_or_none(m, directions) is not None]
        comparisons = compare_all(df, metrics, baseline, by=by, pair_on=keys, n_resamples=n_resamples, seed=seed,
                                  alpha=alpha, confidence=confidence, drop_errors=drop_errors, directions=directions)
    elif metrics is not None:
        comparisons = comparisons[comparisons["metric"].isin(metrics)]
    rows = []
    for metric, group in comparisons.groupby("metric", sort=False):
        dirn = group["direction"].iloc[0]
        base = group["a"].iloc[0]
        sig = group[group["significant"]]
        if dirn == "unknown":
            pick = group.loc[group["p_adjusted"].fillna(np.inf).idxmin()]
            better: Any = "significant difference (direction unknown)" if len(sig) else NO_DIFFERENCE
        else:
            improvement = group["mean_diff"] * (1 if dirn == "higher" else -1)
            wins = sig[sig["better"] == sig["b"]]
            if len(wins):
                pick = wins.loc[improvement.loc[wins.index].idxmax()]
                better = pick["b"]
            elif len(sig) == len(group) and (sig["better"] == base).all():
                pick = group.loc[group["p_adjusted"].idxmax()]
                better = base
            else:
                pick = group.loc[group["p_adjusted"].fillna(np.inf).idxmin()]
                better = NO_DIFFERENCE
        rows.append({"metric": metric, "direction": dirn, "better": better, "baseline": base, "variant": pick["b"],
                     "diff": pick["mean_diff"], "diff_low": pick["ci_low"], "diff_high": pick["ci_high"],
                     "relative_change_pct": pick["relative_change_pct"], "p_adjusted": pick["p_adjusted"],
                     "significant": bool(pick["significant"]), "n_pairs": pick["n_pairs"]})
    columns = ["metric", "direction", "better", "baseline", "variant", "diff", "diff_low", "diff_high",
               "relative_change_pct", "p_adjusted", "significant", "n_pairs"]
    return pd.DataFrame(rows, columns=columns)
