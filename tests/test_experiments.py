"""Experiments: specs, the resumable runner over real pipelines (replayed cassettes, real voices and aligners),
the judge over the real OpenAI wire format, Dask, and MLflow parent/child runs with traces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from avatarium_lab.errors import ConfigError
from avatarium_lab.experiments import load_spec, plan_trials, run_experiment
from avatarium_lab.experiments.judge import parse_scores
from avatarium_lab.experiments.metrics import count_sentences, style_checks
from avatarium_lab.personality import load_persona
from avatarium_lab.testing import FakeBehaviour, FakeServer
from avatarium_lab.testing.fake_openai import make_openai_app

ROOT = Path(__file__).resolve().parents[1]
REPLAY = {"provider.kind": "replay", "provider.cassette": "datasets/cassettes/openai.jsonl",
          "provider.pace": "instant", "provider.price_in": 0.15, "provider.price_out": 0.6}  # gpt-4o-mini's


def spec_data(**changes) -> dict:
    data = {
        "name": "test-ab",
        "base": "experiments/configs/default.yaml",
        "overrides": dict(REPLAY),
        "factors": {"voice.id": ["espeak:en-us", "espeak:en-gb"]},
        "prompts": {"file": "datasets/prompts/everyday.yaml", "limit": 3},
        "repeats": 2,
        "seed": 3,
        "concurrency": 2,
    }
    data.update(changes)
    return data


# --- specs ----------------------------------------------------------------------------------------------------


def test_spec_files_load_and_plan() -> None:
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = load_spec(path)
        trials = plan_trials(spec)
        assert len(trials) == len(spec.variant_list()) * len(spec.prompt_list()) * spec.repeats
        assert len({t.id for t in trials}) == len(trials)


def test_factorial_variants_and_stable_ids() -> None:
    spec = load_spec(spec_data(factors={"voice.id": ["espeak:en-us", "espeak:en-gb"],
                                        "lipsync.aligner": ["engine", "text-proportional"]}))
    names = [v.name for v in spec.variant_list()]
    assert len(names) == 4 and "voice.id=espeak:en-gb · lipsync.aligner=text-proportional" in names
    assert [t.id for t in plan_trials(spec)] == [t.id for t in plan_trials(load_spec(spec_data(
        factors={"voice.id": ["espeak:en-us", "espeak:en-gb"], "lipsync.aligner": ["engine", "text-proportional"]})))]
    # a repeat shares its seed across variants (paired), repeats differ
    trials = plan_trials(spec)
    assert len({t.seed for t in trials if t.repeat == 0}) == 1
    assert len({t.seed for t in trials}) == spec.repeats


def test_variant_order_is_rotated_so_no_variant_always_runs_first() -> None:
    trials = plan_trials(load_spec(spec_data()))
    blocks = [trials[i : i + 2] for i in range(0, len(trials), 2)]
    assert all(a.prompt_id == b.prompt_id and a.repeat == b.repeat for a, b in blocks)
    firsts = [a.variant for a, _ in blocks]
    assert firsts.count("espeak:en-us") == firsts.count("espeak:en-gb") == 3


@pytest.mark.parametrize(("change", "message"), [
    ({"factors": {"voice.nope": ["x"]}}, "nope"),
    ({"factors": {"voice.id": []}}, "no levels"),
    ({"prompts": {"file": "datasets/prompts/missing.yaml"}}, "prompt file not found"),
    ({"variants": [{"name": "a"}, {"name": "a"}], "factors": {}}, "repeat"),
    ({"repeats": 0}, "repeats"),
])
def test_bad_specs_are_config_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec = load_spec(spec_data(**change))
        spec.prompt_list()


# --- offline checks and judge parsing ------------------------------------------------------------------------


def test_style_checks() -> None:
    tutor = load_persona("warm_tutor")
    good = style_checks("Great question! The sky looks blue because air scatters blue light. Try looking at "
                        "a sunset, for example.", tutor)
    assert good["style_score"] == 1.0
    bad = style_checks("- **As an AI** I list things\n- like this", tutor)
    assert bad["style_no_markup"] == 0.0 and bad["style_no_banned"] == 0.0 and bad["style_score"] < 0.5
    assert count_sentences("One. Two! Three?") == 3 and count_sentences("no end") == 1


def test_judge_reply_parsing() -> None:
    assert parse_scores('Sure: {"persona": 4, "quality": 7, "reason": "ok"}') == {
        "judge_persona": 4.0, "judge_quality": 5.0, "judge_error": None}
    failed = parse_scores("I think it is fine")
    assert math.isnan(failed["judge_persona"]) and failed["judge_error"] == "unparseable"


# --- running ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("exp")
    return run_experiment(spec_data(), out_dir=out, mlflow=False, progress=False), out


def test_runs_every_trial_with_metrics_from_events(first_run) -> None:
    result, out = first_run
    frame = result.results
    assert len(frame) == 12 and result.ran == 12 and frame["error"].isna().all()
    assert list(frame["variant"].cat.categories) == ["espeak:en-us", "espeak:en-gb"]
    for column in ("first_token_ms", "first_audio_ms", "first_viseme_ms", "total_ms", "completion_tokens",
                   "cost_usd", "audio_seconds", "rtf", "response_chars", "style_score"):
        assert frame[column].notna().all(), column
    assert (frame["first_token_ms"] <= frame["first_audio_ms"]).all()
    assert (frame["first_audio_ms"] <= frame["total_ms"]).all()
    assert (frame["audio_seconds"] > 1).all() and (frame["cost_usd"] > 0).all()
    assert set(frame["voice"]) == {"espeak:en-us", "espeak:en-gb"}
    # the same prompt gets the same replayed reply in both variants: a paired design
    texts = frame.pivot_table(index=["prompt_id", "repeat"], columns="variant", values="response", aggfunc="first",
                              observed=True)
    assert (texts["espeak:en-us"] == texts["espeak:en-gb"]).all()
    assert pd.read_parquet(out / "results.parquet").shape[0] == 12
    for variant in ("espeak:en-us", "espeak:en-gb"):
        assert result.sample_audio(variant).stat().st_size > 10_000
        animation = result.sample_animation(variant)
        assert animation["visemes"] and animation["text"]
    timeline = json.loads(frame["timeline"].iloc[0])
    assert {"llm", "tts", "lipsync"} <= {t["stage"] for t in timeline}


def test_factor_levels_are_columns_for_per_factor_summaries(tmp_path: Path) -> None:
    from avatarium_lab.experiments import stats

    data = spec_data(factors={"voice.id": ["espeak:en-us", "espeak:en-gb"],
                              "lipsync.aligner": ["engine", "text-proportional"]}, repeats=1)
    frame = run_experiment(data, out_dir=tmp_path, mlflow=False, progress=False).results
    assert set(frame["voice.id"]) == {"espeak:en-us", "espeak:en-gb"}
    assert set(frame["lipsync.aligner"]) == {"engine", "text-proportional"}
    per_voice = stats.summarize(frame, ["first_audio_ms"], by="voice.id")
    assert sorted(per_voice["voice.id"]) == ["espeak:en-gb", "espeak:en-us"] and (per_voice["n"] == 6).all()


def test_statistics_come_with_the_result(first_run) -> None:
    result, _ = first_run
    summary = result.summary
    row = summary[(summary["variant"] == "espeak:en-us") & (summary["metric"] == "first_audio_ms")].iloc[0]
    assert row["n"] == 6 and row["mean_low"] <= row["mean"] <= row["mean_high"]
    assert set(result.winners["metric"]) >= {"first_audio_ms", "total_ms", "rtf"}
    assert "audio_seconds" not in set(result.winners["metric"])  # describes a variant, does not rank it


def test_rerun_skips_finished_trials_and_finishes_interrupted_ones(first_run, tmp_path: Path) -> None:
    result, out = first_run
    lines = (out / "trials.jsonl").read_text().splitlines()
    (tmp_path / "trials.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:40])  # killed mid-write
    again = run_experiment(spec_data(), out_dir=tmp_path, mlflow=False, progress=False)
    assert again.ran == 7 and len(again.results) == 12
    assert list(again.results["id"]) == list(result.results["id"])
    assert run_experiment(spec_data(), out_dir=tmp_path, mlflow=False, progress=False).ran == 0


def test_failed_trials_are_recorded_and_retried(tmp_path: Path) -> None:
    data = spec_data(factors={"voice.id": ["espeak:en-us"]}, repeats=1,
                     prompts={"items": ["Tell me about the ocean.", "A prompt the cassette never saw."]})
    result = run_experiment(data, out_dir=tmp_path, mlflow=False, progress=False)
    assert list(result.results["error"].fillna("ok")) == ["ok", "all_providers_failed"]
    assert "cassette_miss" in result.results["error_message"].iloc[1]
    assert run_experiment(data, out_dir=tmp_path, mlflow=False, progress=False).ran == 1  # only the failed one


def test_aligner_variants_are_scored_against_the_voice_timings(tmp_path: Path) -> None:
    data = spec_data(factors={"lipsync.aligner": ["text-proportional", "pocketsphinx"]}, repeats=1)
    frame = run_experiment(data, out_dir=tmp_path, mlflow=False, progress=False).results
    assert frame["frame_accuracy_rhubarb"].between(0.2, 1.0).all()
    assert set(frame["lipsync_source"]) == {"text-proportional", "pocketsphinx"}
    means = frame.groupby("variant", observed=True)["frame_accuracy_rhubarb"].mean()
    assert means["pocketsphinx"] > means["text-proportional"]


def test_judge_scores_through_a_real_openai_wire(tmp_path: Path) -> None:
    behaviour = FakeBehaviour(script='{"persona": 4, "quality": 3, "reason": "friendly and clear"}',
                              api_key="sk-judge-0123456789abcdef")
    with FakeServer(make_openai_app(behaviour)) as server:
        data = spec_data(factors={"voice.id": ["espeak:en-us"]}, repeats=1, concurrency=1,
                         judge={"kind": "custom", "model": "judge-model", "base_url": server.url + "/v1",
                                "api_key_env": "AVATARIUM_TEST_JUDGE_KEY"})
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AVATARIUM_TEST_JUDGE_KEY", "sk-judge-0123456789abcdef")
            frame = run_experiment(data, out_dir=tmp_path, mlflow=False, progress=False).results
    assert (frame["judge_persona"] == 4).all() and (frame["judge_quality"] == 3).all()
    assert len(behaviour.requests) == 3
    sent = behaviour.requests[0]["body"]["messages"][1]["content"]
    assert "Reply:" in sent and "Aria" in sent


def test_dask_local_cluster_gives_the_same_trials(first_run, tmp_path: Path) -> None:
    local, _ = first_run
    distributed = run_experiment(spec_data(), out_dir=tmp_path, mlflow=False, progress=False, dask="local")
    assert distributed.ran == 12
    # what a trial is and what it answered; timings (and the audio length, which follows how the stream was cut
    # into sentences as it arrived) legitimately differ between runs
    columns = ["id", "variant", "prompt_id", "repeat", "seed", "persona", "voice", "response", "prompt_tokens",
               "completion_tokens", "cost_usd", "response_chars", "style_score"]
    pd.testing.assert_frame_equal(local.results[columns], distributed.results[columns])


def test_mlflow_parent_and_child_runs_with_traces(tmp_path: Path) -> None:
    from mlflow import MlflowClient, search_traces

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = spec_data(repeats=1)
    data["overrides"] = {**REPLAY, "provider.headers": {"X-Api-Token": "sk-live-supersecret0123456789"}}
    result = run_experiment(data, out_dir=tmp_path / "out", tracking_uri=uri, progress=False)
    client = MlflowClient(uri)
    parent = client.get_run(result.run_id)
    assert parent.data.params["experiment"] == "test-ab" and parent.data.metrics["trials"] == 6
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(c.info.run_name for c in children) == ["espeak:en-gb", "espeak:en-us"]
    child = children[0]
    assert child.data.metrics["first_audio_ms_mean"] > 0
    assert child.data.params["voice.id"] in ("espeak:en-us", "espeak:en-gb")
    everything = json.dumps([parent.data.params, *[c.data.params for c in children]])
    assert "supersecret" not in everything and "X-Api-Token" in everything
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"results.parquet", "summary.csv", "comparisons.csv", "winners.csv", "latency.png"} <= artifacts
    assert {a.path for a in client.list_artifacts(child.info.run_id, "sample")} >= {
        "sample/" + f for f in (f"{child.info.run_name.replace(':', '_')}.wav",
                                f"{child.info.run_name.replace(':', '_')}.animation.json")}
    traces = search_traces(locations=[parent.info.experiment_id], return_type="list")
    assert len(traces) == 6
    assert len(search_traces(run_id=child.info.run_id, return_type="list")) == 3  # linked to the variant's run
    spans = traces[0].data.spans
    assert {"turn", "llm", "tts", "lipsync"} <= {s.name for s in spans}
