"""One training loop, ``fit``, with a seed, an optimiser spec, per-epoch callbacks, a progress
bar and a checkpoint cache keyed by a hash of the full configuration; every finished epoch is
saved, so an interrupted training resumes where it stopped (``training.checkpoint``).

Data stay tensors on the device; each epoch is a seeded permutation split into batches (no
DataLoader, no per-sample Python work, no host synchronisation inside an epoch).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..core import runtime, store
from ..core.checkpoint_io import CACHE_VARIABLE, ensure_writable
from ..core.checks import check_images, check_labels, check_positive_int
from ..core.losses import get_loss
from . import checkpoint
from .checkpoint import TrainingRun
from .objective import Objective

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

class Callback(Protocol):
    """Called after every epoch with the model in eval mode; returns metrics {name: float}.

    A callback may also define ``after_step(epoch, batch, model)``: it then runs after every
    optimiser step (batch is 1-based within the epoch; the parameters' ``.grad`` still hold that
    step's gradient), e.g. the SDR rules of ``robust_utils.sdr``.

    ``cache_key()`` returns a JSON-serialisable description of everything that determines the
    metrics (data digest, eps, attack), so that cached histories are never reused wrongly.

    A callback that carries state from one epoch to the next (thresholds, a best value so far)
    must also define ``state_dict()`` and ``load_state_dict(state)`` (tensors and plain values
    only): ``fit`` saves that state with every finished epoch and restores it when an interrupted
    training resumes. Without them, ``fit`` assumes the callback has no such state.
    """

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]: ...

    def cache_key(self) -> Any: ...


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        model: the trained model, in eval mode.
        history: {"epoch": [1..E], "loss": [mean training loss per epoch], <callback metrics>: [...]}.
        key: the checkpoint's key, ``<identity>-<placement>`` (``store.checkpoint_key``).
        path: the checkpoint file (a rescue folder's if the cache refused it; None without cache
            or if no folder accepted it).   from_cache: loaded instead of trained.
        config: the configuration the key hashes (the checkpoint's own when loaded: its "device"
            and "threads" are those the weights were trained with).
        trained_on: device type the weights were trained on ("cpu", "cuda").
        other_device: loaded a checkpoint trained on another device than this run's (allowed by
            ``any_device``); record it with the results (``record()``).
        resumed_from: epochs restored from an interrupted training's checkpoint (0: none).
    """

    model: nn.Module
    history: dict[str, list[float]]
    key: str
    path: Path | None
    from_cache: bool
    config: dict = field(repr=False)
    trained_on: str = ""
    other_device: bool = False
    resumed_from: int = 0

    def record(self) -> dict:
        """What a notebook records in results.json about this model's checkpoint:
        {"key", "from_cache", "trained_on", "other_device", "resumed_from"} (JSON-serialisable)."""
        return {"key": self.key, "from_cache": self.from_cache, "trained_on": self.trained_on,
                "other_device": self.other_device, "resumed_from": self.resumed_from}


def make_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    """Build an optimiser from a spec such as {"name": "sgd", "lr": 0.01, "momentum": 0.9}.

    On CUDA the optimiser is built with ``fused=True`` (one kernel per step for all parameters;
    ``runtime.speed_settings(device).fused_optimizers``) unless the spec sets ``fused``; on the CPU
    it never is, so the classroom numbers do not move. The spec (and so the cache key) is unchanged.

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
    params = list(params)
    first = next((p for g in params for p in (g["params"] if isinstance(g, dict) else [g])), None)
    if first is not None and first.is_cuda and "fused" not in spec and runtime.speed_settings(first.device).fused_optimizers:
        spec["fused"] = True
    return cls(params, **spec)


def param_groups(model: nn.Module, spec: dict) -> list[dict] | Iterable[nn.Parameter]:
    """The model's parameters for the optimiser: if some are flagged ``no_weight_decay = True``
    (PNI's noise scales alpha, which Rakin et al. 2019 exclude from weight decay, as their code
    github.com/elliothe/CVPR_2019_PNI does)
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


def _check_inputs(x: torch.Tensor, y: torch.Tensor, *, loss: str, loss_kwargs: dict, targets: torch.Tensor | None,
                  objective: Objective | None, epochs: int, batch_size: int):
    """Validate fit's data and training arguments; returns the loss function."""
    check_images(x)
    check_labels(y, x.shape[0])
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
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
    return loss_fn


def _fit_config(model: nn.Module, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None,
                objective: Objective | None, callbacks: Sequence[Callback], device: torch.device, cache_enabled: bool,
                **spec: Any) -> dict:
    """The configuration the checkpoint key hashes (``store.checkpoint_key``); ``spec``: loss,
    loss_kwargs, optimizer, lr_schedule, epochs, batch_size, seed."""
    config = {
        "model": repr(model),
        "init": store.tensor_digest(*model.state_dict().values()),
        "data": store.tensor_digest(x, y),
        "loss": spec["loss"], "loss_kwargs": spec["loss_kwargs"], "optimizer": spec["optimizer"],
        "epochs": spec["epochs"], "batch_size": spec["batch_size"], "seed": spec["seed"], "device": device.type,
        "threads": torch.get_num_threads(),  # weights differ in their low digits between thread counts
        "callbacks": [checkpoint.callback_key(cb) for cb in callbacks] if cache_enabled else [],
    }
    if objective is not None:
        config["objective"] = objective.cache_key()
    if spec["lr_schedule"] is not None:
        config["lr_schedule"] = spec["lr_schedule"]
    if targets is not None:
        config["targets"] = store.tensor_digest(targets)
    return config


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce", loss_kwargs: dict | None = None,
        targets: torch.Tensor | None = None, objective: Objective | None = None, optimizer: dict | None = None,
        lr_schedule: dict | None = None,
        epochs: int = 1, batch_size: int = 100, seed: int = 0,
        callbacks: Sequence[Callback] = (), cache_enabled: bool = True, cache_dir: str | Path | None = None,
        progress: bool = True, desc: str | None = None, any_device: bool | None = None) -> FitResult:
    """Train ``model`` on (x, y) by mini-batch gradient descent, or load the cached result.

    Infrastructure (the training loop every notebook uses). The checkpoint key
    (``store.checkpoint_key``) hashes: the model's repr and initial weights, the training data
    (bytes), the loss and its arguments (or the objective's ``cache_key()``), the optimiser and
    learning-rate schedule specs, epochs, batch size, seed and each callback's ``cache_key()``;
    its suffix is the device type and, on CPU, torch's thread count (CPU weights differ in their
    low digits between thread counts), e.g. "<hash>-cpu-t2", "<hash>-cuda". A second call with the same
    configuration loads the checkpoint (weights and history) instead of training, first from the
    cache, then from a teacher's checkpoint bundle (``core.store.find_in_bundle``, sha256 verified;
    loaded in place, never copied into the cache), then, if ``any_device`` allows it, a checkpoint
    of the same configuration trained on another device (e.g. CUDA for a CPU run; the result says
    so). Checkpoints are loaded with ``weights_only=True``; a corrupt or untrusted cache file is
    moved aside with a warning and the model trained again; a bad bundle file stops with an error.

    Before training, the cache folder is proved writable (nothing is trained that cannot be
    kept). Every finished epoch is saved atomically in the cache (``store.partial_path``: weights,
    optimiser, schedule, random state, the objective's and the callbacks' ``state_dict()``); a
    call interrupted by an error, Ctrl-C or a kill resumes from the last saved epoch and ends
    with the weights an uninterrupted call gives. The final checkpoint replaces that file; if the
    cache refuses it, it goes to a rescue folder (``core.checkpoint_io.rescue_dirs``) with a
    warning naming it. Every key loaded or saved is recorded (``store.used_checkpoints``).

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
            those with an ``after_step`` method also run after every optimiser step; those with
            ``state_dict``/``load_state_dict`` have their state saved with every epoch (``Callback``).
        cache_enabled: False trains and saves nothing.   cache_dir: default paths.cache_root().
        progress: show a tqdm bar (stderr).   desc: its label.
        any_device: use a checkpoint trained on another device type when this one's is missing;
            None (default): the environment variable ROBUST_UTILS_CHECKPOINTS_FROM_ANY_DEVICE
            ("1" allows; the runner's ``--checkpoints-from-any-device`` sets it).
    Returns:
        FitResult (``trained_on``, ``other_device`` and ``resumed_from`` say where the weights came from).
    Raises:
        ValueError: bad data, loss, objective, optimiser, schedule, epochs, batch size or
            any_device (before any training).
        core.checkpoint_io.CacheNotWritableError: the cache folder cannot be written (before any
            training; the message names the folder and ROBUST_UTILS_CACHE).
        store.BundleError: a bundle file this call needs is missing, fails its sha256, is corrupt
            or untrusted (the message names the file and how to get the bundle again).
        core.checkpoint_io.CheckpointError: a bad cache file that cannot be moved aside.
    """
    loss_kwargs = dict(loss_kwargs or {})
    loss_fn = _check_inputs(x, y, loss=loss, loss_kwargs=loss_kwargs, targets=targets, objective=objective,
                            epochs=epochs, batch_size=batch_size)
    allowed = store.any_device_allowed(any_device)
    optimizer = dict(optimizer or {"name": "sgd", "lr": 0.01})
    opt = make_optimizer(param_groups(model, optimizer), optimizer)
    scheduler = make_lr_schedule(opt, lr_schedule)
    device = next(model.parameters()).device
    if x.device != device or y.device != device or (targets is not None and targets.device != device):
        raise ValueError(f"x, y (and targets) must be on the model's device {device}, got {x.device} / {y.device}")
    config = _fit_config(model, x, y, targets, objective, callbacks, device, cache_enabled, loss=loss,
                         loss_kwargs=loss_kwargs, optimizer=optimizer, lr_schedule=lr_schedule, epochs=epochs,
                         batch_size=batch_size, seed=seed)
    run = TrainingRun(model, opt, scheduler, objective, list(callbacks), torch.Generator().manual_seed(seed), device,
                      config, store.checkpoint_key(config), desc or f"fit {loss}")
    data = (x, y if targets is None else targets, y, loss_fn)
    if not cache_enabled:
        _reset(objective)
        history = _train(run, data, epochs, batch_size, seed, None, None, progress)
        return FitResult(model.eval(), history, run.key, None, False, config, device.type)

    found = checkpoint.find_checkpoint(run, cache_dir, allowed)
    if found is not None:
        checkpoint.apply_checkpoint(run, found)
        other = found.trained_on != device.type
        store.record_use(found.key, run.desc + (f" (trained on {found.trained_on})" if other else ""))
        return FitResult(model.eval(), found.ckpt["history"], found.key, found.path, True,
                         found.ckpt.get("config", config), found.trained_on, other)

    partial = store.partial_path(run.key, cache_dir)
    ensure_writable(partial.parent, fix=(
        "make it writable, pass another cache_dir" if cache_dir is not None else
        f"make it writable, or set {CACHE_VARIABLE} to a writable folder") +
        ", or pass cache_enabled=False to train without keeping the model")
    _reset(objective)
    resume = checkpoint.load_epoch(run, partial, epochs)
    history = _train(run, data, epochs, batch_size, seed, resume, partial, progress)
    path = checkpoint.save_final(run, history, cache_dir)
    store.record_use(run.key, run.desc)
    return FitResult(model.eval(), history, run.key, path, False, config, device.type, False,
                     resume["epoch"] if resume else 0)


