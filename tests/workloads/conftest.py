import pytest

from descentlab.workloads import cache, mnist1d


@pytest.fixture(scope="session")
def mnist1d_cache_dir(tmp_path_factory):
    """A cache directory holding the default MNIST-1D arrays, generated once per session."""
    directory = tmp_path_factory.mktemp("descentlab-cache")
    mnist1d.mnist1d_arrays(directory)
    return directory


@pytest.fixture
def use_mnist1d_cache(mnist1d_cache_dir, monkeypatch):
    """Point DESCENTLAB_CACHE at the session's cache (never the user's own)."""
    monkeypatch.setenv(cache.ENV_VAR, str(mnist1d_cache_dir))
    return mnist1d_cache_dir
