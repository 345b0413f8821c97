"""The outputs of a study, recomputed from its storage: ``tune.json``, ``best.yaml`` and
``report.html``.

The report is one self-contained HTML file in the style of the comparison report
(:mod:`descentlab.report.html`: the same CSS, PNG plots inlined as base64, every
value from the study HTML-escaped): the best trial and its configuration, the
optimization history (each trial's value, pruned and diverged ones marked, the
best so far), the validation curves every trial reported to the pruner, the
parameter importances (Optuna's default evaluator, PED-ANOVA; with too few
completed trials the report says so), the best trial's curves (validation
metric and training loss against the step, from its ``metrics.csv``) and a
table of all trials.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from ..engine.storage import mask
from ..report.html import e, page_head
from .settings import Settings, counts

EXTRA_CSS = "tr.best td { font-weight: 600; background: #eef6ff; }\n"
#: fewest completed trials for parameter importances
MIN_FOR_IMPORTANCE = 4


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def importances(study: Any) -> tuple[dict[str, float] | None, str]:
    """Parameter importances of the completed trials, or None and why not."""
    import optuna
    from optuna.trial import TrialState

    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < MIN_FOR_IMPORTANCE:
        return None, f"{n} completed trial(s): parameter importances need at least {MIN_FOR_IMPORTANCE}"
    try:
        with warnings.catch_warnings():  # "some regimes have less than 2 trials": the note says how many there are
            warnings.simplefilter("ignore")
            # PED-ANOVA (Watanabe et al. 2023) compares the best trials with all of them; the top
            # 10% by default, here at least 2 trials, so a small study still has a top group.
            quantile = min(0.5, max(0.1, 2 / n))
            evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile)
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # noqa: BLE001 - e.g. every completed trial has the same value
        return None, f"parameter importances could not be computed: {type(exc).__name__}: {exc}"
    if not values:
        return None, "no parameter varied across the completed trials"
    return {k: float(v) for k, v in values.items()}, (f"PED-ANOVA over {n} completed trials (the best "
                                                       f"{quantile:.0%} against all)")


def results(study: Any, s: Settings) -> dict[str, Any]:
    """The content of tune.json."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    n = counts(trials)
    rows = [{
        "number": t.number, "state": t.state.name, "value": t.value if t.state != TrialState.FAIL else None,
        "params": t.params, "config": t.user_attrs.get("config"), "steps": t.user_attrs.get("steps"),
        "seconds": t.user_attrs.get("seconds"), "diverged": "diverged" in t.user_attrs,
        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "retry_of": t.system_attrs.get("failed_trial"), "error": t.user_attrs.get("error"),
    } for t in trials]
    best = study.best_trial if n["COMPLETE"] else None
    values, note = importances(study)
    return {
        "best_value": best.value if best else None,
        "best_params": best.params if best else None,
        "best_trial": best.number if best else None,
        "best_config": best.user_attrs.get("config") if best else None,
        "n_trials": n["COMPLETE"] + n["PRUNED"],
        "n_complete": n["COMPLETE"], "n_pruned": n["PRUNED"], "n_failed": n["FAIL"],
        "n_running": n["RUNNING"], "n_waiting": n["WAITING"], "target_trials": s.trials,
        "direction": s.direction, "metric": f"val_{s.metric}", "workload": s.workload,
        "study_name": s.study_name, "storage": mask(s.storage), "pruner": s.pruner, "seed": s.seed,
        "steps": s.steps, "epochs": s.epochs, "space": s.space.to_dict(),
        "importances": values, "importances_note": note, "trials": rows,
    }


def write_outputs(study: Any, s: Settings) -> dict[str, Any]:
    """Write tune.json, best.yaml (once a trial completed) and report.html into ``s.out``."""
    import yaml

    result = results(study, s)
    out = Path(s.out)
    _write(out / "tune.json", json.dumps(result, indent=2, default=str) + "\n")
    if result["best_config"] is not None:
        head = (f"# descentlab tune: trial {result['best_trial']} of study {s.study_name}, "
                f"{result['metric']} {result['best_value']:.6g}\n# descentlab train --config best.yaml --out DIR\n")
        _write(out / "best.yaml", head + yaml.safe_dump(result["best_config"], sort_keys=False))
    render(out, result)
    return result


