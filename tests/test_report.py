"""The static HTML report (robust_utils.report, ``python -m robust_utils report``) on a fake profile.

A figures root is built in a temporary folder: two notebook folders of the smoke profile, each
with a results.json (tables, claims of every verdict, a leaderboard, values), real PNG figures
drawn with matplotlib and an executed notebook made with nbformat (Markdown with TeX and a
citation link, a code cell with a text and an image output); no kernel is started. The HTML is
checked with the standard library's html.parser, then opened in headless Chromium (Debian's
/usr/bin/chromium, driven by playwright): every image loads, every relative link resolves, the
equations render offline with a bundled MathJax 2.7 from jupyter-server-mathjax (copied into
<profile>/_static/mathjax/) and no request leaves the file system.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import nbformat
import pytest

from robust_utils.app.cli import main
from robust_utils.app.report import MATHJAX_DIR, ReportError, build_report
from robust_utils.app.report_index import verdict_counts, verdict_kind

PROFILE = "smoke"  # a real profile name (notebooks/params/smoke.yaml)
NO_PAPER = "no paper-profile run yet (results/paper/CHUNKS.md plans it)"


@pytest.fixture(scope="module", autouse=True)
def no_tracked_paper_runs(tmp_path_factory):
    """An empty results/paper/ (tests/test_paper_results.py covers a filled one), whatever the repository tracks."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUST_UTILS_PAPER_RESULTS", str(tmp_path_factory.mktemp("no_paper_results")))
        yield
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

RESULTS = {
    "01_alpha": {
        "notebook": "01_alpha", "profile": PROFILE, "title": "Alpha & <friends>",
        "parameters": {"profile": PROFILE, "seed": 0, "eps_grid": [0.1, 0.3]},
        "tables": {"Table 1 (MNIST)": [
            {"cell": "CE, eps=0.1", "paper": 0.907, "ours": 0.9123, "diff": 0.0053},
            {"cell": "HR <b>bold</b> & co", "paper": None, "ours": 42.0, "diff": None},
        ]},
        "claims": [
            {"claim": "HR beats CE under PGD", "verdict": "reproduced", "evidence": "0.52 vs 0.31"},
            {"claim": "HR beats CE under FGSM", "verdict": "reproduced", "evidence": "0.61 vs 0.44"},
            {"claim": "HR keeps clean accuracy", "verdict": "not reproduced", "evidence": "0.90 vs 0.97"},
        ],
        "values": {"eps_zero": 0.35, "fgsm": {"CE": {"0.1": 0.5}, "HR": {"0.1": 0.75}}},
        "figures": ["eps_sweep.png", "confusion matrix.png"],
        "leaderboards": {},
    },
    "02_beta": {
        "notebook": "02_beta", "profile": PROFILE, "title": "Beta",
        "parameters": {"profile": PROFILE},
        "tables": {"Table 2": [{"cell": "SDR, FGSM", "paper": 0.5, "ours": 0.25, "diff": -0.25}]},
        "claims": [
            {"claim": "SDR is more robust", "verdict": "inconclusive", "evidence": "within the noise"},
            {"claim": "holds on CIFAR-10", "verdict": "not tested at this profile", "evidence": "MNIST only"},
        ],
        "values": {},
        "figures": ["variance.png"],
        "leaderboards": {"Leaderboard (MNIST)": {
            "columns": ["defense", "AA Linf 0.1", "audit"],
            "rows": [{"defense": "HR loss", "AA Linf 0.1": 0.25, "audit": "passed"},
                     {"defense": "CE", "AA Linf 0.1": None, "audit": "1 failed"}],
        }},
    },
}

# Every table row as the index must show it (floats to 3 decimals, diff signed, None as an em dash).
EXPECTED_ROWS = [
    ["CE, eps=0.1", "0.907", "0.912", "+0.005"],
    ["HR <b>bold</b> & co", "—", "42.000", "—"],
    ["SDR, FGSM", "0.500", "0.250", "-0.250"],
    ["HR loss", "0.250", "passed"],
    ["CE", "—", "1 failed"],
    ["eps_zero", "0.350"],
    ["HR keeps clean accuracy", "not reproduced", "0.90 vs 0.97"],
    ["holds on CIFAR-10", "not tested at this profile", "MNIST only"],
]

RESOURCE_ATTRS = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"), ("embed", "src"),
                  ("video", "src"), ("audio", "src"), ("object", "data"), ("input", "src")}


