"""Traceability (LLD 12): every requirement has a test and the generated matrix is current."""

from __future__ import annotations

import pytest

from tests.traceability import MATRIX_FILE, collect_matrix, load_requirements, render


@pytest.fixture(scope="module")
def matrix() -> dict[str, list[str]]:
    """{test: [requirement ids]} of the whole suite."""
    return collect_matrix()


@pytest.mark.req("LLD-12")
def test_every_requirement_has_a_test(matrix: dict[str, list[str]]) -> None:
    """Each id in docs/requirements.toml is named by at least one test."""
    named = {i for ids in matrix.values() for i in ids}
    missing = [r["id"] for r in load_requirements() if r["id"] not in named]
    assert missing == []


@pytest.mark.req("LLD-12")
def test_every_test_names_known_requirements(matrix: dict[str, list[str]]) -> None:
    """Every test carries at least one requirement id, and only ids that exist."""
    known = {r["id"] for r in load_requirements()}
    untagged = [test for test, ids in matrix.items() if not ids]
    unknown = {test: sorted(set(ids) - known) for test, ids in matrix.items() if set(ids) - known}
    assert untagged == []
    assert unknown == {}


@pytest.mark.req("LLD-12")
def test_requirement_ids_are_unique() -> None:
    """No requirement id is defined twice."""
    ids = [r["id"] for r in load_requirements()]
    assert len(ids) == len(set(ids))


@pytest.mark.req("LLD-12")
def test_matrix_document_is_current(matrix: dict[str, list[str]]) -> None:
    """docs/traceability.md equals what scripts/traceability generates now."""
    expected = render(load_requirements(), matrix)
    assert MATRIX_FILE.read_text(encoding="utf-8") == expected, "run scripts/traceability"
