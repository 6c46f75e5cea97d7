"""The MNIST defenses of notebooks 01-05, rebuilt for the cross-defense evaluation (notebook 06).

Each recipe repeats its paper notebook's training call at that notebook's parameters for a
profile (``source_parameters``: the notebook's defaults, overridden by notebooks/params/<profile>.yaml),
so ``train.fit`` computes the same cache key and loads the checkpoint the paper notebook wrote;
``Defense.from_cache`` says whether it did. A recipe whose notebook changed its training call
must change here too, or notebook 06 retrains (tests/test_defenses.py compares the keys at the
smoke profile with those the notebooks wrote).

Notebook 03 trains on CIFAR-10; its two random defenses, PNI (Rakin et al. 2019) and Stochastic
LWTA (Panousis et al. 2021), are trained here on MNIST with notebook 05's MLP and training data,
beside an MLP with plain PGD adversarial training (Madry et al. 2018) at the same budget.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from . import calibration, critic, data, evaluate, models, objectives, runner, sdr, train
from .layers import stochastic_layers
from .lwta import lwta_modules
from .pni import pni_layers


@dataclass
class Defense:
    """One trained MNIST model of the leaderboard.

    Attributes:
        name: the leaderboard label.   key: its name in that notebook.   notebook: the notebook that trains it (stem).
        paper: the ``reference`` key of its paper ("" for ours).   architecture: a short description.
        model: the trained model, in eval mode.   twin: the name of its undefended twin (same
            architecture and data, cross-entropy), None for a twin itself.
        random: its forward pass is random in eval mode.   from_cache: loaded, not trained.
    """

    name: str
    key: str
    notebook: str
    paper: str
    architecture: str
    model: nn.Module = field(repr=False)
    twin: str | None
    random: bool
    from_cache: bool


def source_parameters(notebook: str, profile: str) -> dict:
    """The parameters a notebook runs with at ``profile``: its parameters cell, then the profile's values.

    Raises:
        runner.RunnerError: unknown profile or notebook.
    """
    resolved = runner.resolve_parameters(profile, [notebook])[notebook]  # checks the profile and the notebook first
    path = runner._nb_dir(None) / f"{notebook}.ipynb"
    defaults = {k: ast.literal_eval(v["default"]) for k, v in runner.notebook_parameters(path).items()}
    return {**defaults, **resolved}


def _is_random(model: nn.Module) -> bool:
    return bool(stochastic_layers(model) or pni_layers(model) or lwta_modules(model))


def probabilistic_loss(p: dict, device: torch.device, progress: bool = False) -> dict[str, train.FitResult]:
    """Notebook 01: the Inception CNN trained with CE, and with the EM-calibrated soft labels (Algorithm 1, eq. 9)."""
    x, y = data.load_dataset("mnist", "train", n=p["n_train"], seed=p["seed"], device=device)
    cal = calibration.em_calibrate(x.flatten(1), y, 10, prior=p["prior"], variance=p["variance"], tol=p["em_tol"],
                                   max_iter=p["em_max_iter"])
    out = {}
    for name, loss, targets in (("CE", "ce", None), ("calibrated (EM)", "soft_ce", cal.tau)):
        net = models.build_model("inception_mnist", seed=p["seed"], device=device, width=p["width"])
        out[name] = train.fit(net, x, y, loss=loss, targets=targets, epochs=p["epochs"], batch_size=p["batch_size"],
                              seed=p["seed"], optimizer={"name": "adamw", "lr": p["lr"], "weight_decay": p["weight_decay"]},
                              desc=name, progress=progress)
    return out


def hr_loss(p: dict, device: torch.device, progress: bool = False) -> dict[str, train.FitResult]:
    """Notebook 02: the CNN trained with CE and with the HR loss (Picot et al., eq. 3), first seed."""
    x, y = data.load_dataset(p["dataset"], "train", n=p["n_train"], seed=p["seed"], device=device)
    x_val, y_val = data.load_dataset(p["dataset"], "test", n=p["n_val"], seed=p["seed"] + 1, device=device)
    monitor = evaluate.RobustAccuracyMonitor(x_val, y_val, p["eps_grid"], attack="fgsm", loss="ce",
                                             batch_size=p["attack_batch_size"])
    opt = {"name": p["optimizer"], "lr": p["lr"], **({"momentum": p["momentum"]} if p["optimizer"] == "sgd" else {})}
    out = {}
    for loss, kw in (("ce", {}), ("hr", {"alpha": p["alpha"]})):
        net = models.build_model(p["architecture"], seed=p["seed"], device=device, channels=p["channels"], hidden=p["hidden"])
        out[loss] = train.fit(net, x, y, loss=loss, loss_kwargs=kw, optimizer=opt, epochs=p["epochs"],
                              batch_size=p["batch_size"], seed=p["seed"], callbacks=[monitor],
                              desc=f"{loss.upper()} seed {p['seed']}", progress=progress)
    return out


def adversary_critic(p: dict, device: torch.device, progress: bool = False) -> dict[str, train.FitResult]:
    """Notebook 04: LeNet-5 as reference (CE), with FGSM adversarial training, and with the adversary critic."""
    x, y = data.load_dataset("mnist", "train", n=p["n_train"], seed=p["seed"], device=device)
    kw = {"channels": p["lenet_channels"], "hidden": p["lenet_hidden"], "first_padding": 0}
    opt = {"name": "adam", "lr": p["lr"]}
    out = {}
    for name, objective in (("Reference", None), ("AT", objectives.FGSMAdversarialTraining(p["at_eps"]))):
        net = models.build_model("lenet5", seed=p["seed"], device=device, **kw)
        out[name] = train.fit(net, x, y, objective=objective, optimizer=opt, epochs=p["epochs"],
                              batch_size=p["batch_size"], seed=p["seed"], desc=f"LeNet-5 {name}", progress=progress)
    net = models.build_model("lenet5", seed=p["seed"], device=device, **kw)
    train.fit(net, x, y, optimizer=opt, epochs=p["pretrain_epochs"], batch_size=p["batch_size"], seed=p["seed"],
              desc="lenet5 pretrain", progress=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p["seed"] + 1)
        disc = critic.Critic(widths=p["critic_widths"]).to(device)
    schedule = {"step_size": p["lr_decay_every"], "gamma": 0.5}
    objective = critic.AdversaryCritic(disc, lam=p["lam_lenet"], lam_rec=p["lam_rec"], penalty=p["grad_penalty"],
                                       attack_steps=p["attack_steps"],
                                       critic_optimizer={"name": "adam", "lr": p["critic_lr"], "betas": (0.5, 0.999)},
                                       critic_lr_schedule=schedule)
    out["Critic"] = train.fit(net, x, y, objective=objective, lr_schedule=schedule, epochs=p["epochs"],
                              optimizer={"name": "adam", "lr": p["model_lr"], "betas": (0.5, 0.999)},
                              batch_size=p["batch_size"], seed=p["seed"], desc="lenet5 critic", progress=progress)
    return out


def sdr_training_data(p: dict, device: torch.device):
    """Notebook 05's split of the MNIST training set: (x_train, y_train, x_held, y_held)."""
    x_all, y_all = data.load_dataset("mnist", "train", device=device)
    held = torch.zeros(len(y_all), dtype=torch.bool)
    held[data.balanced_subset(y_all.cpu(), p["n_heldout"], p["seed"])] = True
    held = held.to(device)
    x_rest, y_rest = x_all[~held], y_all[~held]
    keep = data.balanced_subset(y_rest.cpu(), p["n_train"], p["seed"]).to(device)
    return x_rest[keep], y_rest[keep], x_all[held], y_all[held]


