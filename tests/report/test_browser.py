"""The report as a browser shows it: headless Chromium screenshots report.html and dumps its DOM.

Needs Debian's ``chromium``; when it is missing the test installs it once with
apt-get (as root) and skips, saying why, only where that is impossible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from .conftest import STRATEGIES

pytestmark = pytest.mark.slow

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
]


def _install_chromium() -> str | None:
    """apt-get update + install chromium; the reason it failed, or None."""
    if shutil.which("apt-get") is None:
        return "chromium is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "chromium is not installed and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd, limit in ((["apt-get", "update"], 600), (["apt-get", "install", "-y", "chromium"], 1500)):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            return f"chromium is not installed and `{' '.join(cmd)}` took longer than {limit} s"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return f"chromium is not installed and `{' '.join(cmd)}` failed (exit {done.returncode}): {tail[0]}"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        reason = _install_chromium()  # once per module: the fixture's result is cached
        found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
        if found is None:
            pytest.skip(reason=reason or "chromium was installed but no chromium executable was found")
    return found


@pytest.fixture(scope="module")
def report(rendered) -> Path:
    return rendered


def _browse(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp)},
    )


def test_screenshot_is_not_blank(chromium, report, tmp_path):
    shot = tmp_path / "report.png"
    done = _browse(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri())
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).astype(np.uint8)
    assert pixels.shape[:2] == (2400, 1280)
    colors = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colors) > 500, f"only {len(colors)} distinct colors: blank page?"
    not_white = np.any(pixels < 235, axis=-1).mean()
    assert not_white > 0.05, f"only {not_white:.1%} of the page is drawn"


class _Rows(HTMLParser):
    """Rows of table#summary's body as cell texts; notes any <b> element in that table."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = self.body = False
        self.rows: list[list[str]] = []
        self.bold = False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("id", "summary") in attrs:
            self.inside = True
        elif self.inside and tag == "tbody":
            self.body = True
        elif self.body and tag == "tr":
            self.rows.append([])
        elif self.body and tag == "td":
            self.rows[-1].append("")
        elif self.inside and tag == "b":
            self.bold = True

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = self.body = False

    def handle_data(self, data):
        if self.body and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def test_dom_has_the_table_rows(chromium, report, tmp_path):
    done = _browse(chromium, tmp_path, "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    parser = _Rows()
    parser.feed(done.stdout)
    assert [row[1].strip() for row in parser.rows] == ["adam", "rmsprop", "nesterov", "<b>x</b>"]
    assert sorted(row[1].strip() for row in parser.rows) == sorted(STRATEGIES)
    assert not parser.bold, "a strategy label was rendered as HTML"
    assert parser.rows[0][0].strip() == "1" and "1200 [1000–1500]" in parser.rows[0][7]
