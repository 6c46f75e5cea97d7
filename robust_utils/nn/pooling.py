"""Max pooling that gives the same numbers as ``nn.MaxPool2d``, faster on the CPU without autograd.

PyTorch's CPU max pooling is several times slower on NCHW tensors than on channels-last ones (2x2
pooling of a (30, 32, 28, 28) float32 tensor on 2 threads: about 1.5 ms NCHW, 0.25 ms channels-last
including both layout copies; benchmarks/bench_pool.py measures it). Attacks and evaluations spend
most of their forward passes outside autograd (Square's 5,000 queries per point, clean and
re-classified accuracies), so there the pooling runs on a channels-last copy and its result is
copied back to NCHW, which keeps every later layer on its usual code path. A maximum is exact,
so the output is bitwise the same; tests/test_pooling.py checks that.

With autograd recording (training, white-box gradients) and on other devices the layer is exactly
``nn.MaxPool2d``: the channels-last kernel that also returns indices is not faster there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` with a faster CPU path when no gradient is recorded (same output, bitwise).

    Args: those of ``nn.MaxPool2d`` (kernel_size, stride, padding, dilation, ceil_mode);
        ``return_indices=True`` is refused (ValueError): no model here needs it.
    Shapes: x (N, C, H, W) -> (N, C, H_out, W_out), the dtype and NCHW layout of ``nn.MaxPool2d``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.return_indices:
            raise ValueError("robust_utils.nn.pooling.MaxPool2d does not return indices; use nn.MaxPool2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        out = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), self.kernel_size, self.stride,
                           self.padding, self.dilation, ceil_mode=self.ceil_mode)
        return out.contiguous()


__all__ = ["MaxPool2d"]
