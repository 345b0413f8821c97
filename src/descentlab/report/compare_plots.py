"""Plots of a comparison: one line per strategy, the mean over its seeds.

Each strategy is drawn as the mean over its finished seeds with a shaded band
from the seeds' minimum to their maximum. Curves are aligned by optimizer step;
against training seconds, a point's x is the seeds' mean training time at that
step. Long per-step series (the training loss, the learning rate) are averaged
into at most ``max_points`` bins of consecutive steps, which also smooths the
mini-batch noise. A diverged seed is drawn on its own, dashed, up to its last
finite value, and marked there with ✕.

Readable from 1 to 20+ strategies — the decisions, and why:

* A strategy keeps its :class:`Style` in every plot and in the HTML table: a
  colour of matplotlib's qualitative ``tab10`` palette and, once the ten colours
  repeat, a marker along the line (strategies 11-20 get circles, 21-30
  squares, ...), so no two strategies share colour and marker. Line styles are
  not used for this, because a dashed line already means a diverged seed; more
  than ten colours are not used, because beyond about ten a reader can no
  longer tell hues apart (tab20's light halves are pale twins of the dark ones).
* The legend sits below the axes (one shared legend under both diagnostics
  panels), in as many columns as fit the figure's width; the figure grows by
  its rows, so the data area keeps its size and no legend covers a curve.
* The time axis starts at 0 and ends at the slowest strategy of the bulk: a
  strategy whose training ends after twice the median end time is an outlier
  and runs off the right edge, marked ▶ there, with its end time in the axis
  label and in :attr:`Plot.note` (the report's caption). Not a log time axis:
  it cannot start at 0, and it squeezes the late part of training, where
  strategies part, into a corner. Not a fixed quantile of the end times: with
  seven strategies a 90% quantile would always cut the slowest one, however
  close it is. Twice the median cuts nothing with two strategies, and
  the slower half of the strategies spans at least half the width (the axis
  ends before 2.04× the median end); every curve is complete against steps.

Input runs are ``RunStore.runs()`` dicts with a ``curves`` entry added by
:func:`attach_curves`: ``{key: (steps, values, seconds)}``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .aggregate import fmt_seconds
from .plots import (  # noqa: F401  (Style, strategy_styles, MARKERS, TAB10: part of this module's API too)
    MARKERS,
    TAB10,
    Style,
    _pyplot,
    as_styles,
    legend_below,
    strategy_styles,
)

CURVE_KEYS = ("train_loss", "lr", "val_loss", "grad_norm", "update_ratio")
TIME_OUTLIER = 2.0  # a strategy ending after this many times the median end time runs off the time axis


@dataclass(frozen=True)
class Plot:
    name: str  # file stem
    title: str
    path: Path
    note: str = ""  # for the caption: what the image does not show (strategies past a time axis's edge)


def attach_curves(store: Any, runs: Iterable[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Add ``run["curves"]`` (every key of :data:`CURVE_KEYS` and ``val_<metric>`` it has)."""
    out = []
    for run in runs:
        keys = set(store.keys(run["id"]))
        run = dict(run)
        run["curves"] = {k: store.metric(run["id"], k) for k in (*CURVE_KEYS, f"val_{metric}") if k in keys}
        out.append(run)
    return out


