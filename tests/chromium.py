"""Render an HTML file in headless Chromium and report what its images look like.

:func:`chromium_executable` finds ``chromium`` (Debian's package) or
``chromium-browser``/``google-chrome``; when none is installed it installs Debian's
``chromium`` with ``apt-get`` (the test setup's job, as root). When that is impossible it
fails the test with the reason — a report test must not be skipped silently.

:func:`render_images` copies the page, appends a script that, once the page has loaded,
writes every ``<img>``'s state (``complete``, ``naturalWidth/Height``, bounding box,
computed ``display``/``visibility``/``opacity``) into a ``<pre>`` as JSON, and reads it
back from Chromium's ``--dump-dom`` output.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHECK = """
<script>
window.addEventListener("load", () => {
  const rows = Array.from(document.images).map((img) => {
    const r = img.getBoundingClientRect();
    const cs = getComputedStyle(img);
    return {file: img.dataset.file || img.src.slice(0, 40), complete: img.complete,
            naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
            width: r.width, height: r.height, left: r.left, top: r.top,
            display: cs.display, visibility: cs.visibility, opacity: cs.opacity};
  });
  const pre = document.createElement("pre");
  pre.id = "stllr-image-check";
  pre.textContent = JSON.stringify(rows);
  document.body.appendChild(pre);
});
</script>
"""


def chromium_executable() -> str:
    """A Chromium binary; installs Debian's ``chromium`` when none is found (or fails)."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.fail(
            "headless Chromium is needed to check the report: no chromium binary and "
            "no apt-get to install Debian's chromium package"
        )
    if os.geteuid() != 0:
        pytest.fail(
            "headless Chromium is needed to check the report: chromium is not "
            "installed and installing it needs root (apt-get install -y chromium)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [apt, "install", "-y", "--no-install-recommends", "chromium"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if res.returncode != 0:  # the package lists may be missing: update once and retry
        subprocess.run([apt, "update"], capture_output=True, text=True, env=env, timeout=600)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    path = shutil.which("chromium")
    if res.returncode != 0 or path is None:
        tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
        pytest.fail(
            f"headless Chromium is needed to check the report; `{' '.join(cmd)}` "
            f"failed (exit {res.returncode}): {' / '.join(tail)}"
        )
    return path


def render_images(page: Path, tmp: Path, timeout_s: float = 120.0) -> list[dict]:
    """The state of every ``<img>`` of ``page`` after Chromium has loaded it."""
    exe = chromium_executable()
    text = Path(page).read_text()
    if "</body>" not in text:
        raise AssertionError(f"{page} has no </body>")
    probe = Path(tmp) / "probe.html"
    probe.write_text(text.replace("</body>", CHECK + "</body>", 1))
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={Path(tmp) / 'profile'}",
        "--window-size=1280,1024",
        "--virtual-time-budget=20000",
        "--dump-dom",
        probe.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    m = re.search(r'<pre id="stllr-image-check">(.*?)</pre>', res.stdout, re.S)
    if res.returncode != 0 or m is None:
        raise AssertionError(
            f"Chromium did not render {page} (exit {res.returncode}): {res.stderr[-2000:]}"
        )
    return json.loads(html.unescape(m.group(1)))
