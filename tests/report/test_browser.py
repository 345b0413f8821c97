"""The report as a browser shows it: headless Chromium screenshots report.html and dumps its DOM.

The 19-strategy report is also opened with a probe script added to a copy of it
(the report itself has no scripts), which records in the DOM whether every plot
image loaded, its size and position, and whether anything covers it.

Needs Debian's ``chromium``; when it is missing the test installs it once with
apt-get (as root) and skips, saying why, only where that is impossible.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from .conftest import MANY, STRATEGIES

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


PROBE = """<script>
addEventListener("load", () => {
  const images = [...document.images].map((img) => {
    const r = img.getBoundingClientRect();
    const style = getComputedStyle(img);
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return {alt: img.alt, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            box: [r.left + scrollX, r.top + scrollY, r.width, r.height],
            shown: style.visibility === "visible" && style.display !== "none" && Number(style.opacity) > 0,
            onTop: hit === img};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, width: document.documentElement.clientWidth,
                                    height: Math.ceil(document.body.getBoundingClientRect().height)});
  document.body.append(out);
});
</script>"""


def test_19_strategy_report_shows_every_plot(chromium, many_rendered, tmp_path):
    page = many_rendered.read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _browse(chromium, tmp_path, "--dump-dom", "--virtual-time-budget=10000", "--window-size=1300,12000", probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, "the probe did not run: " + done.stdout[-500:]
    seen = json.loads(html.unescape(found.group(1)))
    images, width, height = seen["images"], seen["width"], seen["height"]
    assert len(images) == 7 and height < 12000, (len(images), height)
    for img in images:
        x, y, w, h = img["box"]
        nw, nh = img["natural"]
        assert img["complete"] and nw > 500 and nh > 300, f"{img['alt']}: not loaded ({nw}×{nh})"
        assert img["shown"] and img["onTop"], f"{img['alt']}: hidden or covered"
        assert w >= 500 and 0 <= x and x + w <= width + 0.5, f"{img['alt']}: {w:.0f} px wide at x={x:.0f} of {width}"
        assert h == pytest.approx(w * nh / nw, rel=0.02), f"{img['alt']}: stretched"
    # and on screen: each image's place in a screenshot of the report is a drawn plot
    shot = tmp_path / "report19.png"
    done = _browse(chromium, tmp_path, f"--screenshot={shot}", f"--window-size=1300,{height}", many_rendered.as_uri())
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).astype(np.uint8)
    for img in images:
        x, y, w, h = (int(round(v)) for v in img["box"])
        crop = pixels[y + 2 : y + h - 2, x + 2 : x + w - 2]
        colors = len(np.unique(crop.reshape(-1, 3), axis=0))
        drawn = np.any(crop < 235, axis=-1).mean()
        assert colors > 200 and drawn > 0.03, f"{img['alt']}: {colors} colours, {drawn:.1%} drawn: blank?"
    # the summary lists all 19 strategies
    done = _browse(chromium, tmp_path, "--dump-dom", many_rendered.as_uri())
    parser = _Rows()
    parser.feed(done.stdout)
    assert sorted(row[1].strip() for row in parser.rows) == sorted(MANY)
