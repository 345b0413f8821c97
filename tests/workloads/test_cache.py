import random
import warnings

import numpy as np
import pytest

from descentlab.workloads import cache, cache_dir, mnist1d

SMALL = {"num_samples": 200}  # 160 train / 40 test: fast to generate


def data_files(directory):
    """The cached arrays in ``directory``, without the package's default arguments cached beside them."""
    return [p for p in directory.iterdir() if not p.name.startswith("mnist1d-args-")]


@pytest.fixture
def counted(monkeypatch):
    """Count calls of the generator."""
    calls = []
    real = mnist1d.generate

    def generate(args):
        calls.append(dict(args))
        return real(args)

    monkeypatch.setattr(mnist1d, "generate", generate)
    return calls


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv(cache.ENV_VAR)
    assert cache_dir() == cache.Path.home() / ".cache" / "descentlab"


def test_second_load_uses_the_cache(tmp_path, counted, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    first = mnist1d.mnist1d_arrays(**SMALL)
    assert len(counted) == 1 and first["x"].shape == (160, 40) and first["x_test"].shape == (40, 40)
    files = data_files(tmp_path)
    assert len(files) == 1 and files[0].name.startswith("mnist1d-") and files[0].suffix == ".npz"
    second = mnist1d.mnist1d_arrays(**SMALL)
    assert len(counted) == 1
    for k in first:
        assert np.array_equal(first[k], second[k])
    # Other generation arguments are another cache entry.
    mnist1d.mnist1d_arrays(**SMALL, seed=1)
    assert len(counted) == 2 and len(data_files(tmp_path)) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupt_cache_is_regenerated(tmp_path, counted, damage):
    first = mnist1d.mnist1d_arrays(tmp_path, **SMALL)
    (path,) = data_files(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"not a zip file" * 10, "truncate": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.warns(UserWarning, match="regenerating"):
        again = mnist1d.mnist1d_arrays(tmp_path, **SMALL)
    assert len(counted) == 2
    assert np.array_equal(again["x"], first["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mnist1d.mnist1d_arrays(tmp_path, **SMALL)  # the rewritten file is valid again
    assert len(counted) == 2


def test_cache_of_other_arguments_or_wrong_shapes_is_rejected(tmp_path, counted):
    mnist1d.mnist1d_arrays(tmp_path, **SMALL)
    (path,) = data_files(tmp_path)
    with pytest.warns(UserWarning, match="made with different arguments"):
        assert cache.load_cached(path, {"something": "else"}) is None  # the key stored inside must match
    good = dict(np.load(path))
    stored_key = str(good.pop(cache._KEY_FIELD))
    good["x"] = good["x"][:5]
    np.savez(path, **good, **{cache._KEY_FIELD: np.array(stored_key)})
    with pytest.warns(UserWarning, match="array 'x' has shape"):
        mnist1d.mnist1d_arrays(tmp_path, **SMALL)
    assert len(counted) == 2


def test_atomic_write_leaves_no_temp_files(tmp_path):
    mnist1d.mnist1d_arrays(tmp_path, **SMALL)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unwritable_cache_still_returns_the_data(tmp_path, counted):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="could not write the cache file"):
        arrays = mnist1d.mnist1d_arrays(blocker / "cache", **SMALL)
    assert arrays["x"].shape == (160, 40) and len(counted) == 1


def test_generation_restores_the_global_random_states(tmp_path):
    np.random.seed(1)
    random.seed(1)
    expected = (np.random.rand(), random.random())
    np.random.seed(1)
    random.seed(1)
    mnist1d.generate(mnist1d.generation_args(**SMALL))
    assert (np.random.rand(), random.random()) == expected


def test_generation_arguments():
    args = mnist1d.generation_args()
    assert args["num_samples"] == 5000 and args["train_split"] == 0.8 and args["final_seq_length"] == 40
    assert "url" not in args
    with pytest.raises(ValueError, match="unknown mnist1d generation argument"):
        mnist1d.generation_args(num_sample=10)


def test_cached_arrays_are_read_without_importing_the_mnist1d_package(tmp_path):
    # importing mnist1d.data imports scipy and matplotlib (about a second per process);
    # once its default arguments are cached, reading cached arrays does not need it
    import subprocess
    import sys

    script = ("import sys; from descentlab.workloads import mnist1d; "
              f"a = mnist1d.mnist1d_arrays({str(tmp_path)!r}, num_samples=200); "
              "imported = 'mnist1d.data' in sys.modules; "
              f"print(a['x'].shape[0], imported, mnist1d.generation_args({str(tmp_path)!r}) == mnist1d._package_args())")
    first, second = (subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
                     for _ in range(2))
    assert first == ["160", "True", "True"]  # generated: the package was needed
    assert second == ["160", "False", "True"]  # read: it was not, and the cached defaults are the package's
