"""The paper profile's cost, measured on this device, and its plan of GPU chunks (a benchmark, not a test).

For each notebook's paper profile (notebooks/params/paper.yaml, read with
``app.profiles.notebook_values``), this measures the time of the operations the notebook repeats,
on the real shapes (models, widths, batch sizes): one training step of every model it trains
(``training.fit`` on a few batches, with the notebook's objective and optimiser), one attack
iteration of its main attacks (PGD, CW, DeepFool, EOT-PGD, a forward pass for the searches), and
multiplies by how often the notebook repeats each (counts read from the notebook's code and
parameters; attacks that stop early per sample -- CW's abort, DeepFool, eq. 7, the restarts,
AutoAttack, the audit -- are counted at their maximum, so totals are upper bounds). It prints
each notebook's projected total and a chunk plan: the paper run split into chunks of at most
``--chunk-minutes`` (8) on one H200, each selected by parameters (training chunks by model through
benchmarks/paper_train.py, evaluation chunks through the normal runner), and writes the plan with
``--write results/paper/CHUNKS.md``.

Where the device is not a GPU, the CPU numbers are measured (batches above ``--max-batch`` are
measured at that size and scaled linearly) and the H200 numbers are ESTIMATES: per operation,
(aten operations counted by torch.profiler) x LAUNCH_S + (FLOPs counted by
torch.utils.flop_counter) / H200_FLOPS, constants stated in the output. On a GPU every number is
a measurement.

    python benchmarks/bench_paper.py [--device auto] [--notebooks 02_hr_loss ...] [--max-batch 128]
                                     [--write results/paper/CHUNKS.md]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from robust_utils import attacks
from robust_utils.app.profiles import notebook_values
from robust_utils.attacks.grad import input_gradient
from robust_utils.core import runtime
from robust_utils.core.losses import cross_entropy
from robust_utils.nn.models import build_model
from robust_utils.training import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper_workloads as work  # noqa: E402  (benchmarks/paper_workloads.py: what each notebook repeats)

LAUNCH_S = 10e-6  # estimate: host time per eager aten operation on the GPU machine (launch-bound floor)
H200_FLOPS = 60e12  # estimate: sustained FLOP/s of these small models with TF32 (peak dense TF32: ~495e12)
NOTEBOOKS = ("01_probabilistic_loss", "02_hr_loss", "03_stochastic_lwta", "04_adversary_critic",
             "05_sdr_learnable", "06_adaptive_evaluation")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    seconds: float  # measured on this device, at the unit's real batch (scaled when capped)
    estimate: float | None  # H200 estimate (None when measured on a GPU)
    note: str


class Meter:
    """Measures units on one device: best of ``repeat`` timed calls after a warm-up, cached by key."""

    def __init__(self, device, max_batch: int, repeat: int):
        self.device, self.max_batch, self.repeat = device, max_batch, repeat
        self.cache: dict[str, Timing] = {}

    def _time(self, fn) -> float:
        fn()
        _sync(self.device)
        best = math.inf
        for _ in range(self.repeat):
            start = time.perf_counter()
            fn()
            _sync(self.device)
            best = min(best, time.perf_counter() - start)
        return best

    def _estimate(self, fn, scale: float, flops_fn=None, flops_factor: float = 1.0) -> float | None:
        """H200 estimate of one call of fn: aten operations x LAUNCH_S + FLOPs (of flops_fn, default fn,
        times flops_factor, times scale) / H200_FLOPS. None when measured on a GPU."""
        if self.device.type == "cuda":
            return None
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _Global()  # count every op as "Global": the module tracker's hooks break autograd.grad
        with counter:
            (flops_fn or fn)()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn()
        ops = sum(1 for e in prof.events() if e.name.startswith("aten::")
                  and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
        return ops * LAUNCH_S + counter.get_total_flops() * flops_factor * scale / H200_FLOPS

    def unit(self, key: str, make, n: int, per_call: int = 1, baseline=None, flops=None) -> Timing:
        """Time ``make(b)()`` (b = min(n, max_batch) off the GPU), scaled by n / b, divided by per_call.

        baseline: ``make``'s call with per_call = 0 (its fixed cost), subtracted (fit's set-up).
        flops: (make_flops, factor) to count FLOPs with instead (DeepFool's batched backward cannot
        run under the FLOP counter's module hooks).
        """
        if key not in self.cache:
            b = min(n, self.max_batch) if self.device.type != "cuda" else n
            fn = make(b)
            seconds = self._time(fn)
            if baseline is not None:
                base = baseline(b)
                seconds = max(seconds - self._time(base), 1e-9)
            seconds *= n / b / per_call
            est = self._estimate(fn, n / b, flops[0](b) if flops else None, flops[1] if flops else 1.0)
            if est is not None and baseline is not None:
                est = max(est - self._estimate(base, n / b), 1e-9)
            note = "" if b == n else f"measured at batch {b}, scaled x{n / b:g}"
            self.cache[key] = Timing(seconds, None if est is None else est / per_call, note)
        return self.cache[key]


class _Global:
    """A stand-in for FlopCounterMode's module tracker: no hooks, every FLOP counted under "Global"."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _data(shape, n, device, classes=10):
    g = torch.Generator().manual_seed(0)
    return torch.rand((n, *shape), generator=g).to(device), torch.randint(classes, (n,), generator=g).to(device)


def measure(meter: Meter, u: "work.Unit") -> Timing:
    """One unit of work on ``meter``'s device (see paper_workloads.Unit for the kinds)."""
    dev = meter.device
    kwargs = dict(u.kwargs)
    model_fn = lambda: build_model(u.arch, seed=0, device=dev, **kwargs).eval()  # noqa: E731

    steps = 5 if dev.type != "cuda" else 21

    def train(b, k=steps):
        model = build_model(u.arch, seed=0, device=dev, **kwargs)
        x, y = _data(u.shape, b * k, dev)
        spec = dict(objective=u.objective() if u.objective else None, optimizer=dict(u.optimizer), batch_size=b, seed=0,
                    cache_enabled=False, progress=False)
        return lambda: fit(model, x, y, epochs=1, **spec)

    def grad(b):
        model, (x, y) = model_fn(), _data(u.shape, b, dev)
        target = attacks.eot(model, u.samples) if u.samples > 1 else model
        return lambda: input_gradient(target, x, y, cross_entropy)

    def pgd(b):
        model, (x, y) = model_fn(), _data(u.shape, b, dev)
        return lambda: attacks.pgd(model, x, y, 0.1, 0.01, 10)

    def forward(b):
        model, (x, _) = model_fn(), _data(u.shape, b, dev)

        def run():
            with torch.inference_mode():
                model(x)
        return run

    def deepfool(b):
        model, (x, _) = model_fn(), _data(u.shape, b, dev)
        with torch.no_grad():
            y = model(x).argmax(1)  # every sample correct: the step works on all of them
        return lambda: attacks.deepfool(model, x, y, steps=1)

    if u.kind == "train":  # fit's own set-up (data digest, optimiser) is the cost of a 1-batch fit: subtracted
        return meter.unit(u.key, train, u.batch, steps - 1, baseline=lambda b: train(b, 1))
    if u.kind == "deepfool":
        return meter.unit(u.key, deepfool, u.batch, 1)
    makers = {"grad": (grad, 1), "pgd": (pgd, 10), "forward": (forward, 1)}
    make, per_call = makers[u.kind]
    return meter.unit(u.key, make, u.batch, per_call)


def plan(notebook: str, items: list, timings: dict, chunk_s: float, on_gpu: bool) -> tuple[list, float]:
    """The notebook's chunks: its work grouped by the command that runs it (``paper_workloads.selector``).

    Returns:
        ([(command, stages, seconds, pieces, over)], total seconds): a training command longer than a
        chunk runs as ``pieces`` calls (fit resumes from its last epoch); an evaluation (the runner)
        cannot be resumed, so one longer than a chunk is ``over`` the limit.
    """
    groups: dict[str, list] = {}
    for it in items:
        t = timings[it.unit.key]
        seconds = it.count * (t.seconds if on_gpu else t.estimate)
        cmd = work.selector(notebook, it.stage)
        entry = groups.setdefault(cmd, [[], 0.0])
        if it.stage not in entry[0]:
            entry[0].append(it.stage)
        entry[1] += seconds
    chunks = []
    for cmd, (stages, seconds) in groups.items():
        training = cmd.startswith("`train")
        pieces = max(1, math.ceil(seconds / chunk_s)) if training else 1
        chunks.append((cmd, stages, seconds, pieces, not training and seconds > chunk_s))
    return chunks, sum(c[2] for c in chunks)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}" if seconds >= 6 else "< 0.1"


