"""Device, seed and thread control: the three things that make a run repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


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
    """One call for the top of every notebook: threads, seed, device. Returns the device."""
    set_threads(threads)
    seed_everything(seed)
    return resolve_device(device)


def cpu_count() -> int:
    """Cores available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
