"""The papermill runner (``python -m robust_utils run``) on throwaway notebooks, and SUMMARY.md.

Tiny notebooks are built in a temporary folder: ``good`` writes a results.json (standard library
only) into $ROBUST_UTILS_FIGURES/<profile>/good/, ``other`` has different parameters, ``bad``
raises (with HTML in its message). Kernels started in this file: two in the module-scoped real
run (a subprocess, as a user runs it), one in each interrupted run of a sleeping notebook (Ctrl-C,
SIGTERM), and the real smoke run of notebook 02 that is interrupted with SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from robust_utils.app.execute import INTERRUPTED_EXIT, resume_command, run
from robust_utils.app.profiles import RunnerError, load_profile, resolve_parameters
from robust_utils.app.progress import write_status
from robust_utils.app.summary import md_text, verdict_counts, write_summary
from robust_utils.core.paths import project_root

PARAMS_GOOD = 'profile = "classroom"  # where the outputs go\nseed = 0\nn = 10\neps_grid = [0.1]\nname = "x"\n'

WRITE_RESULTS = '''\
import json, os, pathlib
out = pathlib.Path(os.environ["ROBUST_UTILS_FIGURES"]) / profile / "good"
out.mkdir(parents=True, exist_ok=True)
(out / "results.json").write_text(json.dumps({
    "notebook": "good", "profile": profile, "title": "A tiny notebook",
    "parameters": {"profile": profile, "seed": seed, "n": n, "eps_grid": eps_grid, "name": name},
    "tables": {"Table 9 (toy)": [
        {"cell": "CE, eps=0.1", "paper": 0.907, "ours": 0.9123, "diff": 0.0053},
        {"cell": "HR, eps=0.3", "paper": None, "ours": float(n), "diff": None}]},
    "claims": [{"claim": "n is what was asked", "verdict": "reproduced", "evidence": f"n = {n}"},
               {"claim": "a second claim", "verdict": "not tested at this profile", "evidence": "needs svhn"}],
    "figures": ["figure1.png"],
}))
'''

PROFILE_YAML = """\
# a throwaway profile
defaults:
  seed: 7          # good and other have it; bad does not
notebooks:
  good:
    n: 20
  other:
  bad:
