"""Experiment statistics: bootstrap CIs, summaries, paired comparisons, Holm correction, winner tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from avatarium_lab.experiments.stats import (
    NO_DIFFERENCE,
    bootstrap_ci,
    compare_all,
    default_metrics,
    direction,
    holm,
    paired_comparison,
    summarize,
    winner_table,
)


def trials(n_prompts: int = 40, repeats: int = 1, seed: int = 0, shift_ms: float = 30.0) -> pd.DataFrame:
    """Two variants A/B on the same prompts. ``total_ms``: B = A + shift (+ small noise); ``time_to_first_audio_ms``:
    identically distributed for both; ``frame_accuracy_rhubarb``: B higher; prompt difficulty varies a lot."""
    rng = np.random.default_rng(seed)
    rows = []
    difficulty = rng.uniform(200, 2000, n_prompts)
    accuracy = rng.uniform(0.4, 0.8, n_prompts)
    for p in range(n_prompts):
        for r in range(repeats):
            base = difficulty[p] + rng.normal(0, 20)
            for variant, shift, acc in (("A", 0.0, 0.0), ("B", shift_ms, 0.05)):
                rows.append({"variant": variant, "prompt_id": f"p{p:02d}", "repeat": r, "seed": 7000 + r,
                             "total_ms": base + shift + rng.normal(0, 3),
                             "time_to_first_audio_ms": 300 + rng.normal(0, 40),
                             "frame_accuracy_rhubarb": accuracy[p] + acc + rng.normal(0, 0.01),
                             "error": None})
    return pd.DataFrame(rows)


# -- direction -------------------------------------------------------------------------------------------------


def test_direction_known_suffix_and_unknown():
    assert direction("total_ms") == "lower"
    assert direction("cost_usd") == "lower"
    assert direction("rtf") == "lower" and direction("tts_rtf") == "lower"
    assert direction("frame_accuracy_rhubarb") == "higher"
    assert direction("pp_recall") == "higher" and direction("persona_score") == "higher"
    assert direction("some_new_latency_ms") == "lower"
    assert direction("judge_precision_strict") == "higher"
    assert direction("judge_quality") == "higher"
    with pytest.raises(ValueError):
        direction("response_chars")
    assert direction("response_chars", default="higher") == "higher"
    with pytest.raises(ValueError):
        direction("response_chars", default="bigger")


# -- bootstrap -------------------------------------------------------------------------------------------------


def test_bootstrap_ci_covers_true_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = rng.normal(100, 15, 30)
    large = rng.normal(100, 15, 3000)
    est_s, lo_s, hi_s = bootstrap_ci(small)
    est_l, lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < 100 < hi_s and lo_l < 100 < hi_l
    assert lo_s < est_s < hi_s and est_s == pytest.approx(small.mean())
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~ sqrt(100) = 10x narrower
    # half-width close to the normal-theory 1.96 * s / sqrt(n)
    assert (hi_l - lo_l) / 2 == pytest.approx(1.96 * large.std(ddof=1) / np.sqrt(large.size), rel=0.15)


def test_bootstrap_ci_coverage_is_about_nominal():
    rng = np.random.default_rng(2)
    samples = rng.lognormal(0, 0.5, size=(120, 40))  # skewed, like latencies
    true_mean = math.exp(0.5**2 / 2)
    hits = [lo < true_mean < hi for _, lo, hi in (bootstrap_ci(s, n_resamples=500, seed=i)
                                                  for i, s in enumerate(samples))]
    assert 0.85 <= np.mean(hits) <= 1.0


def test_bootstrap_ci_is_deterministic_per_seed():
    x = np.random.default_rng(3).exponential(100, 50)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    assert bootstrap_ci(x, "median", seed=5) == bootstrap_ci(x, "median", seed=5)


def test_bootstrap_ci_statistics_nans_and_degenerate_data():
    x = np.random.default_rng(4).exponential(100, 60)
    med, lo, hi = bootstrap_ci(x, "median")
    assert med == pytest.approx(np.median(x)) and lo <= med <= hi
    p95, lo, hi = bootstrap_ci(x, "p95", method="percentile")
    assert p95 == pytest.approx(np.percentile(x, 95)) and lo <= hi
    with_nans = np.concatenate([x, [np.nan, np.nan]])
    assert bootstrap_ci(with_nans) == bootstrap_ci(x)
    assert bootstrap_ci([5.0, 5.0, 5.0, np.nan]) == (5.0, 5.0, 5.0)
    est, lo, hi = bootstrap_ci([7.0])
    assert est == 7.0 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in bootstrap_ci([np.nan]))
    with pytest.raises(ValueError):
        bootstrap_ci(x, "p99")  # type: ignore[arg-type]


# -- summarize -------------------------------------------------------------------------------------------------


def test_summarize_shape_columns_and_error_rate():
    df = trials(n_prompts=10, repeats=2)
    df.loc[(df.variant == "B") & (df.prompt_id == "p00"), "error"] = "tts_failed"  # 2 of B's 20 rows
    df.loc[df.error.notna(), "total_ms"] = 30_000.0  # a timeout: must not count as a latency
    out = summarize(df, n_resamples=300)
    assert default_metrics(df) == ["total_ms", "time_to_first_audio_ms", "frame_accuracy_rhubarb"]
    assert list(out.columns) == ["variant", "metric", "n", "mean", "mean_low", "mean_high", "median", "median_low",
                                 "median_high", "p95", "std", "error_rate"]
    assert len(out) == 2 * 3
    assert list(out.variant.unique()) == ["A", "B"]
    rate = out.set_index(["variant", "metric"])["error_rate"]
    assert rate["A"].eq(0).all() and rate["B"].eq(0.1).all()
    b_total = out[(out.variant == "B") & (out.metric == "total_ms")].iloc[0]
    assert b_total.n == 18
    ok = df[(df.variant == "B") & df.error.isna()].total_ms
    assert b_total["mean"] == pytest.approx(ok.mean()) and b_total["std"] == pytest.approx(ok.std())
    assert b_total.mean_low < b_total["mean"] < b_total.mean_high
    assert b_total.median_low <= b_total["median"] <= b_total.median_high
    # keeping failed trials is a choice
    kept = summarize(df, ["total_ms"], drop_errors=False, n_resamples=300)
    assert kept.set_index("variant").loc["B", "n"] == 20


def test_summarize_by_several_columns_without_error_column():
    df = trials(n_prompts=6, repeats=2).drop(columns="error")
    out = summarize(df, ["total_ms"], by=["variant", "repeat"], n_resamples=200)
    assert len(out) == 4 and list(out.columns[:3]) == ["variant", "repeat", "metric"]
    assert out.n.eq(6).all() and out.error_rate.isna().all()


# -- paired comparison -----------------------------------------------------------------------------------------


def test_paired_comparison_detects_a_clear_shift():
    res = paired_comparison(trials(), "total_ms", "A", "B")
    assert res.n_pairs == 40 and res.paired_on == "prompt_id, repeat"
    assert res.mean_diff == pytest.approx(30, abs=3)
    assert res.ci_low > 0 and res.ci_excludes_zero
    assert res.p_value < 1e-6 and res.significant and not res.low_power
    assert res.direction == "lower" and res.better == "A"
    assert res.rank_biserial == pytest.approx(1.0, abs=0.05)
    assert res.cohen_dz > 3
    assert res.relative_change_pct == pytest.approx(100 * res.mean_diff / res.mean_a)
    d = res.as_dict()
    assert d["better"] == "A" and d["metric"] == "total_ms"


def test_paired_comparison_does_not_flag_a_null_difference():
    res = paired_comparison(trials(seed=11), "time_to_first_audio_ms", "A", "B")
    assert res.p_value > 0.05 and not res.significant
    assert res.ci_low < 0 < res.ci_high and not res.ci_excludes_zero
    assert abs(res.rank_biserial) < 0.4


def test_pairing_beats_an_unpaired_test_when_prompts_differ_hugely():
    df = trials(seed=5, shift_ms=30.0)
    a = df[df.variant == "A"].total_ms.to_numpy()
    b = df[df.variant == "B"].total_ms.to_numpy()
    assert st.mannwhitneyu(a, b).pvalue > 0.3  # prompt difficulty swamps a 30 ms shift unpaired
    assert paired_comparison(df, "total_ms", "A", "B").p_value < 1e-6
    # scrambling which prompt a B trial belongs to destroys the pairing -- so the pairing is really used
    scrambled = df.copy()
    is_b = scrambled.variant == "B"
    scrambled.loc[is_b, "prompt_id"] = np.random.default_rng(0).permutation(scrambled.loc[is_b, "prompt_id"].values)
    assert paired_comparison(scrambled, "total_ms", "A", "B").p_value > 0.05


def test_all_zero_differences_give_p_one():
    df = trials(n_prompts=12)
    b = df.variant == "B"
    df.loc[b, "total_ms"] = df.loc[~b, "total_ms"].to_numpy()
    res = paired_comparison(df, "total_ms", "A", "B")
    assert res.p_value == 1.0 and not res.significant
    assert res.mean_diff == 0 and (res.ci_low, res.ci_high) == (0.0, 0.0) and not res.ci_excludes_zero
    assert res.rank_biserial == 0 and res.cohen_dz == 0 and res.better is None


def test_nans_and_failed_trials_are_dropped_pairwise():
    df = trials(n_prompts=20)
    df.loc[(df.variant == "A") & (df.prompt_id == "p03"), "total_ms"] = np.nan
    df.loc[(df.variant == "B") & (df.prompt_id == "p07"), "total_ms"] = np.nan
    df.loc[(df.variant == "B") & (df.prompt_id == "p09"), "error"] = "timeout"
    res = paired_comparison(df, "total_ms", "A", "B")
    assert res.n_pairs == 17
    keep = ~df.prompt_id.isin(["p03", "p07", "p09"])
    diffs = df[keep & (df.variant == "B")].total_ms.to_numpy() - df[keep & (df.variant == "A")].total_ms.to_numpy()
    assert res.mean_diff == pytest.approx(diffs.mean())
    assert paired_comparison(df, "total_ms", "A", "B", drop_errors=False).n_pairs == 18


def test_unequal_repeats_are_averaged_per_prompt():
    df = trials(n_prompts=15, repeats=3)
    df = df[~((df.variant == "B") & (df.repeat == 2))]  # B ran 2 repeats, A ran 3
    res = paired_comparison(df, "total_ms", "A", "B")
    assert res.n_pairs == 15 and res.paired_on == "prompt_id (mean over repeat)"
    per_prompt = df.groupby(["variant", "prompt_id"]).total_ms.mean().unstack("variant")
    assert res.mean_diff == pytest.approx((per_prompt.B - per_prompt.A).mean())
    # equal repeats: pairs are (prompt, repeat)
    assert paired_comparison(trials(n_prompts=15, repeats=3), "total_ms", "A", "B").n_pairs == 45


def test_few_pairs_are_flagged_low_power():
    res = paired_comparison(trials(n_prompts=5), "total_ms", "A", "B")
    assert res.n_pairs == 5 and res.low_power and not res.significant  # exact p >= 0.0625 at n = 5


def test_higher_is_better_metric_picks_the_higher_variant():
    res = paired_comparison(trials(), "frame_accuracy_rhubarb", "A", "B")
    assert res.direction == "higher" and res.mean_diff > 0 and res.better == "B" and res.significant
    flipped = paired_comparison(trials(), "frame_accuracy_rhubarb", "A", "B", metric_direction="lower")
    assert flipped.better == "A"


def test_unknown_direction_still_compares():
    df = trials().assign(response_chars=lambda d: np.where(d.variant == "B", 120.0, 100.0))
    res = paired_comparison(df, "response_chars", "A", "B")
    assert res.direction == "unknown" and res.better is None and res.significant


# -- Holm, compare_all, winner_table ---------------------------------------------------------------------------


def test_holm_known_values_monotone_and_not_below_raw():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    p = np.random.default_rng(6).uniform(0, 0.2, 25)
    adj = holm(p)
    assert np.all(adj >= p) and np.all(adj <= 1)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    out = holm([0.02, np.nan, 0.01])
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])


def test_compare_all_rows_and_adjustment():
    df = trials()
    df["variant"] = df.variant.map({"A": "espeak", "B": "piper"})
    c = df[df.variant == "piper"].assign(variant="cloud", total_ms=lambda d: d.total_ms - 60)
    df = pd.concat([df, c], ignore_index=True)
    table = compare_all(df, n_resamples=1000)
    assert len(table) == 3 * 2
    assert set(table.a) == {"espeak"} and list(table.b.unique()) == ["piper", "cloud"]
    assert (table.p_adjusted >= table.p_value).all()
    assert table.significant.equals(table.p_adjusted < 0.05)
    assert list(table.columns[table.columns.get_loc("p_value"):][:2]) == ["p_value", "p_adjusted"]
    with pytest.raises(ValueError):
        compare_all(df, baseline="nope")
    with pytest.raises(ValueError):
        compare_all(df[df.variant == "espeak"])


def test_winner_table_names_winners_and_non_differences():
    wt = winner_table(trials(seed=11), n_resamples=1000).set_index("metric")
    assert list(wt.index) == ["total_ms", "time_to_first_audio_ms", "frame_accuracy_rhubarb"]
    assert wt.loc["total_ms", "better"] == "A"  # B is 30 ms slower
    assert wt.loc["total_ms", "diff_low"] > 0 and wt.loc["total_ms", "significant"]
    assert wt.loc["time_to_first_audio_ms", "better"] == NO_DIFFERENCE
    assert wt.loc["time_to_first_audio_ms", "p_adjusted"] > 0.05
    assert wt.loc["frame_accuracy_rhubarb", "better"] == "B"
    assert wt.loc["frame_accuracy_rhubarb", "direction"] == "higher"
    assert wt.loc["total_ms", "relative_change_pct"] > 0


def test_categorical_variants_as_the_runner_makes_them():
    df = trials(n_prompts=12)
    df["variant"] = pd.Categorical(df.variant, categories=["B", "A", "unused"], ordered=True)
    assert list(summarize(df, ["total_ms"], n_resamples=200).variant) == ["A", "B"]  # order of appearance
    table = compare_all(df, ["total_ms"], n_resamples=200)
    assert len(table) == 1 and table.loc[0, "a"] == "A" and table.loc[0, "better"] == "A"
    assert winner_table(df, ["total_ms"], n_resamples=200).loc[0, "better"] == "A"


def test_winner_table_with_several_variants_and_reused_comparisons():
    df = trials(seed=3)
    c = df[df.variant == "A"].assign(variant="C", total_ms=lambda d: d.total_ms - 50)
    df = pd.concat([df, c], ignore_index=True)
    comparisons = compare_all(df, ["total_ms"], n_resamples=500)
    wt = winner_table(df, comparisons=comparisons)
    assert wt.loc[0, "better"] == "C" and wt.loc[0, "variant"] == "C"
    # with C gone, the baseline beats its only challenger
    assert winner_table(df[df.variant != "C"], ["total_ms"], n_resamples=500).loc[0, "better"] == "A"
