"""A hand-made comparison in a run store, shaped like `descentlab compare` writes it.

Four strategies × three seeds on a fake workload, budget 3000 steps, target 90% accuracy:

* adam      reaches the target at 1000 / 1200 / 1500 steps (5.0 / 6.0 / 7.5 s)
* rmsprop   reaches it at 1800 / 2200 steps (4.0 / 5.0 s); seed 2 diverges at step 700
* nesterov  reaches it at 2400 / 2000 / 3000 steps (9.0 / 8.0 / 12.0 s)
* <b>x</b>  never reaches it (a label with HTML in it, to check the escaping)
"""

from __future__ import annotations

import math

import pytest

from descentlab.store import RunStore

STEPS = 3000
TARGET = 0.9
EVAL_EVERY = 100

# label: (optimizer, hparams, [(best, final, steps_to_target, seconds_to_target, seconds_per_step, status)])
STRATEGIES = {
    "adam": ("adam", {"lr": 0.001}, [
        (0.95, 0.94, 1000, 5.0, 0.005, "finished"),
        (0.96, 0.95, 1200, 6.0, 0.005, "finished"),
        (0.94, 0.93, 1500, 7.5, 0.005, "finished"),
    ]),
    "rmsprop": ("rmsprop", {"lr": 0.01, "alpha": 0.99}, [
        (0.90, 0.89, 1800, 4.0, 0.0022, "finished"),
        (0.91, 0.90, 2200, 5.0, 0.0022, "finished"),
        (None, None, None, None, 0.0022, "diverged"),
    ]),
    "nesterov": ("nesterov", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, [
        (0.93, 0.92, 2400, 9.0, 0.00375, "finished"),
        (0.94, 0.93, 2000, 8.0, 0.004, "finished"),
        (0.95, 0.94, 3000, 12.0, 0.004, "finished"),
    ]),
    "<b>x</b>": ("sgd", {"lr": 0.05}, [
        (0.80, 0.79, None, None, 0.003, "finished"),
        (0.82, 0.81, None, None, 0.003, "finished"),
        (0.81, 0.80, None, None, 0.003, "finished"),
    ]),
}
DIVERGE_AT = 700


def _rows(best: float | None, stt: int | None, sec_per_step: float, diverged: bool, seed: int, lr: float) -> list[dict]:
    """Per-step train_loss and lr, val_loss / val_accuracy every 100 steps, grad_norm every 50."""
    top = best if best is not None else 0.9
    reach = stt if stt is not None else 900
    tau = -reach / math.log(1 - min(TARGET, 0.98 * top) / top)
    rows = []
    last = DIVERGE_AT if diverged else STEPS
    for step in range(1, last + 1):
        row = {"step": step, "seconds": step * sec_per_step}
        wiggle = 1 + 0.15 * math.sin(step * 0.37 + seed)
        loss = (2.3 * math.exp(-step / tau) + 0.05) * wiggle
        if diverged and step > DIVERGE_AT - 10:
            loss = 10.0 ** (step - DIVERGE_AT + 12)
        if diverged and step == DIVERGE_AT:
            loss = math.inf  # stored as NULL
        row["train_loss"] = loss
        row["lr"] = 0.5 * (1 + math.cos(math.pi * step / STEPS)) * lr
        if step % 50 == 0:
            row["grad_norm"] = 3.0 * math.exp(-step / 1500) * wiggle
            row["update_ratio"] = 1e-3 * math.exp(-step / 2000)
        if step % EVAL_EVERY == 0 and not (diverged and step >= DIVERGE_AT):
            row["val_accuracy"] = top * (1 - math.exp(-step / tau))
            row["val_loss"] = 2.3 * math.exp(-step / tau) + 0.1
        rows.append(row)
    return rows


def make_compare_store(path, strategies=STRATEGIES, target=TARGET, curves=True) -> RunStore:
    store = RunStore(path)
    for label, (optimizer, hparams, seeds) in strategies.items():
        for seed, (best, final, stt, sec, per_step, status) in enumerate(seeds):
            config = {
                "strategy": label, "optimizer": optimizer, "hparams": hparams, "schedule": "cosine",
                "schedule_kwargs": {"total_steps": STEPS}, "seed": seed, "workload": "digits-mlp",
                "metric": "accuracy", "metric_mode": "max", "target": target, "steps": STEPS, "batch_size": 64,
            }
            run_id = store.start(f"{label}/seed{seed}", config, group="compare")
            diverged = status == "diverged"
            done = DIVERGE_AT if diverged else STEPS
            summary = {
                "status": status, "final_metric": final, "best_metric": best, "test_final_metric": final,
                "steps_to_target": stt, "seconds_to_target": sec, "wall_seconds": done * per_step + 2.0,
                "train_seconds": done * per_step, "steps": done,
                "error": f"non-finite loss at step {DIVERGE_AT}" if diverged else None,
            }
            rows = _rows(best, stt, per_step, diverged, seed, hparams["lr"]) if curves else []
            store.finish(run_id, rows, summary, status=status)
    return store


@pytest.fixture(scope="session")
def compare_dir(tmp_path_factory):
    """A directory holding the fake comparison's runs.sqlite (shared: build it once)."""
    out = tmp_path_factory.mktemp("compare")
    make_compare_store(out / "runs.sqlite")
    return out


@pytest.fixture(scope="session")
def rendered(compare_dir):
    """report.html rendered once from the fake comparison (shared by the HTML and browser tests)."""
    from descentlab.report import html

    return html.render(compare_dir)


# The 19 optimizers of `descentlab list optimizers`, one seed each: 18 end their 3000 steps near 2 s,
# muon takes 60 s (a time-axis outlier), lion diverges at step 700.
MANY = (
    "sgd", "momentum", "nesterov", "adam", "amsgrad", "adamw", "adagrad", "rmsprop", "adadelta", "adamax",
    "nadam", "radam", "adafactor", "muon", "lion", "lamb", "lars", "prodigy", "adamw_schedulefree",
)
SLOW, SLOW_SECONDS, DIVERGING = "muon", 60.0, "lion"


def many_strategies() -> dict:
    out = {}
    for i, name in enumerate(MANY):
        per_step = SLOW_SECONDS / STEPS if name == SLOW else (1.8 + 0.4 * i / len(MANY)) / STEPS
        best = 0.91 + 0.004 * (i % 10)
        stt = 600 + 100 * i
        seed = (best, best - 0.01, stt, stt * per_step, per_step, "finished")
        if name == DIVERGING:
            seed = (None, None, None, None, per_step, "diverged")
        out[name] = (name, {"lr": 0.001 * (1 + i)}, [seed])
    return out


@pytest.fixture(scope="session")
def many_dir(tmp_path_factory):
    """A directory holding a 19-strategy, one-seed comparison's runs.sqlite."""
    out = tmp_path_factory.mktemp("compare19")
    make_compare_store(out / "runs.sqlite", many_strategies())
    return out


@pytest.fixture(scope="session")
def many_rendered(many_dir):
    """report.html rendered once from the 19-strategy comparison."""
    from descentlab.report import html

    return html.render(many_dir)
