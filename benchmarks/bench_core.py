"""Speed of the core loops (a benchmark, not a test): training throughput of the MNIST CNN (and the MLP) with
robust_utils.train.fit (tensors on the device, seeded index permutations) against a plain
torch DataLoader loop on the same model, and FGSM / PGD throughput.

    python benchmarks/bench_core.py [--n 12000] [--threads 2] [--device auto] [--widths 16,32,256]

Needs the real MNIST (ROBUST_UTILS_DATA). Prints images per second; the first epoch of each
loop is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from robust_utils import attacks
from robust_utils.core import runtime
from robust_utils.core.data import load_dataset
from robust_utils.nn.models import build_model
from robust_utils.training import fit


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_fit(name, model_kw, x, y, device, epochs):
    model = build_model(name, seed=0, device=device, **model_kw)
    spec = dict(loss="ce", optimizer={"name": "sgd", "lr": 0.01}, batch_size=100, seed=0, cache_enabled=False,
                progress=False)
    fit(model, x, y, epochs=1, **spec)  # warm-up
    _sync(device)
    t = time.perf_counter()
    fit(model, x, y, epochs=epochs, **spec)
    _sync(device)
    return epochs * len(x) / (time.perf_counter() - t)


def bench_dataloader(name, model_kw, x, y, device, epochs):
    model = build_model(name, seed=0, device=device, **model_kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=100, shuffle=True,
                        generator=torch.Generator().manual_seed(0))

    def one_epoch():
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()

    one_epoch()  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(epochs):
        one_epoch()
    _sync(device)
    return epochs * len(x) / (time.perf_counter() - t)


def bench_attack(model, x, y, device, name, steps=20, batch=500):
    def go():
        for xb, yb in zip(x.split(batch), y.split(batch)):
            if name == "fgsm":
                attacks.fgsm(model, xb, yb, 0.1)
            else:
                attacks.pgd(model, xb, yb, 0.1, 2.5 * 0.1 / steps, steps)
    go()
    _sync(device)
    t = time.perf_counter()
    go()
    _sync(device)
    return len(x) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12000, help="training images (default 12000)")
    ap.add_argument("--n-attack", type=int, default=2000, help="images attacked (default 2000)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per loop (default 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--widths", default="16,32,256,32,64,1024",
                    help="c1,c2,hidden triples of MnistCNN to measure (default: classroom, then paper widths)")
    args = ap.parse_args()
    device = runtime.setup(0, args.device, args.threads)
    x, y = load_dataset("mnist", "train", n=args.n, device=device)
    xa, ya = load_dataset("mnist", "test", n=args.n_attack, device=device)
    w = [int(v) for v in args.widths.split(",")]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.n} training images, batch 100, {args.epochs} timed epochs")
    print(f"{'model':<22}{'fit img/s':>12}{'DataLoader img/s':>18}{'speed-up':>10}{'FGSM img/s':>12}{'PGD-20 img/s':>14}")
    configs = [(f"MnistCNN {c1}/{c2}/{h}", "mnist_cnn", dict(channels=(c1, c2), hidden=h))
               for c1, c2, h in zip(w[0::3], w[1::3], w[2::3])]
    configs.append(("MLP 784-100-100-100-10", "mlp", dict(widths=(100, 100, 100))))
    for label, name, kw in configs:
        ours = bench_fit(name, kw, x, y, device, args.epochs)
        plain = bench_dataloader(name, kw, x, y, device, args.epochs)
        model = build_model(name, seed=0, device=device, **kw).eval()
        fgsm = bench_attack(model, xa, ya, device, "fgsm")
        pgd = bench_attack(model, xa, ya, device, "pgd")
        print(f"{label:<22}{ours:>12.0f}{plain:>18.0f}{ours / plain:>9.2f}x{fgsm:>12.0f}{pgd:>14.0f}")

if __name__ == "__main__":
    main()
