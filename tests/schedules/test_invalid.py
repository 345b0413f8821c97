"""Every invalid setting raises ValueError naming the argument and its value."""

from __future__ import annotations

import pytest

from descentlab import schedules

from .helpers import optimizer

# name, arguments, text the message must contain
INVALID = [
    ("step", dict(step_size=0), "invalid step_size=0"),
    ("step", dict(step_size=-3), "invalid step_size=-3"),
    ("step", dict(step_size=2.5), "invalid step_size=2.5"),
    ("step", dict(step_size=10, gamma=-0.1), "invalid gamma=-0.1"),
    ("multistep", dict(milestones=[30, 10]), "invalid milestones=[30, 10]: expected strictly increasing"),
    ("multistep", dict(milestones=[10, 10]), "invalid milestones=[10, 10]"),
    ("multistep", dict(milestones=[-1, 10]), "invalid milestones=[-1, 10]"),
    ("multistep", dict(milestones=5), "invalid milestones=5"),
    ("multistep", dict(milestones=[10], gamma=-2.0), "invalid gamma=-2.0"),
    ("exponential", dict(gamma=-0.5), "invalid gamma=-0.5"),
    ("exponential", dict(gamma=float("nan")), "invalid gamma=nan"),
    ("inverse_time", dict(decay=-1.0), "invalid decay=-1.0"),
    ("cosine", dict(total_steps=0), "invalid total_steps=0"),
    ("cosine", dict(total_steps=-5), "invalid total_steps=-5"),
    ("cosine", dict(total_steps=100, min_lr=0.5), "invalid min_lr=0.5: expected min_lr <= the lr=0.1"),
    ("cosine", dict(total_steps=100, min_lr=-0.01), "invalid min_lr=-0.01"),
    ("cosine", dict(total_steps=100, warmup_steps=150),
     "invalid warmup_steps=150: expected warmup_steps < total_steps=100"),
    ("cosine", dict(total_steps=100, warmup_steps=-1), "invalid warmup_steps=-1"),
    ("cosine", dict(total_steps=100, warmup_steps=5, warmup_start_factor=1.5), "invalid warmup_start_factor=1.5"),
    ("warmup_cosine", dict(warmup_steps=200, total_steps=100), "invalid warmup_steps=200"),
    ("warmup_cosine", dict(warmup_steps=10, total_steps=0), "invalid total_steps=0"),
    ("warmup_cosine", dict(warmup_steps=10, total_steps=100, min_lr=1.0), "invalid min_lr=1.0"),
    ("cyclic", dict(base_lr=0.1, max_lr=0.01), "invalid max_lr=0.01: expected max_lr >= base_lr=0.1"),
    ("cyclic", dict(max_lr=0.05), "invalid max_lr=0.05: expected max_lr >= the lr=0.1"),
    ("cyclic", dict(max_lr=1.0, step_size_up=0), "invalid step_size_up=0"),
    ("cyclic", dict(max_lr=1.0, step_size_down=-1), "invalid step_size_down=-1"),
    ("cyclic", dict(max_lr=1.0, mode="triangle"), "invalid mode='triangle'"),
    ("cyclic", dict(max_lr=1.0, mode="exp_range", gamma=-1.0), "invalid gamma=-1.0"),
    ("one_cycle", dict(total_steps=0), "invalid total_steps=0"),
    ("one_cycle", dict(total_steps=100, pct_start=1.5), "invalid pct_start=1.5"),
    ("one_cycle", dict(total_steps=10, pct_start=0.05), "invalid pct_start=0.05"),
    ("one_cycle", dict(total_steps=100, pct_start=0.6, three_phase=True), "invalid pct_start=0.6"),
    ("one_cycle", dict(total_steps=100, anneal_strategy="cosine"), "invalid anneal_strategy='cosine'"),
    ("one_cycle", dict(total_steps=100, div_factor=0.0), "invalid div_factor=0.0"),
    ("one_cycle", dict(total_steps=100, max_lr=-1.0), "invalid max_lr=-1.0"),
    ("one_cycle", dict(total_steps=100, warmup_steps=100), "invalid warmup_steps=100"),
    ("polynomial", dict(total_steps=0), "invalid total_steps=0"),
    ("polynomial", dict(total_steps=10, power=-1.0), "invalid power=-1.0"),
    ("wsd", dict(stable_steps=-1, decay_steps=10), "invalid stable_steps=-1"),
    ("wsd", dict(stable_steps=10, decay_steps=0), "invalid decay_steps=0"),
    ("wsd", dict(stable_steps=10, decay_steps=10, decay_type="sqrt"), "invalid decay_type='sqrt'"),
    ("wsd", dict(stable_steps=10, decay_steps=10, min_lr=0.2), "invalid min_lr=0.2"),
    ("plateau", dict(factor=1.0), "invalid factor=1.0"),
    ("plateau", dict(factor=-0.5), "invalid factor=-0.5"),
    ("plateau", dict(patience=-1), "invalid patience=-1"),
    ("plateau", dict(mode="minimum"), "invalid mode='minimum'"),
    ("plateau", dict(threshold=-1e-4), "invalid threshold=-0.0001"),
    ("plateau", dict(threshold_mode="relative"), "invalid threshold_mode='relative'"),
    ("plateau", dict(cooldown=-2), "invalid cooldown=-2"),
    ("plateau", dict(min_lr=0.5), "invalid min_lr=0.5"),
    ("plateau", dict(min_lr=[0.01, 0.01]), "invalid min_lr=[0.01, 0.01]: expected a number or a list of 1"),
]


@pytest.mark.parametrize(("name", "kw", "message"), INVALID, ids=[f"{n}-{m.split()[1]}" for n, _, m in INVALID])
def test_invalid_setting_raises_naming_it(name, kw, message):
    with pytest.raises(ValueError) as info:
        schedules.create(name, optimizer(), **kw)
    assert message in str(info.value)


def test_unknown_schedule_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown schedule 'cosin'; did you mean 'cosine'") as info:
        schedules.create("cosin", optimizer())
    assert "available: constant" in str(info.value)


def test_unknown_argument_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['T_max'\] for schedule 'cosine'") as info:
        schedules.create("cosine", optimizer(), T_max=100)
    assert "accepted: min_lr, total_steps, warmup_start_factor, warmup_steps" in str(info.value)
    with pytest.raises(TypeError, match="did you mean 'step_size'"):  # also a TypeError, as Python's
        schedules.create("step", optimizer(), stepsize=10)


def test_missing_argument_is_named():
    with pytest.raises(ValueError, match=r"schedule 'cosine' needs the argument\(s\) \['total_steps'\]"):
        schedules.create("cosine", optimizer())


def test_per_group_checks_name_the_group():
    with pytest.raises(ValueError, match="invalid min_lr=0.05: expected min_lr <= the lr=0.01 of param group 1"):
        schedules.create("cosine", optimizer((0.1, 0.01)), total_steps=10, min_lr=0.05)


def test_not_an_optimizer():
    with pytest.raises(TypeError, match="not a torch.optim.Optimizer"):
        schedules.create("constant", object())


def test_lr_curve_checks_its_arguments():
    with pytest.raises(ValueError, match="invalid steps=-1"):
        schedules.lr_curve("constant", -1)
    with pytest.raises(ValueError, match="invalid base_lr=-0.1"):
        schedules.lr_curve("constant", 3, base_lr=-0.1)
    with pytest.raises(ValueError, match="'plateau' needs 9 metrics"):
        schedules.lr_curve("plateau", 10)
    with pytest.raises(ValueError, match="invalid total_steps=0"):
        schedules.lr_curve("cosine", 3, total_steps=0)
