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

PROFILE = "smoke"  # a real profile name (notebooks/params/smoke.yaml)
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
        "Claims of all 2 notebook(s): reproduced 2 not reproduced 1 inconclusive 1 not tested at this profile 1",
        "reproduced 2 not reproduced 1",
        "inconclusive 1 not tested at this profile 1",
    ]


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
