"""The benchmark's report: ``DIR/report.html`` from ``DIR/benchmark.json`` alone.

Self-contained (CSS inline, plots as data URIs, no script, no link out): the verdict, the
leaderboard with intervals, the performance profiles in seconds and in steps, a heatmap of the
ratios r, the times, tunability curves (external ruleset), each workload's best validation
curves, the rules used and the configuration. ``descentlab report DIR`` renders it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .html import e, page_head, write_page
from .plots import _pyplot, png_data_uri, strategy_styles

EXTRA_CSS = """
.ci { color: var(--muted); font-size: 12px; }
.miss { color: #9a3412; }
td.heat { text-align: center; font-variant-numeric: tabular-nums; }
ol.rules li { margin: 4px 0; }
"""


def _load(out: Path) -> dict[str, Any]:
    path = out / "benchmark.json"
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{str(path)!r} is not a benchmark.json ({exc.msg} at line {exc.lineno})") from None


def _ratios(times: Mapping[str, Mapping[str, float | None]]) -> dict[str, dict[str, float]]:
    from ..benchmark.score import ratios

    return ratios(times)


def _fmt_time(value: float | None, unit: str) -> str:
    if value is None:
        return '<span class="miss">∞</span>'
    return f"{value:.3g} s" if unit == "seconds" else f"{int(value)}"


def _ci(ci: Sequence[float] | None, fmt: str = "{:.3f}") -> str:
    if not ci:
        return ""
    return f'<span class="ci">[{fmt.format(ci[0])}, {fmt.format(ci[1])}]</span>'


def _swatch(color: str) -> str:
    return (f'<svg class="swatch" width="12" height="12"><rect width="12" height="12" rx="2" '
            f'fill="{e(color)}"/></svg>')


def leaderboard(d: dict[str, Any], colors: Mapping[str, str]) -> str:
    order = d["verdict"]["order"]
    tied = set(d["verdict"]["tied"]) | {d["verdict"]["leader"]}
    base = d["speedup"]["baseline"]
    other = "steps" if d["time"] == "seconds" else "seconds"
    rows = []
    reached = {s: sum(t is not None for t in d["times"][s].values()) for s in order}
    n = len(d["workloads"])
    for rank, s in enumerate(order, 1):
        mark = " ★" if s == d["verdict"]["leader"] else " =" if s in tied else ""
        sp = d["speedup"].get(s)
        rows.append(
            f"<tr><td class=num>{rank}</td><td class=label>{_swatch(colors[s])}{e(s)}{mark}</td>"
            f"<td class=small>{e(d['optimizers'].get(s, ''))}</td>"
            f"<td class=num><b>{d['scores'][s]:.3f}</b> {_ci(d['score_ci'].get(s))}</td>"
            f"<td class=num>{d['scores_' + other][s]:.3f} {_ci(d['score_ci_' + other].get(s))}</td>"
            f"<td class=num>{sp:.2f}× {_ci(d['speedup_ci'].get(s), '{:.2f}')}</td>"
            f"<td class=num>{reached[s]} / {n}</td></tr>")
    return (f"<table><thead><tr><th class=num>#</th><th>strategy</th><th>optimizer</th>"
            f"<th class=num>score ({e(d['time'])}) <span class=small>95% interval</span></th>"
            f"<th class=num>score ({other})</th><th class=num>speedup vs {e(base)} ({e(d['time'])})</th>"
            f"<th class=num>workloads counted</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def profiles_figure(d: dict[str, Any], colors: Mapping[str, str]) -> str:
    plt = _pyplot()
    tau_max = d["tau_max"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, layout="constrained")
    for ax, (key, unit) in zip(axes, (("times", "seconds"), ("steps", "steps"))):
        r = _ratios(d[key])
        for s in d["verdict"]["order"]:
            values = sorted(v for v in r[s].values() if v <= tau_max)
            xs, ys = [1.0], [sum(v <= 1.0 for v in r[s].values()) / len(r[s])]
            for v in values:
                if v > 1.0:
                    xs.append(v)
                    ys.append(sum(x <= v for x in r[s].values()) / len(r[s]))
            xs.append(tau_max)
            ys.append(ys[-1])
            score = d["scores_" + unit][s]
            ax.step(xs, ys, where="post", color=colors[s], lw=1.8, label=f"{s} ({score:.2f})")
        ax.set_xlim(1, tau_max)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("τ (time over the fastest strategy's)")
        ax.set_title(f"performance profile, time in {unit}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axes[0].set_ylabel("ρ(τ): fraction of workloads with r ≤ τ")
    return png_data_uri(fig)


def heatmap(d: dict[str, Any]) -> str:
    """The ratios r per strategy and workload as an HTML table coloured by r (∞: a miss)."""
    r = _ratios(d["times"] if d["time"] == "seconds" else d["steps"])
    names = list(d["workloads"])
    head = "".join(f"<th class=num>{e(w)}</th>" for w in names)
    body = []
    for s in d["verdict"]["order"]:
        cells = []
        for w in names:
            v = r[s][w]
            if math.isinf(v):
                held = d["steps_base"][s].get(w) is not None and d["steps"][s].get(w) is None
                cells.append(f'<td class=heat style="background:#e5e7eb" title="{"held-out variant missed" if held else "target missed"}">'
                             f'{"∞ (held-out)" if held else "∞"}</td>')
                continue
            shade = max(0.0, min(1.0, (v - 1) / (d["tau_max"] - 1)))
            red, green = int(255 * shade), int(180 + 60 * (1 - shade))
            cells.append(f'<td class=heat style="background:rgba({red},{green},120,0.35)">{v:.2f}</td>')
        body.append(f"<tr><td class=label>{e(s)}</td>{''.join(cells)}</tr>")
    return f"<div class=scroll><table><thead><tr><th>r = t / t_best</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _hits(d: dict[str, Any], s: str, w: str) -> str:
    cell = d.get("hits", {}).get(s, {}).get(w)
    if not cell:
        return ""
    parts = [f"{c[0]}/{c[1]}" for c in (cell.get("base"), cell.get("variant")) if c]
    return f'<br><span class=small title="runs that reached the target / runs (base, held-out)">hits {" · ".join(parts)}</span>'


def times_table(d: dict[str, Any]) -> str:
    names = list(d["workloads"])
    head = "".join(f"<th class=num>{e(w)}</th>" for w in names)
    body = []
    raw = d.get("times_raw", {})
    for s in d["verdict"]["order"]:
        cells = []
        for w in names:
            t, st = d["times"][s].get(w), d["steps"][s].get(w)
            measured = raw.get(s, {}).get(w)
            base, var = d["steps_base"][s].get(w), d.get("steps_variant", {}).get(s, {}).get(w)
            note = ""
            if t is None and base is not None:
                note = '<br><span class="small miss">held-out missed</span>'
            elif d["workloads"][w].get("variant") and var is not None:
                note = f'<br><span class=small>held-out {int(var)} steps</span>'
            cells.append(f"<td class=num>{_fmt_time(t, 'seconds')}<br><span class=small>"
                         f"{_fmt_time(st, 'steps')} steps"
                         + (f" · raw {measured:.3g} s" if measured is not None and t is not None else "")
                         + f"</span>{note}{_hits(d, s, w)}</td>")
        body.append(f"<tr><td class=label>{e(s)}</td>{''.join(cells)}</tr>")
    return f"<div class=scroll><table><thead><tr><th>time to target</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def spaces_table(d: dict[str, Any]) -> str:
    """The resolved search space of each strategy on each workload (external ruleset)."""
    spaces = d.get("spaces") or {}
    if not spaces:
        return ""
    names = list(d["workloads"])
    head = "".join(f"<th>{e(w)}</th>" for w in names)
    body = []
    for s in d["verdict"]["order"]:
        cells = []
        for w in names:
            items = []
            for k, v in (spaces.get(s, {}).get(w) or {}).items():
                if "choices" in v:
                    items.append(f"{k} ∈ {v['choices']}")
                else:
                    items.append(f"{k} [{v['low']:.3g}, {v['high']:.3g}]{' log' if v.get('log') else ''}")
            cells.append(f"<td class=small>{e('; '.join(items))}</td>")
        body.append(f"<tr><td class=label>{e(s)}</td>{''.join(cells)}</tr>")
    return (f"<div class=scroll><table><thead><tr><th>search space</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def costs_table(d: dict[str, Any]) -> str:
    """The calibrated cost per step (ms) of each strategy on each workload (base part)."""
    costs = d.get("seconds_per_step") or {}
    if not costs:
        return ""
    names = list(d["workloads"])
    head = "".join(f"<th class=num>{e(w)}</th>" for w in names)
    body = []
    for s in d["verdict"]["order"]:
        cells = "".join(f"<td class=num>{costs.get(s, {}).get(w, {}).get('base', math.nan) * 1e3:.3g}</td>"
                        for w in names)
        body.append(f"<tr><td class=label>{e(s)}</td>{cells}</tr>")
    return (f"<div class=scroll><table><thead><tr><th>ms per step (calibrated)</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def seeds_note(d: dict[str, Any]) -> str:
    auto = d.get("seeds_auto") or {}
    what = auto.get("what", "seeds")
    n = d["seeds"] if what == "seeds" else d["studies"]
    if not auto.get("auto"):
        text = f"{n} {what}, as given."
    else:
        rounds = auto.get("rounds") or []
        path = " → ".join(str(r["replicates"]) for r in rounds) or str(n)
        last = rounds[-1] if rounds else None
        if last and last["separated"]:
            text = (f"--seeds auto ran {path} {what}: after {last['replicates']} the leader {last['leader']}'s interval "
                    f"is clear of {last['next']}'s.")
        elif last and last.get("stopped"):
            text = (f"--seeds auto ran {path} {what} and stopped: the leader's interval overlaps the next "
                    f"strategy's, and {last['stopped']} (the cap is {auto.get('cap')}).")
        else:
            text = (f"--seeds auto ran {path} {what} (the cap is {auto.get('cap')}); the leader's interval still "
                    "overlaps the next strategy's.")
    needed = d["verdict"].get("needed")
    if needed:
        text += f" At the observed difference, about {needed} {what} would separate the first two."
    return f"<p class=small>{e(text)}</p>"


def tunability_figure(d: dict[str, Any], colors: Mapping[str, str]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    for s in d["verdict"]["order"]:
        curve = d["tunability"].get(s) or []
        ks = list(range(1, len(curve) + 1))
        ys = [y if y is not None else math.nan for y in curve]
        ax.plot(ks, ys, marker="o", ms=4, color=colors[s], lw=1.8, label=s)
    ax.set_xlabel("trials k")
    ax.set_ylabel("expected best time / fastest (geo. mean)")
    ax.set_yscale("log")
    ax.set_title("tunability: expected best time after k trials")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return png_data_uri(fig)


def _zoom(ax: Any, curves: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Limit the y axis to the part of the curves near the target: the first evaluations of a
    regression can lie orders of magnitude away (r² of −4) and flatten everything else."""
    import numpy as np

    values = np.array([v for c in curves.values() for v in c["values"] if v is not None], dtype=float)
    if values.size < 4:
        return
    target = info["target"]
    if info["mode"] == "max":
        low = min(float(np.quantile(values, 0.2)), target)
        high = max(float(values.max()), target)
    else:
        low = min(float(values.min()), target)
        high = max(float(np.quantile(values, 0.8)), target)
    pad = 0.08 * (high - low or abs(target) or 1.0)
    ax.set_ylim(low - pad, high + pad)


def curves_figure(d: dict[str, Any], colors: Mapping[str, str]) -> str | None:
    curves = d.get("curves") or {}
    names = [w for w in d["workloads"] if w in curves]
    if not names:
        return None
    plt = _pyplot()
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), layout="constrained", squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, w in zip(axes.flat, names):
        info = d["workloads"][w]
        for s in d["verdict"]["order"]:
            c = curves[w].get(s)
            if not c:
                continue
            ys = [v if v is not None else math.nan for v in c["values"]]
            ax.plot(c["steps"], ys, color=colors[s], lw=1.4, label=s)
        ax.axhline(info["target"], color="black", ls="--", lw=1, label="target")
        _zoom(ax, curves[w], info)
        ax.set_title(f"{w}: val {info['metric']}", fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    return png_data_uri(fig)


def rules(d: dict[str, Any]) -> str:
    items = [
        "Time to target: training time (or optimizer steps) until the first evaluation at which the validation "
        f"metric reaches the workload's target, evaluation time excluded; {d['evaluations_per_budget']} evaluations "
        "per budget. A run stops at its target.",
        "A target missed within the budget is ∞.",
        "Time in seconds is reference time: steps to target × the strategy's cost per step on that workload, "
        "calibrated before the runs in one process by interleaved rounds (each strategy's ratio to the baseline's "
        "step, median over rounds, × the baseline's least disturbed step), so the machine's other load does not "
        "move it; the measured seconds are shown beside it (raw).",
    ]
    if d["ruleset"] == "external":
        items.append("One search-space rule for every strategy: lr {factor: F} is searched over [c/F, c×F] around "
                     "a centre c the benchmark finds for each strategy on each workload by the same lr range test; "
                     "the resolved spaces are in the table below.")
        items.append(f"External tuning: each strategy has one search space for every workload; {d['trials']} "
                     f"quasi-random trials (Optuna's QMC sampler, scrambled Sobol, seeded by the study) per workload "
                     f"and study, {d['studies']} studies. A trial's time is the median over its {d['seeds']} seed(s); "
                     "a study's time is its fastest trial's; the workload's time is the median over the studies.")
    else:
        items.append(f"Self tuning: each strategy's defaults only, with {d['self_budget']}× the budget (AlgoPerf "
                     f"gives 3×); {d['studies']} study(ies) × {d['seeds']} seed(s), the time is the median.")
    items += [
        "A base workload's time counts only if the strategy also reaches its held-out variant's target within "
        "the variant's budget.",
        "r = t / (the fastest strategy's t on that workload); ρ(τ) = the fraction of workloads with r ≤ τ; the "
        f"benchmark score is (1/(τmax − 1)) ∫₁^τmax ρ(τ) dτ with τmax = {d['tau_max']:g}, computed exactly on the "
        "step function (AlgoPerf approximates it on a grid).",
        f"Speedup: the geometric mean over workloads of t({d['speedup']['baseline']}) / t, a miss counted as the "
        "workload's budget (in seconds: the step budget × the median calibrated seconds per step on it).",
        "Intervals (beyond AlgoPerf): 95% percentile bootstrap, drawing studies and, within each, seeds with "
        "replacement; two strategies whose intervals overlap are tied. "
        + ("With one study and one seed there is nothing to resample: each interval is its point."
           if d["studies"] == 1 and d["seeds"] == 1 else ""),
    ]
    return "<ol class=rules>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ol>"


def configuration(d: dict[str, Any]) -> str:
    rows = []
    for w, info in d["workloads"].items():
        v = info.get("variant")
        rows.append(f"<tr><td class=label>{e(w)}</td><td>{e(info.get('workload', w))}</td><td>{e(info['metric'])} "
                    f"({'higher' if info['mode'] == 'max' else 'lower'} is better)</td><td class=num>{info['target']:.4g}</td>"
                    f"<td class=num>{info['budget_steps']} (runs: {info.get('run_budget_steps', info['budget_steps'])})</td>"
                    + (f"<td>{e(v['changes'])}</td><td class=num>{v['target']:.4g}</td><td class=num>{v['budget_steps']}</td>"
                       if v else "<td colspan=3 class=small>none: no held-out rule</td>") + "</tr>")
    suite = (f"<table><thead><tr><th>workload</th><th>built from</th><th>metric</th><th class=num>target</th>"
             f"<th class=num>budget (steps)</th><th>held-out variant</th><th class=num>its target</th>"
             f"<th class=num>its budget</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    spaces = ""
    if d.get("spaces"):
        spaces = "<h3>Search spaces (resolved per workload)</h3>" + spaces_table(d)
    if d.get("seconds_per_step"):
        spaces += "<h3>Cost per step (reference time)</h3>" + costs_table(d)
    setting = ""
    if d.get("target_setting"):
        setting = ("<h3>Targets set here (target: auto)</h3><pre>" + e(json.dumps(d["target_setting"], indent=1))
                   + "</pre>")
    meta = (f"<p class=small>suite <b>{e(d['suite'])}</b>, benchmark <b>{e(d['name'])}</b> in {e(d['storage'])}; "
            f"{d['runs']} runs, {d['train_seconds']:.0f} s of training, {d['wall_seconds']:.0f} s of wall time "
            f"for the command that wrote this.</p>")
    return meta + suite + spaces + setting


def build(d: dict[str, Any]) -> str:
    colors = {s: st.color for s, st in strategy_styles(d["strategies"]).items()}
    unreached = d.get("unreached") or []
    warn = ""
    if unreached:
        warn = ("<li class=warn>No strategy reached the target of " + ", ".join(e(w) for w in unreached)
                + ": every strategy has r = ∞ there (the target may be too hard for this budget).</li>")
    parts = [
        page_head(f"descentlab benchmark: {d['suite']} ({d['ruleset']})", EXTRA_CSS),
        f"<h1>Benchmark: {e(d['suite'])} suite, {e(d['ruleset'])}-tuning ruleset</h1>",
        f"<p class=meta><b>{len(d['strategies'])}</b> strategies × <b>{len(d['workloads'])}</b> workloads, "
        f"time in <b>{e(d['time'])}</b>, τmax {d['tau_max']:g}; {d['studies']} study(ies), {d['trials']} trial(s), "
        f"{d['seeds']} seed(s).</p>",
        f"<h2>Verdict</h2><ul class=verdict><li>{e(d['verdict']['text'])}</li>{warn}</ul>", seeds_note(d),
        "<h2>Leaderboard</h2>", leaderboard(d, colors),
        "<p class=small>★ the leader; = tied with it (95% intervals overlap). Score: AlgoPerf's benchmark score in "
        "[0, 1], 1 = fastest on every workload.</p>",
        "<h2>Performance profiles</h2>",
        f'<figure class=wide><img alt="performance profiles" src="{profiles_figure(d, colors)}">'
        "<figcaption>ρ(τ) per strategy, in seconds and in steps (per-step costs differ); the legend gives "
        "each score.</figcaption></figure>",
        f"<h2>Ratios to the fastest ({e(d['time'])})</h2>", heatmap(d),
        "<h2>Times to target</h2>", times_table(d),
        "<p class=small>Reference seconds (steps × calibrated cost per step), steps, the measured seconds (raw), "
        "and hits: the runs that reached the target of all runs, base · held-out.</p>",
    ]
    if d.get("tunability"):
        parts += ["<h2>Tunability</h2>",
                  f'<figure><img alt="tunability curves" src="{tunability_figure(d, colors)}"><figcaption>Expected '
                  "best time after k of the study's trials (Dodge et al. 2019), a miss counted as the budget, over "
                  "the fastest strategy's time; geometric mean over the base workloads.</figcaption></figure>"]
    curves = curves_figure(d, colors)
    if curves:
        parts += ["<h2>Best runs per workload</h2>",
                  f'<figure class=wide><img alt="validation curves" src="{curves}"><figcaption>The validation '
                  "metric of each strategy's best run (study 0, seed 0) on each base workload; runs stop at the "
                  "target (dashed).</figcaption></figure>"]
    parts += ["<h2>Rules</h2>", rules(d), "<h2>Configuration</h2>", configuration(d),
              "<footer>descentlab benchmark report; benchmark.json holds every number shown here, times.csv every "
              "run.</footer></main></body></html>"]
    return "\n".join(parts)


def render(out: str | Path) -> Path:
    """Write ``out/report.html`` from ``out/benchmark.json``; its path."""
    out = Path(out)
    return write_page(out, build(_load(out)))
