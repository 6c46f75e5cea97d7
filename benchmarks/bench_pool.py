"""Max pooling outside autograd: ``nn.MaxPool2d`` against ``robust_utils.nn.pooling.MaxPool2d`` (a
benchmark, not a test; tests/test_pooling.py checks the outputs are equal).

For the pooling shapes of the MNIST CNN, LeNet-5 and the Inception network at the batch sizes the
attacks use, prints milliseconds per call under ``torch.no_grad`` (best of ``--repeat`` rounds of
``--calls`` calls, wall clock) and the speed-up, then the same for whole models' forward passes.

    python benchmarks/bench_pool.py [--threads 2] [--repeat 5] [--calls 100]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from robust_utils.nn import pooling
from robust_utils.nn.inception import InceptionMnist
from robust_utils.nn.models import LeNet5, MnistCNN

SHAPES = [((2,), (30, 32, 28, 28)), ((2,), (30, 64, 14, 14)), ((2,), (500, 16, 28, 28)),
          ((3, 2, 1), (30, 32, 28, 28)), ((3, 1, 1), (30, 64, 14, 14))]


def best_ms(fn, repeat: int, calls: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls * 1e3)
    return min(times)


def swap_pools(model: nn.Module, cls) -> nn.Module:
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(module, name, cls(child.kernel_size, child.stride, child.padding))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--calls", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{args.threads} threads, no_grad, ms per call (best of {args.repeat})")
    with torch.no_grad():
        for spec, shape in SHAPES:
            x = torch.rand(shape)
            old, new = nn.MaxPool2d(*spec), pooling.MaxPool2d(*spec)
            a, b = best_ms(lambda: old(x), args.repeat, args.calls), best_ms(lambda: new(x), args.repeat, args.calls)
            print(f"  pool {str(spec):10s} {str(shape):20s} {a:7.3f} -> {b:7.3f}  x{a / b:.1f}")
        models = [("MnistCNN", MnistCNN), ("LeNet5 (32, 64)", lambda: LeNet5(channels=(32, 64), hidden=(512,))),
                  ("InceptionMnist width 0.5", lambda: InceptionMnist(width=0.5))]
        for name, build in models:
            x = torch.rand(30, 1, 28, 28)
            model = build()
            old_model = swap_pools(copy.deepcopy(model), nn.MaxPool2d)
            new_model = swap_pools(copy.deepcopy(model), pooling.MaxPool2d)
            a = best_ms(lambda: old_model(x), args.repeat, args.calls // 5)
            b = best_ms(lambda: new_model(x), args.repeat, args.calls // 5)
            print(f"  model {name:26s} batch 30 {a:7.3f} -> {b:7.3f}  x{a / b:.1f}")


if __name__ == "__main__":
    main()
