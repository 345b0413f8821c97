"""Every named optimizer equals its reference, step for step.

Generated from the registry (``optim.available()``) and the reference table
(``tests/optim/refs``): one entry there gives an optimizer all of these tests.
Cases per optimizer: default hyperparameters, each non-default variant, two
param groups with different lr, and a StepLR schedule; in float32 and float64;
for both our for-loop chain and our multi-tensor path.
"""

from __future__ import annotations

import pytest
import torch

from descentlab import optim

from .problems import default_lr, groups, make_grads, make_params, rel_diff, run, shapes_for
from .refs import REFERENCES

NAMES = optim.available()


def test_every_optimizer_has_a_reference():
    assert sorted(REFERENCES) == sorted(NAMES)


def _cases():
    for name in NAMES:
        ref = REFERENCES.get(name)
        if ref is None:
            continue
        yield pytest.param(name, "default", {}, id=f"{name}-default")
        for i, variant in enumerate(ref.variants):
            yield pytest.param(name, "variant", dict(variant), id=f"{name}-variant{i}")
        yield pytest.param(name, "two_groups", {}, id=f"{name}-two_groups")
        yield pytest.param(name, "steplr", {}, id=f"{name}-steplr")


def _run(name, case, hparams, dtype, foreach):
    """Ours (``foreach`` False: the for-loop chain, True: multi-tensor) or, with
    ``foreach="reference"``, the reference, on the same parameters and gradients."""
    ref_spec = REFERENCES[name]
    shapes = shapes_for(ref_spec)
    grad_seq = make_grads(shapes, dtype=dtype)
    lr = hparams.get("lr", default_lr(name))
    params = make_params(shapes, dtype)
    param_groups = groups(params, case == "two_groups", lr)
    if foreach == "reference":
        # The reference gets the full hyperparameters: the spec's defaults are the
        # reference's names and values (e.g. "nesterov" is SGD(momentum=0.9, nesterov=True)).
        opt = ref_spec.factory(param_groups, **{**optim.get(name).defaults, **hparams})
    else:
        opt = optim.create(name, param_groups, foreach=foreach, **hparams)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.7) if case == "steplr" else None
    run(opt, params, grad_seq, schedule)
    return opt, params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,case,hparams", list(_cases()))
def test_matches_reference(name, case, hparams, dtype):
    ref_spec = REFERENCES[name]
    tol = ref_spec.rtol32 if dtype == torch.float32 else ref_spec.rtol64
    ref, ref_p = _run(name, case, hparams, dtype, foreach="reference")  # once, for both of ours
    loop, loop_p = _run(name, case, hparams, dtype, foreach=False)
    multi, multi_p = _run(name, case, hparams, dtype, foreach=True)

    for i, (a, b, r) in enumerate(zip(loop_p, multi_p, ref_p)):
        assert torch.isfinite(a).all(), f"param {i} is not finite"
        assert not torch.equal(r, make_params(shapes_for(ref_spec), dtype)[i]), "reference did not move"
        assert rel_diff(a, r) <= tol, f"for-loop param {i}: {rel_diff(a, r):.2e} > {tol}"
        assert rel_diff(b, r) <= tol, f"multi-tensor param {i}: {rel_diff(b, r):.2e} > {tol}"
        assert rel_diff(a, b) <= tol, f"for-loop vs multi-tensor param {i}: {rel_diff(a, b):.2e}"

    ref_state = getattr(ref, "state", None)
    if ref_spec.state_map and ref_state is not None:
        for p_ours, p_multi, p_ref in zip(loop_p, multi_p, ref_p):
            for ours_key, ref_key in ref_spec.state_map.items():
                if ours_key in loop.state[p_ours] and ref_key in ref_state[p_ref]:
                    want = ref_state[p_ref][ref_key]
                    assert rel_diff(loop.state[p_ours][ours_key], want) <= tol, ours_key
                    assert rel_diff(multi.state[p_multi][ours_key], want) <= tol, ours_key
