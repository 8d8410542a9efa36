"""Packaging metadata: the license expression and file, type marker, docs extra, changelog."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_a_pep_639_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"                  # not the deprecated {text = ...} table
    assert all((ROOT / name).is_file() for name in project["license-files"])
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    build = PYPROJECT["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in build)


def test_typed_marker_is_shipped():
    assert (ROOT / "gnpool" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["gnpool"]


def test_docs_extra_changelog_and_ci():
    assert any(r.startswith("sphinx") for r in PYPROJECT["project"]["optional-dependencies"]
               ["docs"])
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make docs" in ci
    assert (ROOT / "docs" / "conf.py").is_file()
