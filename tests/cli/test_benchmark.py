"""`descentlab benchmark` end to end on a tiny suite: the output contract, `--jobs 2` equal to
`--jobs 1` in `steps`, resume after SIGKILL, the external ruleset, `auto` targets, an
unreachable target, bad input (one line, exit 2, nothing run), and `descentlab report DIR`."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from descentlab.cli import main
from tests.compare.test_parallel import _trials, cli
from tests.compare.test_postgres import postgres, query  # noqa: F401 - postgres: the module's server fixture
from tests.report.test_browser import chromium  # noqa: F401 - the fixture: Debian's chromium, installed if absent

pytestmark = pytest.mark.slow

SUITE = """
name: tiny
workloads:
  - workload: linreg
    target: 0.7
    budget_steps: 60
    variant: {data_seed: 1, target: 0.9, budget_steps: 60}
  - workload: diabetes
    target: 0.35
    budget_steps: 60
    variant: {activation: tanh, target: 0.3, budget_steps: 60}
"""
OPTIMIZERS = "sgd,adam"


def suite(folder: Path, text: str = SUITE, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def args(folder: Path, out: Path, *more: str) -> list[str]:
    return ["benchmark", "--suite", str(suite(folder)), "--optimizers", OPTIMIZERS, "--seeds", "2",
            "--out", str(out), *more]


def steps_of(out: Path) -> dict:
    return json.loads((out / "benchmark.json").read_text())["steps"]


def csv_steps(out: Path) -> list[tuple]:
    with open(out / "times.csv") as f:
        return [(r["workload"], r["part"], r["strategy"], r["seed"], r["steps_to_target"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny suite with --jobs 1, uninterrupted."""
    folder = tmp_path_factory.mktemp("bench-ref")
    assert main(args(folder, folder / "out", "--jobs", "1")) == 0
    return folder / "out"


