"""The index page of the HTML report: per notebook its run state, verdict counts, tables, claims and figures.

:func:`index_page` writes the HTML from :class:`Entry` records that ``report.build_report`` collects.
What it guarantees a reader:

- **No stale numbers.** A notebook whose last run did not finish (``status.json`` state "running",
  "failed", "interrupted", or anything but "ok") shows that state, with the error and times, and
  none of the tables of an older ``results.json``; a failed run's notebook is linked only as what it
  is (the partial notebook, where it stopped), never as a result.
- **Verdicts counted per paper.** Each notebook's claims are counted as reproduced, not reproduced,
  inconclusive and not tested at this profile (a verdict is counted by its leading words, so
  "inconclusive (depends on ...)" is inconclusive), with their sum; an overview table lists the
  counts of every notebook and of all of them.
- **The paper profile beside.** The tracked paper-profile runs (results/paper/) appear in the
  overview (verdict counts, device, time, commit, or "no paper-profile run yet") and as an
  "ours (paper profile)" column in every table whose cells match.
- **Said who it is for.** The header names the audience (instructor: solutions and hidden tests
  shown; students: the student copies) and whether the pages come from a run or, on a fresh clone,
  from the committed notebooks.

Everything shown is escaped. Infrastructure, not a paper's method.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from .paper_results import PAPER_COLUMN, PaperRun, paper_table, status_text, with_paper_column
from .report_pages import MATHJAX_DIR
from .summary import format_value

# The four verdicts of a claims ledger (evaluation.claims), in the order they are counted.
COUNTED_VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not tested at this profile")
_PREFIXES = (("not tested", "not tested at this profile"), ("not reproduced", "not reproduced"),
             ("inconclusive", "inconclusive"), ("reproduced", "reproduced"))

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem 2rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { border-top: 2px solid #ccc; padding-top: 1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { padding: .05rem .4rem; border-radius: .3rem; white-space: nowrap; font-weight: 600; }
.v-reproduced { background: #d4f4d2; color: #14531a; }
.v-not-reproduced { background: #fbd3d0; color: #7a1610; }
.v-inconclusive { background: #fdf0c2; color: #6a4b00; }
.v-not-tested-at-this-profile { background: #e4e4e4; color: #444; }
.note { background: #eef4fb; border-left: 4px solid #7aa7d9; padding: .4rem .8rem; }
.state { background: #fbd3d0; border-left: 4px solid #c0392b; padding: .4rem .8rem; }
.state-running { background: #fdf0c2; border-left-color: #c9a100; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { margin: 0; } .figures img { max-width: 320px; max-height: 240px; border: 1px solid #ddd; }
.figures figcaption { font-size: .8rem; color: #555; }
nav.links a { margin-right: 1rem; }
"""

_STATE_TEXT = {
    "running": "Running: the run of this notebook has not finished",
    "failed": "Failed: the last run of this notebook stopped with an error",
    "interrupted": "Interrupted: the last run of this notebook was stopped before it finished",
}


@dataclass
class Entry:
    """One notebook of the report.

    Attributes:
        stem: e.g. "02_hr_loss".   data: the results.json shown, or None (absent, or hidden: see ``hidden``).
        state: status.json's "state" ("ok", "running", "failed", "interrupted", ...), None without status.json.
        status: status.json's fields ({} without one).
        page: the notebook page's path relative to the index, or None.
        page_kind: "run" (this run's notebook), "committed" (rendered from notebooks/), "partial"
            (the notebook of a run that did not finish).
        hidden: why a results.json present in the folder is not shown ("" if it is shown or absent).
        paper: the notebook's tracked paper-profile run (results/paper/), shown beside this profile's
            numbers; None when there is none or the report is of the paper profile itself.
        show_paper: whether the report shows the paper profile's column at all (False for the paper profile).
    """

    stem: str
    data: Mapping | None = None
    state: str | None = None
    status: Mapping = field(default_factory=dict)
    page: str | None = None
    page_kind: str = ""
    hidden: str = ""
    paper: PaperRun | None = None
    show_paper: bool = False

    @property
    def finished(self) -> bool:
        """Whether the last run finished (state "ok"), or nothing says otherwise (no status.json)."""
        return self.state in (None, "ok")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(rel_path: str) -> str:
    """A relative POSIX path as an escaped href (spaces and the like percent-encoded)."""
    return _e(quote(rel_path))


