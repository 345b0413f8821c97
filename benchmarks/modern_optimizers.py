"""Step time and state size of issue 33's optimizers against pytorch-optimizer and heavyball.

The 28.4M-parameter float32 shape mix of ``optimizer_step.py`` (16×1024²,
2×4096×1024, 40×1024, 6282×512; ``--quick``: a quarter of it), one ``step()``
at a time, every implementation of an optimizer interleaved round-robin in this
one process on the same gradients, with torch's fused AdamW timed in the same
round-robin as the yardstick ("×adamw" divides by it).

* Elementwise rules (ademamix, adopt, mars, adamw with ``cautious=True``, adamw
  with ``state_dtype="bfloat16"``): ours is the fused kernel (cautious: a count
  pass, then the step), GB/s is the minimal traffic of the rule (``BYTES``) over
  the step time, beside torch's fused Adam's.
* Preconditioned rules (soap, shampoo, kron, normuon), with the preconditioner
  updated every 10 steps, as the issue sets it: soap ``precondition_frequency=10``
  (the default everywhere); shampoo ``preconditioning_compute_steps=10`` and
  ``start_preconditioning_step=1`` (both here and in pytorch_optimizer's
  ScalableShampoo, whose defaults are 1000 and 25, so that the timed steps are
  preconditioned ones); kron ``pre_conditioner_update_probability=0.1`` (ours,
  pytorch_optimizer's Kron and heavyball's PSGDKron). Their time is the **mean**
  over ``--repeats`` steps (a multiple of 10, so that it holds the amortized
  update), not the median, which would leave the update steps out.
* ``state B/param``: the bytes of every tensor in the optimizer's state (shared
  storage counted once) over the number of parameters.

heavyball's optimizers are torch.compile'd on their first steps, which the
warm-up steps hold (``--warmup``, default 2; heavyball's compile takes minutes
on a CPU, and is left out of every timed step).

    .venv/bin/python benchmarks/modern_optimizers.py --quick          # ~10 min on 2 cores
    .venv/bin/python benchmarks/modern_optimizers.py                  # 28.4M parameters
    .venv/bin/python benchmarks/modern_optimizers.py --only soap,adopt
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from optimizer_step import FULL_SHAPES, QUICK_SHAPES, _params, _Regrad  # noqa: E402

from descentlab import optim  # noqa: E402
from descentlab.optim import fused  # noqa: E402

Factory = Callable[[list[torch.Tensor]], object]

#: Bytes a minimal elementwise step moves per float32 parameter (reads + writes).
#: mars: its first pass reads g and the last gradient for the norms (+8).
BYTES = {"adamw": 28, "ademamix": 36, "adopt": 28, "mars": 44, "cautious adamw": 28, "bf16-state adamw": 20,
         "bf16-state lion": 16, "bf16-state ademamix": 24, "bf16-state adopt": 20, "bf16-state mars": 34}

#: Our settings for a name (the preconditioner every 10 steps).
OURS: dict[str, tuple[str, dict]] = {
    "ademamix": ("ademamix", {}),
    "adopt": ("adopt", {}),
    "mars": ("mars", {}),
    "cautious adamw": ("adamw", {"cautious": True}),
    "bf16-state adamw": ("adamw", {"state_dtype": "bfloat16"}),
    "bf16-state lion": ("lion", {"state_dtype": "bfloat16"}),
    "bf16-state ademamix": ("ademamix", {"state_dtype": "bfloat16"}),
    "bf16-state adopt": ("adopt", {"state_dtype": "bfloat16"}),
    "bf16-state mars": ("mars", {"state_dtype": "bfloat16"}),
    "soap": ("soap", {"precondition_frequency": 10}),
    "shampoo": ("shampoo", {"preconditioning_compute_steps": 10, "start_preconditioning_step": 1}),
    "kron": ("kron", {"pre_conditioner_update_probability": 0.1}),
    "normuon": ("normuon", {}),
}
PRECONDITIONED = ("soap", "shampoo", "kron", "normuon")


def _po(cls_name: str, foreach: bool | None = None, **kw) -> Factory:
    def make(ps):
        import pytorch_optimizer as po

        cls = getattr(po, cls_name)
        extra = {} if foreach is None else {"foreach": foreach}
        return cls(ps, **extra, **kw)

    return make


def _po_normuon(ps):
    import pytorch_optimizer as po

    groups = [
        {"params": [p for p in ps if p.ndim >= 2], "use_muon": True},
        {"params": [p for p in ps if p.ndim < 2], "use_muon": False},
    ]
    return po.NorMuon(groups)


def _heavyball(cls_name: str, **kw) -> Factory:
    def make(ps):
        import heavyball

        return _Regrad(getattr(heavyball, cls_name)(ps, **kw), ps)

    return make


class _Eager(_Regrad):
    """A heavyball optimizer stepped without torch.compile (its ``compile_mode`` None
    during its own steps only, so the compiled ones beside it stay compiled)."""

    def step(self):
        import heavyball.utils

        mode, heavyball.utils.compile_mode = heavyball.utils.compile_mode, None
        try:
            super().step()
        finally:
            heavyball.utils.compile_mode = mode


def _heavyball_eager(cls_name: str, **kw) -> Factory:
    def make(ps):
        import heavyball

        return _Eager(getattr(heavyball, cls_name)(ps, **kw), ps)

    return make


def _ours(name: str, copies: bool = False, **kw) -> Factory:
    """descentlab's ``name``; ``copies``: its bfloat16 state stepped through float32 copies
    (the kernel on the widened state, then the C++ rounding), not the direct kernel."""
    def make(ps):
        import dataclasses

        opt = optim.create(name, ps, **kw)
        if copies:
            opt._fused_step.kernel = dataclasses.replace(opt._fused_step.kernel, cpu_bf16=None)
        return opt

    return make


def references(name: str) -> list[tuple[str, Factory]]:
    """Third-party implementations of ``name`` with the same settings; for bfloat16 state,
    descentlab's own float32-state step and its path through float32 copies."""
    both = [False, True]
    if name.startswith("bf16-state "):
        base = name.removeprefix("bf16-state ")
        return [(f"descentlab {base} float32 state", _ours(base)),
                (f"descentlab {base} bfloat16 through float32 copies", _ours(base, True, state_dtype="bfloat16"))]
    if name == "ademamix":
        return [(f"pytorch_optimizer.AdEMAMix {'foreach' if f else 'for-loop'}", _po("AdEMAMix", f)) for f in both] + [
            ("heavyball.AdEMAMix (compiled)", _heavyball("AdEMAMix"))
        ]
    if name == "adopt":
        return [(f"pytorch_optimizer.ADOPT {'foreach' if f else 'for-loop'}", _po("ADOPT", f)) for f in both] + [
            ("heavyball.ADOPT (compiled)", _heavyball("ADOPT"))
        ]
    if name == "mars":
        return [(f"pytorch_optimizer.MARS {'foreach' if f else 'for-loop'}", _po("MARS", f)) for f in both]
    if name == "cautious adamw":
        # pytorch_optimizer has no cautious AdamW; heavyball's AdamW(caution=True) masks the same way
        # and rescales by the mask's mean (a scalar either way). Compiled, inductor's C++ for the
        # whole 59-tensor step stops GCC 12 here (an internal compiler error), so also eager.
        return [("heavyball.AdamW caution=True (compiled)", _heavyball("AdamW", caution=True)),
                ("heavyball.AdamW caution=True (eager)", _heavyball_eager("AdamW", caution=True))]
    if name == "soap":
        return [
            ("pytorch_optimizer.SOAP", _po("SOAP", precondition_frequency=10)),
            ("heavyball.SOAP (compiled)", _heavyball("SOAP", precondition_frequency=10)),
        ]
    if name == "shampoo":
        return [(
            "pytorch_optimizer.ScalableShampoo",
            _po("ScalableShampoo", preconditioning_compute_steps=10, start_preconditioning_step=1),
        )]
    if name == "kron":
        return [
            ("pytorch_optimizer.Kron", _po("Kron", pre_conditioner_update_probability=0.1)),
            ("heavyball.PSGDKron (compiled)", _heavyball("PSGDKron", preconditioner_update_probability=0.1)),
        ]
    if name == "normuon":
        return [("pytorch_optimizer.NorMuon", _po_normuon)]
    return []


