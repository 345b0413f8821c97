"""A check that building a workload draws from no global generator."""

from __future__ import annotations

import random

import numpy as np
import torch


def assert_no_global_draws(build):
    """``build()`` leaves torch's, numpy's and Python's global generators as they were; returns its result."""
    def seed():
        torch.manual_seed(123)
        np.random.seed(123)
        random.seed(123)

    seed()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    seed()
    result = build()
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    return result
