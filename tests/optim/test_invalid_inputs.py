"""Invalid inputs: each raises one clear error naming the value and what was expected."""

from __future__ import annotations

import re

import pytest
import torch

from descentlab import optim
from descentlab.optim import transforms as T


def _params():
    return [torch.zeros(3, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]


INVALID = [
    # (optimizer, hyperparameters, error type, expected message)
    ("sgd", {"lr": -0.1}, ValueError, "invalid lr=-0.1: expected a finite number >= 0"),
    ("adam", {"lr": float("nan")}, ValueError, "invalid lr=nan"),
    ("adam", {"betas": (1.0, 0.999)}, ValueError, "invalid betas=(1.0, 0.999): expected a pair"),
    ("adamw", {"betas": (0.9, -0.1)}, ValueError, "invalid betas=(0.9, -0.1)"),
    ("adam", {"betas": 0.9}, ValueError, "invalid betas=0.9"),
    ("adam", {"eps": 0.0}, ValueError, "invalid eps=0.0: expected a finite number > 0"),
    ("adam", {"eps": -1e-8}, ValueError, "invalid eps=-1e-08"),
    ("adamw", {"weight_decay": -0.01}, ValueError, "invalid weight_decay=-0.01: expected a finite number >= 0"),
    ("momentum", {"momentum": -0.5}, ValueError, "invalid momentum=-0.5"),
    ("sgd", {"nesterov": True}, ValueError, "invalid nesterov=True with momentum=0.0"),
    ("nesterov", {"dampening": 0.1}, ValueError, "dampening=0.1"),
    ("adam", {"amsgrad": "yes"}, ValueError, "invalid amsgrad='yes': expected True or False"),
    ("adam", {"l1": -1.0}, ValueError, "invalid l1=-1.0"),
    ("adam", {"l2": -1.0}, ValueError, "invalid l2=-1.0"),
    ("adam", {"decoupled_decay": -1.0}, ValueError, "invalid decoupled_decay=-1.0"),
    ("adam", {"betas1": 0.9}, TypeError, "adam got unknown hyperparameter(s) ['betas1']"),
    ("sgd", {"exclude_from_decay": "bias"}, ValueError, "invalid exclude_from_decay='bias'"),
]


@pytest.mark.parametrize("name,hparams,error,message", INVALID, ids=[f"{r[0]}-{list(r[1])[0]}" for r in INVALID])
def test_invalid_hyperparameter(name, hparams, error, message):
    with pytest.raises(error, match=re.escape(message)):
        optim.create(name, _params(), **hparams)


@pytest.mark.parametrize("name", optim.available())
def test_negative_lr_is_rejected_by_every_optimizer(name):
    with pytest.raises(ValueError, match=r"invalid lr=-1\.0"):
        optim.create(name, _params(), lr=-1.0)


@pytest.mark.parametrize("name", optim.available())
def test_generic_invalid_values_are_rejected(name):
    defaults = optim.get(name).defaults
    bad = {}
    if isinstance(defaults.get("betas"), tuple):
        bad["betas"] = (0.9, 1.5)
    if isinstance(defaults.get("eps"), float):
        bad["eps"] = -1.0
    if isinstance(defaults.get("weight_decay"), float):
        bad["weight_decay"] = -1.0
    if isinstance(defaults.get("momentum"), float):
        bad["momentum"] = -1.0
    for key, value in bad.items():
        with pytest.raises(ValueError, match=rf"invalid {key}="):
            optim.create(name, _params(), **{key: value})


def test_invalid_value_in_a_later_param_group_is_rejected():
    with pytest.raises(ValueError, match=r"invalid lr=-0\.5"):
        optim.create("adam", [{"params": [torch.zeros(2)]}, {"params": [torch.zeros(3)], "lr": -0.5}])


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; did you mean 'adam'"):
        optim.create("adamm", _params())
    with pytest.raises(ValueError, match=r"unknown optimizer 'nesterof'; did you mean 'nesterov'"):
        optim.create("nesterof", _params())
    with pytest.raises(ValueError, match=r"available: sgd, momentum"):
        optim.create("zzz", _params())


def test_names_are_case_and_dash_insensitive():
    assert optim.create("AdamW", _params()).name == "adamw"


def test_a_bare_tensor_is_rejected():
    with pytest.raises(TypeError, match=r"got a single Tensor of shape \(3, 2\); pass \[tensor\]"):
        optim.create("sgd", torch.zeros(3, 2, requires_grad=True))
    with pytest.raises(TypeError, match=r"single Tensor"):
        optim.chain(torch.zeros(3), T.scale_by_adam())


def test_the_same_parameter_twice_is_rejected():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"the same parameter appears twice in a param group"):
        optim.create("adam", [p, p])
    with pytest.raises(ValueError, match=r"some parameters appear in more than one parameter group"):
        optim.create("adam", [{"params": [p]}, {"params": [p]}])


def test_empty_parameters_are_rejected():
    with pytest.raises(ValueError, match=r"empty parameter list"):
        optim.create("sgd", [])


def test_invalid_transform_settings():
    with pytest.raises(ValueError, match=r"invalid max_norm=0\.0: expected a finite number > 0"):
        T.clip_by_global_norm(max_norm=0.0)
    with pytest.raises(ValueError, match=r"invalid clip_value=-1"):
        T.clip_by_value(clip_value=-1)
    with pytest.raises(TypeError, match=r"ScaleByAdam got unknown hyperparameter\(s\) \['beta1'\]"):
        T.scale_by_adam(beta1=0.9)


def test_conflicting_defaults_in_a_chain_are_reported():
    with pytest.raises(ValueError, match=r"hyperparameter 'weight_decay' is read by"):
        optim.chain(_params(), T.add_l2(weight_decay=0.1), T.add_decayed_weights(weight_decay=0.2))
