"""One-time costs never fall inside a timed training region.

The kernel build (descentlab.optim.fused.build.ops) and data generation
(descentlab.workloads.cache.cached) are instrumented with
descentlab.timing.one_time; the Trainer times each batch inside
descentlab.timing.timed. With DESCENTLAB_STRICT_TIMING=1 a one-time cost
inside a timed region raises, so these tests fail if a run would pay one
while being timed — they do not measure any duration.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import descentlab
from descentlab import optim, timing
from descentlab.optim.fused import build
from descentlab.train import Callback, Trainer
from descentlab.workloads import Workload


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv(timing.STRICT_ENV, "1")
    monkeypatch.setattr(timing, "EVENTS", [])
    if build.available() is not None:
        pytest.skip(reason=f"the C++ kernels cannot be built here: {build.available()}")
    loaded = build._loaded
    monkeypatch.setattr(build, "_loaded", None)  # as on a fresh process: not loaded yet
    yield
    build._loaded = loaded


def _data(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x.sum(1) > 0).long()


class _LateKernel(Callback):
    """Asks for the kernels inside a timed step, as the first step of an
    optimizer did before (the defect this guards against)."""

    def on_before_step(self, trainer):
        build._loaded = None
        build.ops()


def test_strict_mode_catches_a_one_time_cost_inside_a_timed_step(strict):
    model = nn.Linear(4, 2)
    trainer = Trainer(model, optim.create("sgd", model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      batch_size=32, callbacks=[_LateKernel()])
    with pytest.raises(timing.TimedOneTimeCost, match="inside a timed training region"):
        trainer.fit(_data(), max_steps=3)


@pytest.mark.parametrize("name", ["adamw", "lion", "rmsprop", "lamb", "adafactor"])
def test_the_trainer_loads_the_kernels_before_its_first_timed_step(name, strict):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = optim.create(name, model.parameters(), lr=1e-3)
    assert build.needed_by(opt)
    Trainer(model, opt, nn.CrossEntropyLoss(), batch_size=32).fit(_data(), max_steps=5)
    kinds = [(e.kind, e.in_timed_region) for e in timing.EVENTS]
    assert ("fused C++ kernel build or load", False) in kinds
    assert timing.violations() == []


def test_compare_pays_kernel_builds_and_data_generation_before_timing(strict, tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_CACHE", str(tmp_path / "cache"))  # empty: the data is generated
    from descentlab.workloads.cache import cached

    def factory(seed=0):
        arrays = cached("timing-test", {"seed": seed}, lambda: {"x": _data(600)[0].numpy(), "y": _data(600)[1].numpy()})
        x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        return Workload(name="timing", train=(x[:400], y[:400]), val=(x[400:500], y[400:500]),
                        test=(x[500:], y[500:]), make_model=lambda: nn.Linear(4, 2),
                        loss_fn=nn.CrossEntropyLoss(), metric="accuracy")

    result = descentlab.compare(factory, ["sgd", "adamw", "lion", "rmsprop"], steps=40, target=0.6,
                                out=tmp_path / "cmp", progress=False, log=lambda m: None)
    kinds = {e.kind for e in timing.EVENTS}
    assert "data generation (timing-test)" in kinds and "fused C++ kernel build or load" in kinds
    assert timing.violations() == []
    assert all(r["status"] == "finished" for r in result.rows)


def test_import_descentlab_leaves_torchs_heavy_optional_modules_unimported():
    """A fixed cost every run and worker pays: torch.distributed.tensor (about half a second) is
    imported by sharded training only, SQLAlchemy (0.2 s) by what writes a run store
    (benchmarks/import_cost.py measures the whole import)."""
    import subprocess
    import sys

    code = ("import sys, descentlab, descentlab.optim, descentlab.compare, descentlab.experiment.run; "
            "print(sorted(m for m in ('torch.distributed.tensor', 'torch.distributed.optim', 'sqlalchemy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_an_optimizer_s_life_and_a_one_process_run_leave_torch_dynamo_unimported(tmp_path):
    """torch.optim.Optimizer's add_param_group, zero_grad, state_dict and load_state_dict import
    torch._dynamo (with sympy and FSDP: about a second) at their first call; a ChainOptimizer
    skips that wrapper while dynamo is not loaded (optim/chain.py), and a one-process run's
    checkpoint does not load FSDP to ask whether the model is FSDP's."""
    import subprocess
    import sys

    code = ("import sys, torch; from descentlab import optim; from descentlab.cli import main; "
            "p = torch.nn.Parameter(torch.ones(3)); o = optim.create('adamw', [p], lr=0.1); p.grad = torch.ones(3); "
            "o.step(); s = o.state_dict(); o.zero_grad(); o.load_state_dict(s); o.add_param_group({'params': [torch.nn.Parameter(torch.ones(2))]}); "
            f"assert main(['train', '--workload', 'linreg', '--steps', '12', '--quiet', '--out', {str(tmp_path / 'run')!r}]) == 0; "
            "print(sorted(m for m in ('torch._dynamo', 'torch.distributed.fsdp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
