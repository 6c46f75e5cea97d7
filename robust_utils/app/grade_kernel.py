"""A fresh Jupyter kernel that runs grading cells one at a time, with a per-cell timeout.

Used by :mod:`robust_utils.app.grade`. The kernel is nbclient's (the machinery papermill and
``nbgrader autograde`` execute notebooks with), started in a scratch folder with one thread. A cell
that raises is reported with its exception; a cell that runs past the timeout, or kills its
kernel, costs the kernel: it is shut down at once and a fresh one is started, which replays the
cells :meth:`GradingKernel.keep` was told to keep (the student's earlier, working definitions).
Teaching infrastructure, not a paper's method.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat

# Seconds allowed for starting a kernel and importing torch and robust_utils (not the student's time).
STARTUP_TIMEOUT = 120
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")


class KernelFailure(RuntimeError):
    """The grading kernel could not be started or prepared (an installation problem, not a student's)."""


@dataclass(frozen=True)
class CellResult:
    """What running one cell gave.

    Attributes:
        ok: it finished without an exception.   timed_out: it ran past the timeout (the kernel was replaced).
        died: the kernel died while running it (and was replaced).
        ename, evalue: the exception's type and message ("" when ok).
        line: the line of this cell where the exception surfaced (1-based), or None.
    """

    ok: bool
    timed_out: bool = False
    died: bool = False
    ename: str = ""
    evalue: str = ""
    line: int | None = None


def warmup_source(cells: Iterable[str]) -> str:
    """Code that imports, inside a function (so no name is left behind), every module the given cells
    import, and sets torch to one thread: the cells' own run then costs milliseconds, not imports.

    Args:
        cells: the sources of the (trusted) autograder cells.
    Returns:
        Python source; cells that do not parse are skipped.
    """
    imports = ["import torch", "torch.set_num_threads(1)"]
    for source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        imports += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    body = textwrap.indent("\n".join(dict.fromkeys(imports)), "    ")
    return f"def _grading_warmup():\n{body}\n\n_grading_warmup()\ndel _grading_warmup\n"


class GradingKernel:
    """A fresh python3 kernel in ``workdir``; use as a context manager.

    Args:
        workdir: the kernel's working folder (a scratch folder: a submission may write files).
        timeout: seconds each cell may run.   warmup: source run first in every new kernel (trusted).
    Raises:
        KernelFailure: on entering or replacing the kernel, if it does not start or the warm-up fails.
    """

    def __init__(self, workdir: str | os.PathLike, timeout: float, warmup: str = ""):
        self.workdir, self.timeout, self.warmup = Path(workdir), float(timeout), warmup
        self._kept: list[str] = []
        self._client = None
        self._context = None
        self._count = 0

    def __enter__(self) -> "GradingKernel":
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _start(self) -> None:
        from nbclient import NotebookClient

        self._client = NotebookClient(nbformat.v4.new_notebook(), timeout=self.timeout, kernel_name="python3",
                                      shutdown_kernel="immediate", allow_errors=False,
                                      resources={"metadata": {"path": str(self.workdir)}})
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        # The kernel process's own stderr carries only ipykernel's start-up notices; a cell's output,
        # stderr included, comes back over the kernel's channels, and a crash as a DeadKernelError.
        self._context = self._client.setup_kernel(env=env, stderr=subprocess.DEVNULL)
        try:
            self._context.__enter__()
        except Exception as exc:  # noqa: BLE001 - jupyter_client raises several kinds
            self._context = None
            raise KernelFailure(f"cannot start a python3 kernel: {type(exc).__name__}: {exc}") from exc
        for source in [self.warmup, *self._kept]:
            if source:
                result = self._execute(source, max(self.timeout, STARTUP_TIMEOUT))
                if not result.ok and source is self.warmup:
                    raise KernelFailure(f"the grading kernel cannot import what the autograder cells use: "
                                        f"{result.ename}: {result.evalue}")

    def _stop(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            try:
                context.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - a kernel that is already dead cannot be shut down cleanly
                pass

    def keep(self, source: str) -> None:
        """Replay ``source`` in every kernel that replaces this one (a definition that ran without error)."""
        self._kept.append(source)

    def run(self, source: str) -> CellResult:
        """Run one cell; on a timeout or a dead kernel, replace the kernel before returning.

        Returns:
            A :class:`CellResult`.
        Raises:
            KernelFailure: the replacement kernel cannot be started.
        """
        result = self._execute(source, self.timeout)
        if result.timed_out or result.died:
            self._stop()
            self._start()
        return result

    def _execute(self, source: str, timeout: float) -> CellResult:
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        cell = nbformat.v4.new_code_cell(source)
        self._client.nb.cells.append(cell)
        self._client.timeout = int(max(1, round(timeout)))
        try:
            self._client.execute_cell(cell, len(self._client.nb.cells) - 1)
        except CellTimeoutError:
            return CellResult(False, timed_out=True, ename="TimeoutError",
                              evalue=f"the cell did not finish within {self._client.timeout} s (an endless loop?)")
        except DeadKernelError as exc:
            return CellResult(False, died=True, ename="DeadKernelError", evalue=f"the kernel died ({exc})")
        except CellExecutionError as exc:
            found = _CELL_LINE.findall(_ANSI.sub("", exc.traceback or ""))
            return CellResult(False, ename=exc.ename, evalue=exc.evalue, line=int(found[0][1]) if found else None)
        except Exception as exc:  # noqa: BLE001 - a broken kernel connection: treat like a dead kernel
            return CellResult(False, died=True, ename=type(exc).__name__, evalue=f"the kernel failed ({exc})")
        return CellResult(True)


__all__ = ["CellResult", "GradingKernel", "KernelFailure", "STARTUP_TIMEOUT", "warmup_source"]
