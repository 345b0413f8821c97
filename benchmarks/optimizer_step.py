"""Optimizer step time: descentlab's fused steps against torch.optim and third-party optimizers.

For every named optimizer, one ``step()`` on the 28.4M-parameter float32 shape
mix of ``shared/anchors/MEASURED.md`` (16×1024², 2×4096×1024, 40×1024,
6282×512), timed for:

* ours: ``optim.create(name, params)`` (``fused=None``: the fused kernel where
  the optimizer has one, marked "fused", else the chain, marked "chain");
* torch.optim's namesake, for-loop (``foreach=False``), multi-tensor
  (``foreach=True``) and fused (``fused=True``, where torch has it);
* third-party references: pytorch_optimizer (Lion, Lamb, LARS, Prodigy,
  Muon; its for-loop and foreach paths), lion_pytorch.Lion,
  schedulefree.AdamWScheduleFree (both paths) and heavyball (SGD, AdamW,
  RMSprop, NAdam, SFAdamW, MuonAdamW: its own versions of these algorithms,
  with its defaults, torch.compile'd on first use; ``pip install -e
  '.[bench]'``, which ``make bench`` does). torch's Muon takes 2-D
  weights only: its row steps the 1-D parameters with a torch AdamW.

Muon is timed only with ``--muon``: its five Newton–Schulz iterations per
matrix are ~0.7 TFLOP per step on this shape mix, in bfloat16 as torch's
Muon does them, which takes about a second on a CPU with native bfloat16
(AVX512-BF16/AMX) and minutes without.

All implementations of one optimizer run interleaved, round-robin, in this one
process, on the same gradients, each with its own parameters and state; the
table gives the median (and min) of ``--repeats`` steps after ``--warmup``
steps. Shared machines are noisy: compare the ratios within one run.

Columns:

* ``B/param``: the bytes an optimal step must move per float32 parameter:
  read p, g and the state, write p and the state, plus the passes that sums
  over whole tensors force before anything can be written: LAMB and LARS a
  second pass for their trust ratios (40 = 24 + 16, 28 = 8 + 20); Prodigy a
  second pass for the step size d estimated from group sums (48 = 20 + 28,
  see csrc/multi_pass.cpp); Adafactor a second pass, since its column
  statistics and the RMS of its update need all of g (and RMS(p) all of p)
  before anything is written (20 = 8 + 12; the kernel makes a third pass
  over g only where its ε₁ cap is active); Muon 24 = 20 + the bfloat16 copy
  Newton–Schulz starts from, written and read back (2 + 2), besides its
  matmuls, which make it compute-bound. The second passes are counted as
  reads from memory, but LAMB, LARS and Adafactor (whose sums are per tensor)
  make both passes tensor by tensor, so a tensor that fits in the last-level
  cache is read back from there: their GB/s are effective figures. For
  Adafactor the row "two passes from memory" shows what the same traffic
  costs pass after pass over all tensors.
* ``GB/s`` = that traffic / the step time, i.e. the bandwidth the
  implementation achieves on the algorithm's minimal traffic; ``×best``
  divides it by the fastest torch fused kernel's GB/s in this run (the
  machine's practical memory bandwidth).
* ``peak MB``: the most memory the step allocates on top of what existed
  before it (torch's profiler, allocation events in order), on a step after
  the state exists.

Targets (issue 6): adam, amsgrad, adamw, sgd, momentum, nesterov, adagrad
≤ 1.05× torch's fused step time; every other optimizer ≥ 0.8× torch fused
Adam's GB/s and ≤ 0.5× the fastest third-party step; peak memory ≤ torch's
foreach path. The summary table after the main table says which are met.
torch's fused Adam runs in every optimizer's round-robin (the "yardstick"
rows) and the bandwidth target compares with the one beside it: on a shared
machine the memory bandwidth drifts by 1.5× within a run, so a single Adam
measurement minutes earlier is no yardstick.

    .venv/bin/python benchmarks/optimizer_step.py            # the full size, ~3 min on 2 cores (+muon: +2)
    .venv/bin/python benchmarks/optimizer_step.py --quick    # 1/4 of the size, fewer repeats
    .venv/bin/python benchmarks/optimizer_step.py --only lion,adam
    .venv/bin/python benchmarks/optimizer_step.py --only adam,muon --muon
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

import torch

from descentlab import optim
from descentlab.optim import fused

FULL_SHAPES = [(1024, 1024)] * 16 + [(4096, 1024)] * 2 + [(1024,)] * 40 + [(6282, 512)]
QUICK_SHAPES = [(256, 1024)] * 16 + [(1024, 1024)] * 2 + [(1024,)] * 40 + [(1571, 512)]

#: Bytes per float32 parameter of a minimal step (reads + writes, 4 bytes each).
BYTES = {
    "sgd": 12, "momentum": 20, "nesterov": 20, "adam": 28, "amsgrad": 36, "adamw": 28,
    "adagrad": 20, "rmsprop": 20, "adadelta": 28, "adamax": 28, "nadam": 28, "radam": 28,
    "adafactor": 20, "muon": 24, "lion": 20, "lamb": 40, "lars": 28, "prodigy": 48,
    "adamw_schedulefree": 28,
}  # fmt: skip
#: Ours must be ≤ 1.05× this torch fused step.
TORCH_FUSED_TARGET = {
    "sgd": "SGD fused", "momentum": "SGD fused", "nesterov": "SGD fused", "adam": "Adam fused",
    "amsgrad": "Adam fused", "adamw": "AdamW fused", "adagrad": "Adagrad fused",
}  # fmt: skip

Factory = Callable[[list[torch.Tensor]], object]

#: torch's fused Adam, timed in every optimizer's round-robin: the bandwidth
#: yardstick of that optimizer's rows (the machine's bandwidth drifts over a run).
YARDSTICK = "torch Adam fused (yardstick)"


def _torch_variants(cls, label: str, fused_ok: bool, **kw) -> list[tuple[str, Factory]]:
    out = [
        (f"{label} for-loop", lambda ps: cls(ps, foreach=False, **kw)),
        (f"{label} foreach", lambda ps: cls(ps, foreach=True, **kw)),
    ]
    if fused_ok:
        out.append((f"{label} fused", lambda ps: cls(ps, fused=True, **kw)))
    return out


class _Both:
    """Two optimizers stepped as one (torch's Muon for the matrices, AdamW for the rest)."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    def step(self):
        for opt in self.optimizers:
            opt.step()


class _TwoPasses:
    """What two passes over all tensors from memory cost: a read-only pass over g
    and p (a dot product), then a read-modify-write pass (p += α·g). Adafactor's
    kernel does its two passes tensor by tensor instead, so that the second finds
    a tensor's g and p still in the last-level cache when they fit there."""

    def __init__(self, params):
        self.params = params

    @torch.no_grad()
    def step(self):
        for p in self.params:
            torch.dot(p.grad.view(-1), p.view(-1))
        for p in self.params:
            p.add_(p.grad, alpha=1e-12)


class _NewtonSchulzOnly:
    """Muon's matmuls alone: the bfloat16 copy of each matrix's gradient and
    torch's five Newton–Schulz iterations (transforms.orthogonal), nothing else."""

    def __init__(self, params):
        self.matrices = [p for p in params if p.ndim == 2]

    @torch.no_grad()
    def step(self):
        from descentlab.optim.transforms.orthogonal import NS_COEFFICIENTS, newton_schulz

        for p in self.matrices:
            newton_schulz(p.grad, NS_COEFFICIENTS, 5, 1e-7).contiguous()


class _Regrad:
    """Steps a heavyball optimizer, giving the gradients back first: heavyball
    sets ``p.grad = None`` after each step (to free memory), and every other
    implementation here steps on the same gradients again."""

    def __init__(self, opt, params):
        self.opt, self.pairs = opt, [(p, p.grad) for p in params]

    def step(self):
        for p, g in self.pairs:
            p.grad = g
        self.opt.step()


#: heavyball (torch.compile'd building blocks: Triton on GPU, C++ on CPU) per
#: optimizer name; its versions of these algorithms, with its defaults.
HEAVYBALL = {
    "momentum": "SGD", "adamw": "AdamW", "rmsprop": "RMSprop", "nadam": "NAdam",
    "adamw_schedulefree": "SFAdamW", "muon": "MuonAdamW",
}  # fmt: skip


def _heavyball(cls_name: str) -> Factory:
    def make(ps):
        import heavyball

        return _Regrad(getattr(heavyball, cls_name)(ps), ps)

    return make


def _torch_muon(foreach: bool) -> Factory:
    def make(ps):
        matrices, rest = [p for p in ps if p.ndim == 2], [p for p in ps if p.ndim != 2]
        return _Both(
            torch.optim.Muon(matrices),  # no foreach option: one matrix at a time
            torch.optim.AdamW(rest, lr=3e-4, betas=(0.9, 0.95), eps=1e-10, foreach=foreach),
        )

    return make


def _po_muon(foreach: bool) -> Factory:
    def make(ps):
        import pytorch_optimizer as po

        groups = [
            {"params": [p for p in ps if p.ndim == 2], "use_muon": True},
            {"params": [p for p in ps if p.ndim != 2], "use_muon": False},
        ]
        return po.Muon(groups, foreach=foreach)

    return make


def references(name: str) -> tuple[list[tuple[str, Factory]], list[tuple[str, Factory]]]:
    """(torch.optim variants, third-party variants) for an optimizer name."""
    o, T = torch.optim, []
    third: list[tuple[str, Factory]] = []
    if name in ("sgd", "momentum", "nesterov"):
        mu = 0.0 if name == "sgd" else 0.9
        T = _torch_variants(o.SGD, "SGD", True, lr=1e-3, momentum=mu, nesterov=name == "nesterov")
    elif name in ("adam", "amsgrad"):
        T = _torch_variants(o.Adam, "Adam", True, lr=1e-3, amsgrad=name == "amsgrad")
    elif name == "adamw":
        T = _torch_variants(o.AdamW, "AdamW", True, lr=1e-3)
    elif name == "adagrad":
        T = _torch_variants(o.Adagrad, "Adagrad", True, lr=1e-2)
    elif name == "rmsprop":
        T = _torch_variants(o.RMSprop, "RMSprop", False, lr=1e-2)
    elif name == "adadelta":
        T = _torch_variants(o.Adadelta, "Adadelta", False)
    elif name == "adamax":
        T = _torch_variants(o.Adamax, "Adamax", False)
    elif name == "nadam":
        T = _torch_variants(o.NAdam, "NAdam", False)
    elif name == "radam":
        T = _torch_variants(o.RAdam, "RAdam", False)
    elif name == "adafactor":
        T = _torch_variants(o.Adafactor, "Adafactor", False)
    elif name == "muon":
        # torch's Muon takes 2-D weights only: the other parameters go to an AdamW
        # with Keller Jordan's betas, as optim.create("muon", ...) does with them.
        T = [(f"Muon+AdamW {kind}", _torch_muon(kind == "foreach")) for kind in ("for-loop", "foreach")]
        third = [
            (f"pytorch_optimizer.Muon {kind}", _po_muon(kind == "foreach")) for kind in ("for-loop", "foreach")
        ]
    elif name == "adamw_schedulefree":
        import schedulefree

        def sf(foreach):
            def make(ps):
                opt = schedulefree.AdamWScheduleFree(ps, foreach=foreach)
                opt.train()
                return opt

            return make

        third = [("schedulefree for-loop", sf(False)), ("schedulefree foreach", sf(True))]
    if name in ("lion", "lamb", "lars", "prodigy"):
        import pytorch_optimizer as po

        cls = {"lion": po.Lion, "lamb": po.Lamb, "lars": po.LARS, "prodigy": po.Prodigy}[name]
        third = [
            (f"pytorch_optimizer.{cls.__name__} for-loop", lambda ps: cls(ps, foreach=False)),
            (f"pytorch_optimizer.{cls.__name__} foreach", lambda ps: cls(ps, foreach=True)),
        ]
    if name in HEAVYBALL:
        third.append((f"heavyball.{HEAVYBALL[name]} (compiled)", _heavyball(HEAVYBALL[name])))
    if name == "lion":
        import lion_pytorch

        third.append(("lion_pytorch.Lion", lambda ps: lion_pytorch.Lion(ps)))
    return T, third


@dataclass
class Row:
    optimizer: str
    impl: str
    kind: str  # "ours", "torch", "third", "yardstick" (fused Adam), "context" (not an optimizer)
    times: list[float] = field(default_factory=list)
    peak: float = float("nan")  # bytes
    error: str = ""
    bytes_per_param: int = 0  # what the implementation's step must move (BYTES)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def _params(shapes, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.empty(s).normal_(generator=g).requires_grad_() for s in shapes]


def _peak_bytes(step: Callable[[], object]) -> float:
    """The peak of the memory allocated during ``step`` minus what it started with."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return float(peak)


def measure(name: str, shapes, warmup: int, repeats: int, grads: list[torch.Tensor]) -> list[Row]:
    torch_refs, third = references(name)
    has_kernel = name in fused.KERNELS
    candidates: list[tuple[str, str, Factory]] = [
        ("ours", f"descentlab {name} ({'fused' if has_kernel else 'chain'})", lambda ps: optim.create(name, ps))
    ]
    candidates += [("torch", label, f) for label, f in torch_refs]
    candidates += [("third", label, f) for label, f in third]
    if name == "adafactor":
        candidates.append(("context", "two passes from memory: torch.dot(g, p), then p.add_(g)", _TwoPasses))
    if name == "muon":
        candidates.append(("context", "Newton–Schulz alone (torch's bfloat16 matmuls)", _NewtonSchulzOnly))
    if name != "adam":  # adam's own rows have it
        candidates.append(("yardstick", YARDSTICK, lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)))
    rows, runners = [], []
    for seed, (kind, label, factory) in enumerate(candidates):
        row = Row(name, label, kind, bytes_per_param=BYTES["adam" if kind == "yardstick" else name])
        rows.append(row)
        try:
            params = _params(shapes, seed)
            for p, g in zip(params, grads):
                p.grad = g
            opt = factory(params)
            for _ in range(max(warmup, 1)):  # the first step creates the state
                opt.step()
            row.peak = _peak_bytes(opt.step)
            runners.append((row, opt, params))
        except Exception as exc:  # a reference that rejects the shapes (torch's Muon: 1-D params)
            row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    for _ in range(repeats):
        for row, opt, _params_ in runners:
            start = time.perf_counter()
            opt.step()
            row.times.append(time.perf_counter() - start)
    return rows


def _fmt(x: float, spec: str = ".1f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/4 of the parameters, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--only", default="", help="comma-separated optimizer names")
    parser.add_argument(
        "--muon", action="store_true", help="also time muon (slow: compute-bound Newton–Schulz matmuls)"
    )
    args = parser.parse_args(argv)

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or optim.available()
    n_params = sum(math.prod(s) for s in shapes)

    built = time.perf_counter()
    problem = fused.build.available()  # build (or load) the C++ kernels before timing
    built = time.perf_counter() - built

    print(f"# Optimizer step, {n_params / 1e6:.1f}M float32 parameters ({'--quick' if args.quick else 'full'})\n")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {platform.machine()}, Python {platform.python_version()}; "
        f"median of {repeats} steps after {warmup} warm-up, interleaved; C++ kernels "
        f"{'ready in %.1f s' % built if problem is None else 'UNAVAILABLE: ' + problem}.\n"
    )

    g = torch.Generator().manual_seed(12345)
    grads = [torch.empty(s).normal_(generator=g).mul_(1e-2) for s in shapes]
    all_rows: list[Row] = []
    for name in names:
        if name == "muon" and not args.muon:
            all_rows.append(Row(name, "not timed (Newton–Schulz matmuls; --muon to time it)", "ours"))
            continue
        print(f"  measuring {name}...", file=sys.stderr, flush=True)
        all_rows += measure(name, shapes, warmup, repeats, grads)
        gc.collect()

    def gbs(row: Row) -> float:
        return row.bytes_per_param * n_params / row.median / 1e9 if row.times else float("nan")

    fused_rows = [
        r for r in all_rows if r.times and (r.kind == "yardstick" or (r.kind == "torch" and r.impl.endswith(" fused")))
    ]
    best = max(fused_rows, key=gbs) if fused_rows else None
    best_gbs = gbs(best) if best else float("nan")

    def yardstick(name: str) -> Row | None:
        """torch's fused Adam timed in the same round-robin as ``name``."""
        label = "Adam fused" if name == "adam" else YARDSTICK
        return next((r for r in all_rows if r.optimizer == name and r.impl == label and r.times), None)

    print("| optimizer | implementation | ms/step | min ms | B/param | GB/s | ×best fused | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in all_rows:
        if r.error or not r.times:
            print(f"| {r.optimizer} | {r.impl} | {r.error or '—'} | | | | | |")
            continue
        print(
            f"| {r.optimizer} | {r.impl} | {r.median * 1e3:.1f} | {min(r.times) * 1e3:.1f} | "
            f"{r.bytes_per_param} | {gbs(r):.1f} | {gbs(r) / best_gbs:.2f} | {r.peak / 1e6:.1f} |"
        )
    if best:
        print(f"\nFastest torch fused step: {best.impl} (in the {best.optimizer} round-robin), {best_gbs:.1f} GB/s.\n")

    print(
        "Targets: the verdict uses the medians; (min ...) is the same ratio of the fastest steps. "
        "Bandwidth is compared with torch's fused Adam timed in the same round-robin.\n"
    )
    print("| optimizer | target | measured | met |")
    print("|---|---|---|---|")
    for name in names:
        rows = [r for r in all_rows if r.optimizer == name]
        ours = next((r for r in rows if r.kind == "ours"), None)
        if ours is None or not ours.times:
            print(f"| {name} | — | not measured | — |")
            continue
        checks = []
        adam = yardstick(name)
        if name in TORCH_FUSED_TARGET:
            ref = next((r for r in rows if r.impl == TORCH_FUSED_TARGET[name] and r.times), None)
            if ref:
                ratio = ours.median / ref.median
                by_min = min(ours.times) / min(ref.times)
                checks.append((f"≤ 1.05× {ref.impl}", f"{ratio:.2f}× (min {by_min:.2f}×)", ratio <= 1.05))
        else:
            if adam is None:
                checks.append(("≥ 0.8× fused Adam GB/s", "torch fused Adam not timed", False))
            else:
                bw = gbs(ours) / gbs(adam)
                by_min = min(adam.times) / min(ours.times) * ours.bytes_per_param / adam.bytes_per_param
                checks.append(("≥ 0.8× fused Adam GB/s", f"{bw:.2f}× (min {by_min:.2f}×)", bw >= 0.8))
            if name == "muon":  # matmul-bound: at least not slower than torch's, whose matmuls it runs
                ref = next((r for r in rows if r.kind == "torch" and r.times), None)
                if ref:
                    ratio = ours.median / ref.median
                    by_min = min(ours.times) / min(ref.times)
                    checks.append((f"≤ 1.05× {ref.impl}", f"{ratio:.2f}× (min {by_min:.2f}×)", ratio <= 1.05))
            passes = next((r for r in rows if r.kind == "context" and r.times), None)
            if passes and name == "muon":
                rest, rest_min = ours.median - passes.median, min(ours.times) - min(passes.times)
                checks.append((
                    "(not a target) Newton–Schulz alone",
                    f"{passes.median * 1e3:.1f} ms: ours spends {rest * 1e3:.1f} ms ({rest / ours.median:.1%}) "
                    f"on everything else (fastest steps: {rest_min * 1e3:.1f} ms)",
                    None,
                ))
            elif passes and adam is not None:
                checks.append((
                    "(not a target) two passes from memory",
                    f"{gbs(passes) / gbs(adam):.2f}× fused Adam GB/s; "
                    f"ours takes {ours.median / passes.median:.2f}× their time",
                    None,
                ))
            third = [r for r in rows if r.kind == "third" and r.times]
            if third:
                fastest = min(third, key=lambda r: r.median)
                ratio = ours.median / fastest.median
                by_min = min(ours.times) / min(min(r.times) for r in third)
                checks.append((f"≤ 0.5× {fastest.impl}", f"{ratio:.2f}× (min {by_min:.2f}×)", ratio <= 0.5))
        foreach = next((r for r in rows if r.kind == "torch" and r.impl.endswith(" foreach") and r.times), None)
        if foreach:
            checks.append((
                f"peak ≤ {foreach.impl}",
                f"{ours.peak / 1e6:.1f} vs {foreach.peak / 1e6:.1f} MB",
                ours.peak <= foreach.peak,
            ))
        for target, measured, met in checks:
            verdict = "—" if met is None else "yes" if met else "**no**"
            print(f"| {name} | {target} | {measured} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
