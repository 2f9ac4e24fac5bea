"""Runs a notebook under notebooks/ top to bottom with a tiny budget
(``JAXRL_NOTEBOOK_STEPS``), for test_notebooks*.py.

The notebooks are split over two test files only so that pytest-xdist, which
gives each file to one worker, can run the two halves side by side."""

from __future__ import annotations

from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# Roughly half of the notebooks' running time; every other notebook (new ones
# included) runs in test_notebooks.py.
SECOND_HALF = ("hierarchical", "own_agent", "reward_modelling")


def run_notebook(path: Path, tmp_path: Path, monkeypatch) -> None:
    import nbclient
    import nbformat

    monkeypatch.setenv("JAXRL_NOTEBOOK_STEPS", "4096")
    monkeypatch.setenv("JAXRL_NOTEBOOK_SEEDS", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # notebooks that write run directories write them here
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
