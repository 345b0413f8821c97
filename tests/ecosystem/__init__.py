"""descentlab inside other training loops (Lightning, Hugging Face, TensorBoard)."""

import torch


def assert_same_optimizer_state(opt, ref, params, ref_params) -> None:
    """Every state entry of ``opt`` for ``params`` equals ``ref``'s for ``ref_params``, exactly."""
    for p, q in zip(params, ref_params):
        assert opt.state[p].keys() == ref.state[q].keys()
        for key, value in ref.state[q].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(opt.state[p][key], value, rtol=0, atol=0)
            else:
                assert opt.state[p][key] == value, key
