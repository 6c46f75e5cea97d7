"""LICENSE and CITATION.cff: present, parseable, and in step with pyproject.toml."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_the_mit_licence_pyproject_promises():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"}
    assert text.startswith("MIT License\n") and "the robust-companion authors" in text.splitlines()[2]
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_citation_cff_parses_and_has_the_required_keys():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the keys CFF 1.2.0 requires, and the software's own version and licence
    assert {"cff-version", "message", "title", "authors"} <= set(cff) and cff["cff-version"] == "1.2.0"
    assert cff["type"] == "software" and cff["authors"] == [{"name": "the robust-companion authors"}]
    assert str(cff["version"]) == project["version"] and cff["license"] == "MIT"
    refs = cff["references"]
    assert len(refs) == 5
    for ref in refs:
        assert {"type", "title", "authors"} <= set(ref) and ref["authors"], ref
        assert "url" in ref or "notes" in ref, ref  # a link, or why there is none
    urls = {ref.get("url") for ref in refs}
    assert {"https://openreview.net/forum?id=dBJpBmn5MH", "https://arxiv.org/abs/1810.12576",
            "https://arxiv.org/abs/1905.10906"} <= urls
