"""A user's Workload: the minimal construction, metrics, Datasets, and
workloads added by an installed package's entry point."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from descentlab import workloads
from descentlab.train import Trainer
from descentlab.workloads import Workload


def _xy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).long()


def test_the_minimal_construction_of_design_md_works_as_written():
    x, y = _xy()

    class MyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)

    w = Workload(name="my-problem", train=(x, y), val=(x, y), test=(x, y),
                 make_model=lambda: MyNet(), loss_fn=torch.nn.CrossEntropyLoss(), metric="accuracy")
    assert w.metric == "accuracy" and w.metric_mode == "max" and w.metric_range == (0.0, 1.0)
    assert w.task == "classification" and w.recipe["optimizer"] == "adam" and w.recipe["epochs"] == 10
    assert w.default_lr("adam") == 1e-3 and set(w.lr_defaults) >= {"sgd", "muon", "prodigy"}
    assert w.num_examples("train") == 40


@pytest.mark.parametrize("metric,mode,value", [("loss", "min", None), ("perplexity", "min", None)])
def test_loss_based_metrics_come_from_the_evaluation_loss(metric, mode, value):
    x, y = _xy()
    w = Workload(name="p", train=(x, y), val=(x, y), test=(x, y), make_model=lambda: nn.Linear(3, 2),
                 loss_fn=nn.CrossEntropyLoss(), metric=metric)
    assert w.metric_mode == mode
    torch.manual_seed(0)
    model = w.make_model()
    t = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), w.loss_fn, metrics={w.metric: w.metric_fn})
    res = t.evaluate((x, y))
    expected = res["loss"] if metric == "loss" else math.exp(res["loss"])
    assert res[metric] == pytest.approx(expected, rel=1e-12)


def test_a_callable_metric_needs_its_direction():
    x, y = _xy()
    kw = dict(name="p", train=(x, y), val=(x, y), test=(x, y), make_model=lambda: nn.Linear(3, 2),
              loss_fn=nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="needs its direction"):
        Workload(**kw, metric=lambda out, y: 0.0)
    w = Workload(**kw, metric=lambda out, y: 0.0, metric_mode="min")
    assert w.metric == "metric" and w.metric_range == (-math.inf, math.inf)
    with pytest.raises(ValueError, match="unknown metric 'acuracy'; did you mean 'accuracy'"):
        Workload(**kw, metric="acuracy")
    with pytest.raises(TypeError, match="map-style torch.utils.data.Dataset"):
        Workload(**{**kw, "val": iter([1, 2])}, metric="loss")
    with pytest.raises(ValueError, match="unknown recipe key"):
        Workload(**kw, metric="loss", recipe={"learning_rate": 1})


class _Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x, self.y = _xy(n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class _KwNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_batches_follow_the_tensor_order_and_resume_mid_epoch(workers):
    """A Dataset is batched in the same seeded order as tensors would be, with
    DataLoader workers or without, and a resumed epoch starts where it stopped."""
    from descentlab.train.data import DatasetBatches, TensorBatches

    ds = _Items(50)
    a = DatasetBatches(ds, 8, seed=3, num_workers=workers)
    b = TensorBatches(ds.x, ds.y, 8, seed=3)
    for epoch in (0, 1):
        got = [batch["labels"] for batch in a.epoch(epoch)]
        want = [yb for _, yb in b.epoch(epoch)]
        assert len(got) == len(want) == 7
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    tail = [batch["x"] for batch in a.epoch(1, start=4)]
    assert all(torch.equal(g, w) for g, w in zip(tail, [xb for xb, _ in b.epoch(1, start=4)]))


def test_trainer_takes_a_dict_dataset_and_a_model_called_by_keyword():
    torch.manual_seed(0)
    model = _KwNet()
    t = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), nn.CrossEntropyLoss(), batch_size=10,
                metrics={"accuracy": workloads.accuracy})
    t.fit(_Items(60), _Items(30), max_steps=40)
    assert t.step == 40 and t.evaluate(_Items(30))["accuracy"] > 0.8


def test_an_installed_packages_entry_point_adds_a_named_workload(tmp_path):
    """A real distribution on sys.path (a dist-info with entry_points.txt), as
    pip would install it; `descentlab list workloads` shows it and train runs it."""
    pkg = tmp_path / "site"
    (pkg / "blob_plugin").mkdir(parents=True)
    (pkg / "blob_plugin" / "__init__.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from descentlab.workloads import Workload

        def make(seed=0):
            """Blobs from an installed plugin."""
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(200, 2, generator=g)
            y = (x[:, 0] > 0).long()
            return Workload(name="plugin-blobs", train=(x[:120], y[:120]), val=(x[120:160], y[120:160]),
                            test=(x[160:], y[160:]), make_model=lambda: nn.Linear(2, 2),
                            loss_fn=nn.CrossEntropyLoss(), metric="accuracy", recipe={"steps": 30})
    '''))
    info = pkg / "blob_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: blob-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[descentlab.workloads]\nplugin-blobs = blob_plugin:make\n")
    env = {"PYTHONPATH": str(pkg), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([sys.executable, "-m", "descentlab", "list", "workloads"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("plugin-blobs"))
    assert "Blobs from an installed plugin." in line and "blob-plugin" in line
    trained = subprocess.run([sys.executable, "-m", "descentlab", "train", "--workload", "plugin-blobs", "--quiet",
                              "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    assert trained.returncode == 0, trained.stderr
    assert "plugin-blobs: adam for 30 steps" in trained.stdout
    unknown = subprocess.run([sys.executable, "-m", "descentlab", "train", "--workload", "plugin-blob"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert unknown.returncode == 2 and "did you mean 'plugin-blobs'" in unknown.stderr
