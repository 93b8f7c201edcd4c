"""`avatarium avatars --json` lists the library with capabilities; `avatars check FILE` reports or fails clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from avatarium_lab.avatar import list_avatars
from avatarium_lab.avatar.testing_glb import make_rpm_like


def avatarium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "avatars", *args], capture_output=True,
                          text=True, timeout=120)


def test_list_json_has_every_library_avatar_with_capabilities() -> None:
    out = avatarium("--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["id"] for r in rows] == [a.id for a in list_avatars()]
    for r in rows:
        assert r["lipsync"] == "full" and r["blinks"] == "full"
        assert {"emotions", "gestures", "bones", "issues", "morph_targets"} <= set(r)


def test_check_reports_a_file_and_fails_clearly_on_a_broken_one(tmp_path: Path) -> None:
    rpm = tmp_path / "rpm.glb"
    rpm.write_bytes(make_rpm_like(with_morphs=False))
    out = avatarium("check", str(rpm), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["rig"] == "rpm" and report["lipsync"] == "none"
    assert any("morphTargets=ARKit,Oculus Visemes" in issue for issue in report["issues"])
    broken = tmp_path / "broken.glb"
    broken.write_bytes(rpm.read_bytes()[:5000])
    out = avatarium("check", str(broken))
    assert out.returncode == 2 and out.stdout == ""
    assert "error [invalid_avatar]" in out.stderr and "truncated" in out.stderr