class Page(HTMLParser):
    """What the tests look at in an HTML page: table rows, links, loaded resources, counts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.resources: list[str] = []
        self.counts: list[str] = []
        self._cell: list[str] | None = None
        self._counts_depth = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
        if tag == "link" and a.get("href") is not None:  # stylesheets, icons, preloads: all loaded
            self.resources.append(a["href"])
        for name, value in attrs:
            if (tag, name) in RESOURCE_ATTRS and value is not None:
                self.resources.append(value)
        if self._counts_depth:
            self._counts_depth += 1
        elif "counts" in (a.get("class") or "").split():
            self._counts_depth = 1
            self.counts.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if self._counts_depth:
            self._counts_depth -= 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._counts_depth:
            self.counts[-1] += data


def _png(width_in: float = 3, height_in: float = 2, label: str = "") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=60)
    ax.plot([0, 0.1, 0.2, 0.3], [0.98, 0.7, 0.4, 0.1], marker="o")
    ax.set_title(label)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _executed_notebook(stem: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    md = nbformat.v4.new_markdown_cell(
        f"# {stem}\n\nThe loss is $x^2$, and $$\\mathcal{{L}}(x) = \\sum_i x_i^2.$$ "
        "See [the paper](https://example.org/paper)."
    )
    code = nbformat.v4.new_code_cell("print('accuracy 0.97')\nplot()", execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.97\n"),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(_png(label=stem)).decode(),
                                                     "text/plain": "<Figure>"}),
    ]
    nb.cells = [md, code]
    return nb


# The lines of the exercise's solution and hidden test: no student page may show them.
SECRET_LINES = ["return x + 1  # the instructor's solution line", "assert add_one(41) == 42, 'the hidden check'"]


def _exercise_notebook(stem: str) -> nbformat.NotebookNode:
    """An executed instructor notebook with one nbgrader exercise, and a later cell whose traceback
    shows a solution line (as an error in a cell calling the student's function would)."""
    nb = _executed_notebook(stem)
    meta = {"grade": False, "grade_id": "add_one", "locked": False, "schema_version": 3, "solution": True, "task": False}
    solution = nbformat.v4.new_code_cell(
        f"def add_one(x):\n    \"\"\"Add one.\"\"\"\n    ### BEGIN SOLUTION\n    {SECRET_LINES[0]}\n    ### END SOLUTION\n",
        metadata={"nbgrader": meta}, execution_count=2)
    tests = nbformat.v4.new_code_cell(
        f"assert add_one(1) == 2\n### BEGIN HIDDEN TESTS\n{SECRET_LINES[1]}\n### END HIDDEN TESTS\nprint('add_one: all tests passed')\n",
        metadata={"nbgrader": {**meta, "grade": True, "grade_id": "add_one_tests", "locked": True, "points": 1,
                               "solution": False}}, execution_count=3)
    tests.outputs = [nbformat.v4.new_output("stream", name="stdout", text="add_one: all tests passed\n")]
    leak = nbformat.v4.new_code_cell("add_one('a')", execution_count=4)
    leak.outputs = [nbformat.v4.new_output("error", ename="TypeError", evalue="can only concatenate str", traceback=[
        "\x1b[0;31mTypeError\x1b[0m Traceback", f"Cell In[2], line 4, in add_one\n----> 4 \x1b[0m{SECRET_LINES[0]}"])]
    nb.cells += [solution, tests, leak]
    return nb


def _write_profile(root: Path, profile: str = PROFILE, notebooks: bool = True) -> Path:
    """The fake figures root; returns root/<profile>."""
    profile_dir = root / profile
    for stem, data in RESULTS.items():
        out = profile_dir / stem
        out.mkdir(parents=True)
        (out / "results.json").write_text(json.dumps({**data, "profile": profile}), encoding="utf-8")
        for fig in data["figures"]:
            (out / fig).write_bytes(_png(label=fig))
        if notebooks:
            nbformat.write(_executed_notebook(stem), str(out / f"{stem}.ipynb"))
    (profile_dir / "SUMMARY.md").write_text("# Reproduction summary\n", encoding="utf-8")
    return profile_dir


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(index.html, the profile folder) of the fake smoke profile, built once."""
    root = tmp_path_factory.mktemp("figures")
    profile_dir = _write_profile(root)
    index = build_report(profile=PROFILE, figures_dir=root)
    return index, profile_dir


def _is_relative(url: str) -> bool:
    parsed = urlparse(url)
    return not parsed.scheme and not parsed.netloc and not url.startswith("/")


# ----------------------------------------------------------------------------- the HTML


def test_index_has_every_table_row_claim_and_leaderboard(site):
    index, profile_dir = site
    assert index == profile_dir / "index.html"
    text = index.read_text(encoding="utf-8")
    page = Page(text)
    for row in EXPECTED_ROWS:
        assert row in page.rows, row
    assert ["cell", "paper", "ours", "diff"] in page.rows and ["defense", "AA Linf 0.1", "audit"] in page.rows
    # Escaped, never markup: the <b> of a table cell and the title's "&" and "<friends>".
    assert "<b>bold</b>" not in text and "HR &lt;b&gt;bold&lt;/b&gt; &amp; co" in text
    assert "01_alpha: Alpha &amp; &lt;friends&gt;" in text
    # Verdicts are highlighted, one class per verdict.
    for cls in ("v-reproduced", "v-not-reproduced", "v-inconclusive", "v-not-tested-at-this-profile"):
        assert f'class="verdict {cls}"' in text
    # A nested value is folded as indented JSON, not dumped as a Python repr.
    assert "<details><summary>2 entries</summary><pre>{\n &quot;CE&quot;: {" in text and "{'CE'" not in text


def test_index_counts_verdicts_per_notebook_and_overall(site):
    page = Page(site[0].read_text(encoding="utf-8"))
    counts = [" ".join(c.split()) for c in page.counts]
    assert counts == [
        "Claims of all 2 notebook(s): reproduced 2 · not reproduced 1 · inconclusive 1 · not tested at this profile 1 · total 5",
        "reproduced 2 · not reproduced 1 · inconclusive 0 · not tested at this profile 0 · total 3",
        "reproduced 0 · not reproduced 0 · inconclusive 1 · not tested at this profile 1 · total 2",
    ]
    # The overview: per notebook (paper) the four counts and their sum, then all notebooks.
    assert ["notebook", "reproduced", "not reproduced", "inconclusive", "not tested at this profile", "total", "run",
            "paper profile (results/paper/)"] in page.rows
    assert ["01_alpha", "2", "1", "0", "0", "3", "", NO_PAPER] in page.rows
    assert ["02_beta", "0", "0", "1", "1", "2", "", NO_PAPER] in page.rows
    assert ["all notebooks shown", "2", "1", "1", "1", "5", "", ""] in page.rows


def test_verdicts_are_counted_by_their_leading_words():
    claims = [{"verdict": v} for v in ("reproduced", "not reproduced", "Inconclusive (depends on how the attack on a "
                                       "random model is counted)", "not tested at this profile: needs SVHN",
                                       "not tested at this profile", "reproduced", "maybe")] + ["not a claim"]
    assert verdict_counts(claims) == {"reproduced": 2, "not reproduced": 1, "inconclusive": 1,
                                      "not tested at this profile": 2, "other": 1, "total": 7}
    assert verdict_counts([]) == {"reproduced": 0, "not reproduced": 0, "inconclusive": 0,
                                  "not tested at this profile": 0, "total": 0}
    assert [verdict_kind(v) for v in ("not reproduced", "reproduced", "unknown", None)] == \
        ["not reproduced", "reproduced", None, None]


def test_index_links_are_relative_and_name_existing_files(site):
    index, profile_dir = site
    page = Page(index.read_text(encoding="utf-8"))
    assert "01_alpha/01_alpha.html" in page.links and "02_beta/02_beta.html" in page.links
    assert "SUMMARY.md" in page.links and "01_alpha/results.json" in page.links
    assert "01_alpha/confusion%20matrix.png" in page.links  # the file name with a space, encoded
    assert sorted(page.resources) == sorted(["01_alpha/eps_sweep.png", "01_alpha/confusion%20matrix.png",
                                             "02_beta/variance.png"])
    for url in page.links + page.resources:
        assert _is_relative(url), url
        target = urlparse(url).path
        if target:  # "#02_beta" stays on the page
            assert (profile_dir / unquote(target)).is_file(), url
    for anchor in [u[1:] for u in page.links if u.startswith("#")]:
        assert f'id="{anchor}"' in index.read_text(encoding="utf-8")


def test_no_page_loads_anything_from_the_network(site):
    index, profile_dir = site
    for path in [index, *sorted(profile_dir.glob("*/*.html"))]:
        text = path.read_text(encoding="utf-8")
        page = Page(text)
        remote = [u for u in page.resources if not (_is_relative(u) or u.startswith("data:"))]
        assert remote == [], (path.name, remote)
        # nbconvert's CDN loaders (require.js, MathJax, Mermaid, widgets) are gone, not just unused.
        for cdn in ("cdnjs.cloudflare.com", "unpkg.com", "cdn.jsdelivr.net", "import("):
            assert cdn not in text, (path.name, cdn)


def test_notebook_page_keeps_tex_citation_link_and_outputs(site):
    _, profile_dir = site
    text = (profile_dir / "01_alpha" / "01_alpha.html").read_text(encoding="utf-8")
    page = Page(text)
    assert "<title>01_alpha</title>" in text
    assert "$x^2$" in text and "\\mathcal{L}(x)" in text  # TeX source, typeset by MathJax in the browser
    assert "https://example.org/paper" in page.links  # a citation link is a link, not a load
    assert "../index.html" in page.links
    assert "accuracy 0.97" in text
    assert [u for u in page.resources if u.startswith("data:image/png;base64,")]


def test_notebook_pages_load_the_bundled_mathjax_by_a_relative_path(site):
    index, profile_dir = site
    mathjax = profile_dir / MATHJAX_DIR
    for stem in RESULTS:
        path = profile_dir / stem / f"{stem}.html"
        text = path.read_text(encoding="utf-8")
        scripts = [u for u in Page(text).resources if "MathJax.js" in u]
        assert scripts == ["../_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"], scripts
        url = urlparse(scripts[0])
        assert _is_relative(scripts[0]) and (path.parent / url.path).resolve() == mathjax / "MathJax.js"
        for config in url.query.removeprefix("config=").split(","):
            assert (mathjax / "config" / f"{config}.js").is_file(), config
        # The lab template's MathJax block (tex2jax with $...$ inline), pointed at the copy.
        assert "inlineMath: [ ['$','$'], [\"\\\\(\",\"\\\\)\"] ]" in text and "processEscapes: true" in text
        assert 'webFont: "STIX-Web"' in text
    assert (mathjax / "MathJax.js").stat().st_size > 50_000
    assert "Apache License" in (mathjax / "LICENSE").read_text(encoding="utf-8")
    assert (mathjax / "extensions" / "TeX" / "boldsymbol.js").is_file()  # loaded on first use
    assert (mathjax / "jax" / "output" / "HTML-CSS" / "fonts" / "STIX-Web" / "fontdata.js").is_file()
    assert (mathjax / "fonts" / "HTML-CSS" / "STIX-Web" / "woff" / "STIXMathJax_Main-Regular.woff").is_file()
    # A subset: no localizations, accessibility explorer or unused output jax fonts.
    assert not (mathjax / "localization").exists() and not (mathjax / "extensions" / "a11y").exists()
    assert not (mathjax / "jax" / "output" / "SVG").exists()
    size = sum(f.stat().st_size for f in mathjax.rglob("*") if f.is_file())
    assert 1_000_000 < size < 3_000_000, size
    assert "bundled MathJax 2.7" in index.read_text(encoding="utf-8")


def test_mathjax_is_copied_once_and_repaired(tmp_path):
    profile_dir = _write_profile(tmp_path)
    build_report(profile=PROFILE, figures_dir=tmp_path)
    mathjax = profile_dir / MATHJAX_DIR
    stamps = {f: f.stat().st_mtime_ns for f in mathjax.rglob("*") if f.is_file()}
    main_js = mathjax / "MathJax.js"
    good = main_js.read_bytes()
    main_js.write_bytes(good[:-10] + b"/*broken*/")  # same size, other content
    (mathjax / "LICENSE").unlink()
    build_report(profile=PROFILE, figures_dir=tmp_path)
    assert main_js.read_bytes() == good and (mathjax / "LICENSE").is_file()
    unchanged = {f: f.stat().st_mtime_ns for f in stamps if f.name not in ("MathJax.js", "LICENSE")}
    assert unchanged == {f: stamps[f] for f in unchanged}  # identical files are not rewritten
    assert not list(mathjax.rglob("*.tmp"))


def test_classroom_falls_back_to_the_committed_notebook(tmp_path):
    nb_dir = tmp_path / "notebooks"
    (nb_dir / "params").mkdir(parents=True)
    (nb_dir / "params" / "classroom.yaml").write_text("notebooks:\n  01_alpha:\n")
    nbformat.write(_executed_notebook("01_alpha"), str(nb_dir / "01_alpha.ipynb"))  # 02_beta is not committed
    profile_dir = _write_profile(tmp_path / "figures", profile="classroom", notebooks=False)
    index = build_report(profile="classroom", figures_dir=tmp_path / "figures", notebooks_dir=nb_dir)
    text = index.read_text(encoding="utf-8")
    assert (profile_dir / "01_alpha" / "01_alpha.html").is_file()
    assert not (profile_dir / "02_beta" / "02_beta.html").exists()
    alpha, beta = text.split('<section id="01_alpha">')[1].split('<section id="02_beta">')
    assert "rendered from the committed <code>notebooks/01_alpha.ipynb</code>" in alpha
    assert "01_alpha/01_alpha.html" in alpha
    assert "No executed notebook in this folder: no notebook page." in beta and "02_beta.html" not in beta


def test_other_profiles_do_not_fall_back(tmp_path):
    profile_dir = _write_profile(tmp_path, notebooks=False)
    text = build_report(profile=PROFILE, figures_dir=tmp_path).read_text(encoding="utf-8")
    assert not list(profile_dir.glob("*/*.html"))
    assert not (profile_dir / "_static").exists()  # no notebook page, no MathJax copy
    assert "committed" not in text and text.count("no notebook page") == 2


def test_a_notebook_without_results_json_still_gets_its_page(tmp_path):
    profile_dir = _write_profile(tmp_path)
    (profile_dir / "03_failed").mkdir()
    nbformat.write(_executed_notebook("03_failed"), str(profile_dir / "03_failed" / "03_failed.ipynb"))
    text = build_report(profile=PROFILE, figures_dir=tmp_path).read_text(encoding="utf-8")
    assert (profile_dir / "03_failed" / "03_failed.html").is_file()
    failed = text.split('<section id="03_failed">')[1]
    assert "03_failed/03_failed.html" in failed and "No results.json: the notebook failed" in failed


# ----------------------------------------------------------------------------- errors


def test_unknown_profile_lists_the_valid_ones(tmp_path):
    with pytest.raises(ReportError, match=r"unknown profile 'nope'; valid profiles: classroom, paper, smoke"):
        build_report(profile="nope", figures_dir=tmp_path)


def test_empty_profile_says_to_run_it_first(tmp_path):
    (tmp_path / PROFILE / "01_alpha").mkdir(parents=True)  # a folder, but no results.json
    with pytest.raises(ReportError, match=r"run `python -m robust_utils run --profile smoke` first"):
        build_report(profile=PROFILE, figures_dir=tmp_path)
    assert not (tmp_path / PROFILE / "index.html").exists()


def test_corrupt_results_json_is_named_and_nothing_is_written(tmp_path):
    profile_dir = _write_profile(tmp_path)
    broken = profile_dir / "02_beta" / "results.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match=re.escape(str(broken))):
        build_report(profile=PROFILE, figures_dir=tmp_path)
    assert not list(profile_dir.rglob("*.html"))


def test_missing_jupyter_server_mathjax_is_an_error_before_anything_is_written(tmp_path, monkeypatch):
    profile_dir = _write_profile(tmp_path)
    monkeypatch.setitem(sys.modules, "jupyter_server_mathjax", None)  # import fails
    with pytest.raises(ReportError, match=r"pip install jupyter-server-mathjax==0\.2\.6"):
        build_report(profile=PROFILE, figures_dir=tmp_path)
    assert not list(profile_dir.rglob("*.html")) and not (profile_dir / "_static").exists()


def test_cli_unknown_profile_exits_2(tmp_path, capsys):
    assert main(["report", "--profile", "nope", "--figures-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown profile 'nope'") and "classroom" in err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- in a browser


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_index_in_headless_chromium_loads_offline(site, tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium "
                    "(apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    index, profile_dir = site
    requests, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 800})
            context.on("request", lambda r: requests.append(r.url))
            context.on("requestfailed", lambda r: failed.append(r.url))
            page = context.new_page()
            page.goto(index.as_uri(), wait_until="load")
            assert page.title() == f"Reproduction report: profile {PROFILE}"

            images = page.evaluate("Array.from(document.images, i => [i.src, i.complete, i.naturalWidth])")
            assert len(images) == 3
            assert all(complete and width > 0 for _, complete, width in images), images

            hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]'), a => a.href)")
            notebook_pages = []
            for href in hrefs:
                url = urlparse(href)
                assert url.scheme == "file", href
                target = Path(url2pathname(url.path))
                assert target.is_file(), href
                if target.suffix == ".html" and target != index:
                    notebook_pages.append(href)
            assert sorted(notebook_pages) == sorted((profile_dir / s / f"{s}.html").as_uri() for s in RESULTS)

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the index: {shot}")

            for href in notebook_pages:
                stem = Path(urlparse(href).path).stem
                page.goto(href, wait_until="load")
                assert page.title() == stem
                assert "accuracy 0.97" in page.inner_text("body")
                # MathJax ran: wait for its startup and typesetting queue, then look at the result.
                page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.Queue", timeout=20_000)
                page.evaluate("() => new Promise(resolve => MathJax.Hub.Queue(() => resolve(true)))")
                page.wait_for_selector(".MathJax_Display .MathJax", timeout=20_000)
                math = page.evaluate("""() => ({
                    inline: document.querySelectorAll('span.MathJax').length,
                    display: document.querySelectorAll('.MathJax_Display').length,
                    errors: document.querySelectorAll('.MathJax_Error, merror').length,
                    renderer: MathJax.Hub.outputJax['jax/mml'][0].id,
                    font: MathJax.OutputJax['HTML-CSS'].fontInUse,
                    fonts: Array.from(document.fonts, f => f.family + ':' + f.status),
                })""")
                assert math["inline"] >= 2 and math["display"] == 1 and math["errors"] == 0, (stem, math)
                assert math["renderer"] == "HTML-CSS" and math["font"] == "STIX-Web", (stem, math)
                assert "STIXMathJax_Main:loaded" in math["fonts"], (stem, math["fonts"])  # the bundled woff
                body = page.inner_text("body")
                assert "$x^2$" not in body and "\\mathcal" not in body and "$$" not in body, body
                images = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth])")
                assert images and all(complete and width > 0 for complete, width in images), (stem, images)
                page.click("text=all notebooks of this profile")
                page.wait_for_load_state("load")
                assert page.url == index.as_uri()
        finally:
            browser.close()

    assert failed == []
    remote = [u for u in requests if urlparse(u).scheme not in ("file", "data")]
    assert remote == [], remote
    assert any(u.endswith("variance.png") for u in requests)  # the recording itself works
    loaded = {u.split(f"/{MATHJAX_DIR}/", 1)[1].split("?")[0] for u in requests if f"/{MATHJAX_DIR}/" in u}
    assert {"MathJax.js", "config/TeX-AMS-MML_HTMLorMML-full.js",
            "fonts/HTML-CSS/STIX-Web/woff/STIXMathJax_Main-Regular.woff"} <= loaded, sorted(loaded)
    width, height = _png_size(shot)
    assert shot.stat().st_size > 30_000 and width == 1200 and height > 800, (shot.stat().st_size, width, height)


# ----------------------------------------------------------------------------- run states (status.json)


def _status(profile_dir: Path, stem: str, state: str, **fields) -> None:
    (profile_dir / stem).mkdir(parents=True, exist_ok=True)
    record = {"state": state, "started": "2025-01-01T10:00:00", "finished": None, "elapsed_s": None, "error": None}
    (profile_dir / stem / "status.json").write_text(json.dumps({**record, **fields}), encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    return {part.split('"', 1)[0]: part for part in text.split('<section id="')[1:]}


def test_unfinished_runs_show_their_state_not_older_numbers(tmp_path):
    import os
    import time

    profile_dir = _write_profile(tmp_path)  # 01_alpha and 02_beta, each with results.json and a notebook
    _status(profile_dir, "01_alpha", "failed", finished="2025-01-01T10:02:00", elapsed_s=120.5,
            error="ValueError: <b>eps</b> must be >= 0")
    _status(profile_dir, "02_beta", "running")
    (profile_dir / "02_beta" / "02_beta.ipynb").write_text("{half a notebook", encoding="utf-8")  # still being written
    _status(profile_dir, "03_gamma", "interrupted", finished="2025-01-01T10:01:00")
    _status(profile_dir, "04_delta", "ok", started=time.time() - 60)
    (profile_dir / "04_delta" / "results.json").write_text(json.dumps(RESULTS["02_beta"] | {"title": "Delta"}))
    _status(profile_dir, "05_eps", "ok", started=time.time() + 3600)  # the last run began after results.json
    (profile_dir / "05_eps" / "results.json").write_text(json.dumps(RESULTS["02_beta"] | {"title": "Eps"}))
    _status(profile_dir, "06_zeta", "exploded")
    text = build_report(profile=PROFILE, figures_dir=tmp_path).read_text(encoding="utf-8")
    page, sections = Page(text), _sections(text)
    alpha = sections["01_alpha"]
    assert "Failed: the last run of this notebook stopped with an error" in alpha and "elapsed 120.5 s" in alpha
    assert "Error: <code>ValueError: &lt;b&gt;eps&lt;/b&gt; must be &gt;= 0</code>" in alpha
    assert "from an earlier run: not shown" in alpha and "CE, eps=0.1" not in alpha and "results.json</a>" not in alpha
    assert "the notebook of the unfinished run (where it stopped; not a result)" in alpha and ">notebook (HTML)<" not in alpha
    beta = sections["02_beta"]
    assert "Running: the run of this notebook has not finished" in beta and "02_beta.html" not in beta
    assert not (profile_dir / "02_beta" / "02_beta.html").exists() and "SDR, FGSM" not in beta
    assert "Interrupted: the last run of this notebook was stopped" in sections["03_gamma"]
    assert "Table 2" in sections["04_delta"] and "not shown" not in sections["04_delta"]
    assert "older than the last run" in sections["05_eps"] and "Table 2" not in sections["05_eps"]
    assert "Unknown run state &#x27;exploded&#x27;" in sections["06_zeta"]
    for stem, state in (("01_alpha", "failed"), ("02_beta", "running"), ("03_gamma", "interrupted"),
                        ("06_zeta", "exploded")):
        assert [stem, f"— (not shown: {state})", state, NO_PAPER] in page.rows
    assert ["04_delta", "0", "0", "1", "1", "2", "ok", NO_PAPER] in page.rows
    assert ["all notebooks shown", "0", "0", "1", "1", "2", "", ""] in page.rows  # only 04_delta's claims count
    assert "Claims of the 2 finished notebook(s) of 6:" in " ".join(page.counts[0].split())
    assert "01_alpha</a> (failed)" in text and "02_beta</a> (running)" in text


def test_unreadable_status_json_is_named_and_nothing_is_written(tmp_path):
    profile_dir = _write_profile(tmp_path)
    (profile_dir / "01_alpha" / "status.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ReportError, match=re.escape(str(profile_dir / "01_alpha" / "status.json"))):
        build_report(profile=PROFILE, figures_dir=tmp_path)
    assert not list(profile_dir.rglob("*.html"))


# ----------------------------------------------------------------------------- a fresh clone


def _committed(tmp_path: Path, stems=("01_alpha", "02_beta")) -> Path:
    nb_dir = tmp_path / "notebooks"
    (nb_dir / "params").mkdir(parents=True)
    (nb_dir / "params" / "classroom.yaml").write_text("notebooks:\n" + "".join(f"  {s}:\n" for s in stems))
    (nb_dir / "params" / "smoke.yaml").write_text("notebooks:\n  01_alpha:\n")
    for stem in stems:
        nbformat.write(_exercise_notebook(stem), str(nb_dir / f"{stem}.ipynb"))
    return nb_dir


def test_a_fresh_clone_gets_the_classroom_report_from_the_committed_notebooks(tmp_path):
    nb_dir = _committed(tmp_path)
    index = build_report(profile="classroom", figures_dir=tmp_path / "figures", notebooks_dir=nb_dir)
    text = index.read_text(encoding="utf-8")
    assert index == tmp_path / "figures" / "classroom" / "index.html"
    assert "from the committed <code>notebooks/*.ipynb</code>: there is no run of this profile" in text
    for stem in ("01_alpha", "02_beta"):
        assert (index.parent / stem / f"{stem}.html").is_file()
        assert f'href="{stem}/{stem}.html"' in _sections(text)[stem]
        assert "No run of this profile yet" in _sections(text)[stem]
    with pytest.raises(ReportError, match="run `python -m robust_utils run --profile smoke` first"):
        build_report(profile="smoke", figures_dir=tmp_path / "figures", notebooks_dir=nb_dir)
    (nb_dir / "01_alpha.ipynb").unlink()
    (nb_dir / "02_beta.ipynb").unlink()
    with pytest.raises(ReportError, match="run `python -m robust_utils run --profile classroom` first"):
        build_report(profile="classroom", figures_dir=tmp_path / "figures2", notebooks_dir=nb_dir)


# ----------------------------------------------------------------------------- the student audience


class Text(HTMLParser):
    """The text a reader sees in a page (script and style left out)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.parts)


