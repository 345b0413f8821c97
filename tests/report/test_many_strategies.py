"""A 19-strategy comparison stays readable: distinct styles, legends off the data, a time axis for the bulk."""

from __future__ import annotations

import math
import re

import pytest

from descentlab.report import aggregate as agg
from descentlab.report import compare_plots, html
from descentlab.report.plots import _pyplot
from descentlab.store import RunStore

from .conftest import DIVERGING, MANY, SLOW, SLOW_SECONDS, make_compare_store

CURVES = [  # key, x: every curve figure of the report
    ("val_accuracy", "step"), ("val_accuracy", "seconds"), ("train_loss", "step"),
    ("train_loss", "seconds"), ("val_loss", "step"), ("lr", "step"),
]


@pytest.fixture(scope="module")
def styles():
    return compare_plots.strategy_styles(list(MANY))


@pytest.fixture(scope="module")
def figures(many_dir, styles):
    """Every figure of the 19-strategy report, drawn (not saved), with its caption notes."""
    store = RunStore(many_dir / "runs.sqlite")
    runs = compare_plots.attach_curves(store, agg.latest_runs(store.runs("compare")), "accuracy")
    figs = {}
    for key, x in CURVES:
        target = 0.9 if key == "val_accuracy" else None
        figs[key, x] = compare_plots.curve_figure(runs, key, styles, x=x, title=key, ylabel=key, target=target)
        assert figs[key, x] is not None, (key, x)
    figs["diagnostics"] = (compare_plots.diagnostics_figure(runs, styles), [])
    for fig, _ in figs.values():
        fig.canvas.draw()
    yield figs
    for fig, _ in figs.values():
        _pyplot().close(fig)


@pytest.mark.parametrize("n", [1, 7, 10, 11, 19, 25, 110, 111, 150])
def test_styles_are_pairwise_distinct(n):
    labels = [f"s{i}" for i in range(n)]
    styles = compare_plots.strategy_styles(labels)
    assert list(styles) == labels and compare_plots.strategy_styles(labels) == styles
    looks = [(s.color, s.marker) for s in styles.values()]
    assert len(set(looks)) == n, "two strategies are drawn alike"
    assert all(s.marker not in ("X", "x") for s in styles.values())  # ✕ means "diverged here"
    if n <= 10:
        assert all(s.marker is None for s in styles.values())  # few strategies: plain lines
        assert len({s.color for s in styles.values()}) == n
    swatches = {html.swatch(s) for s in styles.values()}
    assert len(swatches) == n, "two strategies share a swatch in the tables"


def test_drawn_lines_are_pairwise_distinct(figures, styles):
    for name, (fig, _) in figures.items():
        for ax in fig.axes:
            drawn = {}
            for line in ax.lines:
                label = line.get_label()
                if label.startswith("_") or label.startswith("target"):
                    continue
                drawn[label.split(" (")[0]] = (line.get_color(), line.get_marker())
            assert sorted(drawn) == sorted(MANY), name
            assert len(set(drawn.values())) == len(MANY), f"{name}: two strategies look the same"
            for label, (color, marker) in drawn.items():
                assert color == styles[label].color and marker in (styles[label].marker, "None"), (name, label)


def test_no_legend_covers_the_data(figures):
    for name, (fig, _) in figures.items():
        renderer = fig.canvas.get_renderer()
        assert all(ax.get_legend() is None for ax in fig.axes), f"{name}: a legend inside the axes"
        (legend,) = fig.legends
        texts = [t.get_text() for t in legend.get_texts()]
        assert {t.split(" (")[0] for t in texts} >= set(MANY), name
        assert f"{DIVERGING} (1 of 1 diverged)" in texts and "diverged here" in texts, name
        box = legend.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0, f"{name}: legend cut off"
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"{name}: the legend overlaps the data area"
            # nor the tick labels and axis labels (the time axis has a second line about the outlier)
            assert not box.overlaps(ax.get_tightbbox(renderer)), f"{name}: the legend overlaps the axis labels"
            height = ax.get_window_extent(renderer).height / fig.dpi
            assert height > 2.4, f"{name}: the data area shrank to {height:.2f} in"


