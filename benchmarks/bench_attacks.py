"""Attack throughput before and after the speed work of issue 21 (a benchmark, not a test).

Runs each attack of the frozen copy (tests/frozen_attacks: the attacks at commit d08af17) and of
robust_utils.attacks on the same inputs, on a LeNet-5 and an SDR-Learnable MLP trained for one
epoch on 2,000 real MNIST images, and prints images per second, best of ``--repeat`` runs. On the
CPU the time is this process's CPU time (``time.process_time``), which other processes sharing
the cores disturb far less than the wall clock; use ``--threads 1`` (with more threads, idle
threads spinning count as CPU time). On CUDA it is the wall clock.

    python benchmarks/bench_attacks.py [--threads 1] [--repeat 3] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import frozen_attacks as old  # noqa: E402

from robust_utils import attacks as new  # noqa: E402
from robust_utils.core import runtime  # noqa: E402
from robust_utils.core.data import load_dataset  # noqa: E402
from robust_utils.nn.models import build_model  # noqa: E402


def trained(name, device, **kwargs):
    x, y = load_dataset("mnist", "train", n=2000, seed=0, device=device)
    model = build_model(name, seed=0, device=device, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for idx in torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).split(50):
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def best_time(fn, repeat, device):
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    best = float("inf")
    for _ in range(repeat):
        torch.manual_seed(0)
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, clock() - start)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = runtime.setup(0, args.device, args.threads)
    lenet, sdr = trained("lenet5", device), trained("mlp", device, layer="sdr-learnable")
    x, y = load_dataset("mnist", "test", n=500, seed=0, device=device)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        labels = lenet(x[:200]).argmax(1)
    cases = {
        "PGD-20, LeNet-5": (200, lambda a: a.pgd(lenet, x[:200], y[:200], 0.1, 0.0125, 20, generator=g())),
        "PGD-10 x 3 restarts, LeNet-5": (200, lambda a: a.pgd(lenet, x[:200], y[:200], 0.05, 0.0125, 10, restarts=3,
                                                              generator=g())),
        "CW-L2 (2 x 30 steps), LeNet-5": (200, lambda a: a.cw_l2(lenet, x[:200], y[:200], steps=30, binary_search_steps=2)),
        "DeepFool (50 steps), LeNet-5": (200, lambda a: a.deepfool(lenet, x[:200], y[:200], steps=50)),
        "closest_target (eq. 7's target rule), LeNet-5": (200, lambda a: a.closest_target(lenet, x[:200], labels)),
        "eq. 7's attack (100 steps), LeNet-5": (100, lambda a: a.high_confidence(lenet, x[:100], steps=100)),
        "EOT-PGD (10 draws, 10 steps), SDR MLP": (500, lambda a: a.pgd(a.eot(sdr, 10), x, y, 0.1, 0.025, 10,
                                                                        generator=g())),
        "Foolbox FGSM search (999 eps), SDR MLP": (500, lambda a: a.fgsm_smallest_eps(sdr, x, y)),
        "LocalSearch (20 rounds), LeNet-5": (50, lambda a: a.local_search(lenet, x[:50], y[:50], R=20, generator=g())),
    }
    clock = "wall clock" if device.type == "cuda" else "process CPU time"
    print(f"device {device}, {torch.get_num_threads()} threads, best of {args.repeat} ({clock}); images per second")
    print(f"{'attack':50s} {'before':>10s} {'after':>10s} {'ratio':>7s}")
    for name, (n, run) in cases.items():
        before = best_time(lambda: run(old), args.repeat, device)
        after = best_time(lambda: run(new), args.repeat, device)
        print(f"{name:50s} {n / before:10.1f} {n / after:10.1f} {before / after:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