@pytest.fixture(scope="module")
def class_sites(tmp_path_factory):
    """(instructor index, student index) of the fake profile whose notebooks hold an exercise."""
    root = tmp_path_factory.mktemp("class_figures")
    profile_dir = _write_profile(root)
    for stem in RESULTS:
        nbformat.write(_exercise_notebook(stem), str(profile_dir / stem / f"{stem}.ipynb"))
    return build_report(profile=PROFILE, figures_dir=root), build_report(profile=PROFILE, figures_dir=root,
                                                                           audience="student")


def test_student_pages_show_no_solution_or_hidden_test(class_sites):
    instructor, student = class_sites
    assert student == instructor.parent / "student" / "index.html"
    for stem in RESULTS:
        mine = Text((instructor.parent / stem / f"{stem}.html").read_text(encoding="utf-8")).text
        theirs = Text((student.parent / stem / f"{stem}.html").read_text(encoding="utf-8")).text
        assert all(line in mine for line in SECRET_LINES)  # the check can fail: the instructor's pages show them
        assert not [line for line in SECRET_LINES if line in theirs], stem
        assert "raise NotImplementedError()" in theirs and "assert add_one(1) == 2" in theirs
        assert "output removed from the student pages" in theirs  # the traceback that showed a solution line
        assert "accuracy 0.97" in theirs  # the results are kept ...
        assert mine.count("add_one: all tests passed") == 2 and theirs.count("add_one: all tests passed") == 1  # ... the exercise outputs not
    assert "Built for <strong>students</strong>" in student.read_text(encoding="utf-8")
    assert "Built for the <strong>instructor</strong>" in instructor.read_text(encoding="utf-8")


