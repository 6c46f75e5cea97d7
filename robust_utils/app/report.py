"""A profile's outputs as a static HTML site (``python -m robust_utils report --profile classroom``).

Reads ``<figures>/<profile>/<stem>/`` as the runner leaves it (results.json, the PNG figures, the
executed ``<stem>.ipynb``) and writes, beside them:

- ``<stem>/<stem>.html``: the executed notebook rendered by nbconvert's HTMLExporter (lab
  template; output images inlined). For the classroom profile, a notebook that was not executed
  into the folder is rendered from the committed ``notebooks/<stem>.ipynb``, which carries the
  classroom outputs; the index says so.
- ``index.html``: per notebook its tables (paper / ours / diff per cell), its claims with their
  verdicts and counts, its leaderboards and other values, and thumbnails of its figures.

The site works offline: every link is relative and nothing is loaded from the network.
nbconvert's templates load require.js, MathJax, Mermaid and the widget manager from CDNs; a small
template extending the lab one drops those blocks and points the lab template's MathJax block (the
same ``tex2jax`` configuration, ``$...$`` and ``$$...$$`` delimiters) at a local copy instead: the
subset of MathJax 2.7 that renders TeX (``MathJax.js``, the combined
``TeX-AMS-MML_HTMLorMML-full`` configuration with ``Safe``, the TeX extensions loaded on demand,
the HTML-CSS output with its STIX-Web font data and woff fonts, and MathJax's LICENSE, about
2.2 MB in 168 files) is copied once per profile from the ``jupyter-server-mathjax`` package into
``<profile>/_static/mathjax/`` (files already there and identical are not rewritten). So
equations render offline with a bundled MathJax 2.7 from jupyter-server-mathjax; hyperlinks in the
Markdown (citations) are kept as links.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from ..core import paths
from ..core.io import atomic_write_bytes
from ..evaluation.claims import VERDICTS
from .profiles import list_profiles
from .summary import error_line, format_value, read_results

__all__ = ["ReportError", "build_report"]

# Where the MathJax subset goes, relative to the profile folder, and its combined configuration.
MATHJAX_DIR = "_static/mathjax"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
# What of jupyter_server_mathjax/static/ the notebook pages need (a folder: everything under it).
# jupyter-server-mathjax ships MathJax 2.7 stripped down to one combined configuration (TeX and
# MathML input, the HTML-CSS, NativeMML and PreviewHTML output jax, tex2jax, AMS, the menu and
# AssistiveMML all in that one file) and the HTML-CSS output's STIX-Web fonts, as Jupyter Notebook
# used it; it has no SVG or CommonHTML output jax. Everything else is loaded on demand.
_MATHJAX_FILES = (
    "LICENSE",
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",
    "config/Safe.js",
    "extensions/Safe.js",  # as nbconvert's default: no javascript: links or raw styles from TeX
    "extensions/TeX/",  # loaded on first use (\boldsymbol, \newcommand, \bbox, ...) or by \require{cancel}
    "jax/element/mml/optable/",  # operator dictionary blocks, loaded on first use
    "jax/output/HTML-CSS/",  # constructs loaded on first use (menclose, line breaking, ...), font data
    "fonts/HTML-CSS/STIX-Web/woff/",  # the web fonts, one per Unicode block, loaded on first use
)

# The lab template without its network loads, MathJax from the local copy (the lab template's own
# block: its tex2jax config, $...$ inline), plus a link back to the index on every page.
_OFFLINE_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block jupyter_widgets %}{% endblock %}
{% block html_head_js_mathjax %}
<script type="text/x-mathjax-config">
// jupyter-server-mathjax ships the STIX-Web web fonts only (as Jupyter Notebook configured it), so no
// image fonts and no switching to another renderer or locale. Two font rules would make requests
// that cannot succeed offline: HTML-CSS's blank test font (url('about:blank'), refused on file:)
// and NativeMML's TeX fonts for mathvariant="..." (used by the hidden MathML that AssistiveMML
// adds for screen readers; not bundled). They name local fonts instead, which requests nothing.
MathJax.Hub.Config({
    "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
                 linebreaks: {automatic: true},
                 styles: {"@font-face": {src: "local('MathJax_Blank')"}}},
    NativeMML: {styles: {
        "@font-face /*1*/": {src: "local('MathJax_Caligraphic')"},
        "@font-face /*2*/": {src: "local('MathJax_Caligraphic Bold'), local('MathJax_Caligraphic-Bold')"},
        "@font-face /*3*/": {src: "local('MathJax_AMS')"},
        "@font-face /*4*/": {src: "local('MathJax_Script')"},
        "@font-face /*5*/": {src: "local('MathJax_Fraktur')"},
        "@font-face /*6*/": {src: "local('MathJax_Fraktur Bold'), local('MathJax_Fraktur-Bold')"}}},
    MathMenu: {showFontMenu: false, showRenderer: false, showLocale: false}
});
</script>
{{ super() }}
{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block body_header %}{{ super() }}
<nav class="report-nav" style="font-family: system-ui, sans-serif; font-size: 14px; padding: 8px 16px;"><a href="../index.html">&larr; all notebooks of this profile</a></nav>
{% endblock body_header %}
"""

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
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { margin: 0; } .figures img { max-width: 320px; max-height: 240px; border: 1px solid #ddd; }
.figures figcaption { font-size: .8rem; color: #555; }
nav.links a { margin-right: 1rem; }
"""


class ReportError(ValueError):
    """A profile the report cannot be built for (raised before anything is written)."""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(rel_path: str) -> str:
    """A relative POSIX path as an escaped href (spaces and the like percent-encoded)."""
    return _e(quote(rel_path))


def _verdict(verdict: Any) -> str:
    slug = "-".join(str(verdict).split())
    return f'<span class="verdict v-{_e(slug)}">{_e(verdict)}</span>'


def _counts(verdicts: Iterable[Any]) -> str:
    """'reproduced 3 · not reproduced 1 …' in the order of claims.VERDICTS, unknown verdicts last."""
    counts = Counter(str(v) for v in verdicts)
    order = [v for v in VERDICTS if counts[v]] + sorted(v for v in counts if v not in VERDICTS)
    return " ".join(f'<span class="count">{_verdict(v)} {counts[v]}</span>' for v in order)


def _table(columns: list[str], rows: Iterable[Any], signed: Iterable[str] = ("diff",)) -> str:
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


def _notebook_source(stem: str, profile: str, profile_dir: Path, nb_dir: Path) -> tuple[Path | None, bool]:
    """(the notebook to render, whether it is the committed fallback), or (None, False)."""
    executed = profile_dir / stem / f"{stem}.ipynb"
    if executed.is_file():
        return executed, False
    committed = nb_dir / f"{stem}.ipynb"
    if profile == "classroom" and committed.is_file():
        return committed, True
    return None, False


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # Every notebook page is <profile>/<stem>/<stem>.html, one level below the MathJax copy.
    return HTMLExporter(template_name="lab", template_file="offline.html.j2", embed_images=True,
                        mathjax_url=f"../{MATHJAX_DIR}/MathJax.js?config={MATHJAX_CONFIG}",
                        extra_loaders=[DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})])


def _mathjax_sources() -> dict[str, Path]:
    """{relative path: source file} of the MathJax subset, from the jupyter-server-mathjax package."""
    try:
        import jupyter_server_mathjax
    except ImportError as exc:
        raise ReportError("the notebook pages need MathJax from jupyter-server-mathjax, which is not installed: "
                          "pip install jupyter-server-mathjax==0.2.6 (pinned in pyproject.toml)") from exc
    static = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    sources: dict[str, Path] = {}
    for item in _MATHJAX_FILES:
        src = static / item
        files = sorted(p for p in src.rglob("*") if p.is_file()) if item.endswith("/") else [src]
        if not files or not all(f.is_file() for f in files):
            raise ReportError(f"{src} is missing: jupyter-server-mathjax is not the expected version "
                              f"(pip install jupyter-server-mathjax==0.2.6)")
        sources.update((f.relative_to(static).as_posix(), f) for f in files)
    return sources


def _copy_mathjax(sources: Mapping[str, Path], dest: Path) -> int:
    """Copy the MathJax subset into ``dest``, skipping files already there and identical; returns bytes copied."""
    copied = 0
    for rel, src in sources.items():
        target = dest / rel
        data = src.read_bytes()
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        atomic_write_bytes(target, data)
        copied += len(data)
    return copied


def _figures(stem: str, data: Mapping, profile_dir: Path) -> str:
    items = []
    for fig in data.get("figures") or []:
        fig_path = Path(fig) if Path(fig).is_absolute() else profile_dir / stem / fig
        name = Path(fig).name
        if not fig_path.is_file():
            items.append(f"<figure><figcaption>{_e(name)} (missing)</figcaption></figure>")
            continue
        link = _href(Path(os.path.relpath(fig_path, profile_dir)).as_posix())
        items.append(f'<figure><a href="{link}"><img src="{link}" alt="{_e(name)}"></a>'
                     f"<figcaption>{_e(name)}</figcaption></figure>")
    return '<div class="figures">\n' + "\n".join(items) + "\n</div>" if items else ""


def _section(stem: str, data: Mapping | None, page: str | None, fallback: bool, profile_dir: Path) -> str:
    title = (data or {}).get("title")
    out = [f'<section id="{_e(stem)}">',
           f"<h2>{_e(stem)}{': ' + _e(title) if title else ''}</h2>"]
    links = []
    if page:
        links.append(f'<a href="{_href(page)}">notebook (HTML)</a>')
    if data is not None:
        links.append(f'<a href="{_href(f"{stem}/results.json")}">results.json</a>')
    if (profile_dir / "SUMMARY.md").is_file():
        links.append('<a href="SUMMARY.md">SUMMARY.md</a>')
    out.append('<nav class="links">' + " ".join(links) + "</nav>")
    if fallback:
        out.append(f'<p class="note">No executed notebook in this folder: the page is rendered from the committed '
                   f"<code>notebooks/{_e(stem)}.ipynb</code>, which carries the outputs of the classroom profile "
                   f"(they may differ from this folder's results.json if the two runs differ).</p>")
    elif not page:
        out.append('<p class="note">No executed notebook in this folder: no notebook page.</p>')
    if data is None:
        out.append('<p class="note">No results.json: the notebook failed or did not finish.</p>')
        return "\n".join(out + ["</section>"])
    if data.get("parameters"):
        params = ", ".join(f"<code>{_e(k)}={_e(repr(v))}</code>" for k, v in data["parameters"].items())
        out.append(f"<details><summary>Parameters</summary><p>{params}</p></details>")
    for name, rows in (data.get("tables") or {}).items():
        out += [f"<h3>{_e(name)}</h3>", _table(["cell", "paper", "ours", "diff"], rows or [])]
    claims = [c for c in data.get("claims") or [] if isinstance(c, Mapping)]
    if claims:
        out += ["<h3>Claims</h3>", f'<p class="counts">{_counts(c.get("verdict") for c in claims)}</p>',
                _table(["claim", "verdict", "evidence"], claims)]
    for name, board in (data.get("leaderboards") or {}).items():
        if isinstance(board, Mapping):
            out += [f"<h3>{_e(name)}</h3>", _table(list(board.get("columns") or []), board.get("rows") or [])]
    if data.get("values"):
        values = [{"name": k, "value": v} for k, v in data["values"].items()]
        out += ["<h3>Other values</h3>", _table(["name", "value"], values)]
    figures = _figures(stem, data, profile_dir)
    if figures:
        out += ["<h3>Figures</h3>", figures]
    return "\n".join(out + ["</section>"])


def _index(profile: str, profile_dir: Path, sections: list[str], stems: list[str],
           results: Mapping[str, Mapping], titles: Mapping[str, str]) -> str:
    verdicts = [c.get("verdict") for data in results.values() for c in data.get("claims") or []
                if isinstance(c, Mapping)]
    toc = "".join(f'<li><a href="#{_e(stem)}">{_e(stem)}</a>{": " + _e(titles[stem]) if titles.get(stem) else ""}</li>'
                  for stem in stems)
    summary = ' <a href="SUMMARY.md">SUMMARY.md</a> holds the same tables as Markdown.' \
        if (profile_dir / "SUMMARY.md").is_file() else ""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Reproduction report: profile {_e(profile)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        "<header>", f"<h1>Reproduction report: profile <code>{_e(profile)}</code></h1>",
        f"<p>Written by <code>python -m robust_utils report --profile {_e(profile)}</code> from every "
        f"<code>*/results.json</code> in this folder. Numbers: paper = published value (— when none), "
        f"ours = this run, diff = ours − paper.{summary}</p>",
        f'<p class="counts">Claims of all {len(stems)} notebook(s): {_counts(verdicts) or "none"}</p>',
        "<p>The notebook pages work offline; equations render with a bundled MathJax 2.7 from "
        f"jupyter-server-mathjax (<code>{_e(MATHJAX_DIR)}/</code>).</p>",
        f"<nav><ul>{toc}</ul></nav>", "</header>", "<main>", *sections, "</main>", "</body>", "</html>", "",
    ])


def build_report(profile: str = "classroom", figures_dir: str | os.PathLike | None = None,
                 notebooks_dir: str | os.PathLike | None = None) -> Path:
    """Render a profile's executed notebooks to HTML and write ``<figures>/<profile>/index.html``.

    Everything is read and checked before anything is written. Notebook pages are nbconvert's lab
    template without its CDN scripts (require.js, Mermaid, widgets) and with MathJax loaded from
    ``<profile>/_static/mathjax/``, a subset of MathJax 2.7 copied from jupyter-server-mathjax
    (unchanged files are not rewritten): equations render offline; the site loads nothing from
    the network.

    Args:
        profile: the profile (a file notebooks/params/<profile>.yaml) whose outputs to render.
        figures_dir: the figures root holding <profile>/<stem>/results.json (default:
            paths.figures_root(), i.e. $ROBUST_UTILS_FIGURES or <repo>/figures).
        notebooks_dir: the folder of the committed notebooks and params/ (default: the repository's
            notebooks/); the classroom profile falls back to its notebooks when a folder has no
            executed ``<stem>.ipynb``.
    Returns:
        The path of index.html.
    Raises:
        ReportError: unknown profile (the message lists the valid ones), no results.json in the
            profile folder, a results.json or notebook that cannot be read (the message names it),
            or jupyter-server-mathjax missing when there are notebook pages to write.
    """
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    valid = list_profiles(nb_dir)
    if profile not in valid:
        raise ReportError(f"unknown profile {profile!r}; valid profiles: {', '.join(valid) or '(none)'} "
                          f"(files in {nb_dir / 'params'})")
    profile_dir = Path(figures_dir if figures_dir is not None else paths.figures_root()) / profile
    results_files = sorted(profile_dir.glob("*/results.json"))
    if not results_files:
        raise ReportError(f"no results in {profile_dir} (no */results.json): run "
                          f"`python -m robust_utils run --profile {profile}` first")
    results: dict[str, dict] = {}
    for path in results_files:
        try:
            results[path.parent.name] = read_results(path)
        except (OSError, ValueError) as exc:
            raise ReportError(f"cannot read {path}: {error_line(exc)}") from exc
    # Notebooks that ran but left no results.json (a failure) still get their page.
    stems = sorted(set(results) | {p.parent.name for p in profile_dir.glob("*/*.ipynb") if p.stem == p.parent.name})

    import nbformat

    notebooks = {}
    for stem in stems:
        source, fallback = _notebook_source(stem, profile, profile_dir, nb_dir)
        if source is None:
            continue
        try:
            notebooks[stem] = (nbformat.read(source, as_version=4), source, fallback)
        except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds (JSON, validation, OS)
            raise ReportError(f"cannot read notebook {source}: {error_line(exc)}") from exc

    mathjax = _mathjax_sources() if notebooks else {}
    if mathjax:
        _copy_mathjax(mathjax, profile_dir / MATHJAX_DIR)
    exporter = _exporter()
    sections, titles = [], {}
    for stem in stems:
        page = None
        if stem in notebooks:
            nb, source, fallback = notebooks[stem]
            body, _ = exporter.from_notebook_node(
                nb, resources={"metadata": {"name": stem, "path": str(source.parent)}})
            atomic_write_bytes(profile_dir / stem / f"{stem}.html", body.encode("utf-8"))
            page = f"{stem}/{stem}.html"
        data = results.get(stem)
        titles[stem] = (data or {}).get("title") or ""
        sections.append(_section(stem, data, page, stem in notebooks and notebooks[stem][2], profile_dir))
    text = _index(profile, profile_dir, sections, stems, results, titles)
    return atomic_write_bytes(profile_dir / "index.html", text.encode("utf-8"))
