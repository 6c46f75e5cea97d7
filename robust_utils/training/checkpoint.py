"""The checkpoints of ``fit``: the configuration and its key, the lookup (cache, bundle, other
devices), the state of every finished epoch (so that an interrupted training resumes exactly)
and the final save (rescued elsewhere if the cache refuses it).

Infrastructure, not from a paper. A final checkpoint holds {"state_dict", "history", "config",
"meta" (``run_meta``: the device it was trained on, torch version, threads), "objective_state"
(if the objective has ``state_dict``)}. The per-epoch checkpoint (``store.partial_path``) adds
"epoch", "optimizer", "scheduler", "rng" (the shuffle generator, torch's CPU and CUDA generators)
and "callback_states"; the final checkpoint replaces it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..core import store
from ..core.checkpoint_io import (CheckpointError, CheckpointWarning, load_checkpoint, move_aside, save_checkpoint,
                                  save_or_rescue)

FINAL_KEYS = ("state_dict", "history")
PARTIAL_KEYS = ("state_dict", "history", "config", "epoch", "optimizer", "scheduler", "rng", "objective_state",
                "callback_states")


@dataclass
class TrainingRun:
    """What one ``fit`` call trains with, and so what an epoch's checkpoint must capture.

    Attributes:
        model, opt, scheduler (or None), objective (or None), callbacks: as ``fit`` built them.
        generator: the CPU generator of the per-epoch shuffles.   device: the model's device.
        config: the configuration ``key`` (``store.checkpoint_key``) hashes.   desc: label for the ledger.
        partial_failed: set once saving an epoch's state failed (warned once).
    """

    model: nn.Module
    opt: torch.optim.Optimizer
    scheduler: Any
    objective: Any
    callbacks: Sequence[Any]
    generator: torch.Generator
    device: torch.device
    config: dict
    key: str
    desc: str
    partial_failed: bool = field(default=False, repr=False)


@dataclass
class Found:
    """A usable final checkpoint: its contents, key, file, source ("cache" | "bundle") and the device
    type it was trained on."""

    ckpt: dict
    key: str
    path: Path
    source: str
    trained_on: str


def callback_key(cb: Callable) -> Any:
    """A callback's ``cache_key()``.

    Raises:
        ValueError: the callback has none (the message says how to fix it).
    """
    if hasattr(cb, "cache_key"):
        return cb.cache_key()
    raise ValueError(f"callback {cb!r} has no cache_key(); give it one (see training.loop.Callback) or pass "
                     f"cache_enabled=False")


def run_meta(device: torch.device) -> dict:
    """Where and how a checkpoint was trained: {"device": "cuda:0", "device_type": "cuda", "device_name",
    "torch": version, "threads": torch.get_num_threads()}."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"device": str(device), "device_type": device.type, "device_name": name, "torch": str(torch.__version__),
            "threads": torch.get_num_threads()}


def _state_of(obj: Any) -> Any:
    return obj.state_dict() if obj is not None and hasattr(obj, "state_dict") else None


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


# --------------------------------------------------------------------------- lookup of a final checkpoint


def candidates(key: str, cache_dir: str | Path | None, any_device: bool) -> Iterator[tuple[str, Path, str]]:
    """(key, path, source) to try, in order: the cache, the bundle, then (``any_device``) the same
    identity trained on other devices (``store.other_device_candidates``)."""
    path = store.checkpoint_path(key, cache_dir)
    if path.is_file():
        yield key, path, "cache"
    bundled = store.find_in_bundle(key)
    if bundled is not None:
        yield key, bundled, "bundle"
    if any_device:
        yield from store.other_device_candidates(key, cache_dir)


def set_aside(err: CheckpointError) -> None:
    """Move a corrupt or untrusted cache file aside (``move_aside``) with a ``CheckpointWarning``.

    Raises:
        CheckpointError: ``err`` itself for an unreadable file; a new one (saying to delete the file)
            if the file cannot be moved.
    """
    if err.kind == "unreadable":
        raise err  # its message says what to check; moving it would fail alike
    try:
        target = move_aside(err.path)
    except OSError as exc:
        raise CheckpointError(f"{err}. It could not be moved aside ({exc}); delete it (rm {err.path}) and run "
                              f"again", err.path, err.kind) from None
    warnings.warn(f"{err}. It was moved aside to {target}; the checkpoint is looked up elsewhere or trained again",
                  CheckpointWarning, stacklevel=4)


def find_checkpoint(run: TrainingRun, cache_dir: str | Path | None, any_device: bool) -> Found | None:
    """The first usable final checkpoint for ``run`` among ``candidates``, or None.

    A corrupt or untrusted cache file is moved aside with a warning and the search goes on; a bad
    bundle file stops everything.

    Raises:
        store.BundleError: a bundle file is missing, fails its sha256, is corrupt or untrusted (named).
        CheckpointError: a bad cache file that cannot be moved aside.
    """
    for key, path, source in candidates(run.key, cache_dir, any_device):
        try:
            ckpt = load_checkpoint(path, map_location=run.device, required=FINAL_KEYS)
        except CheckpointError as err:
            if source == "bundle":
                raise store.BundleError(f"{err}. It belongs to the checkpoint bundle {path.parent}, which cannot be "
                                        f"used as it is: {store.how_to_get(store.bundle_profile())}") from None
            set_aside(err)
            continue
        trained_on = (store.split_key(key) or ("", run.device.type, None))[1]  # the key decides; "meta" tells more
        return Found(ckpt, key, path, source, trained_on)
    return None


