"""The fixed cost of ``import descentlab`` against ``import torch``, which every run and
every worker process pays (a benchmark of many short runs multiplies it).

    .venv/bin/python benchmarks/import_cost.py               # 15 alternating pairs
    .venv/bin/python benchmarks/import_cost.py --repeat 31

Each sample is a new interpreter (``python -c "import X"``), its wall time from start to
exit, the two commands alternating so that the machine's drift falls on both. The first
pair is discarded (it warms the file cache). Prints the median of each, the ratio of the
medians, and the ratio's range over the pairs (each pair's own ratio).

Since issue 31, ``import descentlab`` loads nothing until a name is used (it does not even
import torch), so the statements timed are what a user's first line does:
``import descentlab.optim`` (the optimizer library alone), ``from descentlab import
Trainer`` (the loop and the workloads), and ``import descentlab; descentlab.compare``
(everything ``import descentlab`` loaded eagerly before); and an optimizer's life (made,
stepped, saved, zeroed), torch's AdamW against descentlab's: torch's optimizer methods
import ``torch._dynamo`` on their first call, descentlab's do not while it is not loaded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


STATEMENTS = {
    "import torch": "import torch",
    "import descentlab.optim": "import descentlab.optim",
    "from descentlab import Trainer": "from descentlab import Trainer",
    "descentlab.compare (the whole API)": "import descentlab; descentlab.compare; descentlab.benchmark",
    # an optimizer's life: made, stepped, saved, zeroed (torch's methods import torch._dynamo
    # at their first call; descentlab's skip that wrapper while dynamo is not loaded)
    "torch.optim.AdamW made and stepped": "import torch; o = torch.optim.AdamW([p := torch.nn.Parameter("
    "torch.ones(3))], lr=0.1); p.grad = torch.ones(3); o.step(); o.load_state_dict(o.state_dict()); o.zero_grad()",
    "descentlab adamw made and stepped": "import torch; from descentlab import optim; o = optim.create('adamw', [p := "
    "torch.nn.Parameter(torch.ones(3))], lr=0.1); p.grad = torch.ones(3); o.step(); o.load_state_dict(o.state_dict()); "
    "o.zero_grad()",
}


def once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    for code in STATEMENTS.values():  # the file cache
        once(code)
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    for _ in range(args.repeat):  # alternating: the machine's drift falls on every statement
        for name, code in STATEMENTS.items():
            times[name].append(once(code))
    base = times["import torch"]
    mt = statistics.median(base)
    print("| statement | median s | vs import torch |\n|---|---|---|")
    for name, samples in times.items():
        ratios = sorted(b / a for a, b in zip(base, samples))
        md = statistics.median(samples)
        print(f"| `{name}` | {md:.3f} | {md / mt:.2f} (pairs {ratios[0]:.2f}–{ratios[-1]:.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
