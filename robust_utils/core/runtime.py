"""Device, seed and thread control (the three things that make a run repeatable), and the GPU speed switches.

Speed switches (infrastructure; all off on the CPU, where nothing changes):
    ``speed_settings(device)``  what is in force on a device: TF32 matrix products, CUDA-graph
                                capture of fixed-shape attack steps and fused optimisers, all on
                                for CUDA by default; the environment variables ROBUST_UTILS_TF32
                                and ROBUST_UTILS_CUDA_GRAPHS ("0" / "1") override the first two.
    ``apply_speed_settings``    sets torch's TF32 flags (``setup`` calls it for the notebooks).
    ``repeat_step``             runs ``x <- step(x)`` n times, eagerly or replaying one captured
                                CUDA graph (one warm-up step, one capture, n - 1 replays).
bf16 is not switched on anywhere: no fp32 comparison has yet shown the same numbers with it.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
TF32_VARIABLE = "ROBUST_UTILS_TF32"
CUDA_GRAPHS_VARIABLE = "ROBUST_UTILS_CUDA_GRAPHS"
MIN_GRAPH_STEPS = 4  # fewer steps than this: the capture costs more than the replays save


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device spec into a ``torch.device``.

    Args:
        device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:N" or a torch.device.
    Returns:
        torch.device.
    Raises:
        ValueError: an unknown spec, or "cuda" asked for on a machine without CUDA.
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ValueError(f"device must be a string or torch.device, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICE_CHOICES)} or 'cuda:N'")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a CPU torch.Generator seeded alike.

    Raises:
        ValueError: seed is not a non-negative int.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n: int | None) -> int:
    """Fix torch's intra-op thread count (floats differ in the 6th digit between thread counts).

    Args:
        n: number of threads; None or 0 leaves torch's default (the number of cores).
    Returns:
        The thread count now in force.
    Raises:
        ValueError: n < 0.
    """
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ValueError(f"threads must be a non-negative int or None, got {n!r}")
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def setup(seed: int, device: str = "auto", threads: int | None = None) -> torch.device:
    """One call for the top of every notebook: threads, seed, device, and the device's speed switches.

    On CUDA this also turns on TF32 matrix products (``apply_speed_settings``); on the CPU nothing
    but threads, seed and device is touched. Returns the device.
    """
    set_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    apply_speed_settings(speed_settings(dev))
    return dev


def cpu_count() -> int:
    """Cores available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# --------------------------------------------------------------------------- GPU speed switches


@dataclass(frozen=True)
class SpeedSettings:
    """The speed switches in force on one device (infrastructure).

    Attributes:
        device_type: "cpu" or "cuda".
        tf32: TF32 tensor-core matrix products and convolutions (CUDA only; ~1e-3 relative error
            per product instead of ~1e-7: a GPU run's numbers differ from the CPU's in the 3rd digit).
        cuda_graphs: fixed-shape attack steps (PGD's) are captured once and replayed (CUDA only).
        fused_optimizers: build Adam / AdamW / SGD with ``fused=True`` (one kernel per step for all
            parameters; CUDA only: on the CPU the fused kernels would move the classroom numbers).
        bf16: always False (no fp32 comparison has shown the same numbers with it yet).
    """

    device_type: str
    tf32: bool
    cuda_graphs: bool
    fused_optimizers: bool = False
    bf16: bool = False


def _switch(variable: str, default: bool) -> bool:
    raw = os.environ.get(variable, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{variable}={os.environ[variable]!r} is not understood; use 1 (on) or 0 (off)")


def speed_settings(device: str | torch.device, tf32: bool | None = None,
                   cuda_graphs: bool | None = None) -> SpeedSettings:
    """The speed switches for ``device``: on CUDA all on (TF32 and graphs unless switched off), on the CPU all off.

    Args:
        device: a device spec (``resolve_device``'s) or torch.device.
        tf32, cuda_graphs: force a switch; None reads ROBUST_UTILS_TF32 / ROBUST_UTILS_CUDA_GRAPHS
            ("1" / "0"; unset: on) on CUDA. On the CPU both are off and the variables are not read.
    Returns:
        SpeedSettings.
    Raises:
        ValueError: a switch asked on (argument) for a CPU device, a switch that is not a bool,
            or, on CUDA, a variable that is not "0"/"1" (also "true"/"false", "yes"/"no", "on"/"off").
    """
    dev = resolve_device(device)
    for name, value in (("tf32", tf32), ("cuda_graphs", cuda_graphs)):
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool or None, got {value!r}")
    if dev.type != "cuda":
        if tf32 or cuda_graphs:
            raise ValueError(f"TF32 and CUDA graphs need a CUDA device, got {dev}")
        return SpeedSettings(dev.type, False, False, False)
    tf32 = _switch(TF32_VARIABLE, True) if tf32 is None else tf32
    cuda_graphs = _switch(CUDA_GRAPHS_VARIABLE, True) if cuda_graphs is None else cuda_graphs
    return SpeedSettings(dev.type, tf32, cuda_graphs, True)


def apply_speed_settings(settings: SpeedSettings) -> None:
    """Set torch's process-wide TF32 flags from ``settings`` (a no-op on the CPU)."""
    if settings.device_type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = settings.tf32
    torch.backends.cudnn.allow_tf32 = settings.tf32


def use_cuda_graphs(x: torch.Tensor, steps: int) -> bool:
    """Whether an attack loop of ``steps`` fixed-shape steps on ``x`` should replay a CUDA graph:
    x is on CUDA, the switch is on (``speed_settings``) and steps >= ``MIN_GRAPH_STEPS``."""
    return x.device.type == "cuda" and steps >= MIN_GRAPH_STEPS and speed_settings(x.device).cuda_graphs


def repeat_step(step: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int,
                graphs: bool = False) -> torch.Tensor:
    """``x <- step(x)``, n times; with ``graphs`` the steps after the first replay one CUDA graph.

    The graphed form (infrastructure; the whole-network capture of torch.cuda.graph's docs): step 1
    runs eagerly on a side stream (the warm-up, and a real step), step 2 is captured on a static copy
    of its result (the capture executes nothing) and the graph is replayed n - 1 times. ``step``
    must be free of host synchronisation and keep shapes and dtypes; random ops draw fresh numbers
    at every replay (torch's graph-safe generator). A capture that fails falls back to eager steps
    with a warning. Results equal the eager loop's where the kernels are the same.

    Args:
        step: (N, ...) tensor -> a tensor of the same shape and dtype (it may use autograd inside).
        x: the start.   n: steps, >= 0.   graphs: use a CUDA graph (x must be on CUDA).
    Returns:
        The n-th iterate (x itself when n = 0).
    Raises:
        ValueError: n < 0, or graphs with x off CUDA.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if graphs and x.device.type != "cuda":
        raise ValueError(f"CUDA graphs need x on a CUDA device, got {x.device}")
    if not graphs or n < 2:
        for _ in range(n):
            x = step(x)
        return x
    side = torch.cuda.Stream(x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        static = step(x).clone()
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static.copy_(step(static))
    except RuntimeError as exc:  # an op that cannot be captured: finish eagerly
        warnings.warn(f"CUDA graph capture failed ({exc}); the remaining {n - 1} steps run eagerly", stacklevel=2)
        x = static.clone()
        for _ in range(n - 1):
            x = step(x)
        return x
    for _ in range(n - 1):
        graph.replay()
    return static.clone()
