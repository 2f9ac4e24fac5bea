"""Every notebook under notebooks/ runs top to bottom with a tiny budget, so the
documentation cannot rot; the other half of them is test_notebooks_second_half.py."""

from __future__ import annotations

import pytest
from notebook_runner import NOTEBOOKS, SECOND_HALF, run_notebook, shared_kernel

pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

FIRST_HALF = [p for p in NOTEBOOKS if p.stem not in SECOND_HALF]


def test_the_two_halves_cover_every_notebook():
    assert set(SECOND_HALF) <= {p.stem for p in NOTEBOOKS}
    assert FIRST_HALF and len(FIRST_HALF) + len(SECOND_HALF) == len(NOTEBOOKS)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    with shared_kernel(tmp_path_factory.mktemp("kernel")) as manager:
        yield manager


@pytest.mark.parametrize("path", FIRST_HALF, ids=[p.stem for p in FIRST_HALF])
def test_notebook_runs(path, tmp_path, kernel):
    run_notebook(path, tmp_path, kernel)
