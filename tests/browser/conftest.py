"""Shared fixtures of the browser tests: headless Chromium, loopback servers, canvas captures and pixel differences.

Chromium is Debian's (``/usr/bin/chromium``, software WebGL through SwiftShader); Playwright never downloads a
browser here. Servers (JupyterLab, ``panel serve``) run on an ephemeral 127.0.0.1 port for one test and are
stopped afterwards. Screenshots go to ``test-artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

# The synthetic turn both browser tests play, as source: it runs inside the notebook kernel and the Panel app as
# well as here. 2 s of PCM16 (a buzzy vowel-like tone while the mouth is open, near-silence otherwise) and a viseme
# track alternating sil / aa / PP / O.
TURN_CODE = '''
import array as _array
import math as _math
import random as _random

from avatarium_lab.events import Audio, TimedViseme, TurnEnded, TurnStarted, Visemes

TRACK = [("sil", 0.0, 0.3), ("aa", 0.3, 0.75), ("PP", 0.75, 0.95), ("O", 0.95, 1.4), ("sil", 1.4, 1.55),
         ("aa", 1.55, 1.95), ("sil", 1.95, 2.0)]


def make_turn(turn_id="synthetic", sample_rate=22050, duration=2.0):
    """TurnStarted, one Audio segment, its Visemes, TurnEnded."""
    rng = _random.Random(7)
    pcm = _array.array("h")
    for i in range(int(sample_rate * duration)):
        t = i / sample_rate
        voiced = any(v != "sil" and s <= t < e for v, s, e in TRACK)
        x = 0.004 * (rng.random() - 0.5)
        if voiced:
            x += 0.2 * _math.sin(2 * _math.pi * 140 * t) + 0.1 * _math.sin(2 * _math.pi * 280 * t + 0.5)
        pcm.append(int(max(-1.0, min(1.0, x)) * 32767))
    if pcm.itemsize == 2 and _array.array("h", [1]).tobytes() != b"\\x01\\x00":
        pcm.byteswap()  # PCM16 is little-endian on the wire
    return [
        TurnStarted(turn_id=turn_id, text="synthetic turn", persona="test"),
        Audio(turn_id=turn_id, segment=0, pcm=pcm.tobytes(), sample_rate=sample_rate, offset=0.0),
        Visemes(turn_id=turn_id, segment=0, items=tuple(TimedViseme(v, s, e) for v, s, e in TRACK)),
        TurnEnded(turn_id=turn_id),
    ]
'''

# --------------------------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # noqa: BLE001 - keep polling through transient page/server states
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


# --------------------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback test server
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@dataclass
class Server:
    """A server process this test started; ``base`` is its http://127.0.0.1:<port> origin."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start a server: ``serve(argv_for_port, ready_path=..., env=..., timeout=...)``; stopped after the test.

    ``argv_for_port`` gets the free port and returns the command. The process runs in its own session so that
    stopping it also stops what it spawned (a Jupyter kernel), by its own process group id.
    """
    started: list[Server] = []

    def start(
        argv_for_port: Callable[[int], list[str]],
        *,
        ready_path: str = "/",
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 90.0,
    ) -> Server:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full_env.get("PYTHONPATH", "")) if p)
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv_for_port(port), stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or tmp_path,
                start_new_session=True,
            )
        server = Server(process, port, log)
        started.append(server)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.log_tail()}")
            return _answers(server.base + ready_path)

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"server on port {port} did not answer in {timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)
        return server

    yield start
    for server in started:
        _stop(server.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    pgid = process.pid  # its own session: the group id is its pid
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------------------------------------------
# Browser
# --------------------------------------------------------------------------------------------------------------


def _chromium(profile: Path, extra_args: list[str]) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS + extra_args,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[Any]:
    """A Playwright persistent context of the system Chromium with a fresh, temporary profile."""
    yield from _chromium(tmp_path / "chromium-profile", [])


@pytest.fixture
def browser_with(tmp_path: Path) -> Iterator[Callable[[list[str]], Any]]:
    """``browser_with(extra_flags)``: like ``browser_context`` with more Chromium flags (e.g. a fake microphone)."""
    gens: list[Iterator[Any]] = []

    def launch(extra: list[str]) -> Any:
        gen = _chromium(tmp_path / f"chromium-profile-{len(gens)}", extra)
        gens.append(gen)
        return next(gen)

    yield launch
    for gen in gens:
        with contextlib.suppress(StopIteration):
            next(gen)


@dataclass
class PageLog:
    """Every request URL and console error of a page (to check nothing left 127.0.0.1)."""

    requests: list[str]
    errors: list[str]

    def foreign_requests(self, allowed_host: str = "127.0.0.1") -> list[str]:
        out = []
        for url in self.requests:
            scheme, _, rest = url.partition("://")
            if scheme in ("data", "blob", "about") or url.startswith(("data:", "blob:", "about:")):
                continue
            host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
            if host != allowed_host:
                out.append(url)
        return out


def watch_page(page: Any) -> PageLog:
    log = PageLog([], [])
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("pageerror", lambda exc: log.errors.append(str(exc)))
    page.on("console", lambda msg: log.errors.append(msg.text) if msg.type == "error" else None)
    return log


# --------------------------------------------------------------------------------------------------------------
# Captures and pixel differences
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Capture:
    """One frame of the avatar canvas, read in the page together with the state that drew it."""

    png: bytes
    mouth_box: tuple[int, int, int, int]
    viseme: str
    mouth_open: float
    status: str
    background: tuple[int, int, int] = (255, 255, 255)
    """The CSS background the transparent canvas is seen over."""

    def image(self) -> np.ndarray:
        return decode_png(self.png, self.background)

    def mouth(self) -> np.ndarray:
        """The mouth region, following the mouth where this frame drew it."""
        return crop(self.image(), self.mouth_box)


_CAPTURE_JS = """root => {
  const canvas = root.querySelector("canvas");
  return {
    png: canvas.toDataURL("image/png"),
    background: getComputedStyle(root).backgroundColor,
    box: root.dataset.mouthBox || "",
    viseme: root.dataset.viseme || "",
    open: root.dataset.mouthOpen || "0",
    status: root.dataset.status || "",
  };
}"""


def capture(root: Any) -> Capture:
    """Read the canvas's last drawn frame and the viseme that shaped it in one page task, so they agree.

    The canvas itself is read (the renderer keeps its drawing buffer) rather than a page screenshot, whose
    moment cannot be known; page screenshots are still saved for people to look at.
    """
    return _to_capture(root.evaluate(_CAPTURE_JS))


def parse_box(text: str) -> tuple[int, int, int, int]:
    parts = [int(round(float(p))) for p in text.split(",")] if text else []
    if len(parts) != 4 or parts[2] <= 0 or parts[3] <= 0:
        raise AssertionError(f"bad data-mouth-box {text!r}")
    return parts[0], parts[1], parts[2], parts[3]


def decode_png(png: bytes, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """RGB pixels of a PNG; transparent pixels are composited over ``background`` as the page shows them."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + np.asarray(background, np.float32) * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def crop(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``x,y,w,h`` region of an image (canvas CSS pixels; the tests run at device pixel ratio 1)."""
    x, y, w, h = box
    return pixels[y : y + h, x : x + w]


