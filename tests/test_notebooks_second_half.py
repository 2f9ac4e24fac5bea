"""The second half of the notebooks (see notebook_runner.py), run top to bottom
with a tiny budget."""

from __future__ import annotations

import pytest
from notebook_runner import NOTEBOOKS, SECOND_HALF, run_notebook, shared_kernel

pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

PATHS = [p for p in NOTEBOOKS if p.stem in SECOND_HALF]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    with shared_kernel(tmp_path_factory.mktemp("kernel")) as manager:
        yield manager


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path, tmp_path, kernel):
    run_notebook(path, tmp_path, kernel)
