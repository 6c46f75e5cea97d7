"""The tracked paper-profile outputs (results/paper/) beside another profile's numbers in SUMMARY.md and the report."""

import json

import pytest

from robust_utils.app import paper_results
from robust_utils.app.paper_results import PAPER_COLUMN, paper_runs, with_paper_column
from robust_utils.app.summary import write_summary

CLAIMS = [{"claim": "a", "verdict": "reproduced", "evidence": "e"},
          {"claim": "b", "verdict": "inconclusive", "evidence": "e"}]


def _results(path, ours, claims=()):
    path.mkdir(parents=True, exist_ok=True)
    rows = [{"cell": "CE, eps=0.1", "paper": 0.5, "ours": ours, "diff": ours - 0.5},
            {"cell": "HRCE, eps=0.1", "paper": 0.9, "ours": ours + 0.1, "diff": ours - 0.8}]
    (path / "results.json").write_text(json.dumps({"notebook": path.name, "tables": {"Table 1": rows},
                                                   "claims": list(claims)}))


@pytest.fixture
def tracked(tmp_path, monkeypatch):
    """A fake results/paper/ with one finished notebook (02) and one unreadable one (03)."""
    root = tmp_path / "results_paper"
    _results(root / "02_hr_loss", 0.625, CLAIMS)
    (root / "02_hr_loss" / "provenance.json").write_text(json.dumps(
        {"device": "NVIDIA H200", "started_utc": "2026-12-01T14:03:00Z", "wall_seconds": 432, "commit": "1a2b3c4d5e"}))
    (root / "03_stochastic_lwta").mkdir()
    (root / "03_stochastic_lwta" / "results.json").write_text("{broken")
    monkeypatch.setenv(paper_results.PAPER_RESULTS_VARIABLE, str(root))
    return root


def test_paper_runs_reads_results_and_provenance_and_names_broken_files(tracked):
    runs = paper_runs()
    assert set(runs) == {"02_hr_loss", "03_stochastic_lwta"}
    assert runs["02_hr_loss"].origin() == "NVIDIA H200, 2026-12-01 14:03 UTC, 7 min 12 s, commit 1a2b3c4"
    assert runs["03_stochastic_lwta"].results is None and "JSONDecodeError" in runs["03_stochastic_lwta"].error
    assert paper_runs(tracked / "nowhere") == {}


def test_paper_column_matches_cells_and_leaves_the_rest_empty():
    rows = [{"cell": "x", "ours": 0.1}, {"cell": "y", "ours": 0.2}]
    out = with_paper_column(rows, [{"cell": "y", "ours": 0.7}])
    assert [r[PAPER_COLUMN] for r in out] == [None, 0.7] and PAPER_COLUMN not in rows[0]
    assert with_paper_column(rows, None) == rows


def test_summary_shows_the_paper_profile_beside_the_classroom_numbers(tracked, tmp_path):
    classroom = tmp_path / "figures" / "classroom"
    _results(classroom / "02_hr_loss", 0.25)
    _results(classroom / "05_sdr_learnable", 0.3)
    text = write_summary(classroom).read_text()
    assert "## Paper profile (tracked in `results/paper/`)" in text
    assert "| `02_hr_loss` | 1 | 0 | 1 | 0 | 2 | NVIDIA H200, 2026-12-01 14:03 UTC, 7 min 12 s, commit 1a2b3c4 |" in text
    assert "| `05_sdr_learnable` | — | — | — | — | — | no paper-profile run yet" in text
    assert "cannot be read: JSONDecodeError" in text
    section_02 = text[text.index("## 02_hr_loss"):text.index("## 05_sdr_learnable")]
    assert f"| cell | paper | ours | diff | {PAPER_COLUMN} |" in section_02
    assert "| CE, eps=0.1 | 0.500 | 0.250 | -0.250 | 0.625 |" in section_02
    section_05 = text[text.index("## 05_sdr_learnable"):]
    assert PAPER_COLUMN not in section_05  # no paper run of 05: no empty column


def test_the_paper_profile_summary_does_not_show_itself_beside(tracked, tmp_path):
    paper = tmp_path / "figures" / "paper"
    _results(paper / "02_hr_loss", 0.625, CLAIMS)
    text = write_summary(paper).read_text()
    assert "Paper profile (tracked" not in text and PAPER_COLUMN not in text


def test_report_shows_the_paper_profile_beside(tracked, tmp_path):
    from robust_utils.app.report import build_report

    figures = tmp_path / "figures"
    _results(figures / "smoke" / "02_hr_loss", 0.25, CLAIMS[:1])
    _results(figures / "smoke" / "05_sdr_learnable", 0.3)
    html = build_report(profile="smoke", figures_dir=figures).read_text(encoding="utf-8")
    assert "paper profile (results/paper/)" in html and "NVIDIA H200, 2026-12-01 14:03 UTC" in html
    assert "no paper-profile run yet" in html
    assert f"<th>{PAPER_COLUMN}</th>" in html and '<td class="num">0.625</td>' in html
