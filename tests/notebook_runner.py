"""Runs a notebook under notebooks/ top to bottom with a tiny budget
(``JAXRL_NOTEBOOK_STEPS``), for test_notebooks*.py.

The notebooks of one test file share one kernel (:func:`shared_kernel`):
starting a kernel and importing jax, flax and jaxrl in it cost several
seconds a notebook, and its jitted functions carry over. Each notebook starts
from an empty namespace (``%reset -f``) in its own working directory, so one
cannot lean on names another left behind.

The notebooks are split over two test files only so that pytest-xdist, which
gives each file to one worker, can run the two halves side by side."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# Roughly half of the notebooks' running time; every other notebook (new ones
# included) runs in test_notebooks.py.
SECOND_HALF = ("environments", "hierarchical", "own_agent", "reward_modelling")

# environments.ipynb leaves out Craftax, whose PPO program (a world generated
# beside every step) takes a minute or two to compile on 2 cores, and Brax,
# whose PPO and evaluation programs take 15 s; tests/test_env_families.py
# checks both adapters and trains PPO on Brax. The notebook's loop runs on
# the other families.
BUDGET = {"JAXRL_NOTEBOOK_STEPS": "4096", "JAXRL_NOTEBOOK_SEEDS": "3", "JAXRL_NOTEBOOK_SKIP": "craftax,brax",
          "MPLBACKEND": "Agg"}


@contextlib.contextmanager
def shared_kernel(cwd: Path):
    """A python3 kernel with the tiny budget in its environment."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, **BUDGET}, cwd=str(cwd))
    try:
        yield manager
    finally:
        manager.shutdown_kernel(now=True)


def run_notebook(path: Path, tmp_path: Path, kernel) -> None:
    """Runs ``path`` in ``kernel`` with ``tmp_path`` as its working directory
    (notebooks that write run directories write them there)."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    fresh_start = nbformat.v4.new_code_cell(
        f"%reset -f\nimport os\nos.chdir({str(tmp_path)!r})")
    notebook.cells.insert(0, fresh_start)
    client = nbclient.NotebookClient(notebook, km=kernel, timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
