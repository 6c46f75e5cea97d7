"""One training loop, ``fit``, with a seed, an optimiser spec, per-epoch callbacks, a progress
bar and a checkpoint cache keyed by a hash of the full configuration.

Data stay tensors on the device; each epoch is a seeded permutation split into batches (no
DataLoader, no per-sample Python work).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..core import store
from ..core.checks import check_images, check_labels, check_positive_int
from ..core.losses import get_loss
from .objective import Objective

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

class Callback(Protocol):
    """Called after every epoch with the model in eval mode; returns metrics {name: float}.

    A callback may also define ``after_step(epoch, batch, model)``: it then runs after every
    optimiser step (batch is 1-based within the epoch; the parameters' ``.grad`` still hold that
    step's gradient), e.g. the SDR rules of ``robust_utils.sdr``.

    ``cache_key()`` returns a JSON-serialisable description of everything that determines the
    metrics (data digest, eps, attack), so that cached histories are never reused wrongly.
    """

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]: ...

    def cache_key(self) -> Any: ...


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        model: the trained model, in eval mode.
        history: {"epoch": [1..E], "loss": [mean training loss per epoch], <callback metrics>: [...]}.
        key: the configuration hash; path: the checkpoint file; from_cache: loaded instead of trained.
        config: the configuration the key hashes.
    """

    model: nn.Module
    history: dict[str, list[float]]
    key: str
    path: Path | None
    from_cache: bool
    config: dict = field(repr=False)


def make_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    """Build an optimiser from a spec such as {"name": "sgd", "lr": 0.01, "momentum": 0.9}.

    Raises:
        ValueError: unknown optimiser name or argument, missing or non-positive lr.
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if not isinstance(spec.get("lr"), (int, float)) or spec["lr"] <= 0:
        raise ValueError(f"optimizer spec needs a positive 'lr', got {spec.get('lr')!r}")
    cls = OPTIMIZERS[name]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"unknown argument(s) {sorted(unknown)} for optimizer {name!r}")
    return cls(params, **spec)


def param_groups(model: nn.Module, spec: dict) -> list[dict] | Iterable[nn.Parameter]:
    """The model's parameters for the optimiser: if some are flagged ``no_weight_decay = True``
    (PNI's noise scales alpha, which Rakin et al. 2019 exclude from weight decay, NOTES.md C.3)
    and ``spec`` sets a weight decay, two groups, the flagged ones with weight_decay 0;
    otherwise ``model.parameters()`` unchanged."""
    params = list(model.parameters())
    exempt = [p for p in params if getattr(p, "no_weight_decay", False)]
    if not exempt or not spec.get("weight_decay"):
        return model.parameters()
    ids = {id(p) for p in exempt}
    return [{"params": [p for p in params if id(p) not in ids]}, {"params": exempt, "weight_decay": 0.0}]


def make_lr_schedule(opt: torch.optim.Optimizer, spec: dict | None):
    """torch's StepLR from {"step_size": S, "gamma": G} (stepped once per epoch), or None.

    Raises:
        ValueError: unknown keys, step_size not a positive int, gamma not in (0, 1].
    """
    if spec is None:
        return None
    spec = dict(spec)
    if set(spec) != {"step_size", "gamma"}:
        raise ValueError(f"lr_schedule needs exactly the keys 'step_size' and 'gamma', got {sorted(spec)}")
    check_positive_int(spec["step_size"], "lr_schedule step_size")
    if not isinstance(spec["gamma"], (int, float)) or not 0 < spec["gamma"] <= 1:
        raise ValueError(f"lr_schedule gamma must lie in (0, 1], got {spec['gamma']!r}")
    return torch.optim.lr_scheduler.StepLR(opt, step_size=spec["step_size"], gamma=float(spec["gamma"]))


def _callback_key(cb: Callable) -> Any:
    if hasattr(cb, "cache_key"):
        return cb.cache_key()
    raise ValueError(
        f"callback {cb!r} has no cache_key(); give it one (see training.loop.Callback) or pass cache=False"
    )


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce", loss_kwargs: dict | None = None,
        targets: torch.Tensor | None = None, objective: Objective | None = None, optimizer: dict | None = None,
        lr_schedule: dict | None = None,
        epochs: int = 1, batch_size: int = 100, seed: int = 0,
        callbacks: Sequence[Callback] = (), cache_enabled: bool = True, cache_dir: str | Path | None = None,
        progress: bool = True, desc: str | None = None) -> FitResult:
    """Train ``model`` on (x, y) by mini-batch gradient descent, or load the cached result.

    The cache key hashes: the model's repr and initial weights, the training data (bytes), the
    loss and its arguments (or the objective's ``cache_key()``), the optimiser and learning-rate
    schedule specs, epochs, batch size, seed, the device type and each
    callback's ``cache_key()``. A second call with the same configuration loads the checkpoint
    (weights and history) instead of training; checkpoints are written atomically and loaded
    with ``weights_only=True``. On a cache miss, a checkpoint bundle exported by a teacher
    (``core.store.find_in_bundle``, sha256 verified) is loaded the same way, in place; nothing is copied into
    the store. Every key loaded or saved is recorded (``used_checkpoints``).

    Args:
        model: any nn.Module mapping x -> logits (N, K); trained in place, returned in eval mode.
        x: (N, C, H, W) float32 in [0, 1], on the model's device.   y: (N,) int64.
        loss: a name from ``losses.LOSSES`` ("ce", "hr", "soft_ce", ...); loss_kwargs: its arguments.
        targets: per-sample training targets passed to the loss instead of y, e.g. soft labels
            (N, K) float32 for "soft_ce" (``calibration.em_calibrate``); y still identifies the
            samples' classes for validation. On the model's device; hashed into the cache key.
        objective: an ``Objective`` called as objective(model, xb, yb) instead of
            loss(model(xb), yb) (then ``loss`` and ``loss_kwargs`` must be left at their defaults).
        optimizer: spec for ``make_optimizer``; default {"name": "sgd", "lr": 0.01}. Parameters
            flagged ``no_weight_decay`` get weight_decay 0 (``param_groups``).
        lr_schedule: {"step_size": S, "gamma": G}: the learning rate is multiplied by G every S
            epochs (torch's StepLR); None: constant.
        epochs, batch_size: passes over the data; mini-batch size (the last batch may be smaller).
        seed: seeds the per-epoch shuffles (and any randomness in the model's forward pass).
        callbacks: called after each epoch (model in eval mode); their metrics go into history;
            those with an ``after_step`` method also run after every optimiser step.
        cache_enabled: False trains and saves nothing.   cache_dir: default paths.cache_root().
        progress: show a tqdm bar (stderr).   desc: its label.
    Returns:
        FitResult.
    Raises:
        ValueError: bad data, loss, objective, optimiser, schedule, epochs or batch size (before any training).
        store.BundleError: the bundle lists this checkpoint but its file is missing or corrupt.
    """
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    loss_kwargs = dict(loss_kwargs or {})
    loss_fn = get_loss(loss, **loss_kwargs)
    if objective is not None and (loss != "ce" or loss_kwargs):
        raise ValueError("pass either an objective or a loss, not both")
    if targets is not None and (not isinstance(targets, torch.Tensor) or targets.shape[0] != x.shape[0]):
        raise ValueError(f"targets must be a tensor with one row per sample ({x.shape[0]}), got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    if targets is not None and objective is not None:
        raise ValueError("targets are for a loss; an objective receives (model, x, y)")
    if objective is not None and not hasattr(objective, "cache_key"):
        raise ValueError(f"objective {objective!r} has no cache_key(); see training.objective.Objective")
    optimizer = dict(optimizer or {"name": "sgd", "lr": 0.01})
    opt = make_optimizer(param_groups(model, optimizer), optimizer)
    scheduler = make_lr_schedule(opt, lr_schedule)
    device = next(model.parameters()).device
    if x.device != device or y.device != device or (targets is not None and targets.device != device):
        raise ValueError(f"x, y (and targets) must be on the model's device {device}, got {x.device} / {y.device}")

    config = {
        "model": repr(model),
        "init": store.tensor_digest(*model.state_dict().values()),
        "data": store.tensor_digest(x, y),
        "loss": loss, "loss_kwargs": loss_kwargs, "optimizer": optimizer,
        "epochs": epochs, "batch_size": batch_size, "seed": seed, "device": device.type,
        "callbacks": [_callback_key(cb) for cb in callbacks] if cache_enabled else [],
    }
    if objective is not None:  # added only when used, so that older keys stay valid
        config["objective"] = objective.cache_key()
    if lr_schedule is not None:
        config["lr_schedule"] = lr_schedule
    if targets is not None:
        config["targets"] = store.tensor_digest(targets)
    key = store.config_key(config)
    path = store.checkpoint_path(key, cache_dir) if cache_enabled else None

    if path is not None and not path.is_file():
        path = store.find_in_bundle(key) or path  # a teacher's checkpoint bundle (checksummed); never copied into the cache
    if path is not None and path.is_file():
        store.record_use(key, desc or f"fit {loss}")
        ckpt = store.load_checkpoint(path, map_location=device)
        model.load_state_dict(ckpt["state_dict"])
        if objective is not None and hasattr(objective, "load_state_dict") and "objective_state" in ckpt:
            objective.load_state_dict(ckpt["objective_state"])
        return FitResult(model.eval(), ckpt["history"], key, path, True, config)

    if objective is not None and hasattr(objective, "reset"):
        objective.reset()  # counters of an earlier training (epochs done, mixture counts) must not leak in
    history: dict[str, list[float]] = {"epoch": [], "loss": []}
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        bar = tqdm(range(1, epochs + 1), desc=desc or f"fit {loss}", disable=not progress, leave=True)
        step_hooks = [cb.after_step for cb in callbacks if hasattr(cb, "after_step")]
        for epoch in bar:
            model.train()
            total, count = torch.zeros((), device=device), 0
            for batch, idx in enumerate(torch.randperm(x.shape[0], generator=gen).to(device).split(batch_size), 1):
                opt.zero_grad(set_to_none=True)
                if objective is None:
                    batch_loss = loss_fn(model(x[idx]), (y if targets is None else targets)[idx])
                else:
                    batch_loss = objective(model, x[idx], y[idx])
                batch_loss.backward()
                opt.step()
                for hook in step_hooks:
                    hook(epoch, batch, model)
                total += batch_loss.detach() * idx.numel()
                count += idx.numel()
            history["epoch"].append(epoch)
            history["loss"].append(float(total) / count)
            if scheduler is not None:
                scheduler.step()
            model.eval()
            if objective is not None and hasattr(objective, "end_epoch"):
                for name, value in objective.end_epoch(epoch).items():
                    history.setdefault(name, []).append(float(value))
            for cb in callbacks:
                for name, value in cb(epoch, model).items():
                    history.setdefault(name, []).append(float(value))
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    model.eval()
    if path is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        ckpt = {"state_dict": state, "history": history, "config": config}
        if objective is not None and hasattr(objective, "state_dict"):
            ckpt["objective_state"] = objective.state_dict()
        store.save_checkpoint(path, ckpt)
        store.record_use(key, desc or f"fit {loss}")
    return FitResult(model, history, key, path, False, config)


__all__ = ["fit", "FitResult", "Callback", "Objective", "make_optimizer", "make_lr_schedule", "param_groups",
           "OPTIMIZERS"]