def test_benchmark_json_times_csv_and_report_follow_the_contract(reference, capsys):
    data = json.loads((reference / "benchmark.json").read_text())
    assert data["ruleset"] == "self" and data["time"] == "seconds" and data["tau_max"] == 4
    assert set(data["workloads"]) == {"linreg", "diabetes"}
    lin = data["workloads"]["linreg"]
    assert (lin["target"], lin["metric"], lin["mode"], lin["budget_steps"]) == (0.7, "r2", "max", 60)
    assert lin["variant"] == {"changes": "data seed 1", "target": 0.9, "budget_steps": 60}
    assert lin["run_budget_steps"] == 180  # self ruleset: 3x
    for key in ("times", "steps"):
        assert set(data[key]) == {"sgd", "adam"}
        for per in data[key].values():
            assert set(per) == {"linreg", "diabetes"}
            assert all(v is None or v > 0 for v in per.values())
    for key in ("scores", "scores_steps"):
        assert set(data[key]) == {"sgd", "adam"} and all(0 <= v <= 1 for v in data[key].values())
    for s, (lo, hi) in data["score_ci"].items():
        assert lo <= data["scores"][s] <= hi
    assert data["speedup"]["baseline"] == "sgd" and data["speedup"]["sgd"] == pytest.approx(1.0)  # no adamw: the first
    assert max(data["scores"].values()) > 0, "the tiny suite's targets are reachable"
    with open(reference / "times.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 * 2  # workloads x parts x strategies x seeds
    assert {r["status"] for r in rows} == {"finished"}
    # a run stops at its target: steps == steps_to_target where it was reached
    for r in rows:
        if r["steps_to_target"]:
            assert int(r["steps"]) == int(r["steps_to_target"])
        else:
            assert int(r["steps"]) == 180
    page = (reference / "report.html").read_text()
    for needle in ("Leaderboard", "Performance profiles", "Ratios to the fastest", "Rules", "Configuration",
                   "held-out variant", "data:image/png;base64,"):
        assert needle in page, needle
    assert "<script" not in page and "http://" not in page and "https://" not in page
    (reference / "report.html").unlink()
    assert main(["report", str(reference)]) == 0
    assert (reference / "report.html").read_text() == page
    assert "report:" in capsys.readouterr().out


def test_jobs_2_gives_the_steps_of_jobs_1(reference, tmp_path):
    assert main(args(tmp_path, tmp_path / "out", "--jobs", "2")) == 0
    assert steps_of(tmp_path / "out") == steps_of(reference)
    assert csv_steps(tmp_path / "out") == csv_steps(reference)


def test_sigkill_then_the_same_command_gives_the_same_steps(reference, tmp_path):
    out = tmp_path / "out"
    argv = args(tmp_path, out, "--jobs", "1")
    proc = cli(*argv)
    deadline = time.time() + 240
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        states = [s for s, _, _ in _trials(out / "runs.sqlite")]
        if states.count("COMPLETE") >= 5:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "benchmark.json").exists()
    again = subprocess.run([sys.executable, "-m", "descentlab", *argv], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stderr
    assert steps_of(out) == steps_of(reference)
    assert csv_steps(out) == csv_steps(reference)


@pytest.fixture(scope="module")
def external(tmp_path_factory) -> Path:
    """The tiny suite under the external ruleset: 2 trials x 2 studies, scored in steps."""
    folder = tmp_path_factory.mktemp("bench-ext")
    out = folder / "ext"
    strategies = folder / "strategies.yaml"
    strategies.write_text("- optimizer: sgd\n  space: {lr: {factor: 3}}\n"
                          "- optimizer: adam\n  space: {lr: {low: 1.0e-3, high: 3.0e-2}}\n")
    assert main(["benchmark", "--suite", str(suite(folder)), "--strategies", str(strategies), "--ruleset",
                 "external", "--trials", "2", "--studies", "2", "--seeds", "1", "--time", "steps", "--jobs", "2",
                 "--out", str(out)]) == 0
    return out


def test_external_ruleset_draws_quasi_random_trials_per_study_and_reports_tunability(external):
    out = external
    data = json.loads((out / "benchmark.json").read_text())
    assert data["ruleset"] == "external" and data["time"] == "steps" and data["scores"] == data["scores_steps"]
    assert data["workloads"]["linreg"]["run_budget_steps"] == 60
    assert {s: len(c) for s, c in data["tunability"].items()} == {"sgd": 2, "adam": 2}
    with open(out / "times.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 * 2 * 2  # workloads x parts x strategies x studies x trials
    adam = {(r["study"], r["trial"]): float(r["lr"]) for r in rows if r["strategy"] == "adam" and r["part"] == "base"}
    assert len(set(adam.values())) == 4 and all(1e-3 <= lr <= 3e-2 for lr in adam.values())
    sgd = {float(r["lr"]) for r in rows if r["strategy"] == "sgd" and r["workload"] == "linreg" and r["part"] == "base"}
    assert len(sgd) == 4  # relative to linreg's default lr for sgd, x [1/3, 3]
    assert "Tunability" in (out / "report.html").read_text()


def test_a_target_no_strategy_reaches_is_reported_not_a_crash(tmp_path):
    text = SUITE.replace("target: 0.7\n", "target: 0.999\n")
    out = tmp_path / "out"
    assert main(["benchmark", "--suite", str(suite(tmp_path, text)), "--optimizers", OPTIMIZERS, "--seeds", "1",
                 "--jobs", "2", "--out", str(out)]) == 0
    data = json.loads((out / "benchmark.json").read_text())
    assert data["unreached"] == ["linreg"]
    assert all(data["steps"][s]["linreg"] is None for s in ("sgd", "adam"))
    assert "No strategy reached the target of linreg" in (out / "report.html").read_text()


def test_auto_sets_a_user_workload_s_target_and_budget_from_tuned_baselines(tmp_path):
    from tests import user_workload_file

    source = user_workload_file.write(tmp_path)
    text = (f"workloads:\n  - workload: {source}:tensors\n    name: mine\n    target: auto\n"
            "    budget_steps: 40\n")  # the search budget
    out = tmp_path / "out"
    assert main(["benchmark", "--suite", str(suite(tmp_path, text)), "--optimizers", "sgd", "--seeds", "1",
                 "--jobs", "1", "--out", str(out)]) == 0
    data = json.loads((out / "benchmark.json").read_text())
    figures = data["target_setting"]["mine/base"]
    assert len(figures["search"]) == 6 and figures["search_steps"] == 40
    assert data["workloads"]["mine"]["target"] == figures["target"]
    assert data["workloads"]["mine"]["budget_steps"] == figures["budget_steps"]
    reached = sorted(n for n in figures["best"]["steps_to_target"] if n is not None)
    assert len(reached) >= 4 and figures["budget_steps"] >= 1.5 * figures["slowest_steps"]  # room beyond the baselines
    assert figures["target"] - figures["level"] > 3 * figures["noise"]  # outside the noise
    assert data["workloads"]["mine"]["variant"] is None


BAD = [
    (["--suite", "smal"], "unknown suite 'smal'"),
    (["--workloads", "linreg,no-such-workload"], "no-such-workload"),
    (["--suite", "SUITE_NO_TARGET"], "no target given"),
    (["--suite", "SUITE_NO_BUDGET"], "no budget_steps given"),
    (["--trials", "0", "--ruleset", "external"], "invalid trials=0"),
    (["--studies", "0"], "invalid studies=0"),
    (["--seeds", "0"], "invalid seeds=0"),
    (["--seeds", "11"], "invalid seeds=11: expected at most 10"),
    (["--seeds", "many"], "invalid seeds 'many'"),
    (["--ruleset", "external", "--studies", "2"], "invalid studies=2 with seeds=auto"),
    (["--ruleset", "mine"], "invalid ruleset 'mine'"),
    (["--time", "hours"], "invalid time 'hours'"),
    (["--trials", "3"], "trials are for --ruleset external"),
    (["--optimizers", "adamm"], "adamm"),
    (["--suite", "SUITE_BAD_VARIANT"], "variant: unknown key(s) ['width']"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_and_exit_2_with_nothing_run(tmp_path, capsys, extra, message):
    files = {
        "SUITE_NO_TARGET": "workloads:\n  - workload: linreg\n    budget_steps: 10\n",
        "SUITE_NO_BUDGET": "workloads:\n  - workload: linreg\n    target: 0.5\n",
        "SUITE_BAD_VARIANT": "workloads:\n  - workload: linreg\n    target: 0.5\n    budget_steps: 10\n"
                             "    variant: {width: 3, target: 0.5, budget_steps: 10}\n",
    }
    extra = [str(suite(tmp_path, files[a], f"{a}.yaml")) if a in files else a for a in extra]
    out = tmp_path / "out"
    assert main(["benchmark", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not out.exists()


def test_the_command_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "descentlab", "benchmark", "--suite", "smal", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("descentlab: error: unknown suite 'smal'; did you mean 'small'? "
                                   "(available: small, full, families, or a suite file FILE.yaml)"), done.stderr
    assert not (tmp_path / "out").exists()


def test_the_same_name_with_other_settings_is_refused_and_changes_nothing(reference, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = (out / "runs.sqlite").read_bytes()
    done = subprocess.run([sys.executable, "-m", "descentlab", *args(tmp_path, out, "--jobs", "1")[:-4],
                           "--seeds", "3", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "was started with seeds 2, not 3" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (out / "runs.sqlite").read_bytes() == before
    assert (out / "benchmark.json").exists()


def test_postgresql_and_a_worker_finish_a_benchmark_with_the_steps_of_one_process(reference, postgres, tmp_path,
                                                                                 capsys):
    url, name = postgres, "pg-bench"
    argv = [*args(tmp_path, tmp_path / "out", "--jobs", "1"), "--storage", url, "--name", name]
    coordinator = cli(*argv)
    deadline = time.time() + 120
    while True:  # every run queued: the coordinator is then killed, and a worker runs them all
        assert coordinator.poll() is None, coordinator.stderr.read()
        assert time.time() < deadline, "the benchmark did not start"
        try:
            if query(url, f"SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                     f"WHERE s.study_name = '{name}'") == [(16,)]:
                break
        except Exception:  # noqa: BLE001 - the tables are not made yet
            pass
        time.sleep(0.05)
    os.kill(coordinator.pid, signal.SIGKILL)
    coordinator.communicate()
    worker = subprocess.run([sys.executable, "-m", "descentlab", "worker", "--storage", url, "--study", name,
                             "--jobs", "2", "--out", str(tmp_path / "elsewhere")],
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    assert f"joined benchmark {name}" in worker.stderr
    states = query(url, f"SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                   f"WHERE s.study_name = '{name}' AND t.state = 'COMPLETE'")
    assert len(states) == 16
    capsys.readouterr()
    assert main(argv) == 0  # the same command again, here (one process fewer): it writes the report
    err = capsys.readouterr().err
    assert "16 already done" in err, err
    assert steps_of(tmp_path / "out") == steps_of(reference)
    assert query(url, f"SELECT COUNT(*), COUNT(DISTINCT name) FROM runs WHERE study = '{name}'") == [(16, 16)]


def test_the_report_in_chromium_shows_every_plot_and_the_leaderboard(external, chromium, tmp_path):
    import html
    import re

    from tests.report.test_browser import PROBE, _browse

    found = chromium
    page = (external / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _browse(found, tmp_path, "--dump-dom", "--virtual-time-budget=10000", "--window-size=1300,8000",
                   probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    seen = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert seen, "the probe did not run: " + done.stdout[-500:]
    seen = json.loads(html.unescape(seen.group(1)))
    images = seen["images"]
    assert [i["alt"] for i in images] == ["performance profiles", "tunability curves", "validation curves"]
    for img in images:
        nw, nh = img["natural"]
        assert img["complete"] and nw > 500 and nh > 300, f"{img['alt']}: not loaded ({nw}x{nh})"
        assert img["shown"] and img["onTop"], f"{img['alt']}: hidden or covered"
        x, _, w, _ = img["box"]
        assert 0 <= x and x + w <= seen["width"] + 0.5, f"{img['alt']}: wider than the page"
    # the leaderboard lists both strategies, ranked, the leader marked
    dom = done.stdout
    board = dom[dom.index("<h2>Leaderboard</h2>"):dom.index("<h2>Performance profiles</h2>")]
    labels = re.findall(r'<td class="label"><svg.*?</svg>([^<]+)</td>', board)
    assert sorted(label.replace(" ★", "").replace(" =", "") for label in labels) == ["adam", "sgd"]
    assert "★" in labels[0]
    shot = tmp_path / "bench.png"
    done = _browse(found, tmp_path, f"--screenshot={shot}", f"--window-size=1300,{seen['height']}", external.joinpath(
        "report.html").as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    import numpy as np
    from matplotlib.image import imread

    pixels = (imread(shot)[..., :3] * 255).astype(np.uint8)
    for img in images:
        x, y, w, h = (int(round(v)) for v in img["box"])
        crop = pixels[y + 2: y + h - 2, x + 2: x + w - 2]
        assert len(np.unique(crop.reshape(-1, 3), axis=0)) > 100, f"{img['alt']}: blank?"
