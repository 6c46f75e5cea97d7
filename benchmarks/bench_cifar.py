"""Speed of notebook 03's models (a benchmark, not a test): training and PGD throughput of the
WideResNet with ReLU, Stochastic LWTA and PNI layers on CIFAR-sized input.

    python benchmarks/bench_cifar.py [--depths 10,34] [--batch 32] [--threads 2] [--device auto]

Random inputs of shape (batch, 3, 32, 32); the first step of each loop is a warm-up and is not
counted. Prints images per second for one SGD step and input-gradient steps per second for PGD.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from robust_utils import attacks
from robust_utils.core import runtime
from robust_utils.nn.models import build_model

VARIANTS = {"relu": {}, "stochastic_lwta": {"activation": "stochastic_lwta"}, "pni": {"layer": "pni"}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(depth: int, variant: str, batch: int, device: torch.device, steps: int = 5) -> tuple[float, float]:
    model = build_model("wide_resnet", seed=0, device=device, depth=depth, **VARIANTS[variant])
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for i in range(steps + 1):
        if i == 1:
            _sync(device)
            t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    _sync(device)
    train_rate = steps * batch / (time.perf_counter() - t)
    model.eval()
    attacks.pgd(model, x, y, 8 / 255, 2 / 255, 1)  # warm-up
    _sync(device)
    t = time.perf_counter()
    attacks.pgd(model, x, y, 8 / 255, 2 / 255, steps)
    _sync(device)
    return train_rate, steps * batch / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", default="10,34")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    device = runtime.setup(0, a.device, a.threads)
    print(f"device {device}, {torch.get_num_threads()} threads, batch {a.batch}")
    for depth in (int(d) for d in a.depths.split(",")):
        for variant in VARIANTS:
            train_rate, pgd_rate = bench(depth, variant, a.batch, device)
            print(f"WRN-{depth}-1 {variant:>15}: train {train_rate:7.0f} img/s   PGD {pgd_rate:7.0f} img-steps/s")


if __name__ == "__main__":
    main()