# -- plots ------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    from ..report.plots import png_data_uri

    return png_data_uri(fig)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def history_png(result: dict[str, Any]) -> str:
    from ..report.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    rows = [r for r in result["trials"] if r["state"] in ("COMPLETE", "PRUNED")]
    done = [r for r in rows if r["state"] == "COMPLETE" and _finite(r["value"])]
    pruned = [r for r in rows if r["state"] == "PRUNED" and not r["diverged"] and _finite(r["value"])]
    diverged = [r for r in rows if r["diverged"]]
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], color="#1f77b4", s=28, label="complete", zorder=3)
    ax.scatter([r["number"] for r in pruned], [r["value"] for r in pruned], color="#7f7f7f", marker="x", s=26,
               label="pruned (value when stopped)", zorder=3)
    maximize = result["direction"] == "maximize"
    best, xs, ys = None, [], []
    for r in sorted(done, key=lambda r: r["number"]):
        if best is None or (r["value"] > best if maximize else r["value"] < best):
            best = r["value"]
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="#d62728", lw=1.6, label="best so far")
    if diverged:
        ymin, ymax = ax.get_ylim()
        edge = ymin if maximize else ymax
        ax.scatter([r["number"] for r in diverged], [edge] * len(diverged), color="#d62728",
                   marker="v" if maximize else "^", s=30, clip_on=False, label="diverged (no value)", zorder=4)
    return _finish(fig, ax, "trial", result["metric"])


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str) -> str:
    """Labels, integer ticks on x, grid and legend; the figure as a data URI."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8.5)
    return _png(fig)


def intermediate_png(result: dict[str, Any]) -> str:
    from ..report.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    for r in result["trials"]:
        points = sorted((int(k), v) for k, v in r["intermediate"].items() if _finite(v))
        if not points:
            continue
        best = r["number"] == result["best_trial"]
        color = "#d62728" if best else ("#1f77b4" if r["state"] == "COMPLETE" else "#9a9a9a")
        ax.plot(*zip(*points), color=color, lw=2.0 if best else 1.0, alpha=1.0 if best else 0.7, zorder=3 if best else 2)
    ax.plot([], [], color="#1f77b4", label="complete")
    ax.plot([], [], color="#9a9a9a", label="pruned")
    ax.plot([], [], color="#d62728", lw=2, label="best trial")
    return _finish(fig, ax, "evaluation (the pruner's step)", result["metric"])


def importances_png(values: dict[str, float]) -> str:
    from ..report.plots import _pyplot

    plt = _pyplot()
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.42 * len(names)), layout="constrained")
    ax.barh(names, [values[n] for n in names], color="#1f77b4")
    ax.set_xlabel("importance (sums to 1)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def read_curves(path: Path, key: str) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {key: [], "train_loss": []}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name in curves:
                try:
                    curves[name].append((float(row["step"]), float(row[name])))
                except (KeyError, TypeError, ValueError):
                    pass
    return curves


def curves_png(curves: dict[str, list[tuple[float, float]]], key: str) -> str:
    from ..report.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, name, color in ((axes[0], key, "#d62728"), (axes[1], "train_loss", "#1f77b4")):
        points = [(x, y) for x, y in curves[name] if math.isfinite(y)]
        if points:
            ax.plot(*zip(*points), color=color, lw=1.4 if name == key else 0.9, marker="o" if name == key else None, ms=3)
        if name == "train_loss" and points and min(y for _, y in points) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    return _png(fig)


# -- the page ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_NUM, _NUM_COLUMNS = "num", (0, 2, 4, 6, 7, 8, 9, 10)


def _trials_table(result: dict[str, Any]) -> str:
    head = ["trial", "state", result["metric"], "optimizer", "lr", "schedule", "warmup steps", "weight decay",
            "batch", "steps", "seconds", "note"]
    rows = []
    for r in result["trials"]:
        c = r["config"] or {}
        note = "diverged" if r["diverged"] else ""
        if r["retry_of"] is not None:
            note = (note + "; " if note else "") + f"retry of trial {r['retry_of']}"
        if r["state"] == "FAIL":
            note = (note + "; " if note else "") + (r["error"] or "killed; run again as a retry")
        best = ' class="best"' if r["number"] == result["best_trial"] else ""
        value = _fmt(r["value"]) if _finite(r["value"]) else "—"
        cells = [r["number"], r["state"].lower(), value, c.get("optimizer", ""), _fmt(c.get("lr", "")),
                 c.get("schedule", ""), (c.get("sched") or {}).get("warmup_steps", ""), _fmt(c.get("weight_decay", "")),
                 c.get("batch_size", ""), r["steps"] if r["steps"] is not None else "", _fmt(r["seconds"] or ""), note]
        rows.append(f"<tr{best}>" + "".join(f'<td class="{_NUM if i in _NUM_COLUMNS else ""}">{e(v)}</td>'
                                            for i, v in enumerate(cells)) + "</tr>")
    header = "".join(f'<th class="{_NUM if i in _NUM_COLUMNS else ""}">{e(h)}</th>' for i, h in enumerate(head))
    return (f'<div class="scroll"><table id="trials-table"><thead><tr>{header}</tr></thead><tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


def build_html(result: dict[str, Any], out: Path) -> str:
    import yaml

    key = result["metric"]
    title = f"Hyperparameter search on {Path(str(result['workload'])).name}"
    meta = (f"study <b>{e(result['study_name'])}</b> in <code>{e(result['storage'])}</code> · "
            f"<b>{result['n_trials']}</b> of {result['target_trials']} trials finished "
            f"({result['n_complete']} complete, {result['n_pruned']} pruned; {result['n_failed']} failed, "
            f"killed ones run again) · "
            f"{e(result['direction'])} {e(key)} · pruner {e(result['pruner'])} · seed {result['seed']} · budget "
            + (f"{result['steps']} steps" if result["steps"] is not None else f"{result['epochs']} epochs"))
    if result["best_trial"] is None:
        best = '<p class="verdict bad">No trial completed: every finished trial was pruned or diverged.</p>'
        curves = "<p>No best trial.</p>"
    else:
        best = (f'<p class="verdict">Trial <b>{result["best_trial"]}</b>: {e(key)} <b>{result["best_value"]:.4f}</b>. '
                f'Train it again with <code>descentlab train --config best.yaml --out DIR</code>.</p>'
                f"<pre>{e(yaml.safe_dump(result['best_config'], sort_keys=False))}</pre>")
        path = out / "trials" / f"{result['best_trial']:04d}" / "metrics.csv"
        if path.exists():
            img = curves_png(read_curves(path, key), key)
            curves = (f'<figure class="wide"><img alt="best trial curves" src="{img}"><figcaption>Trial '
                      f'{result["best_trial"]}: {e(key)} at each evaluation and the training loss, against the step '
                      f'(<code>trials/{result["best_trial"]:04d}/metrics.csv</code>).</figcaption></figure>')
        else:
            curves = f"<p>The best trial's metrics.csv is missing ({e(path)}).</p>"
    if result["importances"]:
        imp = result["importances"]
        rows = "".join(f'<tr><td>{e(k)}</td><td class="num">{v:.3f}</td></tr>' for k, v in imp.items())
        importance = (f'<div class="plots"><figure><img alt="parameter importances" src="{importances_png(imp)}">'
                      f'<figcaption>{e(result["importances_note"])}</figcaption></figure>'
                      f'<div><table><thead><tr><th>parameter</th><th class="num">importance</th></tr></thead>'
                      f"<tbody>{rows}</tbody></table></div></div>")
    else:
        importance = f'<p class="small">Not computed: {e(result["importances_note"])}.</p>'
    return f"""{page_head(title, EXTRA_CSS)}