def _reset(objective: Objective | None) -> None:
    if objective is not None and hasattr(objective, "reset"):
        objective.reset()  # counters of an earlier training (epochs done, mixture counts) must not leak in


def _train(run: TrainingRun, data: tuple, epochs: int, batch_size: int, seed: int, resume: dict | None,
           partial: Path | None, progress: bool) -> dict[str, list[float]]:
    """Epochs ``resume["epoch"] + 1 .. epochs`` (all without ``resume``); each finished epoch but the
    last is saved to ``partial`` (unless None). Returns the history. An exception leaving the
    loop gets a note naming the saved epoch and how to resume."""
    history = resume["history"] if resume else {"epoch": [], "loss": []}
    saved = resume["epoch"] if resume else 0
    step_hooks = [cb.after_step for cb in run.callbacks if hasattr(cb, "after_step")]
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        torch.manual_seed(seed)
        if resume is not None:
            checkpoint.set_rng_state(run, resume["rng"])
        bar = tqdm(range(saved + 1, epochs + 1), initial=saved, total=epochs, desc=run.desc, disable=not progress,
                   leave=True)
        try:
            for epoch in bar:
                loss = _one_epoch(run, data, batch_size, epoch, step_hooks)
                history["epoch"].append(epoch)
                history["loss"].append(loss)
                _end_epoch(run, epoch, history)
                if partial is not None and epoch < epochs:
                    checkpoint.save_epoch(run, partial, epoch, history)
                    saved = saved if run.partial_failed else epoch
                bar.set_postfix(loss=f"{loss:.4f}")
        except BaseException as exc:
            if partial is not None and saved > 0:
                exc.add_note(f"fit ({run.desc}): epochs 1-{saved} of {epochs} are saved in {partial}; the same "
                             f"call resumes from epoch {saved + 1}")
            raise
    return history


