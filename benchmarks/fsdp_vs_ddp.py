"""Time per training step of FSDP against DDP on two real models, 2 gloo processes.

Models: a ResNet-18 (BasicBlock ×[2, 2, 2, 2], widths 64–512, BatchNorm; He et
al. 2016's CIFAR stem: 3×3 conv, no max-pool) on 3×32×32 inputs, batch 32; and
a Hugging Face GPT-2 (6 layers, 256 wide, 8 heads, vocabulary 2048, tied
embeddings) on 64-token sequences, batch 16, its own loss. torchvision is not
used: PyPI's torchvision does not import beside the pinned CPU torch 2.13.0.

Each process runs the step the Trainer runs — forward, backward (the strategy's
gradient collectives), AdamW step — on its half of the global batch:

* ``ddp``: DistributedDataParallel with ``static_graph`` (the Trainer's default);
* ``ddp-find-unused``: with ``find_unused_parameters=True`` (one autograd-graph
  walk per step; the Trainer's choice under gradient accumulation);
* ``fsdp``: ``descentlab.distributed.strategy.shard`` (FSDP2 groups by blocks,
  tied weights in the root's group);
* ``fsdp-per-leaf``: ``fully_shard`` on every module that holds parameters, then
  the root — what ``shard`` did before issue 30 (the GPT-2 cannot be wrapped so:
  its tied head and embedding would land in two groups).

Every variant of a model lives in the same two processes, and they step
round-robin (one step of each in turn), so that all see the same machine load;
after ``--warmup`` untimed steps each, the table gives the median of ``--steps``
timed steps (the slower rank's time per step) and the ratio to ``ddp`` of the
same run.

    python benchmarks/fsdp_vs_ddp.py [--steps 10] [--warmup 3] [--models resnet18,gpt2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORLD = 2


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def _model_and_batch(name: str, rank: int):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(rank)
    if name == "resnet18":
        model = ResNet18()
        x = torch.randn(32 // WORLD, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (32 // WORLD,), generator=g)
        return model, lambda m: nn.functional.cross_entropy(m(x), y)
    import transformers

    config = transformers.GPT2Config(vocab_size=2048, n_positions=64, n_embd=256, n_layer=6, n_head=8,
                                     bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 2048, (16 // WORLD, 64), generator=g)
    return model, lambda m: m(input_ids=ids, labels=ids).loss


def _wrap(variant: str, model: nn.Module):
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    from descentlab.distributed import strategy

    if variant == "ddp":
        return DistributedDataParallel(model, static_graph=True)
    if variant == "ddp-find-unused":
        return DistributedDataParallel(model, find_unused_parameters=True)
    if variant == "fsdp":
        return strategy.shard(model)
    for module in list(model.modules())[1:]:  # fsdp-per-leaf
        if any(True for _ in module.parameters(recurse=False)):
            fully_shard(module)
    fully_shard(model)
    return model


def _worker(rank, store, models, variants, steps, warmup, out):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    from descentlab import optim

    results = {}
    for name in models:
        runs = {}
        for variant in variants:
            if name == "gpt2" and variant == "fsdp-per-leaf":
                continue
            model, loss_of = _model_and_batch(name, rank)
            wrapped = _wrap(variant, model)
            runs[variant] = (wrapped, loss_of, optim.create("adamw", wrapped.parameters(), lr=1e-4), [])
        for i in range(warmup + steps):  # round-robin: every variant sees the same machine load
            for variant, (wrapped, loss_of, opt, times) in runs.items():
                dist.barrier()
                start = time.perf_counter()
                loss_of(wrapped).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                elapsed = torch.tensor([time.perf_counter() - start])
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the step ends when the slower rank's does
                if i >= warmup:
                    times.append(float(elapsed))
        for variant, (*_, times) in runs.items():
            results[(name, variant)] = statistics.median(times)
        del runs
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", default="resnet18,gpt2")
    parser.add_argument("--variants", default="ddp,ddp-find-unused,fsdp,fsdp-per-leaf")
    args = parser.parse_args()
    models, variants = args.models.split(","), args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/results.pt"
        mp.spawn(_worker, args=(f"{tmp}/store", models, variants, args.steps, args.warmup, out),
                 nprocs=WORLD, join=True)
        results = torch.load(out, weights_only=True)
    print(f"torch {torch.__version__}, {WORLD} gloo processes, 1 thread each; median of {args.steps} steps "
          f"after {args.warmup} untimed")
    print(f"{'model':10} {'strategy':18} {'ms/step':>9} {'vs ddp':>7}")
    for (name, variant), seconds in results.items():
        base = results.get((name, "ddp"))
        ratio = f"{seconds / base:.2f}" if base else "-"
        print(f"{name:10} {variant:18} {seconds * 1e3:9.1f} {ratio:>7}")


if __name__ == "__main__":
    main()
