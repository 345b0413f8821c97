import pytest

from descentlab import workloads

EXPECTED = ["linreg", "diabetes", "digits-mlp", "digits-cnn", "mnist1d-logreg", "mnist1d-mlp",
            "mnist1d-cnn", "mnist-cnn", "charlm",
            # the families suite's (descentlab.workloads.families)
            "digits-resnet", "digits-vit", "charlm-tiny", "translate", "molgraph", "clicks", "digits-unet",
            "mnist1d-ctc"]


def test_available_lists_every_builtin_workload():
    assert workloads.available() == EXPECTED
    assert set(workloads.summaries()) == set(EXPECTED)
    assert all(isinstance(s, str) and s and "\n" not in s for s in workloads.summaries().values())


@pytest.mark.parametrize("typo, suggestion", [("mnist1d-cn", "mnist1d-cnn"), ("digit-mlp", "digits-mlp"),
                                              ("linregg", "linreg"), ("diabets", "diabetes")])
def test_unknown_name_suggests_close_matches(typo, suggestion):
    with pytest.raises(ValueError, match=f"unknown workload '{typo}'.*did you mean.*'{suggestion}'"):
        workloads.load(typo)


def test_unknown_name_without_close_match_lists_all():
    with pytest.raises(ValueError, match="available: linreg, diabetes") as info:
        workloads.load("cifar10")
    assert "did you mean" not in str(info.value)


def test_names_are_normalised():
    assert workloads.get("Digits_MLP").name == "digits-mlp"


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_invalid_seed(seed):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        workloads.load("linreg", seed=seed)


def test_numpy_integer_seed():
    import numpy as np

    assert workloads.load("linreg", seed=np.int64(3)).seed == 3


def test_non_string_name():
    with pytest.raises(TypeError):
        workloads.load(3)
