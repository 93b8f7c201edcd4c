"""Experiment widgets in a real JupyterLab: ABCompare speaks on every side with live numbers and takes a vote;
ResultsExplorer and LatencyWaterfall render their plots and tables and react to their controls."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SETUP = (
    "import tempfile\n"
    "from avatarium_lab.config import Config\n"
    "from avatarium_lab.experiments import run_experiment\n"
    "from avatarium_lab.widgets import ABCompare, LatencyWaterfall, ResultsExplorer\n"
    "import avatarium_lab, pathlib\n"
    "cassette = str(pathlib.Path(avatarium_lab.__file__).parents[1] / 'datasets/cassettes/openai.jsonl')\n"
    "replay = {'provider.kind': 'replay', 'provider.cassette': cassette, 'provider.pace': 'recorded'}\n"
    "spec = {'name': 'browser-ab', 'base': 'experiments/configs/default.yaml',\n"
    "        'overrides': {**replay, 'provider.pace': 'instant', 'provider.cassette': 'datasets/cassettes/openai.jsonl'},\n"
    "        'factors': {'voice.id': ['espeak:en-us', 'espeak:en-gb+m3']},\n"
    "        'prompts': {'file': 'datasets/prompts/everyday.yaml', 'limit': 3}, 'repeats': 2}\n"
    "result = run_experiment(spec, out_dir=tempfile.mkdtemp(), mlflow=False, progress=False)\n"
    "len(result.results)"
)


def test_ab_compare_explorer_and_waterfall(run_notebook_in_lab, poll, artifact, lab_outputs) -> None:
    cells = [
        SETUP,
        "explorer = ResultsExplorer(result.results, metric='first_audio_ms')\nexplorer",
        "LatencyWaterfall(result.results)",
        "configs = {'en-us': Config.default().with_overrides(**replay, **{'voice.id': 'espeak:en-us'}),\n"
        "           'en-gb': Config.default().with_overrides(**replay, **{'voice.id': 'espeak:en-gb+m3'})}\n"
        "ab = ABCompare(configs, prompt='Tell me about the ocean.')\nab",
    ]
    page, log = run_notebook_in_lab(cells, "experiments.ipynb")
    ab = page.locator(".avatarium-ab-compare").first
    try:
        ab.wait_for(timeout=240_000)
    except Exception:
        artifact("experiment_widgets_failed.png", page.screenshot(full_page=True))
        raise AssertionError(f"no ABCompare; outputs:\n{lab_outputs(page)}") from None

    explorer = page.locator(".avatarium-results-explorer").first
    image = explorer.locator("img").first
    poll(lambda: image.evaluate("img => img.complete && img.naturalWidth > 500"), 60, "the explorer's plot")
    table = explorer.locator(".avatarium-results-table")
    assert "espeak:en-us" in table.inner_text() and "mean_low" in table.inner_text()
    before = image.get_attribute("src")
    explorer.get_by_role("button", name="ecdf").click()
    poll(lambda: image.get_attribute("src") != before, 30, "the plot to redraw as an ECDF")
    poll(lambda: image.evaluate("img => img.complete && img.naturalWidth > 500"), 30, "the ECDF to decode")
    explorer.scroll_into_view_if_needed()
    artifact("results_explorer.png", explorer.screenshot())

    waterfall = page.locator(".avatarium-latency-waterfall").first
    poll(lambda: waterfall.locator("img").first.evaluate("img => img.complete && img.naturalWidth > 500"), 60,
         "the waterfall")
    assert "first audio" in waterfall.locator(".avatarium-waterfall-milestones").inner_text()
    waterfall.scroll_into_view_if_needed()
    artifact("latency_waterfall.png", waterfall.screenshot())

    ab.scroll_into_view_if_needed()
    avatars = ab.locator(".avatarium-avatar-view[data-status]")
    poll(lambda: avatars.count() == 2, 60, "two avatars")
    for i in range(2):
        poll(lambda i=i: avatars.nth(i).get_attribute("data-status") in ("ready", "idle"), 120, "avatars to load")
    ab.get_by_role("button", name="Ask all").click()
    numbers = ab.locator(".avatarium-ab-latency")
    for i in range(2):
        poll(lambda i=i: "first audio" in numbers.nth(i).inner_text(), 120, f"side {i}'s live numbers")
        poll(lambda i=i: int(avatars.nth(i).get_attribute("data-visemes-applied") or 0) > 0, 120,
             f"side {i}'s avatar to speak")
    assert "ocean" in ab.locator(".avatarium-ab-reply").first.inner_text().lower()
    vote = ab.get_by_role("button", name="en-gb is better")
    poll(lambda: vote.is_enabled(), 120, "the vote buttons")
    vote.click()
    poll(lambda: "en-gb 1" in ab.locator(".avatarium-ab-status").inner_text(), 30, "the tally")
    artifact("experiment_widgets.png", page.screenshot(full_page=True))
    assert not log.foreign_requests(), log.foreign_requests()
