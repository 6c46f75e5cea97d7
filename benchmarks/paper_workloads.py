"""What each notebook repeats at a profile: the units of work bench_paper.py measures and how often (infrastructure).

A ``Unit`` is one operation on one model at one batch size (a training step through ``fit`` with
the notebook's objective and optimiser, an input gradient, ten PGD steps, a forward pass, a
DeepFool step); an ``Item`` is a unit times a count, in a ``stage`` (one chunk of the plan:
"train <model>" or "evaluate"). The counts follow each notebook's code at the given parameters;
attacks that stop early per sample are counted at their maximum (upper bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

ATTACK_BATCH = 500  # evaluation.robust_accuracy / minimal_perturbation / adversarial_examples
RUN_ATTACK_BATCH = 200  # evaluation.run_attack
MNIST, CIFAR = (1, 28, 28), (3, 32, 32)


@dataclass(frozen=True)
class Unit:
    kind: str  # "train" | "grad" | "pgd" | "forward" | "deepfool"
    arch: str
    kwargs: tuple  # sorted (name, value) pairs of build_model's arguments
    shape: tuple
    batch: int
    optimizer: tuple = ()  # ("sgd", lr) ...
    objective_name: str = ""
    samples: int = 1  # EOT samples (grad)
    objective: Callable[[], Any] | None = field(default=None, compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.arch}|{self.kwargs}|{self.shape}|{self.batch}|{self.objective_name}|{self.samples}"

    def describe(self) -> str:
        what = {"train": "training step", "grad": "input gradient (1 attack iteration)", "pgd": "PGD step",
                "forward": "forward pass", "deepfool": "DeepFool step (all candidate classes)"}[self.kind]
        obj = f", {self.objective_name}" if self.objective_name else ""
        eot = f", EOT {self.samples} draws" if self.samples > 1 else ""
        return f"{what}: {self.arch}{_short(self.kwargs)}, batch {self.batch}{obj}{eot}"


def _short(kwargs: tuple) -> str:
    shown = [f"{k}={v}" for k, v in kwargs if k in ("width", "channels", "hidden", "widths", "depth", "layer",
                                                     "activation")]
    return f"({', '.join(shown)})" if shown else ""


@dataclass
class Item:
    stage: str
    label: str
    unit: Unit
    count: int


def _kw(**kwargs) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


def unit(kind, arch, shape, batch, optimizer=None, objective=None, objective_name="", samples=1, **kwargs) -> Unit:
    opt = tuple(sorted((optimizer or {}).items()))
    return Unit(kind, arch, _kw(**kwargs), shape, batch, opt, objective_name, samples, objective)


def batches(n: int, b: int) -> int:
    return max(1, math.ceil(n / b))


def nb01(v: dict) -> tuple[list, list]:
    from robust_utils.methods.recipes import PROBABILISTIC_LOSS_MODELS

    arch, kw = "inception_mnist", dict(width=v["width"])
    step = unit("train", arch, MNIST, v["batch_size"], {"name": "adamw", "lr": v["lr"]}, **kw)
    items = [Item(f"train {m}", f"{m}: {v['epochs']} epochs", step, v["epochs"] * batches(v["n_train"], v["batch_size"]))
             for m in PROBABILISTIC_LOSS_MODELS]
    b = min(v["n_attack"], ATTACK_BATCH)
    nb = batches(v["n_attack"], ATTACK_BATCH)
    g, p = unit("grad", arch, MNIST, b, **kw), unit("pgd", arch, MNIST, b, **kw)
    m = len(PROBABILISTIC_LOSS_MODELS)
    items += [Item("evaluate", "FGSM sweep, 4 models", g, m * len(v["eps_grid"]) * nb),
              Item("evaluate", "CW-L2 (kappa 0 and kappa > 0), 4 models", g, m * 2 * v["cw_search"] * v["cw_steps"] * nb),
              Item("evaluate", "PGD sweep (margin), 4 models", p, m * len(v["eps_grid"]) * v["pgd_steps"] * nb),
              Item("evaluate", "PGD with restarts (CE and margin), 4 models", p, m * 2 * v["pgd_restarts"] * v["pgd_steps"] * nb)]
    return items, [f"Four Inception CNNs (width {v['width']}); CW counted at {v['cw_search']} x {v['cw_steps']} steps "
                   "(its early abort makes it shorter)."]


def nb02(v: dict) -> tuple[list, list]:
    arch, kw = v["architecture"], dict(channels=v["channels"], hidden=v["hidden"])
    opt = {"name": v["optimizer"], "lr": v["lr"]}
    steps = v["epochs"] * batches(v["n_train"], v["batch_size"])
    step = unit("train", arch, MNIST, v["batch_size"], opt, **kw)
    ab = v["attack_batch_size"]
    g = unit("grad", arch, MNIST, min(ab, v["n_val"]), **kw)
    f = unit("forward", arch, MNIST, min(ab, v["n_val"]), **kw)
    attacked = sum(1 for e in v["eps_grid"] if e > 0)
    items = []
    for s in range(v["seed"], v["seed"] + v["n_seeds"]):
        for loss in ("ce", "hr"):
            stage = f"train seed {s}"
            items += [Item(stage, f"{loss.upper()} seed {s}: {v['epochs']} epochs", step, steps),
                      Item(stage, "Figure 1's monitor: CE-FGSM on the validation set, every epoch", g,
                           v["epochs"] * attacked * batches(v["n_val"], ab)),
                      Item(stage, "Figure 1's monitor: accuracies, every epoch", f,
                           v["epochs"] * len(v["eps_grid"]) * batches(v["n_val"], ab))]
    gt = unit("grad", arch, MNIST, min(ab, v["n_test"]), **kw)
    pt = unit("pgd", arch, MNIST, min(ab, v["n_sweep"]), **kw)
    items += [Item("evaluate", "Table 1 and the confusion matrices (FGSM)", gt,
                   (4 * attacked + 2) * v["n_seeds"] * batches(v["n_test"], ab)),
              Item("evaluate", "PGD sweep (CE and HR losses), 2 models", pt,
                   2 * 2 * len(v["eps_sweep"]) * v["pgd_steps"] * batches(v["n_sweep"], ab))]
    notes = [f"{2 * v['n_seeds']} CNNs of {v['epochs']} epochs x {batches(v['n_train'], v['batch_size'])} steps: "
             "one training chunk per seed (both losses), each in resumable pieces."]
    if v.get("cifar_dataset"):
        ckw = dict(depth=6 * v["resnet_n"] + 2)
        cstep = unit("train", "cifar_resnet", CIFAR, v["cifar_batch_size"], {"name": v["cifar_optimizer"], "lr": v["cifar_lr"]},
                     **ckw)
        for s in range(v["seed"], v["seed"] + v["cifar_n_seeds"]):
            for loss in ("ce", "hr"):
                items.append(Item(f"train CIFAR-10 seed {s}", f"ResNet-{ckw['depth']} {loss.upper()} on "
                                  f"{v['cifar_dataset']}", cstep,
                                  v["cifar_epochs"] * batches(v["cifar_n_train"], v["cifar_batch_size"])))
        notes.append(f"Table 1's CIFAR-10 column on {v['cifar_dataset']}"
                     + (" (the full CIFAR-10: see the constraints below)" if v["cifar_dataset"] == "cifar10" else "")
                     + f"; the SVHN column ({v.get('svhn_dataset')}) runs only where its files are, and is not counted.")
    return items, notes


def nb03(v: dict) -> tuple[list, list]:
    from robust_utils.methods import recipes

    cfg = recipes.StochasticLWTA.from_parameters(v)
    base = dict(depth=v["depth"], widen_factor=v["widen_factor"])
    opt = {"name": "sgd", "lr": v["lr"], "momentum": v["momentum"], "weight_decay": v["weight_decay"]}
    items, random_rows = [], []
    steps = v["epochs"] * batches(v["n_train"], v["batch_size"])
    for name, (kw, objective) in cfg.table1().items():
        u = unit("train", "wide_resnet", CIFAR, v["batch_size"], opt, objective=(lambda o=objective: o),
                 objective_name=f"{type(objective).__name__} ({name})" if objective else "CE", **base, **kw)
        items.append(Item(f"train {name}", f"{name}: {v['epochs']} epochs", u, steps))
        if kw:
            random_rows.append((name, kw))
    b, nb = min(v["n_attack"], RUN_ATTACK_BATCH), batches(v["n_attack"], RUN_ATTACK_BATCH)
    g, p = unit("grad", "wide_resnet", CIFAR, b, **base), unit("pgd", "wide_resnet", CIFAR, b, **base)
    rows = len(items)
    items += [Item("evaluate", "PGD (report and 8/255), 8 models", p, rows * (v["report_pgd_steps"] + v["std_pgd_steps"]) * nb),
              Item("evaluate", "FGSM and CW (report and 8/255), 8 models", g,
                   rows * (2 + v["report_cw_steps"] + v["std_cw_steps"] * v["std_cw_search"]) * nb)]
    ba, na = min(v["n_adaptive"], RUN_ATTACK_BATCH), batches(v["n_adaptive"], RUN_ATTACK_BATCH)
    for name, kw in random_rows:
        e = unit("grad", "wide_resnet", CIFAR, ba, samples=v["eot_samples"], **base, **kw)
        items.append(Item("evaluate", f"EOT-PGD ({v['eot_samples']} draws), {name}", e, v["eot_steps"] * na))
    items.append(Item("evaluate", "transfers and temperature attacks, random models", unit("pgd", "wide_resnet", CIFAR, ba, **base),
                      4 * v["eot_steps"] * na))
    notes = [f"Eight WideResNet-{v['depth']}-{v['widen_factor']} on {v['dataset']}, batch {v['batch_size']}.",
             "Needs the full CIFAR-10 (163 MB): more than one device call can carry (64 MiB with the tree); "
             "see the constraints below."]
    return items, notes


def nb04(v: dict) -> tuple[list, list]:
    from robust_utils.methods import critic, recipes

    cfg = recipes.AdversaryCritic.from_parameters(v)
    per_epoch = batches(v["n_train"], v["batch_size"])
    items = []
    for net, (arch, kw, lam) in cfg.networks().items():
        for name, objective in cfg.baselines().items():
            u = unit("train", arch, MNIST, v["batch_size"], {"name": "adam", "lr": v["lr"]},
                     objective=(lambda o=objective: o), objective_name=type(objective).__name__ if objective else "CE", **kw)
            items.append(Item(f"train {net} {name}", f"{net} {name}: {v['epochs']} epochs", u, v["epochs"] * per_epoch))

        def make_critic(lam=lam):
            disc = critic.Critic(widths=v["critic_widths"])
            return critic.AdversaryCritic(disc, lam=lam, lam_rec=v["lam_rec"], penalty=v["grad_penalty"],
                                          attack_steps=v["attack_steps"],
                                          critic_optimizer={"name": "adam", "lr": v["critic_lr"], "betas": (0.5, 0.999)})
        u = unit("train", arch, MNIST, v["batch_size"], {"name": "adam", "lr": v["model_lr"]}, objective=make_critic,
                 objective_name="AdversaryCritic", **kw)
        items.append(Item(f"train {net} Critic", f"{net} Critic: {v['epochs']} epochs (+ pretraining)", u,
                          (v["epochs"] + v["pretrain_epochs"]) * per_epoch))
    from robust_utils.training import objectives

    judge_obj = objectives.PGDAdversarialTraining(v["judge_eps"], 2.5 * v["judge_eps"] / v["judge_steps"], v["judge_steps"],
                                                  norm="2")
    ju = unit("train", "mnist_cnn", MNIST, v["batch_size"], {"name": "adam", "lr": v["lr"]}, objective=lambda: judge_obj,
              objective_name=f"PGD-L2-{v['judge_steps']} AT", channels=(16, 32), hidden=256)
    items.append(Item("train judge", f"proxy judge: {v['judge_epochs']} epochs", ju, v["judge_epochs"] * per_epoch))
    b, nb = min(v["n_attack"], ATTACK_BATCH), batches(v["n_attack"], ATTACK_BATCH)
    for net, (arch, kw, _) in cfg.networks().items():
        g, d = unit("grad", arch, MNIST, b, **kw), unit("deepfool", arch, MNIST, b, **kw)
        items += [Item("evaluate", f"DeepFool ({v['eval_steps']} steps), 5 {net}s", d, 5 * v["eval_steps"] * nb),
                  Item("evaluate", f"CW-L2 ({v['cw_search']} x {v['cw_steps']}), 5 {net}s", g, 5 * v["cw_search"] * v["cw_steps"] * nb),
                  Item("evaluate", f"eq. 7's attack ({v['eval_steps']} steps), 5 {net}s", g, 5 * v["eval_steps"] * nb),
                  Item("evaluate", f"PGD-L2 sweep (3 budgets), 5 {net}s", unit("pgd", arch, MNIST, b, **kw),
                       5 * 3 * v["pgd_steps"] * nb)]
    return items, ["DeepFool and eq. 7 stop per sample once fooled: counted at their maximum of "
                   f"{v['eval_steps']} steps (usually tens)."]


def nb05(v: dict) -> tuple[list, list]:
    from robust_utils.methods import recipes

    cfg = recipes.StochasticWeights.from_parameters(v)
    steps = v["epochs"] * batches(v["n_train"], v["batch_size"])
    held = torch.zeros(10, *MNIST), torch.zeros(10, dtype=torch.long)  # the callbacks are not timed
    models = {name: (kind, kw) for name, (kind, kw, _) in cfg.models(*held).items()}
    items = []
    for name, (kind, kw) in models.items():
        u = unit("train", "mlp", MNIST, v["batch_size"], {"name": "sgd", "lr": v["lr"]}, widths=v["widths"], layer=kind,
                 layer_kwargs=kw)
        items.append(Item(f"train {name}", f"{name}: {v['epochs']} epochs", u, steps))
    n, ab = v["n_attack"], ATTACK_BATCH
    for name, (kind, kw) in models.items():
        mk = dict(widths=v["widths"], layer=kind, layer_kwargs=kw)
        items += [Item("evaluate", f"{name}: Foolbox FGSM search (forward per grid point)", unit("forward", "mlp", MNIST, n, **mk),
                       v["fgsm_grid_points"] - 1),
                  Item("evaluate", f"{name}: DeepFool ({v['deepfool_steps']} steps)", unit("deepfool", "mlp", MNIST, n, **mk),
                       v["deepfool_steps"]),
                  Item("evaluate", f"{name}: LocalSearch ({v['ls_rounds']} rounds, 78 probes per image)",
                       unit("forward", "mlp", MNIST, 1024, **mk), v["ls_rounds"] * batches(v["n_local_search"] * 78, 1024))]
        if kind != "linear":
            items.append(Item("evaluate", f"{name}: EOT-PGD ({v['eot_samples']} draws), fixed eps and sweep",
                              unit("grad", "mlp", MNIST, min(n, ab), samples=v["eot_samples"], **mk),
                              (len(v["fixed_eps"]) + len(v["sweep_eps"]) - 1) * v["pgd_steps"] * batches(n, ab)))
        items.append(Item("evaluate", f"{name}: PGD and transfer", unit("pgd", "mlp", MNIST, min(n, ab), **mk),
                          2 * len(v["fixed_eps"]) * v["pgd_steps"] * batches(n, ab)))
    return items, ["LocalSearch is counted at all its rounds; it stops per image once fooled (about 10 rounds "
                   "on an undefended MLP)."]


def nb06(v: dict) -> tuple[list, list]:
    from robust_utils.methods.lwta_elbo import ELBO
    from robust_utils.training import objectives

    v05 = _values("05_sdr_learnable", v["profile"])
    at = objectives.PGDAdversarialTraining(eps=v["at_eps"], alpha=2.5 * v["at_eps"] / v["at_steps"], steps=v["at_steps"])
    own = {"PGD-AT MLP": ({}, at), "PNI MLP (PGD-AT)": ({"layer": "pni"}, at),
           "Stochastic LWTA MLP (PGD-AT)": ({"activation": "stochastic_lwta", "activation_kwargs": {"units": 2}},
                                            ELBO(at, kl_weight=v["kl_weight"]))}
    steps = v["at_epochs"] * batches(v05["n_train"], v05["batch_size"])
    items = [Item("train own MLPs", f"{name}: {v['at_epochs']} epochs of PGD-{v['at_steps']} AT",
                  unit("train", "mlp", MNIST, v05["batch_size"], {"name": "sgd", "lr": v05["lr"]}, objective=(lambda o=o: o),
                       objective_name=type(o).__name__, widths=v05["widths"], **kw), steps)
             for name, (kw, o) in own.items()]
    b, nb = min(v["n_attack"], ATTACK_BATCH), batches(v["n_attack"], ATTACK_BATCH)
    budgets = len(v["linf_eps"]) + len(v["l2_eps"])
    v01, v02, v04 = (_values(n, v["profile"]) for n in ("01_probabilistic_loss", "02_hr_loss", "04_adversary_critic"))
    defenses = [("nb 01 (2 Inception CNNs)", "inception_mnist", dict(width=v01["width"]), 2, False),
                ("nb 02 (2 CNNs)", v02["architecture"], dict(channels=v02["channels"], hidden=v02["hidden"]), 2, False),
                ("nb 04 (3 LeNet-5)", "lenet5", dict(channels=v04["lenet_channels"], hidden=v04["lenet_hidden"],
                                                     first_padding=0), 3, False),
                ("nb 05 and 06 (4 deterministic MLPs)", "mlp", dict(widths=v05["widths"]), 4, False),
                ("nb 05 and 06 (6 random MLPs)", "mlp", dict(widths=v05["widths"], layer="sdr-learnable"), 6, True)]
    for label, arch, kw, count, random in defenses:
        g = unit("grad", arch, MNIST, b, samples=20 if random else 1, **kw)
        f = unit("forward", arch, MNIST, b, **kw)
        aa_grads = 2 * 100 if random else 100 + 9 * 100 + 2 * 9 * 100  # rand: APGD-CE, APGD-DLR (EOT 20); standard
        audit = sum(v["audit_steps"]) + v["audit_steps"][-1] * v["audit_restarts"]
        eot = sum(v["eot_samples"]) * v["audit_steps"][-1] // 20 if random else 0
        items += [Item(f"evaluate {label}", f"AutoAttack ({'rand' if random else 'standard'}), {budgets} budgets", g,
                       count * budgets * aa_grads * nb),
                  Item(f"evaluate {label}", "AutoAttack's Square and the audit's Square (queries)", f,
                       count * (budgets * (0 if random else v["square_queries"]) + v["square_queries"]) * nb),
                  Item(f"evaluate {label}", "the audit's PGD (steps, restarts, EOT convergence)", g,
                       count * (audit + eot) * nb)]
    return items, ["AutoAttack and the audit stop attacking points already fooled: upper bounds.",
                   "Needs the checkpoints of 01, 02, 04 and 05 (see the constraints below)."]


def _values(notebook: str, profile: str) -> dict:
    from robust_utils.app.profiles import notebook_values

    return notebook_values(notebook, profile)


WORKLOADS = {"01_probabilistic_loss": nb01, "02_hr_loss": nb02, "03_stochastic_lwta": nb03,
             "04_adversary_critic": nb04, "05_sdr_learnable": nb05, "06_adaptive_evaluation": nb06}


def workload(notebook: str, values: dict) -> tuple[list, list]:
    """(items, notes) of a notebook at the given parameter values."""
    return WORKLOADS[notebook](values)


def selector(notebook: str, stage: str) -> str:
    """The command (benchmarks/gpu_paper_run.sh arguments) that runs a stage."""
    if stage.startswith("evaluate"):
        return f"`run {notebook}`"
    name = stage[len("train "):]
    if notebook == "02_hr_loss":
        parts = name.split()
        if parts[0] == "CIFAR-10":
            return f"`train {notebook} --select column=CIFAR-10 seeds={parts[-1]}`"
        return f"`train {notebook} --select seeds={parts[-1]}`"
    if notebook == "04_adversary_critic":
        if name == "judge":
            return f"`train {notebook} --select judge=1`"
        net, defense = name.rsplit(" ", 1)
        return f"`train {notebook} --select networks={net} defenses={defense}`"
    if notebook == "06_adaptive_evaluation":
        return f"`train {notebook}`"
    return f"`train {notebook} --select \"names={name}\"`"


CONSTRAINTS = [
    "## Constraints of the GPU machine (device tool limits)", "",
    "- A call carries at most 64 MiB (the tree, about 33 MB, plus what `carry` names: the wheels, about 16 MB, "
    "and the checkpoint cache `.paper_cache`), and brings back at most 8 files of 16 MiB (64 MiB): "
    "`benchmarks/gpu_paper_run.sh` packs the outputs and the newest checkpoints that fit "
    "(`benchmarks/paper_outputs.py`).",
    "- While the machine stays warm (30 s after a call, at most 30 min held) the cache stays on it: chunks "
    "that share checkpoints (a notebook's training pieces, its evaluation, notebook 06) run best in one "
    "session, back to back.",
    "- Notebook 01's four Inception CNNs (width 1.0: 5,984,810 parameters, 24 MB each) and notebook 06's "
    "inputs (2 Inception CNNs, 2 CNNs of 13 MB, 3 LeNet-5, 8 MLPs: about 75 MB) exceed what one call carries: "
    "train and evaluate them in the same session, or bring the checkpoints back over several calls.",
    "- Notebook 03 needs the full CIFAR-10 (163 MB): it cannot be carried in one call; it needs a session that "
    "carries it in parts (e.g. three calls of about 55 MB into an ignored folder, kept while the machine is "
    "warm) before its chunks.",
]