def state_bytes(opt: object) -> int:
    """The bytes of every tensor reachable from the optimizer's ``state`` (once per storage)."""
    inner = getattr(opt, "opt", opt)
    seen: set[int] = set()
    total = 0

    def walk(x):
        nonlocal total
        if isinstance(x, torch.Tensor):
            key = x.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += x.untyped_storage().nbytes()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(dict(getattr(inner, "state", {})))
    return total


@dataclass
class Row:
    optimizer: str
    impl: str
    kind: str  # "ours", "third", "yardstick"
    times: list[float] = field(default_factory=list)
    state: int = 0
    error: str = ""

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times) if self.times else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def measure(name: str, shapes, warmup: int, repeats: int, grads: list[torch.Tensor]) -> list[Row]:
    our_name, kw = OURS[name]
    has_kernel = our_name in fused.KERNELS and (not kw.get("cautious") or fused.KERNELS[our_name].cautious)
    candidates: list[tuple[str, str, Factory]] = [
        ("ours", f"descentlab {name} ({'fused' if has_kernel else 'chain'})",
         lambda ps: optim.create(our_name, ps, **kw)),
        *[("third", label, f) for label, f in references(name)],
        ("yardstick", "torch AdamW fused (yardstick)", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)),
    ]  # fmt: skip
    rows, runners = [], []
    for seed, (kind, label, factory) in enumerate(candidates):
        row = Row(name, label, kind)
        rows.append(row)
        try:
            params = _params(shapes, seed)
            for p, g in zip(params, grads):
                p.grad = g
            opt = factory(params)
            print(f"    {label}: warm-up", file=sys.stderr, flush=True)
            for _ in range(max(warmup, 1)):  # the first step creates the state (and compiles heavyball's)
                opt.step()
            row.state = state_bytes(opt)
            runners.append((row, opt))
        except Exception as exc:  # noqa: BLE001 - a reference that rejects the settings is reported
            row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
    for _ in range(repeats):
        for row, opt in runners:
            start = time.perf_counter()
            opt.step()
            row.times.append(time.perf_counter() - start)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/4 of the parameters")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per implementation (a multiple of 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--only", default="", help="comma-separated names: " + ", ".join(OURS))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(OURS)
    unknown = [n for n in names if n not in OURS]
    if unknown:
        parser.error(f"invalid --only name {unknown[0]!r}: expected one of {', '.join(OURS)}")
    if args.repeats < 1:
        parser.error(f"invalid --repeats={args.repeats}: expected a positive integer")

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    n_params = sum(math.prod(s) for s in shapes)
    problem = fused.build.available()  # build (or load) the C++ kernels before timing
    print(f"# Issue 33's optimizers: one step, {n_params / 1e6:.1f}M float32 parameters "
          f"({'--quick' if args.quick else 'full'})\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {platform.machine()}; mean (and median) of "
          f"{args.repeats} steps after {args.warmup} warm-up, interleaved; C++ kernels "
          f"{'ready' if problem is None else 'UNAVAILABLE: ' + problem}.\n")  # fmt: skip

    g = torch.Generator().manual_seed(12345)
    grads = [torch.empty(s).normal_(generator=g).mul_(1e-2) for s in shapes]
    all_rows: list[Row] = []
    for name in names:
        print(f"  measuring {name}...", file=sys.stderr, flush=True)
        all_rows += measure(name, shapes, args.warmup, args.repeats, grads)
        gc.collect()

    print("| optimizer | implementation | mean ms/step | median ms | ×adamw (same round-robin) | "
          "state B/param | GB/s (elementwise) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in all_rows:
        if r.error or not r.times:
            print(f"| {r.optimizer} | {r.impl} | {r.error or '—'} | | | | |")
            continue
        ref = next(x for x in all_rows if x.optimizer == r.optimizer and x.kind == "yardstick")
        traffic = BYTES.get("adamw" if r.kind == "yardstick" else r.optimizer)
        gbs = f"{traffic * n_params / r.median / 1e9:.1f}" if traffic else "—"
        ratio = r.mean / ref.mean if ref.times else float("nan")
        print(f"| {r.optimizer} | {r.impl} | {r.mean * 1e3:.1f} | {r.median * 1e3:.1f} | {ratio:.2f}× | "
              f"{r.state / n_params:.1f} | {gbs} |")  # fmt: skip

    print("\nTargets (issue 33): kron ≤ 3× adamw, soap and shampoo ≤ 2× adamw (mean step, the update every 10):\n")
    print("| optimizer | ours ×adamw | fastest third party ×adamw | ours / fastest third party | target met |")
    print("|---|---|---|---|---|")
    for name in names:
        rows = [r for r in all_rows if r.optimizer == name and r.times]
        ours = next((r for r in rows if r.kind == "ours"), None)
        ref = next((r for r in rows if r.kind == "yardstick"), None)
        third = [r for r in rows if r.kind == "third"]
        if ours is None or ref is None:
            continue
        fastest = min(third, key=lambda r: r.mean) if third else None
        limit = {"kron": 3.0, "soap": 2.0, "shampoo": 2.0}.get(name)
        ratio = ours.mean / ref.mean
        met = "—" if limit is None else ("yes" if ratio <= limit else f"**no** (≤ {limit:g}×)")
        print(f"| {name} | {ratio:.2f}× | "
              f"{'—' if fastest is None else f'{fastest.mean / ref.mean:.2f}× ({fastest.impl})'} | "
              f"{'—' if fastest is None else f'{ours.mean / fastest.mean:.2f}'} | {met} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