def report(results: dict, meter: Meter, chunk_s: float) -> str:
    on_gpu = meter.device.type == "cuda"
    dev = torch.cuda.get_device_name(meter.device) if on_gpu else f"CPU ({platform.processor() or 'x86-64'}, " \
        f"{torch.get_num_threads()} threads)"
    lines = ["# Paper profile: chunk plan", "",
             f"Generated by `python benchmarks/bench_paper.py --write results/paper/CHUNKS.md` on {dev}, "
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}. Chunks of at most {chunk_s / 60:g} minutes.", ""]
    if on_gpu:
        lines += ["Every time below is MEASURED on this GPU.", ""]
    else:
        lines += ["No GPU was measured: the CPU seconds are MEASURED here; every H200 number is an ESTIMATE, "
                  f"per operation (aten ops counted by torch.profiler) x {LAUNCH_S * 1e6:g} us + (FLOPs counted by "
                  f"torch.utils.flop_counter) / {H200_FLOPS / 1e12:g} TFLOP/s (TF32, sustained). CPU units above "
                  f"batch {meter.max_batch} are measured at {meter.max_batch} and scaled linearly. Run "
                  "`benchmarks/gpu_paper_run.sh bench` on the GPU machine to replace the estimates by measurements.", ""]
    lines += ["Counts are read from each notebook's code and paper parameters; attacks that stop early per "
              "sample (CW's abort, DeepFool, eq. 7, restarts, AutoAttack, the audit) are counted at their "
              "maximum, so the totals are upper bounds.", ""]
    total_all = 0.0
    for nb, (items, notes) in results.items():
        chunks, total = plan(nb, items, {k: v for k, v in meter.cache.items()}, chunk_s, on_gpu)
        total_all += total
        lines += [f"## {nb}: {total / 60:.1f} min on one H200 ({'measured' if on_gpu else 'estimate'})", ""]
        lines += [f"- {n}" for n in notes] + ([""] if notes else [])
        lines += ["| work | unit | count | CPU s/unit | H200 s/unit | H200 min |", "|---|---|---:|---:|---:|---:|"]
        for it in items:
            t = meter.cache[it.unit.key]
            h = t.seconds if on_gpu else t.estimate
            cpu = "" if on_gpu else f"{t.seconds:.4g}"
            lines.append(f"| {it.label} | {it.unit.describe()}{' (' + t.note + ')' if t.note else ''} | {it.count:,} | "
                         f"{cpu} | {h:.3g}{'' if on_gpu else ' (est.)'} | {_minutes(it.count * h)} |")
        lines += ["", "| chunk: `benchmarks/gpu_paper_run.sh` arguments | work | H200 min | calls |", "|---|---|---:|---:|"]
        for cmd, stages, seconds, pieces, over in chunks:
            calls = f"{pieces}" if not over else f"1, OVER the {chunk_s / 60:g}-min limit"
            lines.append(f"| {cmd} | {'; '.join(stages)} | {_minutes(seconds)} | {calls} |")
        lines.append("")
    lines += [f"**All notebooks: {total_all / 60:.0f} min ({total_all / 3600:.1f} h) on one H200"
              f"{'' if on_gpu else ' (estimate)'}.** A training chunk of several calls is the same command repeated: "
              "each call stops at the chunk limit (`CHUNK_LIMIT_S`) and the next resumes from the last complete "
              "epoch. An evaluation (`run`) cannot be resumed: one OVER the limit needs a parameter that splits it "
              "(none exists yet), or its upper bound must prove loose on the GPU (`bench` there, then a trial).", ""]
    lines += work.CONSTRAINTS
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), choices=NOTEBOOKS)
    p.add_argument("--max-batch", type=int, default=128, help="CPU only: largest batch measured (default 128)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--chunk-minutes", type=float, default=8.0)
    p.add_argument("--write", type=Path, help="write the plan (Markdown) there, e.g. results/paper/CHUNKS.md")
    args = p.parse_args(argv)
    device = runtime.setup(0, args.device, args.threads)
    meter = Meter(device, args.max_batch, args.repeat)
    results = {}
    for nb in args.notebooks:
        items, notes = work.workload(nb, notebook_values(nb, "paper"))
        for it in items:
            t = measure(meter, it.unit)
            print(f"{nb:24s} {it.unit.describe():60s} {t.seconds:9.4f} s"
                  + ("" if t.estimate is None else f"  H200 est. {t.estimate:.2e} s"), flush=True)
        results[nb] = (items, notes)
    text = report(results, meter, args.chunk_minutes * 60)
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