def _one_epoch(run: TrainingRun, data: tuple, batch_size: int, epoch: int, step_hooks: list) -> float:
    """One pass over the data in a seeded random order; the mean training loss (one host sync)."""
    x, targets, y, loss_fn = data
    model = run.model
    model.train()
    total = torch.zeros((), device=run.device)
    order = torch.randperm(x.shape[0], generator=run.generator).to(run.device)
    for batch, idx in enumerate(order.split(batch_size), 1):
        run.opt.zero_grad(set_to_none=True)
        if run.objective is None:
            batch_loss = loss_fn(model(x[idx]), targets[idx])
        else:
            batch_loss = run.objective(model, x[idx], y[idx])
        batch_loss.backward()
        run.opt.step()
        for hook in step_hooks:
            hook(epoch, batch, model)
        total += batch_loss.detach() * idx.numel()
    return float(total) / x.shape[0]


def _end_epoch(run: TrainingRun, epoch: int, history: dict[str, list[float]]) -> None:
    """Step the schedule, switch to eval mode, and add the objective's and callbacks' metrics."""
    if run.scheduler is not None:
        run.scheduler.step()
    run.model.eval()
    if run.objective is not None and hasattr(run.objective, "end_epoch"):
        for name, value in run.objective.end_epoch(epoch).items():
            history.setdefault(name, []).append(float(value))
    for cb in run.callbacks:
        for name, value in cb(epoch, run.model).items():
            history.setdefault(name, []).append(float(value))


__all__ = ["fit", "FitResult", "Callback", "Objective", "make_optimizer", "make_lr_schedule", "param_groups",
           "OPTIMIZERS"]