def stochastic_weights(p: dict, device: torch.device, progress: bool = False) -> dict[str, train.FitResult]:
    """Notebook 05: the 784-100-100-100-10 MLP vanilla, SDR-decay, Learnable SDR and DropConnect (Khan et al. 2019)."""
    x, y, x_held, y_held = sdr_training_data(p, device)
    recipes = {
        "Vanilla MLP": ("linear", {}, []),
        "SDR-decay MLP": ("sdr-decay", {}, [sdr.SDRDecay(p["sdr_beta"], p["sdr_zeta"], p["sdr_tau"])]),
        "Learnable SDR MLP": ("sdr-learnable", {}, [sdr.VarianceSchedule(
            x_held, y_held, p["sigma_low"], p["sigma_high"], p["sigma_step"], p["schedule_every"], p["plateau_tol"])]),
        "DropConnect": ("dropconnect", {"p": p["dropconnect_p"]}, []),
    }
    out = {}
    for name, (kind, kw, callbacks) in recipes.items():
        net = models.build_model("mlp", seed=p["seed"], device=device, widths=p["widths"], layer=kind, layer_kwargs=kw)
        out[name] = train.fit(net, x, y, optimizer={"name": "sgd", "lr": p["lr"]}, epochs=p["epochs"],
                              batch_size=p["batch_size"], seed=p["seed"], callbacks=callbacks, desc=name, progress=progress)
    return out