def mouth_from_screenshot(png: bytes, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop the mouth region out of a screenshot of the canvas element."""
    return crop(decode_png(png), box)


def pixel_difference(a: np.ndarray, b: np.ndarray, max_shift: int = 0) -> float:
    """Mean absolute difference of two RGB crops, in 0-255 levels.

    With ``max_shift`` the crops are first aligned (the best of all shifts up to that many pixels, compared over
    the core both share): the box is rounded to whole pixels and the head sways, and neither should count as a
    change of the mouth's shape.
    """
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    m = max_shift
    if h <= 2 * m or w <= 2 * m:
        raise AssertionError(f"crop too small ({w}x{h}) to compare")
    a16 = a[:h, :w].astype(np.int16)
    b16 = b[:h, :w].astype(np.int16)
    core = a16[m : h - m, m : w - m]
    best = float("inf")
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            shifted = b16[m + dy : h - m + dy, m + dx : w - m + dx]
            best = min(best, float(np.abs(core - shifted).mean()))
    return best


def save_artifact(name: str, data: bytes | np.ndarray) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(data if isinstance(data, bytes) else encode_png(data))
    return path


@dataclass
class LipSyncResult:
    silence: Capture
    silence_again: Capture
    speaking: Capture
    aa_captures: int
    baseline: float
    """Pixel difference of the mouth between two silent frames (idle sway, noise)."""
    difference: float
    """Pixel difference of the mouth between silence and the widest ``aa`` frame."""
    visemes_applied: int
    screenshot_vs_canvas: float
    """Pixel difference of the mouth between a page screenshot of the canvas and the canvas read directly."""


# Installed in the page: right after each frame the avatar draws (our rAF callback runs after the renderer's,
# which registered first), keep a few copies of the canvas drawn while the mouth is open on "aa". Page screenshots
# and even a round trip per capture take 0.4-1 s under software WebGL, longer than one viseme.
_RECORDER_JS = """root => {
  const canvas = root.querySelector("canvas");
  const rec = { frames: 0, aa: [], stop: false };
  root.__avatarRecorder = rec;
  const loop = () => {
    if (rec.stop) return;
    rec.frames += 1;
    const open = parseFloat(root.dataset.mouthOpen || "0");
    if (root.dataset.viseme === "aa" && open >= 0.5 && rec.aa.length < 8) {
      rec.aa.push({
        png: canvas.toDataURL("image/png"), box: root.dataset.mouthBox || "", viseme: "aa",
        background: getComputedStyle(root).backgroundColor,
        open: String(open), status: root.dataset.status || "",
      });
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}"""

_RECORDED_JS = """root => { const rec = root.__avatarRecorder; rec.stop = true; return rec.aa; }"""


def _to_capture(data: dict[str, str]) -> Capture:
    png = base64.b64decode(data["png"].split(",", 1)[1])
    rgb = re.findall(r"[\d.]+", data.get("background", ""))[:3]
    background = tuple(int(float(v)) for v in rgb) if len(rgb) == 3 else (255, 255, 255)
    return Capture(png, parse_box(data["box"]), data["viseme"], float(data["open"]), data["status"], background)


def check_lip_sync(page: Any, root: Any, prefix: str, play: Callable[[], None] | None, timeout: float = 90.0) -> LipSyncResult:
    """Capture the mouth during ``aa`` and at rest around one play of the synthetic turn; save what was seen.

    With ``play`` the avatar must be ready first: silence is captured before the turn, then ``play()`` starts
    it. Without it the turn is already on its way (a notebook run top to bottom) and silence is captured after.
    """

    def silent_pair() -> tuple[Capture, Capture]:
        wait_until(lambda: capture(root).mouth_open == 0.0, 10, "the mouth to come to rest")
        first = capture(root)
        page.wait_for_timeout(700)  # a moment of idle motion between the two: the baseline difference
        return first, capture(root)

    def screenshot_check(silence: Capture) -> float:
        """The mouth box also frames the mouth in a real screenshot of the canvas (CSS pixels, as composited)."""
        root.scroll_into_view_if_needed()
        shot = root.locator("canvas").screenshot()
        mouth = mouth_from_screenshot(shot, silence.mouth_box)
        save_artifact(f"{prefix}_screenshot_canvas_silence.png", shot)
        save_artifact(f"{prefix}_screenshot_mouth_silence.png", mouth)
        return pixel_difference(silence.mouth(), mouth, max_shift=3)

    root.evaluate(_RECORDER_JS)
    if play is not None:
        wait_until(lambda: root.get_attribute("data-status") in ("ready", "idle"), timeout, "avatar status ready")
        silence, silence_again = silent_pair()
        screenshot_vs_canvas = screenshot_check(silence)
        save_artifact(f"{prefix}_page_silence.png", page.screenshot())
        play()
    wait_until(lambda: root.get_attribute("data-status") == "playing", timeout, "the turn to start playing")
    wait_until(lambda: root.get_attribute("data-status") == "idle", timeout, "the turn to finish")
    aa = [_to_capture(d) for d in root.evaluate(_RECORDED_JS)]
    assert aa, "no frame was drawn while the mouth was open on 'aa'"
    if play is None:
        silence, silence_again = silent_pair()
        screenshot_vs_canvas = screenshot_check(silence)
        save_artifact(f"{prefix}_page_silence.png", page.screenshot())
    speaking = max(aa, key=lambda c: c.mouth_open)
    save_artifact(f"{prefix}_canvas_silence.png", silence.png)
    save_artifact(f"{prefix}_canvas_aa.png", speaking.png)
    save_artifact(f"{prefix}_mouth_silence.png", silence.mouth())
    save_artifact(f"{prefix}_mouth_silence_again.png", silence_again.mouth())
    save_artifact(f"{prefix}_mouth_aa.png", speaking.mouth())
    # Each frame is cropped where it drew the mouth and aligned, so idle sway does not count as a change of shape.
    baseline = pixel_difference(silence.mouth(), silence_again.mouth(), max_shift=3)
    difference = pixel_difference(silence.mouth(), speaking.mouth(), max_shift=3)
    applied = int(root.get_attribute("data-visemes-applied") or 0)
    numbers = {
        "mouth_box_silence": silence.mouth_box, "mouth_box_aa": speaking.mouth_box, "aa_frames_captured": len(aa),
        "aa_mouth_open": speaking.mouth_open, "baseline_difference": round(baseline, 3),
        "silence_vs_aa_difference": round(difference, 3), "visemes_applied": applied,
        "screenshot_vs_canvas_difference": round(screenshot_vs_canvas, 3),
    }
    save_artifact(f"{prefix}_numbers.json", json.dumps(numbers, indent=2).encode())
    return LipSyncResult(
        silence, silence_again, speaking, len(aa), baseline, difference, applied, screenshot_vs_canvas
    )


def avatar_argument() -> str:
    """Python source for the ``avatar=`` argument the pages use: the library's "aria", or a GLB file.

    ``AVATARIUM_TEST_GLB`` points the tests at another GLB (e.g. while the library avatar is being rebuilt).
    """
    override = os.environ.get("AVATARIUM_TEST_GLB")
    if override:
        return f"__import__('pathlib').Path({str(Path(override).resolve())!r})"
    try:
        from avatarium_lab.avatar import load_avatar

        load_avatar("aria")
    except Exception as exc:  # noqa: BLE001 - any failure means there is no library avatar to show
        pytest.skip(f"library avatar 'aria' is not available ({exc!r}); set AVATARIUM_TEST_GLB to test another")
    return "'aria'"


def notebook_json(sources: list[str]) -> dict:
    """A notebook of code cells; with a kernelspec, or Lab stops on a "select kernel" dialog."""
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
             for src in sources]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _lab_settings(settings_dir: Path) -> None:
    """User settings of the test's Lab: start the notebook's kernel without asking, never fetch news."""
    overrides = {
        "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in overrides.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def lab_outputs_text(page: Any) -> str:
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())[-3000:]


@pytest.fixture
def run_notebook_in_lab(tmp_path: Path, serve: Callable[..., Server], browser_context: Any) -> Callable[..., Any]:
    """``run_notebook_in_lab(sources, name)``: a real JupyterLab (fresh settings, offline) opens a notebook made
    of those code cells, waits for its kernel and runs all cells; returns ``(page, page_log)``."""
    import secrets

    def run(sources: list[str], name: str = "test.ipynb") -> tuple[Any, PageLog]:
        lab_root = tmp_path / "lab"
        lab_root.mkdir(exist_ok=True)
        (lab_root / name).write_text(json.dumps(notebook_json(sources), indent=1))
        token = secrets.token_hex(16)
        settings = tmp_path / "lab-settings"
        _lab_settings(settings)
        # Settings, workspaces and runtime files in the temp dir: a fresh Lab that restores nothing of the user's.
        env = {
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
            "IPYTHONDIR": str(tmp_path / "ipython"),
        }
        server = serve(
            lambda port: [
                sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={lab_root}",
                # Offline: no news feed, no update check.
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
            ],
            ready_path=f"/api/status?token={token}",
            env=env,
            timeout=120,
        )
        page = browser_context.new_page()
        log = watch_page(page)
        page.goto(f"{server.base}/lab/tree/{name}?token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        # The notebook's cells show before its model and kernel are in place; "Run All" before that runs nothing.
        kernel_idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"Python.*\|\s*Idle"))
        kernel_idle.first.wait_for(timeout=120_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        return page, log

    return run


@pytest.fixture
def lab_outputs() -> Callable[[Any], str]:
    """``lab_outputs(page)``: the text of the notebook's cell outputs (for failure messages)."""
    return lab_outputs_text


@pytest.fixture
def python() -> str:
    """The interpreter the servers run under: the one running the tests."""
    return sys.executable


# Tests reach the helpers above through fixtures: importing a conftest module by name is ambiguous when the test
# tree has several of them.


@pytest.fixture
def turn_code() -> str:
    """Source defining ``make_turn(turn_id)``, for notebook cells and app files."""
    return TURN_CODE


@pytest.fixture
def avatar_source() -> str:
    """Source of the ``avatar=`` argument (skips while no library avatar exists and no override is set)."""
    return avatar_argument()


@pytest.fixture
def poll() -> Callable[..., Any]:
    """``poll(condition, timeout, what, interval=0.1)``: wait for a condition with a deadline."""
    return wait_until


@pytest.fixture
def lip_sync() -> Callable[..., LipSyncResult]:
    return check_lip_sync


@pytest.fixture
def page_log() -> Callable[[Any], PageLog]:
    return watch_page


@pytest.fixture
def artifact() -> Callable[[str, bytes | np.ndarray], Path]:
    return save_artifact


@pytest.fixture
def grab() -> Callable[[Any], Capture]:
    """``grab(root)``: the avatar canvas's last frame with its mouth box and state (see :func:`capture`)."""
    return capture


@pytest.fixture
def pixel_diff() -> Callable[..., float]:
    """``pixel_diff(a, b, max_shift=0)``: mean absolute RGB difference of two crops (see :func:`pixel_difference`)."""
    return pixel_difference


@pytest.fixture
def png_pixels() -> Callable[..., np.ndarray]:
    """``png_pixels(png, background)``: RGB pixels of a canvas PNG composited over its CSS background."""
    return decode_png
