"""Plots drawn with matplotlib's Agg backend (no display needed), and how labelled lines are told apart.

Many lines in one plot (a comparison of 20 strategies, say) stay readable with
:func:`strategy_styles` — ten qualitative colours, then a marker per round of
colours, pairwise distinct — and :func:`legend_below`, a legend under the axes
that never covers the data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_data_uri(fig: Any, dpi: int = 110) -> str:
    """A figure as an inline ``data:image/png;base64`` URI (the figure is closed)."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# markers for the 2nd, 3rd, ... round of colours; never "X"/"x", which mark a divergence
MARKERS = ("o", "s", "^", "D", "v", "P", "h", "<", ">", "*")


@dataclass(frozen=True)
class Style:
    """How one strategy is drawn: a colour and, once colours repeat, a marker along its line."""

    color: str
    marker: str | None = None
    index: int = 0  # position among the strategies: staggers the markers of lines that lie on top of each other

    def line(self, n_strategies: int = 1) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for this strategy's line."""
        kw: dict[str, Any] = {"color": self.color, "lw": 1.8 if n_strategies <= 10 else 1.4}
        if self.marker:
            # spacing and offset as fractions of the axes' diagonal: evenly spaced on screen, whatever the data
            kw.update(marker=self.marker, ms=4.5, mec="white", mew=0.5, markevery=(0.015 + 0.011 * (self.index % 7), 0.085))
        return kw


def strategy_styles(labels: Sequence[str]) -> dict[str, Style]:
    """A fixed :class:`Style` per strategy, pairwise distinct for any number of strategies.

    The i-th label gets ``tab10[i % 10]`` and no marker for i < 10, then
    ``MARKERS[i // 10 - 1]``; past 110 strategies the colours become evenly
    spaced hues, one per strategy.
    """
    n = len(labels)
    styles = {}
    for i, label in enumerate(labels):
        rnd = i // len(TAB10)
        if n <= len(TAB10) * (len(MARKERS) + 1):
            color, marker = TAB10[i % len(TAB10)], (MARKERS[rnd - 1] if rnd else None)
        else:
            from matplotlib.colors import hsv_to_rgb, to_hex

            color, marker = to_hex(hsv_to_rgb((i / n, 0.85, 0.8 if i % 2 else 0.6))), MARKERS[i % len(MARKERS)]
        styles[label] = Style(color, marker, i)
    return styles


def as_styles(styles: Mapping[str, Style | str]) -> dict[str, Style]:
    """``{label: Style}`` from styles or from plain colours (a colour alone: no marker)."""
    return {k: v if isinstance(v, Style) else Style(str(v), None, i) for i, (k, v) in enumerate(styles.items())}


def legend_below(fig: Any, axes: Sequence[Any], base_height: float) -> Any:
    """One legend under the axes, entries taken from all of them by label; grows the figure by its rows."""
    from matplotlib.lines import Line2D

    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if any(line.get_marker() == "X" for ax in axes for line in ax.lines):
        entries["diverged here"] = Line2D([], [], ls="none", marker="X", ms=9, color="#888888", mec="black", mew=0.8)
    if not entries:
        return None
    width = fig.get_figwidth()
    renderer = fig.canvas.get_renderer()
    ncol = min(len(entries), 8)  # the most columns that fit the figure's width, measured
    while True:
        rows = math.ceil(len(entries) / ncol)
        fig.set_size_inches(width, base_height + rows * 0.205 + 0.15)
        legend = fig.legend(
            list(entries.values()), list(entries), loc="outside lower center", ncol=ncol,
            fontsize=8.5, frameon=False, columnspacing=1.4, handlelength=2.6,
        )
        if ncol == 1 or legend.get_window_extent(renderer).width <= 0.97 * fig.bbox.width:
            return legend
        legend.remove()
        ncol -= 1


def plot_lr_curve(lrs: Sequence[float], path: str | Path, title: str = "") -> Path:
    """The learning rate against the optimizer step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.plot(range(len(lrs)), lrs, lw=1.6, color="#1f6feb")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_xlim(0, max(len(lrs) - 1, 1))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_lr_find(result: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """A range test: every sweep's smoothed loss (the first sweep's raw losses
    faint behind it) against the lr on a log axis, with the suggestion and the
    other rules' picks marked. ``result``: ``lr_find.json``'s content."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110, layout="constrained")
    sweeps = result.get("sweeps") or [{"lrs": result["lrs"], "losses": result["losses"]}]
    first = sweeps[0]
    if result.get("raw_losses"):
        ax.plot(result["lrs"], result["raw_losses"], lw=0.8, color="#1f6feb", alpha=0.25, label="loss (raw, sweep 1)")
    for i, sweep in enumerate(sweeps):
        ax.plot(sweep["lrs"], sweep["losses"], lw=1.7 if i == 0 else 1.0, color="#1f6feb",
                alpha=1.0 if i == 0 else 0.45, label="smoothed loss" if i == 0 else None)
    low = min(min(s["losses"]) for s in sweeps)
    start = first["losses"][0]
    ax.set_ylim(low - 0.1 * max(start - low, 1e-12), start + 0.6 * max(start - low, 1e-12))
    others = {k: v for k, v in (result.get("candidates") or {}).items() if k != result.get("rule") and v is not None and math.isfinite(v)}
    for k, (name, lr) in enumerate(others.items()):
        ax.axvline(lr, color=TAB10[(k + 1) % 10], lw=1.0, ls=":", label=f"{name}: {lr:.2g}")
    suggested = result["suggested_lr"]
    spread = (result.get("confidence") or {}).get("spread")
    label = f"suggested ({result.get('rule')}): {suggested:.3g}" + (f", spread ×{spread:.2g}" if spread else "")
    ax.axvline(suggested, color="#d62728", lw=2.0, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    legend_below(fig, [ax], 4.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
