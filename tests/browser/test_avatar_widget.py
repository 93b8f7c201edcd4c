"""AvatarView in a real JupyterLab: a notebook run top to bottom shows the avatar and lip-syncs a turn."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


def _notebook(turn_code: str, avatar: str) -> dict:
    def cell(source: str) -> dict:
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}

    view = f"""from avatarium_lab.widgets import AvatarView

view = AvatarView(avatar={avatar}, canvas_width=320, canvas_height=400)
view"""
    return {
        "cells": [cell(turn_code.strip()), cell(view), cell('view.play(make_turn("notebook-turn"))')],
        # Without a kernelspec Lab stops on a "select kernel" dialog.
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _write_settings(settings_dir: Path) -> None:
    """User settings of the test's Lab: start the notebook's kernel without asking, never fetch news."""
    overrides = {
        "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in overrides.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _outputs_text(page) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())[-3000:]


def test_widget_plays_a_turn_in_jupyterlab(
    tmp_path: Path, serve, browser_context, python, turn_code, avatar_source, lip_sync, page_log, artifact
) -> None:
    lab_root = tmp_path / "lab"
    lab_root.mkdir()
    (lab_root / "avatar.ipynb").write_text(json.dumps(_notebook(turn_code, avatar_source), indent=1))
    token = secrets.token_hex(16)
    settings = tmp_path / "lab-settings"
    _write_settings(settings)
    # Settings, workspaces and runtime files in the temp dir: a fresh Lab that restores no layout of the user's.
    env = {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    server = serve(
        lambda port: [
            python, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab_root}",
            # Offline: no news feed, no update check.
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
        ],
        ready_path=f"/api/status?token={token}",
        env=env,
        timeout=120,
    )

    page = browser_context.new_page()
    log = page_log(page)
    page.goto(f"{server.base}/lab/tree/avatar.ipynb?token={token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    # The notebook's cells show before its model and kernel are in place; "Run All" before that runs nothing.
    kernel_idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"Python.*\|\s*Idle"))
    kernel_idle.first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    root = page.locator(".avatarium-avatar-view[data-status]").first
    try:
        root.wait_for(timeout=120_000)
    except Exception as exc:
        artifact("widget_page_failed.png", page.screenshot())
        raise AssertionError(f"the avatar widget never appeared; cell outputs:\n{_outputs_text(page)}") from exc

    # The play cell ran right after the display cell; the widget holds the turn until the avatar is ready.
    result = lip_sync(page, root, "widget", play=None)
    artifact("widget_page_after.png", page.screenshot())

    assert result.visemes_applied > 0
    assert result.difference > max(4.0, 3 * result.baseline), (result.difference, result.baseline)
    # data-mouth-box is in canvas CSS pixels: a real screenshot cropped with it shows the same mouth.
    assert result.screenshot_vs_canvas < max(8.0, result.difference / 3), result.screenshot_vs_canvas
    assert root.get_attribute("data-status") == "idle"
    foreign = log.foreign_requests()
    assert not foreign, f"the page fetched from outside 127.0.0.1: {foreign}"