def test_the_student_site_is_self_contained(class_sites):
    _, student = class_sites
    site = student.parent
    page = Page(student.read_text(encoding="utf-8"))
    assert "01_alpha/01_alpha.html" in page.links and "01_alpha/results.json" in page.links and "SUMMARY.md" in page.links
    for url in page.links + page.resources:
        assert _is_relative(url) and not url.startswith(".."), url
        target = urlparse(url).path
        if target:
            assert (site / unquote(target)).is_file(), url
    assert sorted(p.name for p in site.glob("*/*.png")) == ["confusion matrix.png", "eps_sweep.png", "variance.png"]
    assert (site / MATHJAX_DIR / "MathJax.js").is_file()
    assert not list(site.rglob("*.ipynb"))  # nothing with the solutions goes into the folder to hand out
    assert EXPECTED_ROWS[0] in page.rows  # the same tables as the instructor's index


def test_unknown_audience_is_refused(tmp_path, capsys):
    _write_profile(tmp_path)
    with pytest.raises(ReportError, match="unknown audience 'teachers'; valid: instructor, student"):
        build_report(profile=PROFILE, figures_dir=tmp_path, audience="teachers")
    assert main(["report", "--profile", PROFILE, "--figures-dir", str(tmp_path), "--audience", "student"]) == 0
    assert (tmp_path / PROFILE / "student" / "index.html").is_file()


