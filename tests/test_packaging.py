"""Package metadata: LICENSE, CITATION.cff and pyproject.toml agree with each other and with hepgen."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import yaml

import hepgen

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_license_file_is_the_bsd_3_clause_text_pyproject_declares(project):
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    assert text.startswith("BSD 3-Clause License")
    assert "3. Neither the name of the copyright holder nor the names of its" in text


def test_citation_cff_matches_the_package(project):
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    # the version is written once, in hepgen/_version.py; pyproject reads it from there
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "hepgen._version.__version__"}
    assert cff["version"] == hepgen.__version__ == importlib.metadata.version("hepgen")
    assert cff["license"] == "BSD-3-Clause"
    assert cff["authors"] and cff["title"].startswith("hepgen")
    assert cff["repository-code"] == project["urls"]["Source"]


def test_project_urls_are_urls(project):
    assert set(project["urls"]) >= {"Homepage", "Documentation", "Source", "Issues"}
    assert all(u.startswith("https://") for u in project["urls"].values())


def test_torch_is_a_lower_bound_and_zuko_has_an_upper_one(project):
    deps = {d.split(">")[0].split("=")[0].split("<")[0].strip(): d for d in project["dependencies"]}
    assert deps["torch"] == "torch>=2.5"  # no exact pin: GPU users keep their CUDA build
    assert "<2" in deps["zuko"]  # FastRQSTransform extends zuko's private spline internals
    assert "argcomplete" in deps
