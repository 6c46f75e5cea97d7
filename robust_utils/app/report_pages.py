"""The notebook pages of the HTML report: nbconvert's lab template, offline, with a bundled MathJax.

nbconvert's templates load require.js, MathJax, Mermaid and the widget manager from CDNs; a small
template extending the lab one drops those blocks and points the lab template's MathJax block (the
same ``tex2jax`` configuration, ``$...$`` and ``$$...$$`` delimiters) at a local copy instead: the
subset of MathJax 2.7 that renders TeX (``MathJax.js``, the combined
``TeX-AMS-MML_HTMLorMML-full`` configuration with ``Safe``, the TeX extensions loaded on demand,
the HTML-CSS output with its STIX-Web font data and woff fonts, and MathJax's LICENSE, about
2.2 MB in 168 files) is copied once per site from the ``jupyter-server-mathjax`` package into
``<site>/_static/mathjax/`` (files already there and identical are not rewritten). So equations
render offline; hyperlinks in the Markdown (citations) are kept as links. Infrastructure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..core.io import atomic_write_bytes


class ReportError(ValueError):
    """A profile the report cannot be built for (raised before anything is written)."""


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


def notebook_exporter():
    """nbconvert's HTMLExporter (lab template) without network loads, for pages at ``<site>/<stem>/<stem>.html``."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # Every notebook page is <profile>/<stem>/<stem>.html, one level below the MathJax copy.
    return HTMLExporter(template_name="lab", template_file="offline.html.j2", embed_images=True,
                        mathjax_url=f"../{MATHJAX_DIR}/MathJax.js?config={MATHJAX_CONFIG}",
                        extra_loaders=[DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})])


def mathjax_sources() -> dict[str, Path]:
    """{relative path: source file} of the MathJax subset, from the jupyter-server-mathjax package.

    Raises:
        ReportError: jupyter-server-mathjax is missing or not the expected version.
    """
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


def copy_mathjax(sources: Mapping[str, Path], dest: Path) -> int:
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


__all__ = ["MATHJAX_CONFIG", "MATHJAX_DIR", "ReportError", "copy_mathjax", "mathjax_sources", "notebook_exporter"]