def test_time_axis_shows_the_bulk_and_notes_the_outlier(figures):
    for key in ("val_accuracy", "train_loss"):
        fig, notes = figures[key, "seconds"]
        (ax,) = fig.axes
        left, right = ax.get_xlim()
        assert left == 0
        assert right < 3.0, f"{key}: the axis runs to {right:.1f} s for one outlier"
        ends = {}
        for line in ax.lines:
            label = line.get_label().split(" (")[0]
            if label in MANY:
                ends[label] = max(line.get_xdata())
        bulk = [end for label, end in ends.items() if label not in (SLOW, DIVERGING)]
        assert len(bulk) == 17 and min(bulk) > 0.7 * right, f"{key}: the bulk fills less than 70% of the width"
        assert ends[SLOW] > 10 * right  # drawn on, off the edge
        assert notes == [f"{SLOW} (ends at {agg.fmt_seconds(SLOW_SECONDS)})"]
        assert SLOW in ax.get_xlabel() and "60.0 s" in ax.get_xlabel()
        edge = [ln for ln in ax.lines if ln.get_marker() == ">" and list(ln.get_xdata()) == [right]]
        assert len(edge) == 1 and edge[0].get_color() == compare_plots.strategy_styles(list(MANY))[SLOW].color
    for name, (fig, _) in figures.items():
        assert all(ax.get_xlim()[0] == 0 for ax in fig.axes), f"{name}: the x axis does not start at 0"


@pytest.mark.parametrize(
    "ends, cut",
    [
        ([2.0] * 18 + [60.0], [18]),
        ([1.0, 60.0], []),  # two strategies have no bulk to favour
        ([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.9], []),  # the slowest of seven is no outlier (a 90% quantile would cut it)
        ([3.0, 1.0, 1.0, 9.0], [3]),
        ([0.0, 0.0, 0.0], []),
        ([math.nan, 1.0], []),
    ],
)
def test_time_axis_limit(ends, cut):
    right, got = compare_plots.time_axis_limit(ends)
    assert got == cut
    finite = [e for i, e in enumerate(ends) if math.isfinite(e) and i not in cut]
    assert right > 0 and all(e <= right for e in finite)
    if finite and max(finite) > 0:
        assert right == pytest.approx(1.02 * max(finite))


def test_report_of_19_one_seed_strategies(many_rendered):
    page = many_rendered.read_text(encoding="utf-8")
    summary = page.split('id="summary"')[1].split("</table>")[0]
    head, body = summary.split("<tbody>")
    assert head.count("one seed (n=1)") == 2 and "final, n=1" in head
    rows = re.findall(r"<tr>.*?</tr>", body, re.S)
    assert len(rows) == len(MANY)
    assert "±" not in body, "a spread of one seed is no spread"
    verdict = page.split('id="verdict"')[1].split("</ul>")[0]
    assert "±" not in verdict and "seed spread" not in verdict and "One seed per strategy (n=1)" in verdict
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)
    assert len(captions) == 7
    past = [c for c in captions if "Past the right edge" in c]
    assert len(past) == 2 and all(f"{SLOW} (ends at 60.0 s)" in c for c in past)
    # every strategy's swatch is its own
    swatches = [re.search(r"<svg .*?</svg>", row, re.S).group(0) for row in rows]
    assert len(set(swatches)) == len(MANY)


def test_a_lone_seed_beside_three_says_n1(tmp_path):
    strategies = {
        "three": ("adam", {"lr": 0.001}, [(0.95, 0.94, None, None, 0.001, "finished")] * 2
                  + [(0.97, 0.96, None, None, 0.001, "finished")]),
        "one": ("sgd", {"lr": 0.1}, [(0.90, 0.89, None, None, 0.001, "finished")]),
    }
    make_compare_store(tmp_path / "runs.sqlite", strategies, target=None, curves=False)
    page = html.render(tmp_path).read_text(encoding="utf-8")
    summary = page.split('id="summary"')[1].split("</table>")[0]
    head, body = summary.split("<tbody>")
    assert "n=1" not in head
    three, one = re.findall(r"<tr>.*?</tr>", body, re.S)
    assert "three" in three and three.count("±") == 3 and "n=1" not in three  # final, best, test
    assert "one" in one and "±" not in one and one.count("(n=1)") == 3
    verdict = page.split('id="verdict"')[1].split("</ul>")[0]
    assert "one (0.9 from 1 seed)" in verdict