<h1>{e(title)}</h1>
<p class="meta">{meta}</p>

<h2 id="best">Best trial</h2>
{best}

<h2 id="history">Optimization history</h2>
<div class="plots">
<figure><img alt="optimization history" src="{history_png(result)}"><figcaption>Each finished trial's final
{e(key)}; pruned trials at the value they were stopped with, diverged ones at the edge; the line is the best so far.
</figcaption></figure>
<figure><img alt="intermediate values" src="{intermediate_png(result)}"><figcaption>{e(key)} at each evaluation,
as reported to the pruner.</figcaption></figure>
</div>

<h2 id="importances">Parameter importances</h2>
{importance}

<h2 id="curves">Best trial's curves</h2>
{curves}

<h2 id="trials">Trials</h2>
{_trials_table(result)}

<h2>Search space</h2>
<pre>{e(json.dumps(result["space"], indent=2))}</pre>

<footer>Generated by descentlab on {e(time.strftime("%Y-%m-%d %H:%M:%S"))} from the study's storage;
running the same <code>descentlab tune</code> command again renders it again.</footer>
</main>
</body>
</html>
"""


def render(out: str | Path, result: dict[str, Any]) -> Path:
    """Write ``out/report.html`` for the study whose tune.json content is ``result``."""
    out = Path(out)
    path = out / "report.html"
    _write(path, build_html(result, out))
    return path
