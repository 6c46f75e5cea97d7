"""Train some of a notebook's models at the paper profile, through the notebook's own recipe (a chunk of the paper run).

The paper profile trains for hours; on the GPU machine it runs in chunks of at most ~8 minutes
(results/paper/CHUNKS.md). A training chunk calls the very recipe the notebook calls
(``robust_utils.methods.recipes``), configured from the notebook's parameters at the profile
(``app.profiles.notebook_values``, as notebook 06 does), on a subset of its models. ``training.fit``
stores each model in the checkpoint cache under the key of its whole configuration, so the
notebook, run afterwards through the normal runner, loads every model instead of training it.
A chunk stopped by a time limit leaves fit's last complete epoch in the cache, and the same
command resumes from it (``training.fit``'s per-epoch checkpoints).

    python benchmarks/paper_train.py 02_hr_loss --select seeds=0
    python benchmarks/paper_train.py 04_adversary_critic --select networks=MLP defenses=AT,VAT
    python benchmarks/paper_train.py 04_adversary_critic --select judge=1
    python benchmarks/paper_train.py 05_sdr_learnable --select "names=Vanilla MLP"
    python benchmarks/paper_train.py 06_adaptive_evaluation          # its own three MLPs
    python benchmarks/paper_train.py 02_hr_loss --select seeds=0 -p epochs=1 -p n_train=1000 --profile paper

Selections (comma-separated values): 01 names (CE, calibrated (EM), label smoothing, eq. 6);
02 seeds, column (MNIST, CIFAR-10, SVHN); 03 names (Table 1's rows); 04 networks (MLP, LeNet-5),
defenses (Reference, AT, VAT, Margin, Critic), judge=1; 05 names; 06 none. Infrastructure.
"""

from __future__ import annotations

import argparse
import sys
import time

from robust_utils.app.profiles import notebook_values, parse_overrides
from robust_utils.core import runtime
from robust_utils.methods import recipes

SELECTIONS = {
    "01_probabilistic_loss": ("names",),
    "02_hr_loss": ("seeds", "column"),
    "03_stochastic_lwta": ("names",),
    "04_adversary_critic": ("networks", "defenses", "judge"),
    "05_sdr_learnable": ("names",),
    "06_adaptive_evaluation": (),
}


def parse_selection(notebook: str, items: list[str]) -> dict[str, list[str]]:
    """["seeds=0,1", "column=MNIST"] -> {"seeds": ["0", "1"], "column": ["MNIST"]}, keys checked.

    Raises:
        ValueError: an unknown notebook, an item without "=", or a key the notebook does not select by.
    """
    if notebook not in SELECTIONS:
        raise ValueError(f"unknown notebook {notebook!r}; valid: {', '.join(SELECTIONS)}")
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SELECTIONS[notebook]:
            raise ValueError(f"--select {item!r}: expected KEY=VALUE with KEY one of {SELECTIONS[notebook] or '(none)'}")
        out[key] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def _nb06(values: dict, device, sel: dict) -> dict:
    p05 = recipes.StochasticWeights.from_parameters(notebook_values("05_sdr_learnable", values["profile"]))
    return recipes.train_adversarial_mlps(p05, device, values["at_eps"], values["at_steps"], values["at_epochs"],
                                          values["seed"], values["kl_weight"])


def train(notebook: str, values: dict, device, sel: dict) -> dict:
    """Run the notebook's recipe on the selected models; returns {model: FitResult}."""
    if notebook == "01_probabilistic_loss":
        cfg = recipes.ProbabilisticLoss.from_parameters(values)
        return recipes.train_probabilistic_loss(cfg, device, names=sel.get("names"))
    if notebook == "02_hr_loss":
        column = (sel.get("column") or ["MNIST"])[0]
        cfg = recipes.HRLoss.column(values, column)
        seeds = [int(s) for s in sel["seeds"]] if "seeds" in sel else None
        return recipes.train_hr_loss(cfg, device, seeds=seeds)
    if notebook == "03_stochastic_lwta":
        return recipes.train_table1_cifar(recipes.StochasticLWTA.from_parameters(values), device, names=sel.get("names"))
    if notebook == "04_adversary_critic":
        cfg = recipes.AdversaryCritic.from_parameters(values)
        if sel.get("judge"):
            return {"judge": recipes.train_judge(cfg, device)}
        return recipes.train_adversary_critic(cfg, device, networks=sel.get("networks"), defenses=sel.get("defenses"))
    if notebook == "05_sdr_learnable":
        return recipes.train_stochastic_weights(recipes.StochasticWeights.from_parameters(values), device,
                                                names=sel.get("names"))
    return _nb06(values, device, sel)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebook", choices=list(SELECTIONS))
    p.add_argument("--select", nargs="*", default=[], metavar="KEY=VALUES")
    p.add_argument("--profile", default="paper")
    p.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter, as the runner's -p (for scaled-down trials)")
    args = p.parse_args(argv)
    try:
        sel = parse_selection(args.notebook, args.select)
        values = {**notebook_values(args.notebook, args.profile), **parse_overrides(args.params)}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = runtime.setup(values["seed"], values["device"], values.get("threads"))
    start = time.perf_counter()
    runs = train(args.notebook, values, device, sel)
    for name, run in runs.items():
        done = 'loaded' if run.from_cache else f'trained (resumed after epoch {run.resumed_from})' if run.resumed_from else 'trained'
        print(f"{args.notebook} {name}: {done}")
    print(f"{len(runs)} model(s) in {time.perf_counter() - start:.0f} s on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