def strategy_colors(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour per strategy (``tab10``; repeated past ten — :func:`strategy_styles` adds the marker)."""
    return {label: style.color for label, style in strategy_styles(labels).items()}


def time_axis_limit(ends: Sequence[float]) -> tuple[float, list[int]]:
    """The right end of a time axis and the indices of the ``ends`` that run past it.

    Ends after ``TIME_OUTLIER`` × their median are outliers; the axis ends at the
    latest of the others, plus 2%.
    """
    vals = np.asarray([e for e in ends if math.isfinite(e)], dtype=float)
    if vals.size == 0:
        return 1.0, []
    cap = TIME_OUTLIER * float(np.median(vals))
    kept = vals[vals <= cap]
    right = float(kept.max()) * 1.02 if kept.size and kept.max() > 0 else float(vals.max()) * 1.02 or 1.0
    return right, [i for i, e in enumerate(ends) if math.isfinite(e) and e > right]


def mpl_text(label: str) -> str:
    """A user's label as literal matplotlib text: no mathtext, not hidden from the legend."""
    label = str(label).replace("$", r"\$")
    return " " + label if label.startswith("_") else label


def _label(run: Mapping[str, Any]) -> str:
    return str((run.get("config") or {}).get("strategy", run.get("name", "")))


def _diverged(run: Mapping[str, Any]) -> bool:
    return run.get("status") == "diverged"


def _arrays(curve: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps, values, seconds = curve
    as_float = lambda xs: np.array([math.nan if v is None else float(v) for v in xs], dtype=float)  # noqa: E731
    return np.asarray(steps, dtype=float), as_float(values), as_float(seconds)


def binned(curves: Sequence[Sequence[Sequence[Any]]], max_points: int = 300) -> dict[str, np.ndarray]:
    """Seeds' curves on one step grid: mean / min / max value, mean step and seconds.

    The grid is every step any seed logged, or — past ``max_points`` steps —
    ``max_points`` bins of consecutive steps, each seed averaged within a bin.
    Returns arrays ``step, seconds, mean, low, high``; bins without a finite
    value anywhere are dropped.
    """
    data = [_arrays(c) for c in curves if len(c[0])]
    if not data:
        return {k: np.array([]) for k in ("step", "seconds", "mean", "low", "high")}
    all_steps = np.unique(np.concatenate([d[0] for d in data]))
    lo, hi = all_steps[0], all_steps[-1]
    if len(all_steps) <= max_points:
        nbins = len(all_steps)
        index = lambda s: np.searchsorted(all_steps, s)  # noqa: E731
    else:
        nbins = max_points
        index = lambda s: np.minimum(((s - lo) * nbins // (hi - lo + 1)).astype(int), nbins - 1)  # noqa: E731
    shape = (len(data), nbins)
    value, step, secs = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for i, (s, v, t) in enumerate(data):
        idx = index(s)
        ok = np.isfinite(v)
        count = np.bincount(idx[ok], minlength=nbins)
        with np.errstate(invalid="ignore", divide="ignore"):
            value[i] = np.bincount(idx[ok], weights=v[ok], minlength=nbins) / count
            step[i] = np.bincount(idx[ok], weights=s[ok], minlength=nbins) / count
            tok = ok & np.isfinite(t)
            secs[i] = np.bincount(idx[tok], weights=t[tok], minlength=nbins) / np.bincount(idx[tok], minlength=nbins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        out = {
            "step": np.nanmean(step, axis=0),
            "seconds": np.nanmean(secs, axis=0),
            "mean": np.nanmean(value, axis=0),
            "low": np.nanmin(value, axis=0),
            "high": np.nanmax(value, axis=0),
        }
    keep = np.isfinite(out["mean"])
    return {k: v[keep] for k, v in out.items()}


def _last(curve: Sequence[Sequence[Any]], x: str) -> float:
    """The step or seconds of a run's last finite value of a curve (NaN if it has none)."""
    steps, values, seconds = _arrays(curve)
    xs = (steps if x == "step" else seconds)[np.isfinite(values)]
    xs = xs[np.isfinite(xs)]
    return float(xs[-1]) if xs.size else math.nan


def _y_limits(values: list[np.ndarray], extra: list[np.ndarray], log: bool) -> tuple[float, float] | None:
    """Y range of the finished seeds, widened for diverged seeds only while they stay near it."""
    base = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if log:
        base = base[base > 0]
    if base.size == 0:
        return None
    lo, hi = float(base.min()), float(base.max())
    for v in extra:
        v = v[np.isfinite(v) & ((v > 0) if log else True)]
        if v.size == 0:
            continue
        if log:
            lo = min(lo, max(float(v.min()), lo / 10))
            hi = max(hi, min(float(v.max()), hi * 10))
        else:
            span = max(hi - lo, abs(hi) * 1e-3, 1e-12)
            lo = min(lo, max(float(v.min()), lo - span))
            hi = max(hi, min(float(v.max()), hi + span))
    if log:
        return lo / 1.3, hi * 1.3
    span = hi - lo
    pad = span * 0.05 if span > abs(hi) * 1e-6 else (abs(hi) * 0.1 or 0.1)  # a flat line gets room
    return lo - pad, hi + pad


def _draw(
    ax: Any,
    runs: Sequence[Mapping[str, Any]],
    key: str,
    styles: Mapping[str, Style | str],
    *,
    x: str = "step",
    log: bool | None = None,
    max_points: int = 300,
) -> list[str] | None:
    """One panel: ``key`` against ``x`` ("step" or "seconds"), without a legend.

    Returns None if no run has ``key``, else the notes for the caption: the
    strategies that run off the right edge of a time axis, with their end times.
    """
    styles = as_styles(styles)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        if key in (run.get("curves") or {}):
            groups.setdefault(_label(run), []).append(run)
    if not groups:
        return None
    n = len(styles)
    finished_vals, diverged_vals, markers, ends = [], [], [], {}
    positive = True
    for label, style in styles.items():
        group = groups.get(label)
        if not group:
            continue
        kw = style.line(n)
        ok = [r for r in group if not _diverged(r)]
        bad = [r for r in group if _diverged(r)]
        name = mpl_text(label) + (f" ({len(bad)} of {len(group)} diverged)" if bad else "")
        band = binned([r["curves"][key] for r in ok], max_points)
        drawn = []
        if band["mean"].size:
            xs = band[x]
            ax.plot(xs, band["mean"], label=name, **kw)
            if len(ok) > 1:
                ax.fill_between(xs, band["low"], band["high"], color=style.color, alpha=0.18 if n <= 6 else 0.1, lw=0)
            finished_vals += [band["low"], band["high"]]
            positive &= bool(np.all(band["low"] > 0))
            drawn.append((float(np.mean([_last(r["curves"][key], x) for r in ok])), xs, band["mean"]))
            name = None  # legend entry taken
        for run in bad:
            line = binned([run["curves"][key]], max_points)
            if not line["mean"].size:
                continue
            ax.plot(line[x], line["mean"], label=name, **{**kw, "lw": 1.2, "ls": "--"})
            name = None
            diverged_vals.append(line["mean"])
            positive &= bool(np.all(line["mean"] > 0))
            markers.append((line[x][-1], line["mean"][-1], style.color))
            drawn.append((_last(run["curves"][key], x), line[x], line["mean"]))
        drawn = [(end, xs[np.isfinite(xs)], ys[np.isfinite(xs)]) for end, xs, ys in drawn if math.isfinite(end)]
        if drawn:  # the run's own end (a binned curve's last point is a bin's mean), and the line to find y at the edge
            ends[label] = max(drawn, key=lambda t: t[0])
    log = positive if log is None else log  # forced log scale hides values <= 0
    if log:
        ax.set_yscale("log", nonpositive="mask")
    limits = _y_limits(finished_vals, diverged_vals, log) if finished_vals else None
    if limits is not None:
        ax.set_ylim(*limits)
    for mx, my, color in markers:
        if limits is not None:
            my = min(max(my, limits[0]), limits[1])  # off-scale divergence: mark it at the edge
        ax.plot([mx], [my], marker="X", ms=10, color=color, mec="black", mew=0.8, clip_on=False, zorder=5)
    ax.grid(alpha=0.3, which="major")
    if log:
        ax.grid(alpha=0.1, which="minor")
    notes: list[str] = []
    labels = list(ends)
    if x == "seconds":
        right, cut = time_axis_limit([ends[k][0] for k in labels])
        for i in cut:
            _, xs, ys = ends[labels[i]]
            y = float(np.interp(right, xs, ys))
            if limits is not None:
                y = min(max(y, limits[0]), limits[1])
            ax.plot([right], [y], marker=">", ms=7, color=styles[labels[i]].color, mec="black", mew=0.5, clip_on=False, zorder=5)
        notes = [f"{labels[i]} (ends at {fmt_seconds(ends[labels[i]][0])})" for i in sorted(cut, key=lambda i: ends[labels[i]][0])]
        xlabel = "training seconds (mean over seeds)"
        if notes:
            shown = ", ".join(mpl_text(t) for t in notes[:3]) + (f" and {len(notes) - 3} more" if len(notes) > 3 else "")
            xlabel += f"\n▶ runs on past the edge: {shown}"
    else:
        right = max((ends[k][0] for k in labels), default=1.0) * 1.02 or 1.0
        xlabel = "optimizer step"
    ax.set_xlim(0, right)  # every strategy's time and step count start at 0
    ax.set_xlabel(xlabel)
    return notes


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def curve_figure(
    runs: Sequence[Mapping[str, Any]],
    key: str,
    colors: Mapping[str, Style | str],
    *,
    x: str = "step",
    title: str = "",
    ylabel: str = "",
    log: bool | None = None,
    target: float | None = None,
    floor: float | None = None,
    max_points: int = 300,
) -> tuple[Any, list[str]] | None:
    """The figure of :func:`plot_curve`, not yet saved, and its caption notes; None when no run logged ``key``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.9), dpi=125, layout="constrained")
    notes = _draw(ax, runs, key, colors, x=x, log=log, max_points=max_points)
    if notes is None:
        plt.close(fig)
        return None
    if floor is not None and ax.get_ylim()[0] < floor:
        ax.set_ylim(bottom=floor)  # e.g. a cosine's last steps near 0 would stretch a log axis over decades
    if target is not None:
        ax.axhline(target, color="#444444", ls=":", lw=1.2, label=f"target {target:g}")
    ax.set_title(title, fontsize=10.5, pad=10)  # room for a ✕ clamped to the top edge
    ax.set_ylabel(ylabel)
    legend_below(fig, [ax], 3.9 + (0.25 if notes else 0))  # a second line under the time axis
    return fig, notes


def plot_curve(
    runs: Sequence[Mapping[str, Any]],
    key: str,
    path: str | Path,
    colors: Mapping[str, Style | str],
    *,
    notes: list[str] | None = None,
    **options: Any,
) -> Path | None:
    """``key`` against steps or training seconds, one line per strategy; None when no run logged it.

    ``colors`` maps each strategy to its :class:`Style` (or a plain colour);
    ``options`` are :func:`curve_figure`'s (``x``, ``title``, ``ylabel``, ``log``,
    ``target``, ``floor``, ``max_points``). The strategies cut off a time axis
    are appended to ``notes`` when it is given.
    """
    built = curve_figure(runs, key, colors, **options)
    if built is None:
        return None
    fig, cut = built
    if notes is not None:
        notes += cut
    return _save(fig, Path(path))


def diagnostics_figure(runs: Sequence[Mapping[str, Any]], colors: Mapping[str, Style | str]) -> Any | None:
    """The figure of :func:`plot_diagnostics`, not yet saved; None when neither series was logged."""
    plt = _pyplot()
    present = [k for k in ("grad_norm", "update_ratio") if any(k in (r.get("curves") or {}) for r in runs)]
    if not present:
        return None
    fig, axes = plt.subplots(
        1, len(present), figsize=(6.4 if len(present) == 1 else 12, 3.9), dpi=125, squeeze=False, layout="constrained"
    )
    titles = {"grad_norm": "gradient norm ‖g‖", "update_ratio": "update ratio ‖Δθ‖ / ‖θ‖"}
    for ax, key in zip(axes[0], present):
        _draw(ax, runs, key, colors, log=True, max_points=200)
        ax.set_title(titles[key], fontsize=10, pad=10)
    legend_below(fig, list(axes[0]), 3.9)  # one legend for both panels: the strategies are the same
    return fig


def plot_diagnostics(runs: Sequence[Mapping[str, Any]], path: str | Path, colors: Mapping[str, Style | str]) -> Path | None:
    """Gradient norm and update/parameter ratio side by side; None when neither was logged."""
    fig = diagnostics_figure(runs, colors)
    return None if fig is None else _save(fig, Path(path))


def plot_compare(
    runs: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    metric: str,
    target: float | None = None,
    colors: Mapping[str, Style | str] | None = None,
) -> list[Plot]:
    """Every comparison plot that the runs have data for, as PNG files in ``out_dir``.

    Files: ``val_<metric>_vs_steps.png``, ``val_<metric>_vs_seconds.png``,
    ``train_loss_vs_steps.png``, ``train_loss_vs_seconds.png``,
    ``val_loss_vs_steps.png``, ``lr.png``, ``diagnostics.png``. ``colors``
    maps each strategy to its :class:`Style` (or a plain colour); by default
    :func:`strategy_styles` of the runs' strategies in order.
    """
    out_dir = Path(out_dir)
    if colors is None:
        colors = strategy_styles(list(dict.fromkeys(_label(r) for r in runs)))
    vm = f"val_{metric}"
    stem = "val_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", metric).strip("_") or "metric")  # the metric name is data, not a path
    shown = mpl_text(metric)
    # learning rates a decade or more apart (adam's 1e-3 beside sgd's 0.1) need a log axis
    peaks = [max((v for v in r["curves"]["lr"][1] if v), default=0.0) for r in runs if "lr" in (r.get("curves") or {})]
    peaks = [p for p in peaks if p > 0]
    lr_log = bool(peaks) and max(peaks) / min(peaks) >= 10
    lr_floor = min(peaks) / 100 if lr_log else None
    specs = [  # file stem, metric key, x, title, y label, log scale (None: if positive), target, floor
        (f"{stem}_vs_steps", vm, "step", f"validation {shown} vs steps", shown, False, target, None),
        (f"{stem}_vs_seconds", vm, "seconds", f"validation {shown} vs training time", shown, False, target, None),
        ("train_loss_vs_steps", "train_loss", "step", "training loss vs steps (binned mean)", "training loss", None, None, None),
        ("train_loss_vs_seconds", "train_loss", "seconds", "training loss vs training time (binned mean)", "training loss", None, None, None),
        ("val_loss_vs_steps", "val_loss", "step", "validation loss vs steps", "validation loss", None, None, None),
        ("lr", "lr", "step", "learning rate", "learning rate", lr_log, None, lr_floor),
    ]
    plots = []
    for name, key, x, title, ylabel, log, tgt, floor in specs:
        cut: list[str] = []
        path = plot_curve(
            runs, key, out_dir / f"{name}.png", colors, x=x, title=title, ylabel=ylabel, log=log, target=tgt,
            floor=floor, notes=cut,
        )
        if path is not None:
            note = f"Past the right edge (more than {TIME_OUTLIER:g}× the median training time): {', '.join(cut)}." if cut else ""
            plots.append(Plot(name, title, path, note))
    path = plot_diagnostics(runs, out_dir / "diagnostics.png", colors)
    if path is not None:
        plots.append(Plot("diagnostics", "diagnostics: gradient norm and update ratio", path))
    return plots