def verdict_kind(verdict: Any) -> str | None:
    """Which of ``COUNTED_VERDICTS`` a verdict is, by its leading words; None for anything else."""
    text = " ".join(str(verdict).split()).lower()
    return next((kind for prefix, kind in _PREFIXES if text.startswith(prefix)), None)


def verdict_counts(claims: Iterable[Any]) -> dict[str, int]:
    """{verdict: count} over ``COUNTED_VERDICTS`` (zeros included), "other" when a verdict is none of
    them, and "total": the number of claims (so the counts add up to it)."""
    kinds = Counter(verdict_kind(c.get("verdict")) or "other" for c in claims if isinstance(c, Mapping))
    counts = {kind: kinds[kind] for kind in COUNTED_VERDICTS}
    if kinds["other"]:
        counts["other"] = kinds["other"]
    counts["total"] = sum(kinds.values())
    return counts


def _verdict(verdict: Any) -> str:
    slug = "-".join((verdict_kind(verdict) or str(verdict)).split())
    return f'<span class="verdict v-{_e(slug)}">{_e(verdict)}</span>'


def _counts(counts: Mapping[str, int]) -> str:
    """'reproduced 2 · not reproduced 1 · inconclusive 0 · not tested at this profile 0 · total 3'."""
    parts = [f'<span class="count">{_verdict(k)} {n}</span>' for k, n in counts.items() if k not in ("total", "other")]
    if counts.get("other"):
        parts.append(f'<span class="count">other {counts["other"]}</span>')
    return " · ".join(parts + [f'<span class="count">total {counts.get("total", 0)}</span>'])


