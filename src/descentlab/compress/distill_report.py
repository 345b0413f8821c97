"""``report.html`` of ``descentlab distill``: teacher, distilled student and scratch
student side by side, and the student's validation curve against scratch's.

One self-contained page in the house style (:func:`descentlab.report.html.page_head`,
the plot inlined as PNG), every value from ``summary.json``, HTML-escaped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..report.html import e, page_head, write_page

EXTRA_CSS = "tr.student td { font-weight: 600; background: #eef6ff; }\n"
COLORS = {"teacher": "#555555", "student": "#1f77b4", "scratch": "#ff7f0e"}


def curves_png(summary: dict[str, Any]) -> str:
    from ..report.plots import _pyplot, png_data_uri

    plt = _pyplot()
    metric = summary["metric"]
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    for name, label in (("student", "distilled student"), ("scratch", "student from scratch")):
        curve = summary[name].get("curve") or {}
        if curve.get("step"):
            ax.plot(curve["step"], curve[f"val_{metric}"], "o-", ms=3, lw=1.6, color=COLORS[name],
                    label=f"{label} ({summary[name]['arch']})")
    teacher = summary["teacher"].get("curve") or {}
    if teacher.get(f"val_{metric}"):
        ax.axhline(teacher[f"val_{metric}"][-1], color=COLORS["teacher"], ls="--", lw=1,
                   label=f"teacher ({summary['teacher']['arch']}), final")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"validation {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if summary.get("metric_mode", "max") == "max" else "upper right")
    fig.tight_layout()
    return png_data_uri(fig)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return e(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return e(value)


def _table(summary: dict[str, Any]) -> str:
    key = f"test_{summary['metric']}"
    loss_column = key != "test_loss"  # a metric that is the loss is shown once
    teacher = summary["teacher"]
    rows = []
    for name, what in (("teacher", "teacher"), ("student", "student, distilled"), ("scratch", "student, from scratch")):
        r = summary[name]
        share = r["parameters"] / teacher["parameters"] if teacher["parameters"] else None
        steps = r.get("steps", summary["steps"])
        loss = f'<td class="num">{_fmt(r["test_loss"])}</td>' if loss_column else ""
        rows.append(
            f'<tr class="{name}"><td class="label">{e(what)}</td><td><code>{e(r["arch"])}</code></td>'
            f'<td class="num">{_fmt(r["parameters"])}</td>'
            f'<td class="num">{"–" if share is None else f"{share:.3f}×"}</td>'
            f'<td class="num">{_fmt(steps)}</td><td class="num">{_fmt(r[key])}</td>{loss}</tr>')
    loss_head = '<th class="num">test loss</th>' if loss_column else ""
    return ('<table id="models"><thead><tr><th>model</th><th>architecture</th><th class="num">parameters</th>'
            f'<th class="num">of the teacher\'s</th><th class="num">steps</th><th class="num">{e(key.replace("_", " "))}</th>'
            f'{loss_head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _verdict(summary: dict[str, Any]) -> str:
    key = f"test_{summary['metric']}"
    margin = summary["margin"]
    higher = summary.get("metric_mode", "max") == "max"
    if summary["metric"] == "accuracy":
        said = f"{100 * margin:+.2f} points of test accuracy"
        gap = 100 * (summary["teacher"][key] - summary["student"][key])
        gap_said = f"{gap:.2f} points below the teacher"
    else:
        said = f"{margin:+.4g} {e(key)} ({'higher' if higher else 'lower'} is better)"
        gap_said = f"{summary['student'][key] - summary['teacher'][key]:+.4g} {e(key)} from the teacher"
    better = "beats" if (margin > 0 if higher else margin < 0) else "does not beat"
    return (f'<p class="verdict">The distilled student {better} the same student trained from scratch: {said} '
            f'(seed {summary["seed"]}); it is {gap_said}, with '
            f'{summary["student"]["parameters"] / summary["teacher"]["parameters"]:.3f}× its parameters.</p>')


def _formula(summary: dict[str, Any]) -> str:
    if summary.get("per") == "token":
        where = ("position i predicting token i + 1 (the labels shifted, as a causal LM's)" if summary.get("shift")
                 else "position i predicting label i")
        return ("alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) at every token with a target, averaged "
                f"over those tokens, + (1 − alpha) · the token cross entropy with the labels, {where}; labels -100 "
                "have no target")
    return ("alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch, "
            "+ (1 − alpha) · cross entropy with the labels")


def build_html(summary: dict[str, Any]) -> str:
    title = f"Distillation on {summary['workload']}"
    meta = (f"seed <b>{e(summary['seed'])}</b> · temperature <b>{summary['temperature']:g}</b> · "
            f"alpha <b>{summary['alpha']:g}</b> (weight of the soft targets) · student and scratch: "
            f"<b>{e(summary['steps'])}</b> steps of {e(summary.get('optimizer'))}, batch {e(summary.get('batch_size'))}, "
            f"the same initialisation · teacher logits {'cached' if summary.get('cached') else 'computed per batch'}")
    return f"""{page_head(title, EXTRA_CSS)}
<h1>{e(title)}</h1>
<p class="meta">{meta}</p>
{_verdict(summary)}

<h2 id="table">Teacher, student and scratch</h2>
{_table(summary)}
<p class="small">Loss of the distilled student: {e(_formula(summary))} (Hinton et al. 2015). Scratch: the same
architecture, seed, optimizer, schedule, batches and budget, on the labels only.</p>

<h2 id="curves">Validation {e(summary['metric'])} during training</h2>
<figure class="wide"><img alt="validation {e(summary['metric'])} of the distilled and the scratch student"
src="{curves_png(summary)}">
<figcaption>Evaluated every {e(max(1, summary['steps'] // 20))} steps on the validation split. Dashed: the
teacher's final validation {e(summary['metric'])}.</figcaption></figure>

<footer>Generated by descentlab on {e(time.strftime("%Y-%m-%d %H:%M:%S"))} from summary.json.</footer>
</main>
</body>
</html>
"""


def render(out: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``out/report.html``."""
    return write_page(out, build_html(summary))
