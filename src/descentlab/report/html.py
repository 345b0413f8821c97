"""The comparison report: one self-contained HTML file, rendered from ``runs.sqlite``.

``render(out_dir)`` reads ``out_dir/runs.sqlite`` (the "compare" runs), writes
the plots as PNG files into ``out_dir`` and ``out_dir/report.html``. The page
embeds its images as base64 data URIs and its CSS inline, and links to nothing,
so it reads the same offline, attached to an e-mail or opened years later.
Every value that comes from the database (strategy labels are user input) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import aggregate as agg
from ..errors import UsageError
from ..imports import short
from ..store import RunStore
from . import compare_plots

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #ffffff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 28px 24px 60px; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0; }
.meta b { color: var(--ink); font-weight: 600; }
.verdict { background: #eef6ff; border-left: 4px solid var(--accent); padding: 12px 18px 12px 32px; margin: 0; }
.verdict li { margin: 3px 0; }
.verdict li.warn { color: #9a3412; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 7px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
th.num { text-align: right; }
th .small { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:hover { background: #fafbfc; }
.swatch { display: inline-block; margin-right: 6px; vertical-align: -1px; }
.small { color: var(--muted); font-size: 12px; }
td.label { white-space: nowrap; font-weight: 600; }
.bad { color: #b42318; font-weight: 600; }
.scroll { overflow-x: auto; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
      overflow-x: auto; margin: 6px 0 12px; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; padding: 4px 4px 0; }
details { margin: 4px 0; }
summary { cursor: pointer; font-weight: 600; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def e(value: Any) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _kv(mapping: Mapping[str, Any] | None) -> str:
    if not mapping:
        return ""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in mapping.items())


# SVG shapes of the matplotlib markers that strategy_styles hands out, centred at (11, 6)
_MARKER_SVG = {
    "o": '<circle cx="11" cy="6" r="3.4"/>',
    "s": '<rect x="7.8" y="2.8" width="6.4" height="6.4"/>',
    "^": '<polygon points="11,2 15,9.6 7,9.6"/>',
    "v": '<polygon points="11,10 15,2.4 7,2.4"/>',
    "D": '<polygon points="11,1.8 15,6 11,10.2 7,6"/>',
    "<": '<polygon points="7,6 14.6,2 14.6,10"/>',
    ">": '<polygon points="15,6 7.4,2 7.4,10"/>',
    "P": '<polygon points="9.6,2 12.4,2 12.4,4.6 15,4.6 15,7.4 12.4,7.4 12.4,10 9.6,10 9.6,7.4 7,7.4 7,4.6 9.6,4.6"/>',
    "h": '<polygon points="11,1.8 14.6,3.9 14.6,8.1 11,10.2 7.4,8.1 7.4,3.9"/>',
    "*": '<polygon points="11,1.6 12.2,4.7 15.4,4.8 12.9,6.8 13.8,10 11,8.2 8.2,10 9.1,6.8 6.6,4.8 9.8,4.7"/>',
}


def swatch(style: compare_plots.Style | str | None) -> str:
    """A strategy's line as the plots draw it: its colour, and its marker where colours repeat."""
    style = compare_plots.as_styles({"": style or "#888888"})[""]
    color = e(style.color)
    mark = _MARKER_SVG.get(style.marker or "", "")
    if mark:
        mark = mark.replace("/>", f' fill="{color}" stroke="#ffffff" stroke-width="0.6"/>')
    return (
        f'<svg class="swatch" width="22" height="12" viewBox="0 0 22 12" aria-hidden="true">'
        f'<line x1="1" y1="6" x2="21" y2="6" stroke="{color}" stroke-width="3"/>{mark}</svg>'
    )


def _bare_seconds(x: float) -> str:
    return agg.fmt_seconds(x).removesuffix(" s")


def _spread_cell(s: agg.Spread, fmt: Any, show_reached: bool = True, bounds: Any = None) -> str:
    """``median [min–max]`` (and ``k/n reached``) of a per-seed quantity; "never" if no seed got there."""
    if s.n == 0:
        return "—"
    if s.reached == 0:
        text = "never"
    else:
        bounds = bounds or fmt
        text = e(fmt(s.median))
        if s.n > 1:
            text += e(f" [{bounds(s.low)}–{bounds(s.high)}]")
    if show_reached:
        text += f'<br><span class="small">{s.reached}/{s.n} reached</span>'
    return text


def _mean_std_cell(mean: float, std: float, n_finite: int, n: int, say_n1: bool = True) -> str:
    """``mean ± std``; a lone value has no ± and says ``n=1`` (unless the column header says it for all)."""
    text = e(agg.fmt_mean_std(mean, std))
    if 0 < n_finite < n:
        text += f'<br><span class="small">over {n_finite} of {n} seeds</span>'
    elif n_finite == 1 and say_n1:
        text += ' <span class="small">(n=1)</span>'
    return text