def apply_checkpoint(run: TrainingRun, found: Found) -> None:
    """Load a found checkpoint's weights into the model (and its state into the objective).

    Raises:
        CheckpointError: the weights do not fit the model (kind "corrupt").
    """
    try:
        run.model.load_state_dict(found.ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {found.path} is corrupt: its weights do not fit the model "
                              f"({str(exc).splitlines()[0][:160]})", found.path, "corrupt") from None
    state = found.ckpt.get("objective_state")
    if run.objective is not None and hasattr(run.objective, "load_state_dict") and state is not None:
        run.objective.load_state_dict(state)


# --------------------------------------------------------------------------- epochs: save and resume


def rng_state(run: TrainingRun) -> dict:
    """The random state after an epoch: the shuffle generator, torch's CPU generator and, on CUDA,
    the device's generator (all CPU uint8 tensors)."""
    state = {"shuffle": run.generator.get_state(), "torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def set_rng_state(run: TrainingRun, state: dict) -> None:
    """Restore ``rng_state``'s generators (call inside ``fit``'s ``torch.random.fork_rng``)."""
    run.generator.set_state(state["shuffle"])
    torch.set_rng_state(state["torch"])
    if run.device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], run.device)


def epoch_state(run: TrainingRun, epoch: int, history: dict) -> dict:
    """Everything needed to continue exactly after ``epoch``: weights, history, optimiser, scheduler,
    random state, the objective's and the callbacks' ``state_dict()`` (None where they have none)."""
    return {"state_dict": {k: v.detach().cpu() for k, v in run.model.state_dict().items()}, "history": history,
            "config": run.config, "meta": run_meta(run.device), "epoch": epoch, "optimizer": run.opt.state_dict(),
            "scheduler": _state_of(run.scheduler), "rng": rng_state(run), "objective_state": _state_of(run.objective),
            "callback_states": [_state_of(cb) for cb in run.callbacks]}


def save_epoch(run: TrainingRun, path: Path, epoch: int, history: dict) -> None:
    """Write ``epoch_state`` atomically to ``path``; a failure warns once and training goes on."""
    try:
        save_checkpoint(path, epoch_state(run, epoch, history))
    except OSError as exc:
        if not run.partial_failed:
            run.partial_failed = True
            warnings.warn(f"could not save the state of epoch {epoch} to {path} ({exc.strerror or exc}); training "
                          f"goes on, but an interruption now loses the epochs since the last saved one",
                          CheckpointWarning, stacklevel=4)


def load_epoch(run: TrainingRun, path: Path, epochs: int) -> dict | None:
    """The saved state of the last finished epoch of this very run (same key, 1 <= epoch < epochs),
    restored into the model, optimiser, scheduler, objective and callbacks; None if there is none.

    A corrupt, untrusted or foreign file is moved aside with a warning (then None). The random
    state is returned in "rng", for ``set_rng_state``.
    """
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path, map_location="cpu", required=PARTIAL_KEYS)
        if store.checkpoint_key(state["config"]) != run.key or not 1 <= state["epoch"] < epochs:
            raise CheckpointError(f"checkpoint {path} is corrupt: it is not an unfinished training of this "
                                  f"configuration", path, "corrupt")
    except (CheckpointError, ValueError, TypeError, AttributeError) as err:
        set_aside(err if isinstance(err, CheckpointError) else CheckpointError(str(err), path, "corrupt"))
        return None
    run.model.load_state_dict(state["state_dict"])
    run.opt.load_state_dict(state["optimizer"])  # on CPU: optimiser state follows the parameters' device
    if run.scheduler is not None and state["scheduler"] is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    for obj, saved in zip([run.objective, *run.callbacks], [state["objective_state"], *state["callback_states"]]):
        if obj is not None and saved is not None and hasattr(obj, "load_state_dict"):
            obj.load_state_dict(_to_device(saved, run.device))
    return state


def save_final(run: TrainingRun, history: dict, cache_dir: str | Path | None) -> Path | None:
    """Save the trained model (``save_or_rescue``: a rescue folder if the cache refuses it), then
    remove the epoch checkpoint it replaces. Returns the path written, or None if nowhere accepted it."""
    ckpt = {"state_dict": {k: v.detach().cpu() for k, v in run.model.state_dict().items()}, "history": history,
            "config": run.config, "meta": run_meta(run.device)}
    state = _state_of(run.objective)
    if state is not None:
        ckpt["objective_state"] = state
    path = save_or_rescue(store.checkpoint_path(run.key, cache_dir), ckpt, stacklevel=3)
    try:
        store.partial_path(run.key, cache_dir).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache keeps its stale epoch file; the final checkpoint is found first
    return path


__all__ = ["FINAL_KEYS", "PARTIAL_KEYS", "Found", "TrainingRun", "apply_checkpoint", "callback_key", "candidates",
           "epoch_state", "find_checkpoint", "load_epoch", "rng_state", "run_meta", "save_epoch", "save_final",
           "set_aside", "set_rng_state"]
