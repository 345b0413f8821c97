"""``report.html`` of ``descentlab prune``: the dense and the pruned model side by
side, and accuracy against sparsity with latency and size beside it.

One self-contained page in the house style (:func:`descentlab.report.html.page_head`,
the plots inlined as PNG), every value from ``summary.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..report.html import e, page_head, write_page

EXTRA_CSS = "tr.chosen td { font-weight: 600; background: #eef6ff; }\n"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return e(value)


def curve_png(summary: dict[str, Any]) -> str:
    from ..report.plots import _pyplot, png_data_uri

    plt = _pyplot()
    key = f"test_{summary['metric']}"
    pts = sorted(summary["curve"], key=lambda p: p["sparsity"])
    xs = [100 * p["sparsity"] for p in pts]
    dense = summary["dense"]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9))
    ax = axes[0]
    ax.plot(xs, [p[key] for p in pts], "o-", color="#1f77b4", label="pruned, fine-tuned")
    ax.axhline(dense[key], color="#555", ls="--", lw=1, label="dense (recipe)")
    if summary["metric"] == "accuracy":
        ax.axhspan(dense[key] - 0.01, dense[key], color="#2ca02c", alpha=0.12, label="within 1 point")
    ax.set_ylabel(key.replace("_", " "))
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[1]
    ax.plot(xs, [p["latency_ms_p50"] / dense["latency_ms_p50"] for p in pts], "o-", color="#ff7f0e",
            label=f"batch 1 (dense {dense['latency_ms_p50']:.3g} ms)")
    ax.plot(xs, [p["latency_ms_p50_batch"] / dense["latency_ms_p50_batch"] for p in pts], "s-", color="#9467bd",
            label=f"batch {summary['batch_size']} (dense {dense['latency_ms_p50_batch']:.3g} ms)")
    ax.axhline(1.0, color="#555", ls="--", lw=1)
    ax.set_ylabel("CPU latency p50 / dense (1 thread)")
    ratios = [p[k] / dense[k] for p in pts for k in ("latency_ms_p50", "latency_ms_p50_batch")]
    ax.set_ylim(0, max(1.1, 1.08 * max(ratios)))
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[2]
    ax.plot(xs, [p["bytes"] / 1024 for p in pts], "o-", color="#2ca02c", label="file (KiB)")
    ax.plot(xs, [p["nonzero_parameters"] / 1000 for p in pts], "^-", color="#d62728", label="nonzero parameters (k)")
    ax.axhline(dense["bytes"] / 1024, color="#2ca02c", ls="--", lw=1)
    ax.set_ylabel("size")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    what = "channels removed" if summary["structured"] else "weights pruned"
    for ax in axes:
        ax.set_xlabel(f"sparsity (% {what})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_data_uri(fig)


ROWS = (
    ("test_{metric}", "test {metric}"), ("parameters", "parameters"), ("nonzero_parameters", "nonzero parameters"),
    ("bytes", "bytes on disk"), ("flops", "FLOPs per sample"), ("latency_ms_p50", "latency p50, batch 1 (ms)"),
    ("latency_ms_p95", "latency p95, batch 1 (ms)"), ("latency_ms_p50_batch", "latency p50, batch {batch} (ms)"),
    ("latency_ms_p95_batch", "latency p95, batch {batch} (ms)"),
)


def _side_by_side(summary: dict[str, Any]) -> str:
    d, p = summary["dense"], summary["pruned"]
    rows = []
    for key, label in ROWS:
        key = key.format(metric=summary["metric"])
        label = label.format(metric=summary["metric"], batch=summary["batch_size"])
        ratio = p[key] / d[key] if isinstance(d.get(key), (int, float)) and d[key] else None
        rows.append(f"<tr><td>{e(label)}</td><td class=\"num\">{_fmt(d[key])}</td><td class=\"num\">{_fmt(p[key])}</td>"
                    f"<td class=\"num\">{'–' if ratio is None else f'{ratio:.3f}×'}</td></tr>")
    return ('<table><thead><tr><th></th><th class="num">dense</th><th class="num">pruned</th>'
            f'<th class="num">pruned / dense</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _curve_table(summary: dict[str, Any]) -> str:
    key = f"test_{summary['metric']}"
    rows = []
    for pt in sorted(summary["curve"], key=lambda p: p["sparsity"]):
        cls = ' class="chosen"' if pt["sparsity"] == summary["sparsity"] else ""
        rows.append(f"<tr{cls}><td class=\"num\">{100 * pt['sparsity']:.0f} %</td>"
                    f"<td class=\"num\">{100 * pt['sparsity_measured']:.1f} %</td><td class=\"num\">{_fmt(pt[key])}</td>"
                    f"<td class=\"num\">{_fmt(pt['parameters'])}</td><td class=\"num\">{_fmt(pt['nonzero_parameters'])}</td>"
                    f"<td class=\"num\">{_fmt(pt['bytes'])}</td><td class=\"num\">{_fmt(pt['latency_ms_p50'])}</td>"
                    f"<td class=\"num\">{_fmt(pt['latency_ms_p50_batch'])}</td></tr>")
    return (f'<table><thead><tr><th class="num">target</th><th class="num">measured</th><th class="num">{e(key)}</th>'
            '<th class="num">parameters</th><th class="num">nonzero</th><th class="num">bytes</th>'
            f'<th class="num">p50 batch 1 (ms)</th><th class="num">p50 batch {summary["batch_size"]} (ms)</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def _verdict(summary: dict[str, Any]) -> str:
    key = f"test_{summary['metric']}"
    d, p = summary["dense"], summary["pruned"]
    delta = p[key] - d[key]
    if summary["metric"] == "accuracy":
        change = f"{100 * delta:+.2f} points of test accuracy"
    else:
        change = f"{delta:+.4g} {e(key)}"
    what = (f"{100 * summary['sparsity']:.0f} % of the channels and neurons removed" if summary["structured"]
            else f"{100 * p['sparsity_measured']:.1f} % of the weights zero ({e(summary['scope'])} magnitude)")
    return (f'<p class="verdict">{what}: {change}, {p["parameters"] / d["parameters"]:.3f}× the parameters, '
            f'{p["nonzero_parameters"] / d["nonzero_parameters"]:.3f}× the nonzero ones, '
            f'{p["bytes"] / d["bytes"]:.3f}× the bytes, latency p50 {p["latency_ms_p50"] / d["latency_ms_p50"]:.3f}× '
            f'at batch 1 and {p["latency_ms_p50_batch"] / d["latency_ms_p50_batch"]:.3f}× at batch '
            f'{summary["batch_size"]}.</p>')


def build_html(summary: dict[str, Any]) -> str:
    kind = "structured (channels)" if summary["structured"] else "unstructured (weights)"
    title = f"Pruning {summary['workload']}: {kind}"
    meta = (f"seed <b>{summary['seed']}</b> · dense model: the recipe, <b>{summary['dense_steps']}</b> steps · "
            f"each pruned model: <b>{summary['finetune_steps']}</b> fine-tuning steps from it, pruned over the first "
            f"3/4{' with distillation from the dense model' if summary.get('distill') else ''} · latency: "
            f"{summary['latency']['runs']} runs per model and batch size, {summary['latency']['threads']} thread, "
            f"{e(summary['latency']['timing'])}")
    flops_note = ("" if summary["structured"] else
                  "<p class=\"small\">FLOPs count dense kernels, as torch runs them: a zero weight still costs its "
                  "multiply-add, so unstructured pruning leaves FLOPs and latency as they were; the file is smaller "
                  "because mostly-zero weights are stored as their values and a bitmap.</p>")
    return f"""{page_head(title, EXTRA_CSS)}
<h1>{e(title)}</h1>
<p class="meta">{meta}</p>
{_verdict(summary)}

<h2 id="models">Dense and pruned</h2>
{_side_by_side(summary)}
{flops_note}

<h2 id="curve">Accuracy against sparsity</h2>
<figure class="wide"><img alt="accuracy, latency and size against sparsity" src="{curve_png(summary)}">
<figcaption>Every point is the dense model fine-tuned {summary['finetune_steps']} steps while pruned to that
sparsity (0: fine-tuned as long without pruning, the control). Dashed: the dense model.</figcaption></figure>
{_curve_table(summary)}

<footer>Generated by descentlab on {e(time.strftime("%Y-%m-%d %H:%M:%S"))} from summary.json.</footer>
</main>
</body>
</html>
"""


def render(out: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``out/report.html``."""
    return write_page(out, build_html(summary))