def adversarially_trained_mlps(p: dict, device: torch.device, eps: float, steps: int, epochs: int, seed: int,
                               kl_weight: float = 1e-3, progress: bool = False) -> dict[str, train.FitResult]:
    """Notebook 06's own models: notebook 05's MLP, data and optimiser, trained with PGD adversarial
    training (Madry et al. 2018, eq. 2.1; step 2.5 eps / steps) as plain ReLU, with PNI layers
    (Rakin et al. 2019, layer-wise alpha, noise on in training and test), and with stochastic LWTA
    activations (Panousis et al. 2021, U = 2, trained as the ELBO of PGD-AT plus kl_weight x KL).

    Args:
        p: notebook 05's parameters (``source_parameters``).   eps: training budget, Linf, pixel units.
        steps: PGD steps.   epochs: training epochs.   seed: initialisation and shuffling seed.
    """
    x, y, _, _ = sdr_training_data(p, device)
    at = objectives.PGDAdversarialTraining(eps=eps, alpha=2.5 * eps / steps, steps=steps)
    recipes = {
        "PGD-AT MLP": ({}, at),
        "PNI MLP (PGD-AT)": ({"layer": "pni"}, at),
        "Stochastic LWTA MLP (PGD-AT)": ({"activation": "stochastic_lwta", "activation_kwargs": {"units": 2}},
                                         objectives.ELBO(at, kl_weight=kl_weight)),
    }
    out = {}
    for name, (kw, objective) in recipes.items():
        net = models.build_model("mlp", seed=seed, device=device, widths=p["widths"], **kw)
        out[name] = train.fit(net, x, y, objective=objective, optimizer={"name": "sgd", "lr": p["lr"]}, epochs=epochs,
                              batch_size=p["batch_size"], seed=seed, desc=name, progress=progress)
    return out


def _describe(model: nn.Module) -> str:
    return f"{type(model).__name__}, {sum(q.numel() for q in model.parameters()):,} parameters"


def mnist_defenses(profile: str, device: torch.device, eps: float, steps: int, epochs: int, seed: int,
                   kl_weight: float = 1e-3, progress: bool = False) -> dict[str, Defense]:
    """Every MNIST defense of notebooks 01-05 at ``profile``, and notebook 06's PGD-AT, PNI and LWTA MLPs.

    Args:
        profile: the profile whose notebook parameters the recipes use (smoke, classroom, paper).
        device: where to train / load.   eps, steps, epochs, seed, kl_weight: ``adversarially_trained_mlps``.
    Returns:
        {name: Defense} in leaderboard order; twins are included (twin=None).
    Raises:
        runner.RunnerError: unknown profile.
    """
    specs: list[tuple[str, str, Callable, dict[str, tuple[str, str | None]]]] = [
        ("01_probabilistic_loss", "",
         probabilistic_loss, {"CE": ("CE (Inception, nb 01)", None), "calibrated (EM)": ("Probabilistic loss (EM soft labels)", "CE (Inception, nb 01)")}),
        ("02_hr_loss", "picot",
         hr_loss, {"ce": ("CE (CNN, nb 02)", None), "hr": ("HR loss", "CE (CNN, nb 02)")}),
        ("04_adversary_critic", "matyasko",
         adversary_critic, {"Reference": ("CE (LeNet-5, nb 04)", None), "AT": ("FGSM-AT (LeNet-5)", "CE (LeNet-5, nb 04)"),
                            "Critic": ("Adversary critic", "CE (LeNet-5, nb 04)")}),
        ("05_sdr_learnable", "khan",
         stochastic_weights, {"Vanilla MLP": ("Vanilla MLP (nb 05)", None), "SDR-decay MLP": ("SDR-decay", "Vanilla MLP (nb 05)"),
                              "Learnable SDR MLP": ("SDR-Learnable", "Vanilla MLP (nb 05)"),
                              "DropConnect": ("DropConnect", "Vanilla MLP (nb 05)")}),
    ]
    out: dict[str, Defense] = {}
    for notebook, paper, recipe, names in specs:
        runs = recipe(source_parameters(notebook, profile), device, progress=progress)
        for key, (label, twin) in names.items():
            r = runs[key]
            out[label] = Defense(label, key, notebook, paper, _describe(r.model), r.model, twin, _is_random(r.model),
                                 r.from_cache)
    p05 = source_parameters("05_sdr_learnable", profile)
    runs = adversarially_trained_mlps(p05, device, eps, steps, epochs, seed, kl_weight, progress)
    for label, r in runs.items():
        paper = {"PNI MLP (PGD-AT)": "rakin", "Stochastic LWTA MLP (PGD-AT)": "panousis"}.get(label, "")
        out[label] = Defense(label, label, "06_adaptive_evaluation", paper, _describe(r.model), r.model,
                             "Vanilla MLP (nb 05)", _is_random(r.model), r.from_cache)
    return out