"""


def _notebook(path: Path, params: str, *body: str) -> None:
    """A notebook: a title, the parameters cell, then code cells ("## ..." sources become Markdown)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    cells = [nbformat.v4.new_markdown_cell(src) if src.startswith("#") else nbformat.v4.new_code_cell(src)
             for src in body]
    nb.cells = [nbformat.v4.new_markdown_cell("# A title"), cell, *cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _make_project(root: Path) -> Path:
    """notebooks good / other / bad / a_sleepy and params/tiny.yaml under root; returns root."""
    _notebook(root / "good.ipynb", PARAMS_GOOD, "## 1. Writing the results", WRITE_RESULTS)
    _notebook(root / "other.ipynb", "profile = 'classroom'\nseed = 0\nlr: float = 0.1\nextra = None\n", "x = lr * 2")
    _notebook(root / "bad.ipynb", "k = 1\n", "## 1. Failing",
              "raise RuntimeError('boom <script>alert(1)</script> in bad\\nsecond line')")
    _notebook(root / "a_sleepy.ipynb", "seconds = 60.0\n", "## 1. Sleeping", "import time\ntime.sleep(seconds)")
    (root / "params").mkdir()
    (root / "params" / "tiny.yaml").write_text(PROFILE_YAML)
    (root / "params" / "nap.yaml").write_text("notebooks:\n  a_sleepy:\n  good:\n")
    return root


@pytest.fixture
def project(tmp_path):
    return _make_project(tmp_path)


def _assert_nothing_ran(root: Path) -> None:
    assert not (root / "figs").exists()


def _cli(args: list[str], root: Path, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    """``python -m robust_utils`` with the figures and cache under root (run, or Popen when kw['popen'])."""
    env = {**os.environ, "ROBUST_UTILS_FIGURES": str(root / "figs"), "ROBUST_UTILS_CACHE": str(root / "cache")}
    argv = [sys.executable, "-m", "robust_utils", *args]
    if kw.get("popen"):  # SIGINT as a terminal's Ctrl-C: the default handler, whatever the test runner ignores
        return subprocess.Popen(argv, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(argv, capture_output=True, text=True, cwd=project_root(), env=env, timeout=kw.get("timeout", 300))


# ----------------------------------------------------------------------------- validation


def test_load_profile_and_resolution_precedence(project):
    spec = load_profile("tiny", project)
    assert list(spec["notebooks"]) == ["good", "other", "bad"]
    resolved = resolve_parameters("tiny", overrides=["n=5"], notebooks_dir=project)
    # numbered (sorted) order; defaults only where the notebook has the name; yaml entry < override
    assert list(resolved) == ["bad", "good", "other"]
    assert resolved["good"] == {"profile": "tiny", "seed": 7, "n": 5}
    assert resolved["other"] == {"profile": "tiny", "seed": 7}
    assert resolved["bad"] == {}


def test_unknown_profile_lists_valid_profiles(project):
    with pytest.raises(RunnerError, match=r"unknown profile 'nope'.*valid profiles: nap, tiny"):
        run("nope", notebooks_dir=project, figures_dir=project / "figs")
    _assert_nothing_ran(project)


def test_unknown_notebook_lists_profile_notebooks(project):
    with pytest.raises(RunnerError, match=r"missing.*the profile's notebooks: good, other, bad"):
        run("tiny", notebooks=["good", "missing"], notebooks_dir=project, figures_dir=project / "figs")
    _assert_nothing_ran(project)


def test_unknown_parameter_in_yaml_lists_valid_names(project):
    (project / "params" / "tiny.yaml").write_text("notebooks:\n  good:\n    epochs: 3\n")
    with pytest.raises(RunnerError) as err:
        run("tiny", notebooks_dir=project, figures_dir=project / "figs")
    assert "'epochs'" in str(err.value)
    assert "valid parameters: profile, seed, n, eps_grid, name" in str(err.value)
    _assert_nothing_ran(project)


def test_unknown_override_is_an_error(project):
    with pytest.raises(RunnerError, match=r"-p lr: no selected notebook has a parameter 'lr'.*eps_grid"):
        # lr exists in `other`, but only `good` is selected
        run("tiny", notebooks=["good.ipynb"], overrides=["lr=0.5"], notebooks_dir=project,
            figures_dir=project / "figs")
    _assert_nothing_ran(project)


@pytest.mark.parametrize("override, message", [
    ("n=abc", r"'n' expects int .*got str 'abc'"),
    ("n=true", r"'n' expects int .*got bool True"),          # bool is not an int
    ("eps_grid=0.1", r"'eps_grid' expects list .*got float"),
    ("name=3", r"'name' expects str .*got int 3"),
])
def test_wrong_type_names_parameter_and_types(project, override, message):
    with pytest.raises(RunnerError, match=message):
        run("tiny", notebooks=["good"], overrides=[override], dry_run=True, notebooks_dir=project,
            figures_dir=project / "figs")
    _assert_nothing_ran(project)


def test_type_rules_that_are_accepted(project):
    # int where a float is annotated, anything where the default is None, scientific notation
    resolved = resolve_parameters("tiny", ["other"], {"lr": 1, "extra": [1, "a"]}, project)
    assert resolved["other"]["lr"] == 1 and resolved["other"]["extra"] == [1, "a"]
    assert resolve_parameters("tiny", ["other"], ["lr=1e-3"], project)["other"]["lr"] == pytest.approx(1e-3)
    assert resolve_parameters("tiny", ["other"], [("lr", "0.5")], project)["other"]["lr"] == 0.5  # -p NAME VALUE
    with pytest.raises(RunnerError, match=r"'lr' expects float .*got str"):
        resolve_parameters("tiny", ["other"], ["lr=fast"], project)


def test_dry_run_prints_and_executes_nothing(project):
    lines = []
    assert run("tiny", overrides=["n=3"], dry_run=True, notebooks_dir=project,
               figures_dir=project / "figs", log=lines.append) == 0
    text = "\n".join(lines)
    assert "[2/3] good" in text and "n = 3" in text and "seed = 7" in text
    assert str(Path("figs") / "tiny" / "good") in text
    _assert_nothing_ran(project)


def test_resume_command_reads_back_the_same_values():
    cmd = resume_command("smoke", ["02_hr_loss", "03_stochastic_lwta"],
                         {"epochs": 2, "device": "cpu", "name": "3", "eps_grid": [0.1, 0.2], "tag": "a b"},
                         ["my params.yaml"])
    assert cmd.startswith("python -m robust_utils run --profile smoke --notebooks 02_hr_loss 03_stochastic_lwta")
    assert "-f 'my params.yaml'" in cmd and "-p epochs=2" in cmd and "-p device=cpu" in cmd
    assert """-p 'name="3"'""" in cmd and "-p 'eps_grid=[0.1, 0.2]'" in cmd and "-p 'tag=a b'" in cmd


# ----------------------------------------------------------------------------- a real run (as a user runs it)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """``run --profile tiny --notebooks bad good -p n 42 -f extra.yaml`` in a subprocess, after an
    earlier finished run left outputs in both folders. Returns (root, completed process)."""
    root = _make_project(tmp_path_factory.mktemp("runner"))
    (root / "extra.yaml").write_text("name: from-file\nn: 1\n")
    for stem in ("good", "bad"):  # the previous run's outputs
        old = root / "figs" / "tiny" / stem
        old.mkdir(parents=True)
        (old / "results.json").write_text(json.dumps({"title": "OLD", "claims": [], "tables": {}}))
        write_status(old, "ok", "2020-01-01T00:00:00+00:00", "2020-01-01T00:01:00+00:00", 60.0)
    proc = _cli(["run", "--profile", "tiny", "--notebooks", "bad", "good", "-p", "n", "42", "-f",
                 str(root / "extra.yaml"), "--notebooks-dir", str(root)], root)
    return root, proc


@pytest.mark.slow
def test_failing_notebook_gives_exit_1_and_others_still_run(real_run):
    root, proc = real_run
    assert proc.returncode == 1, proc.stderr
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert progress[0].startswith("[1/2] bad: started ")  # numbered (sorted) order
    assert progress[1].startswith("[1/2] bad ... FAILED (") and "RuntimeError: boom" in progress[1]
    assert "second line" not in progress[1]
    assert progress[3].startswith("[2/2] good ... ok (")
    assert "1. Writing the results" in proc.stdout  # one line per section heading
    assert (root / "figs" / "tiny" / "bad" / "bad.ipynb").is_file()  # papermill keeps the failed output


@pytest.mark.slow
def test_no_kernel_transport_warning_reaches_the_terminal(real_run):
    _, proc = real_run
    assert "without encryption" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "MissingIDFieldWarning" not in proc.stderr


@pytest.mark.slow
def test_override_file_and_profile_reach_the_executed_notebook(real_run):
    root, _ = real_run
    results = json.loads((root / "figs" / "tiny" / "good" / "results.json").read_text())
    # -f before -p: n from -p, name from the file; the profile's default seed
    assert results["parameters"] == {"profile": "tiny", "seed": 7, "n": 42, "eps_grid": [0.1], "name": "from-file"}


@pytest.mark.slow
def test_status_files_and_previous_outputs(real_run):
    """Issue 19, point 3: a failed run never sits beside older results; nothing finished is lost."""
    root, _ = real_run
    tiny = root / "figs" / "tiny"
    bad = json.loads((tiny / "bad" / "status.json").read_text())
    assert set(bad) == {"state", "started", "finished", "elapsed_s", "error"}
    assert bad["state"] == "failed" and bad["error"].startswith("RuntimeError: boom") and bad["elapsed_s"] > 0
    assert json.loads((tiny / "good" / "status.json").read_text())["state"] == "ok"
    assert not (tiny / "bad" / "results.json").exists()  # the old results moved aside ...
    assert json.loads((tiny / ".previous" / "bad" / "results.json").read_text())["title"] == "OLD"  # ... kept
    assert not (tiny / ".previous" / "good").exists()  # removed once the new run succeeded
    assert "good" in json.loads((tiny / "timings.json").read_text())


@pytest.mark.slow
def test_summary_has_states_counts_tables_and_escapes(real_run):
    """Issue 19, point 6: no raw HTML from a failure message reaches SUMMARY.md."""
    root, _ = real_run
    summary = (root / "figs" / "tiny" / "SUMMARY.md").read_text()
    assert "profile `tiny`" in summary
    assert "| `bad` | failed |" in summary
    assert "| `good` | ok |" in summary and "| 1 | 0 | 0 | 1 | 2 |" in summary  # verdict counts and their sum
    assert "## good: A tiny notebook" in summary and "OLD" not in summary
    assert "| CE, eps=0.1 | 0.907 | 0.912 | +0.005 |" in summary
    assert "| HR, eps=0.3 | — | 42.000 | — |" in summary
    assert "| n is what was asked | reproduced | n = 42 |" in summary
    assert "![figure1.png](good/figure1.png)" in summary
    assert "**Failed** in the run started" in summary and "`.previous/bad/`" in summary
    assert "<script>" not in summary and "&lt;script&gt;alert(1)&lt;/script&gt;" in summary
    assert not list((root / "figs" / "tiny").glob(".SUMMARY*"))  # no temp file left behind


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _interrupt_when(proc: subprocess.Popen, marker: str, delay: float = 1.0,
                    signum: int = signal.SIGINT) -> tuple[str, list[int]]:
    """Read the run's output; signal it `delay` s after a line holding `marker`. Returns (output, kernel pids)."""
    lines, kernels = [], []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            time.sleep(delay)
            kernels = _children(proc.pid)
            proc.send_signal(signum)
            break
    lines += proc.stdout.readlines()
    return "".join(lines), kernels


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_notebook_and_says_how_to_resume(project, signum):
    """Issues 16.6 / 19.3 on a sleeping notebook: rc 130, no traceback, status and SUMMARY marked, resume line."""
    proc = _cli(["run", "--profile", "nap", "--notebooks-dir", str(project), "-p", "seconds", "60"], project,
                popen=True)
    out, kernels = _interrupt_when(proc, "1. Sleeping", signum=signum)
    assert proc.wait(timeout=60) == INTERRUPTED_EXIT, out
    assert kernels and all(_gone(k) for k in kernels)  # the kernel was shut down
    assert "Traceback" not in out and "asyncio" not in out
    assert "interrupted: a_sleepy stopped after" in out
    assert f"--notebooks a_sleepy good -p seconds=60 --notebooks-dir {project}" in out
    status = json.loads((project / "figs" / "nap" / "a_sleepy" / "status.json").read_text())
    assert status["state"] == "interrupted" and status["finished"] is not None
    summary = (project / "figs" / "nap" / "SUMMARY.md").read_text()
    assert "was interrupted" in summary and "| `a_sleepy` | interrupted |" in summary and "| `good` | pending |" in summary
    assert not (project / "figs" / "nap" / "good").exists()


# ----------------------------------------------------------------------------- SUMMARY.md on its own


def test_write_summary_reads_every_results_json(tmp_path):
    for stem, title in [("b_second", "Second"), ("a_first", None)]:
        (tmp_path / stem).mkdir()
        data = {"notebook": stem, "tables": {"T": [{"cell": "x | y", "paper": 1, "ours": 0.12345, "diff": None}]}}
        if title:
            data["title"] = title
        (tmp_path / stem / "results.json").write_text(json.dumps(data))  # no claims / figures keys
    (tmp_path / "c_broken").mkdir()
    (tmp_path / "c_broken" / "results.json").write_text("{not json")
    text = write_summary(tmp_path).read_text()
    assert text.index("## a_first") < text.index("## b_second: Second") < text.index("## c_broken")
    assert "| x \\| y | 1 | 0.123 | — |" in text
    assert "Could not read `c_broken/results.json`" in text
    assert "### Claims" not in text and "No status.json" in text


def test_write_summary_shows_leaderboards_with_their_own_columns(tmp_path):
    import pandas as pd

    from robust_utils.app.results import Results

    res = Results("board", "tiny", "Board", {})
    res.dir = tmp_path / "board"
    res.add_leaderboard("Leaderboard (MNIST)", pd.DataFrame({"defense": ["HR loss", "CE"], "AA Linf 0.1": [0.25, None],
                                                             "audit": ["passed", "1 failed"]}))
    res.save()
    text = write_summary(tmp_path).read_text()
    assert "### Leaderboard (MNIST)" in text and "| defense | AA Linf 0.1 | audit |" in text
    assert "| HR loss | 0.250 | passed |" in text and "| CE | — | 1 failed |" in text


def test_summary_escapes_everything_it_did_not_write(tmp_path):
    """Issue 19, point 6: titles, cells, parameters, figure names and failures are inert Markdown."""
    hostile = "<script>alert(1)</script> [x](javascript:alert(1)) `tick` | ![i](http://e/t.png)"
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "results.json").write_text(json.dumps({
        "title": hostile, "parameters": {"dataset": hostile}, "figures": ["../../<img src=x onerror=alert(1)>.png"],
        "tables": {hostile: [{"cell": hostile, "paper": hostile, "ours": 1.0}]},
        "claims": [{"claim": hostile, "verdict": "reproduced", "evidence": hostile}]}))
    write_status(tmp_path / "nb", "ok", "t0", "t1", 1.0)
    write_status(tmp_path / "nb2", "failed", "t0", "t1", 1.0, hostile)
    text = write_summary(tmp_path, failures={"nb3": hostile}).read_text()
    assert "**Failed** in the run started t0 (&lt;script&gt;" in text
    assert "<script>" not in text and "<img" not in text and "[x](javascript" not in text and "![i](http" not in text
    assert "&lt;script&gt;" in text and "\\[x\\]" in text
    assert "dataset='&lt;script&gt;alert(1)&lt;/script&gt; \\[x\\](javascript:alert(1)) \\`tick\\` \\|" in text
    assert "<" not in text.replace("<" + "!--", "")  # not one raw HTML character
    assert md_text("a_b _c_ *d*") == "a_b \\_c\\_ \\*d\\*"


def test_verdict_counts_each_outcome():
    claims = [{"verdict": v} for v in ("reproduced", "reproduced", "not reproduced", "inconclusive",
                                       "not tested at this profile", "not tested at this profile: needs svhn", "odd")]
    assert verdict_counts(claims) == {"reproduced": 2, "not reproduced": 1, "inconclusive": 1,
                                      "not tested at this profile": 2, "other": 1, "total": 7}
    assert verdict_counts(None)["total"] == 0


def test_summary_marks_states_and_never_shows_old_numbers_as_current(tmp_path):
    for stem, state in (("01_ok", "ok"), ("02_failed", "failed"), ("03_running", "running"), ("04_pending", "ok")):
        (tmp_path / stem).mkdir()
        (tmp_path / stem / "results.json").write_text(json.dumps({"title": stem, "claims": [{"verdict": "reproduced"}]}))
        write_status(tmp_path / stem, state, "2020-01-01T00:00:00+00:00")
    (tmp_path / ".previous" / "02_failed").mkdir(parents=True)
    text = write_summary(tmp_path, run={"state": "running", "started": "now", "pending": ["04_pending"]}).read_text()
    assert "A run is in progress" in text
    assert "| `01_ok` | ok |" in text and "| `02_failed` | failed |" in text
    assert "| `03_running` | running |" in text and "| `04_pending` | pending |" in text
    assert "**Failed** in the run started" in text and "**Running** since" in text and "**Not yet run**" in text
    section = text[text.index("## 01_ok"):text.index("## 02_failed")]
    assert ">" not in section and "### Claims" in section  # a finished run carries no warning
    for stem in ("02_failed", "03_running"):  # an unfinished run's numbers are never shown
        section = text[text.index(f"## {stem}"):]
        section = section[:section.index("\n## ", 5) if "\n## " in section[5:] else None]
        assert "Results not shown: this run is" in section and "### Claims" not in section
    assert "| `02_failed` | failed | 2020-01-01 00:00 | — | — | — | — | — | — |" in text  # no counts either
    assert "| `04_pending` | pending | — | — | 1 | 0 | 0 | 0 | 1 |" in text


def test_summary_hides_a_results_json_older_than_the_last_run(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "results.json").write_text(json.dumps({"title": "T", "claims": [{"verdict": "reproduced"}]}))
    os.utime(tmp_path / "nb" / "results.json", (1_000_000_000, 1_000_000_000))  # 2001
    write_status(tmp_path / "nb", "ok", "2020-01-01T00:00:00+00:00", "2020-01-01T00:01:00+00:00", 60.0)
    text = write_summary(tmp_path).read_text()
    assert "older than the last run" in text and "### Claims" not in text


@pytest.mark.slow
def test_ctrl_c_on_a_real_smoke_run_of_notebook_02(tmp_path):
    """Issue 19, point 3 and issue 16, point 6: SIGINT while notebook 02 trains (smoke profile). The
    previous run's outputs move aside, the partial run is marked interrupted in status.json and
    SUMMARY.md, no traceback is printed, the kernel is gone, and the resume command is printed."""
    old = tmp_path / "figs" / "smoke" / "02_hr_loss"
    old.mkdir(parents=True)
    (old / "results.json").write_text(json.dumps({"title": "OLD RUN", "claims": [{"verdict": "reproduced"}]}))
    write_status(old, "ok", "2020-01-01T00:00:00+00:00", "2020-01-01T00:01:00+00:00", 60.0)
    proc = _cli(["run", "--profile", "smoke", "--notebooks", "02_hr_loss"], tmp_path, popen=True)
    out, kernels = _interrupt_when(proc, "2. Data and training", delay=2.0)
    assert proc.wait(timeout=120) == INTERRUPTED_EXIT, out
    assert "Traceback" not in out and "without encryption" not in out
    assert "to resume (models already trained load from the cache): " \
           "python -m robust_utils run --profile smoke --notebooks 02_hr_loss" in out
    assert kernels and all(_gone(k) for k in kernels)
    smoke = tmp_path / "figs" / "smoke"
    assert json.loads((smoke / "02_hr_loss" / "status.json").read_text())["state"] == "interrupted"
    assert not (smoke / "02_hr_loss" / "results.json").exists()
    assert json.loads((smoke / ".previous" / "02_hr_loss" / "results.json").read_text())["title"] == "OLD RUN"
    summary = (smoke / "SUMMARY.md").read_text()
    assert "was interrupted" in summary and "| `02_hr_loss` | interrupted |" in summary and "OLD RUN" not in summary
