"""What a notebook leaves behind: PNG figures and ``results.json`` in figures/<profile>/<notebook>/,
and the record of the parameters it ran with.

results.json (written atomically) holds the notebook's parameters, its reproduced tables
(paper value, ours, difference per cell) and its claims; ``python -m robust_utils run``
collects them into figures/<profile>/SUMMARY.md.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..core.io import atomic_write_bytes, atomic_write_json
from ..core.paths import figures_root, notebooks_dir, project_root
from ..core.store import used_checkpoint_descriptions, used_checkpoints
from ..evaluation.claims import Claim


def parameter_names(notebook: str, folder: str | Path | None = None) -> list[str]:
    """The names assigned in a notebook's ``parameters``-tagged cell, in order.

    Args:
        notebook: the notebook's stem, e.g. "02_hr_loss".   folder: where it lies (default: notebooks/).
    Raises:
        FileNotFoundError: no such notebook.   ValueError: no parameters cell, or it is not valid Python.
    """
    path = Path(folder if folder is not None else notebooks_dir()) / f"{notebook}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next(("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if source is None:
        raise ValueError(f"{path} has no cell tagged 'parameters'")
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def parameters_record(notebook: str, namespace: Mapping[str, Any], **resolved: Any) -> dict[str, Any]:
    """The parameters a notebook ran with, for results.json: every name of its parameters cell, read
    from the kernel's namespace (papermill's overrides included), then ``resolved`` values (e.g.
    ``device=str(DEVICE)``, the device "auto" became). The one way every notebook builds ``PARAMETERS``.

    Args:
        notebook: the notebook's stem.   namespace: the kernel's ``globals()``.
    Raises:
        KeyError: a parameter of the cell is missing from the namespace (the cell did not run).
    """
    missing = [n for n in parameter_names(notebook) if n not in namespace]
    if missing:
        raise KeyError(f"parameter(s) {', '.join(missing)} of {notebook} are not defined: run its parameters cell first")
    return {**{n: namespace[n] for n in parameter_names(notebook)}, **resolved}


def output_dir(profile: str, notebook: str) -> Path:
    """figures/<profile>/<notebook>/ (created), under $ROBUST_UTILS_FIGURES if set."""
    path = figures_root() / profile / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean(v: Any) -> Any:
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class Results:
    """Collects a notebook's outputs and writes them to figures/<profile>/<notebook>/.

    Args:
        notebook: the notebook's stem, e.g. "02_hr_loss".   profile: smoke, classroom or paper.
        title: a short title for SUMMARY.md.   parameters: the notebook's parameters (JSON-able).
    """

    def __init__(self, notebook: str, profile: str, title: str, parameters: dict):
        self.notebook, self.profile, self.title = notebook, profile, title
        self.parameters = dict(parameters)
        self.dir = output_dir(profile, notebook)
        self.tables: dict[str, list[dict]] = {}
        self.claims: list[dict] = []
        self.figures: list[str] = []
        self.values: dict[str, Any] = {}
        self.leaderboards: dict[str, dict] = {}

    @property
    def display_dir(self) -> str:
        """The output folder relative to the repository (absolute if it lies elsewhere)."""
        try:
            return self.dir.resolve().relative_to(project_root()).as_posix()
        except ValueError:
            return str(self.dir)

    def add_table(self, name: str, df: pd.DataFrame) -> None:
        """Record a reproduced table: a DataFrame with columns cell, paper, ours (diff is derived)."""
        missing = {"cell", "paper", "ours"} - set(df.columns)
        if missing:
            raise ValueError(f"table {name!r} lacks column(s) {sorted(missing)}")
        rows = []
        for r in df.to_dict("records"):
            paper, ours = _clean(r["paper"]), _clean(r["ours"])
            diff = None if paper is None or ours is None else ours - paper
            rows.append({"cell": str(r["cell"]), "paper": paper, "ours": ours, "diff": diff})
        self.tables[name] = rows

    def add_leaderboard(self, name: str, df: pd.DataFrame) -> None:
        """Record a measured table with any columns (e.g. notebook 06's leaderboard); SUMMARY.md shows it as is."""
        self.leaderboards[name] = {"columns": [str(c) for c in df.columns],
                                   "rows": [{str(k): _clean(v) for k, v in r.items()} for r in df.to_dict("records")]}

    def add_claims(self, claims: Sequence[Claim]) -> None:
        """Record the claims cell's verdicts: claim, verdict, evidence, and the test's numbers where known
        (test, p_value, p_holm, mde, effect; ``Claim.record``)."""
        self.claims = [c.record() for c in claims]

    def add_values(self, **values: Any) -> None:
        """Record other named numbers (e.g. the eps at which accuracy reaches zero)."""
        self.values.update({k: _clean(v) for k, v in values.items()})

    def savefig(self, fig, name: str) -> Path:
        """Save a matplotlib figure as <name>.png (atomically) and record it."""
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        path = atomic_write_bytes(self.dir / f"{name}.png", buf.getvalue())
        if path.name not in self.figures:
            self.figures.append(path.name)
        return path

    def save(self) -> Path:
        """Write results.json atomically; returns its path.

        It also lists the checkpoint keys this process's ``fit`` calls loaded or saved
        (``core.store.used_checkpoints``): a notebook runs in its own kernel, so these are the
        notebook's, which ``python -m robust_utils export-checkpoints`` bundles; "checkpoint_uses"
        says what each was used for, and whether it was trained on another device.
        """
        return atomic_write_json(self.dir / "results.json", {
            "notebook": self.notebook, "profile": self.profile, "title": self.title,
            "parameters": self.parameters, "tables": self.tables, "claims": self.claims,
            "values": self.values, "figures": self.figures, "leaderboards": self.leaderboards,
            "checkpoints": used_checkpoints(), "checkpoint_uses": used_checkpoint_descriptions(),
        })