def table(columns: list[str], rows: Iterable[Any], signed: Iterable[str] = ("diff",)) -> str:
    """An HTML table of dict rows: values via summary.format_value (floats 3 decimals, None as —)."""
    signed = set(signed)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "verdict":
                cells.append(f"<td>{_verdict(value)}</td>")
            elif isinstance(value, (Mapping, list)):  # nested values: folded, as indented JSON
                summary = f"{len(value)} {'entries' if isinstance(value, Mapping) else 'items'}"
                text = json.dumps(value, indent=1, default=str)
                cells.append(f"<td><details><summary>{summary}</summary><pre>{_e(text)}</pre></details></td>")
            else:
                cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
                cells.append(f"<td{cls}>{_e(format_value(value, signed=c in signed))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _figures(stem: str, data: Mapping, site_dir: Path) -> str:
    items = []
    for fig in data.get("figures") or []:
        fig_path = Path(fig) if Path(fig).is_absolute() else site_dir / stem / fig
        name = Path(fig).name
        if not fig_path.is_file():
            items.append(f"<figure><figcaption>{_e(name)} (missing)</figcaption></figure>")
            continue
        link = _href(Path(os.path.relpath(fig_path, site_dir)).as_posix())
        items.append(f'<figure><a href="{link}"><img src="{link}" alt="{_e(name)}"></a>'
                     f"<figcaption>{_e(name)}</figcaption></figure>")
    return '<div class="figures">\n' + "\n".join(items) + "\n</div>" if items else ""


def _state_note(entry: Entry) -> str:
    """The banner of a notebook whose last run did not finish."""
    state = str(entry.state)
    text = _STATE_TEXT.get(state, f"Unknown run state {state!r} in status.json: treated as not finished")
    facts = [label.format(_e(entry.status[k])) for k, label in (("started", "started {}"), ("finished", "finished {}"),
                                                                 ("elapsed_s", "elapsed {} s"))
             if entry.status.get(k) not in (None, "")]
    error = f"<br>Error: <code>{_e(entry.status['error'])}</code>" if entry.status.get("error") else ""
    shown = f" {_e(entry.hidden)}" if entry.hidden else ""
    return (f'<p class="state state-{_e("-".join(state.split()))}"><strong>{_e(text)}</strong>'
            f"{' (' + '; '.join(facts) + ')' if facts else ''}.{shown}{error}</p>")


def _page_links(entry: Entry, site_dir: Path) -> list[str]:
    links = []
    if entry.page and entry.page_kind == "partial":
        links.append(f'<a href="{_href(entry.page)}">the notebook of the unfinished run (where it stopped; not a result)</a>')
    elif entry.page:
        links.append(f'<a href="{_href(entry.page)}">notebook (HTML)</a>')
    if entry.data is not None:
        links.append(f'<a href="{_href(f"{entry.stem}/results.json")}">results.json</a>')
    if (site_dir / "SUMMARY.md").is_file():
        links.append('<a href="SUMMARY.md">SUMMARY.md</a>')
    return ['<nav class="links">' + " ".join(links) + "</nav>"]


def _page_notes(entry: Entry, committed_only: bool) -> list[str]:
    if not entry.finished:
        return [_state_note(entry)]
    notes = []
    if entry.page_kind == "committed" and not committed_only:
        notes.append(f'<p class="note">No executed notebook in this folder: the page is rendered from the committed '
                     f"<code>notebooks/{_e(entry.stem)}.ipynb</code>, which carries the outputs of the classroom "
                     f"profile (they may differ from this folder's results.json if the two runs differ).</p>")
    elif not entry.page:
        notes.append('<p class="note">No executed notebook in this folder: no notebook page.</p>')
    if entry.data is None and entry.hidden:
        notes.append(f'<p class="note">{_e(entry.hidden)}</p>')
    elif entry.data is None and committed_only:
        notes.append('<p class="note">No run of this profile yet: the tables, claims and figures are in the '
                     "notebook page (the committed outputs).</p>")
    elif entry.data is None:
        notes.append('<p class="note">No results.json: the notebook failed or did not finish.</p>')
    return notes


def section(entry: Entry, site_dir: Path, committed_only: bool = False) -> str:
    """The HTML section of one notebook (its state, links, parameters, tables, claims, figures)."""
    data = entry.data
    title = (data or {}).get("title")
    out = [f'<section id="{_e(entry.stem)}">', f"<h2>{_e(entry.stem)}{': ' + _e(title) if title else ''}</h2>",
           *_page_links(entry, site_dir), *_page_notes(entry, committed_only)]
    if data is None:
        return "\n".join(out + ["</section>"])
    if data.get("parameters"):
        params = ", ".join(f"<code>{_e(k)}={_e(repr(v))}</code>" for k, v in data["parameters"].items())
        out.append(f"<details><summary>Parameters</summary><p>{params}</p></details>")
    for name, rows in (data.get("tables") or {}).items():
        paper_rows = paper_table(entry.paper, name)
        cols = ["cell", "paper", "ours", "diff"] + ([PAPER_COLUMN] if paper_rows is not None else [])
        out += [f"<h3>{_e(name)}</h3>", table(cols, with_paper_column(rows or [], paper_rows))]
    claims = [c for c in data.get("claims") or [] if isinstance(c, Mapping)]
    if claims:
        out += ["<h3>Claims</h3>", f'<p class="counts">{_counts(verdict_counts(claims))}</p>',
                table(["claim", "verdict", "evidence"], claims)]
    for name, board in (data.get("leaderboards") or {}).items():
        if isinstance(board, Mapping):
            out += [f"<h3>{_e(name)}</h3>", table(list(board.get("columns") or []), board.get("rows") or [])]
    if data.get("values"):
        out += ["<h3>Other values</h3>", table(["name", "value"], [{"name": k, "value": v} for k, v in data["values"].items()])]
    figures = _figures(entry.stem, data, site_dir)
    if figures:
        out += ["<h3>Figures</h3>", figures]
    return "\n".join(out + ["</section>"])


def _overview(entries: list[Entry]) -> str:
    """Per notebook (paper) the four verdict counts and their sum, then all notebooks together."""
    show_paper = any(e.show_paper for e in entries)
    extra = ("paper profile (results/paper/)",) if show_paper else ()
    head = "".join(f"<th>{_e(c)}</th>" for c in ("notebook", *COUNTED_VERDICTS, "total", "run", *extra))
    rows, total = [], Counter()
    for entry in entries:
        link = f'<a href="#{_e(entry.stem)}">{_e(entry.stem)}</a>'
        paper = f"<td>{_paper_cell(entry.paper)}</td>" if show_paper else ""
        if not entry.finished or entry.data is None:
            why = f"not shown: {entry.state}" if not entry.finished else "no results.json"
            rows.append(f'<tr><td>{link}</td><td colspan="5">— ({_e(why)})</td><td>{_e(entry.state or "")}</td>{paper}</tr>')
            continue
        counts = verdict_counts(entry.data.get("claims") or [])
        total.update(counts)
        cells = "".join(f'<td class="num">{counts[k]}</td>' for k in (*COUNTED_VERDICTS, "total"))
        rows.append(f"<tr><td>{link}</td>{cells}<td>{_e(entry.state or '')}</td>{paper}</tr>")
    cells = "".join(f'<td class="num">{total[k]}</td>' for k in (*COUNTED_VERDICTS, "total"))
    rows.append(f"<tr><th>all notebooks shown</th>{cells}<td></td>{'<td></td>' if show_paper else ''}</tr>")
    return f'<table class="overview">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"


def _paper_cell(run: PaperRun | None) -> str:
    """The overview's paper-profile cell: verdict counts and origin, or why there are none."""
    if run is None or run.results is None:
        return _e(status_text(run))
    return f"{_counts(verdict_counts(run.results.get('claims') or []))}<br>{_e(run.origin())}"


def _header_notes(profile: str, audience: str, committed_only: bool, site_dir: Path) -> list[str]:
    flag = " --audience student" if audience == "student" else ""
    summary = ' <a href="SUMMARY.md">SUMMARY.md</a> holds the same tables as Markdown.' \
        if (site_dir / "SUMMARY.md").is_file() else ""
    source = (f"from the committed <code>notebooks/*.ipynb</code>: there is no run of this profile in this folder, "
              f"and the committed notebooks carry the outputs of the classroom profile (<code>python -m robust_utils "
              f"run --profile {_e(profile)}</code> adds results.json tables, SUMMARY.md and figures)."
              if committed_only else "from every <code>*/results.json</code> and <code>*/status.json</code> in this folder.")
    who = ("Built for <strong>students</strong>: the notebook pages are the student copies (nbgrader's ClearSolutions "
           "and ClearHiddenTests; the exercise cells' outputs removed): no solutions, no hidden tests."
           if audience == "student" else
           "Built for the <strong>instructor</strong>: the notebook pages show the exercises' solutions and hidden "
           "tests. For a class, build <code>report --audience student</code>.")
    return [f'<p class="audience">{who}</p>',
            f"<p>Written by <code>python -m robust_utils report --profile {_e(profile)}{flag}</code> {source} "
            f"Numbers: paper = published value (— when none), ours = this run, diff = ours − paper.{summary}</p>"]


def index_page(profile: str, audience: str, entries: list[Entry], site_dir: Path, committed_only: bool = False) -> str:
    """The whole index.html.

    Args:
        profile: the profile's name.   audience: "instructor" or "student".   entries: one per notebook.
        site_dir: the folder index.html goes to (links are relative to it).
        committed_only: the pages come from the committed notebooks (no run of the profile yet).
    """
    toc = "".join(f'<li><a href="#{_e(e.stem)}">{_e(e.stem)}</a>'
                  f'{": " + _e(e.data["title"]) if e.data and e.data.get("title") else ""}'
                  f'{" (" + _e(e.state) + ")" if not e.finished else ""}</li>' for e in entries)
    shown = [c for e in entries if e.finished and e.data for c in e.data.get("claims") or []]
    finished = sum(e.finished for e in entries)
    scope = (f"all {len(entries)} notebook(s)" if finished == len(entries)
             else f"the {finished} finished notebook(s) of {len(entries)}")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Reproduction report: profile {_e(profile)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        "<header>", f"<h1>Reproduction report: profile <code>{_e(profile)}</code></h1>",
        *_header_notes(profile, audience, committed_only, site_dir),
        f'<p class="counts">Claims of {scope}: {_counts(verdict_counts(shown))}</p>',
        _overview(entries),
        "<p>The notebook pages work offline; equations render with a bundled MathJax 2.7 from "
        f"jupyter-server-mathjax (<code>{_e(MATHJAX_DIR)}/</code>).</p>",
        f"<nav><ul>{toc}</ul></nav>", "</header>", "<main>",
        *(section(e, site_dir, committed_only) for e in entries), "</main>", "</body>", "</html>", "",
    ])


__all__ = ["COUNTED_VERDICTS", "Entry", "index_page", "section", "table", "verdict_counts", "verdict_kind"]