@pytest.mark.slow
def test_both_audiences_in_headless_chromium(class_sites):
    """What the browser shows: the instructor's pages hold the solution and hidden-test lines, no
    student page does (rendered text, after MathJax), and the student index says who it is for."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium "
                    "(apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    instructor, student = class_sites
    texts = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            for index in (instructor, student):
                page.goto(index.as_uri(), wait_until="load")
                texts[index] = page.inner_text("body")
                for stem in RESULTS:
                    page.goto((index.parent / stem / f"{stem}.html").as_uri(), wait_until="load")
                    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.Queue", timeout=20_000)
                    page.evaluate("() => new Promise(resolve => MathJax.Hub.Queue(() => resolve(true)))")
                    texts[(index, stem)] = page.inner_text("body")
        finally:
            browser.close()
    assert "Built for students" in texts[student] and "Built for the instructor" in texts[instructor]
    for stem in RESULTS:
        assert all(line in texts[(instructor, stem)] for line in SECRET_LINES), stem
        assert not [line for line in SECRET_LINES if line in texts[(student, stem)]], stem
        assert "raise NotImplementedError()" in texts[(student, stem)] and "accuracy 0.97" in texts[(student, stem)]


@pytest.mark.slow
def test_the_committed_notebooks_on_a_fresh_clone_for_both_audiences(tmp_path, capsys):
    """`report --profile classroom` without any run renders the committed notebooks; the student build
    of the same shows none of their solution or hidden-test lines (the instructor build shows them all)."""
    from robust_utils.app import assign
    from robust_utils.core import paths

    assert main(["report", "--profile", "classroom", "--figures-dir", str(tmp_path)]) == 0
    assert main(["report", "--profile", "classroom", "--figures-dir", str(tmp_path), "--audience", "student"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "classroom" / "index.html"),
                                               str(tmp_path / "classroom" / "student" / "index.html")]
    index = (tmp_path / "classroom" / "index.html").read_text(encoding="utf-8")
    assert "there is no run of this profile in this folder" in index
    checked = 0
    for path in sorted(paths.notebooks_dir().glob("*.ipynb")):
        secrets = assign.secret_lines(nbformat.read(path, as_version=4))
        mine = Text((tmp_path / "classroom" / path.stem / f"{path.stem}.html").read_text(encoding="utf-8")).text
        theirs = Text((tmp_path / "classroom" / "student" / path.stem / f"{path.stem}.html").read_text(encoding="utf-8")).text
        assert [s for s in secrets if s not in mine] == [], path.stem
        assert [s for s in secrets if s in theirs] == [], path.stem
        checked += len(secrets)
    assert checked >= 50