def _lr_note(source: str | None) -> str:
    """A foreign optimizer trained at its class's default lr is marked: the comparison did not tune it."""
    from ..experiment.build import LR_CLASS

    if source == LR_CLASS:
        return f'<br><span class="small bad">lr: {e(source)}</span>'
    return f'<br><span class="small">lr: {e(source)}</span>' if source and source.startswith("tuned") else ""


def summary_table(table: Sequence[agg.StrategyStats], colors: Mapping[str, compare_plots.Style | str], setup: agg.Setup, test: Mapping[str, tuple]) -> str:
    has_target = setup.target is not None
    one_seed = all(r.n == 1 for r in table)  # then the headers say n=1 once, not every cell
    n1 = "<br><span class=small>one seed (n=1)</span>" if one_seed else ""
    head = ["#", "strategy", "optimizer", "schedule", f"final {e(setup.metric)}{n1}", f"best {e(setup.metric)}{n1}"]
    if test:
        head.append(f"test {e(setup.metric)}<br><span class=small>final{', n=1' if one_seed else ''}</span>")
    if has_target:
        head += ["steps to target<br><span class=small>median [min–max]</span>", "seconds to target<br><span class=small>median [min–max]</span>"]
    head += ["wall time<br><span class=small>mean</span>", "diverged"]
    rows = []
    for r in table:
        sched = e(r.schedule or "none")
        if r.schedule_kwargs:
            sched += f'<br><span class="small">{e(_kv(r.schedule_kwargs))}</span>'
        cells = [
            f'<td class="num">{r.rank}</td>',
            f'<td class="label">{swatch(colors.get(r.strategy))}{e(r.strategy)}</td>',
            f'<td>{e(short(r.optimizer))}<br><code class="small">{e(_kv(r.hparams))}</code>{_lr_note(r.lr_source)}</td>',
            f"<td>{sched}</td>",
            f'<td class="num">{_mean_std_cell(r.final_mean, r.final_std, r.final_n, r.n, not one_seed)}</td>',
            f'<td class="num">{_mean_std_cell(r.best_mean, r.best_std, r.best_n, r.n, not one_seed)}</td>',
        ]
        if test:
            mean, std, k = test.get(r.strategy, (math.nan, math.nan, 0))
            cells.append(f'<td class="num">{_mean_std_cell(mean, std, k, r.n, not one_seed)}</td>')
        if has_target:
            cells.append(f'<td class="num">{_spread_cell(r.steps_to_target, agg.fmt_steps)}</td>')
            cells.append(f'<td class="num">{_spread_cell(r.seconds_to_target, agg.fmt_seconds, show_reached=False, bounds=_bare_seconds)}</td>')
        cells.append(f'<td class="num">{e(agg.fmt_seconds(r.wall_mean))}</td>')
        div = f"{r.diverged}/{r.n}"
        if r.failed:
            div += f'<br><span class="small">{r.failed} failed</span>'
        cells.append(f'<td class="num{" bad" if r.diverged else ""}">{div}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table id="summary"><thead><tr>'
        + "".join(f'<th class="{"" if i in (1, 2, 3) else "num"}">{h}</th>' for i, h in enumerate(head))
        + "</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def _num(summary: Mapping[str, Any], key: str, fmt: Any) -> str:
    value = agg.as_number(summary.get(key))
    if key in ("steps_to_target", "seconds_to_target") and summary.get(key) is None:
        return "never"
    return e(fmt(value))


def runs_table(runs: Sequence[Mapping[str, Any]], colors: Mapping[str, compare_plots.Style | str], setup: agg.Setup) -> str:
    has_target = setup.target is not None
    has_test = any((r.get("summary") or {}).get("test_final_metric") is not None for r in runs)
    head = ["strategy", "seed", "status", "steps", f"final {setup.metric}", f"best {setup.metric}"]
    if has_test:
        head.append(f"test {setup.metric}")
    if has_target:
        head += ["steps to target", "seconds to target"]
    head += ["train time", "wall time", "error"]
    rows = []
    for run in runs:
        cfg, s = run.get("config") or {}, run.get("summary") or {}
        label = str(cfg.get("strategy", run.get("name", "")))
        status = str(run.get("status") or s.get("status") or "")
        cells = [
            f'<td class="label">{swatch(colors.get(label))}{e(label)}</td>',
            f'<td class="num">{e(cfg.get("seed"))}</td>',
            f'<td class="{"" if status == "finished" else "bad"}">{e(status)}</td>',
            f'<td class="num">{_num(s, "steps", agg.fmt_steps)}</td>',
            f'<td class="num">{_num(s, "final_metric", agg.fmt_value)}</td>',
            f'<td class="num">{_num(s, "best_metric", agg.fmt_value)}</td>',
        ]
        if has_test:
            cells.append(f'<td class="num">{_num(s, "test_final_metric", agg.fmt_value)}</td>')
        if has_target:
            cells.append(f'<td class="num">{_num(s, "steps_to_target", agg.fmt_steps)}</td>')
            cells.append(f'<td class="num">{_num(s, "seconds_to_target", agg.fmt_seconds)}</td>')
        cells.append(f'<td class="num">{_num(s, "train_seconds", agg.fmt_seconds)}</td>')
        cells.append(f'<td class="num">{_num(s, "wall_seconds", agg.fmt_seconds)}</td>')
        cells.append(f'<td class="small">{e(s.get("error") or "")}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table id="runs"><thead><tr>'
        + "".join(f'<th class="{"" if i in (0, 2, len(head) - 1) else "num"}">{e(h)}</th>' for i, h in enumerate(head))
        + "</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></div>"
    )


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def config_section(runs: Sequence[Mapping[str, Any]], table: Sequence[agg.StrategyStats]) -> str:
    """The settings all runs share, each strategy's own settings, and the versions."""
    configs = [r.get("config") or {} for r in runs]
    keys = sorted(set().union(*configs)) if configs else []
    shared = {k: configs[0].get(k) for k in keys if all(k in c and c[k] == configs[0].get(k) for c in configs)}
    parts = ["<h3>Shared by every run</h3>", f"<pre>{e(_json(shared))}</pre>", "<h3>Per strategy</h3>"]
    own = {}
    for row in table:
        first = next((c for c in configs if str(c.get("strategy")) == row.strategy), {})
        own[row.strategy] = {k: v for k, v in first.items() if k not in shared and k not in ("strategy", "seed")}
    first_keys = ("optimizer", "optimizer_source", "hparams", "lr_source", "schedule", "schedule_kwargs",
                  "schedule_source")
    found = set().union(*own.values()) if own else set()
    columns = [k for k in first_keys if k in found] + sorted(found - set(first_keys))
    head = "".join(f"<th>{e(k)}</th>" for k in ["strategy", *columns])
    body = "\n".join(
        f'<tr><td class="label">{e(label)}</td>'
        + "".join(f"<td><code>{e(json.dumps(values.get(k), sort_keys=True, default=str))}</code></td>" if k in values else "<td></td>" for k in columns)
        + "</tr>"
        for label, values in own.items()
    )
    parts.append(f'<div class="scroll"><table id="config"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>')
    versions = [r.get("versions") or {} for r in runs]
    unique = []
    for v in versions:
        if v not in unique:
            unique.append(v)
    parts.append("<h3>Versions</h3>")
    if len(unique) <= 1:
        parts.append(f"<pre>{e(_json(unique[0] if unique else {}))}</pre>")
    else:
        for run, v in zip(runs, versions):
            parts.append(f"<details><summary>{e(run.get('name'))}</summary><pre>{e(_json(v))}</pre></details>")
    return "\n".join(parts)


def page_head(title: str, extra_css: str = "") -> str:
    """The start of a self-contained report page in the house style, up to ``<main>``."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{CSS}{extra_css}</style>
</head>
<body>
<main>"""


def write_page(out: str | Path, text: str, name: str = "report.html") -> Path:
    """Write a report page into ``out`` atomically (temp file + rename); its path."""
    path = Path(out) / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _title_meta(setup: agg.Setup, n_runs: int) -> str:
    better = "higher is better" if setup.mode == "max" else "lower is better"
    items = [
        f"budget <b>{e(setup.steps)}</b> steps" if setup.steps is not None else None,
        f"batch size <b>{e(setup.batch_size)}</b>" if setup.batch_size is not None else None,
        f"seeds <b>{e(', '.join(str(s) for s in setup.seeds))}</b>",
        f"metric <b>validation {e(setup.metric)}</b> ({better})",
        "target <b>" + e(agg.describe_target(setup.target, setup.metric, setup.mode)) + "</b>"
        if setup.target is not None
        else "no target",
        f"{len(setup.strategies)} strategies, {n_runs} runs",
        {"lr-find": "lrs tuned by <b>lr-find</b> (3 sweeps × 100 steps each)",
         "sweep": "lrs tuned by a <b>short sweep</b> (×1/10..×10, a fifth of the budget each)"}.get(
            "sweep" if setup.tuned is True else setup.tuned)
        if setup.tuned else "lrs <b>untuned</b> (each optimizer's default)",
    ]
    return " · ".join(i for i in items if i)


def build_html(
    runs: Sequence[Mapping[str, Any]],
    setup: agg.Setup,
    table: Sequence[agg.StrategyStats],
    verdict: Iterable[str],
    plots: Sequence[compare_plots.Plot],
    colors: Mapping[str, compare_plots.Style | str],
) -> str:
    test: dict[str, tuple] = {}
    for row in table:
        vals = [
            agg.as_number((r.get("summary") or {}).get("test_final_metric"))
            for r in runs
            if str((r.get("config") or {}).get("strategy")) == row.strategy
        ]
        if any(math.isfinite(v) for v in vals):
            test[row.strategy] = agg.mean_std(vals)
    warn_words = ("never", "diverged", "failed", "not a reliable", "No strategy", "One seed")
    verdict_items = "\n".join(
        f'<li class="{"warn" if any(w in line for w in warn_words) else ""}">{e(line)}</li>' for line in verdict
    )
    figures = "\n".join(
        f'<figure class="{"wide" if p.name == "diagnostics" else ""}"><img alt="{e(p.title)}" src="{_data_uri(p.path)}">'
        f"<figcaption>{e(p.title)} — <code>{e(p.path.name)}</code>{'<br>' + e(p.note) if p.note else ''}</figcaption></figure>"
        for p in plots
    )
    band_note = (
        "Each line is the mean over a strategy's finished seeds; the shaded band spans their minimum to maximum. "
        "Dashed lines are diverged seeds, drawn up to their last finite value and marked ✕. "
        "A strategy keeps its colour (and, past ten strategies, its marker) in every plot and table. "
        f"Time axes start at 0 and end with the bulk of the runs: a strategy that trained more than "
        f"{compare_plots.TIME_OUTLIER:g}× the median time runs off the right edge, marked ▶, its end time in the caption."
    )
    ranking = (
        "ranked by median steps to the target"
        if setup.target is not None and any(math.isfinite(r.steps_to_target.median) for r in table)
        else f"ranked by mean best validation {setup.metric}"
    )
    title = f"Comparison of optimization strategies on {setup.workload}"
    return f"""{page_head(title)}
<h1>{e(title)}</h1>
<p class="meta">{_title_meta(setup, len(runs))}</p>

<h2>Verdict</h2>
<ul class="verdict" id="verdict">
{verdict_items}
</ul>

<h2>Summary</h2>
<p class="small">Validation metric, mean ± sample standard deviation over seeds (a single seed, n=1, has no ±); {e(ranking)}.
A seed that never reached the target counts as ∞.</p>
{summary_table(table, colors, setup, test)}

<h2>Plots</h2>
<p class="small">{e(band_note)}</p>
<div class="plots">
{figures}
</div>

<h2>Runs</h2>
{runs_table(runs, colors, setup)}

<h2>Configuration and versions</h2>
{config_section(runs, table)}

<footer>Generated by descentlab on {e(time.strftime("%Y-%m-%d %H:%M:%S"))} from its run store;
<code>descentlab report DIR</code> (or <code>descentlab report URL --study NAME</code>) renders it again.</footer>
</main>
</body>
</html>
"""


def render(out_dir: str | Path, *, group: str = "compare", storage: str | None = None, study: str | None = None) -> Path:
    """Write the plots and ``report.html`` into ``out_dir`` from the run store: ``out_dir/runs.sqlite``,
    or the database at the SQLAlchemy URL ``storage``; ``study`` picks one comparison of several
    there (None: the only one). Returns the HTML path."""
    from ..engine.storage import mask

    out = Path(out_dir)
    if storage is None:
        db = out / "runs.sqlite"
        if not db.is_file():
            raise UsageError(f"no run store at {db}: run `descentlab compare --out {out}` first")
        where = str(db)
    else:
        where = mask(storage)
    try:
        store = RunStore(storage or db)
        if study is None and storage is not None:
            names = store.studies(group)
            if len(names) > 1:
                raise UsageError(f"{where} holds {len(names)} comparisons ({', '.join(names)}): name one with --study")
            study = names[0] if names else None
        runs = agg.latest_runs(store.runs(group, study=study))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken database is the user's input
        reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise UsageError(f"cannot read the run store at {where!r}: {reason}") from None
    if not runs:
        raise UsageError(f"{where} holds no {group!r} runs" + (f" of {study!r}" if study else ""))
    out.mkdir(parents=True, exist_ok=True)
    setup = agg.setup(runs)
    table = agg.aggregate(runs)
    lines = agg.verdict(table, setup.target, setup.metric, setup.mode)
    colors = compare_plots.strategy_styles(setup.strategies)
    runs = compare_plots.attach_curves(store, runs, setup.metric)
    plots = compare_plots.plot_compare(runs, out, metric=setup.metric, target=setup.target, colors=colors)
    page = build_html(runs, setup, table, lines, plots, colors)
    path = out / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
