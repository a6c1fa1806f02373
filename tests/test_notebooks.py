"""docs/notebooks/quickstart.ipynb runs top to bottom in a real Jupyter kernel (ipykernel through nbclient), offline.

The kernel runs an event loop, as in Jupyter: the notebook's plain calls (`embedder.embed`) and its
`await`s (`aembed`, `arun`, `asearch_text`) both have to work there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebooks" / "quickstart.ipynb"


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A new user's setting: no database URL, an empty STUDYLLM_HOME (the kernel inherits this environment)."""
    from studyllm_core.db.server import import_pgserver, stop_embedded

    home = tmp_path / "home"
    monkeypatch.setenv("STUDYLLM_HOME", str(home))
    monkeypatch.delenv("STUDYLLM_DATABASE_URL", raising=False)
    yield home
    # The kernel was the server's last user: it stops the server as it exits; stop it here if it did not.
    info = import_pgserver().utils.PostmasterInfo
    deadline = time.monotonic() + 30
    while (pid := info.read_from_pgdata(home / "pg")) is not None and pid.is_running() and time.monotonic() < deadline:
        if pid.status == "ready":
            stop_embedded(home / "pg")
            break
        time.sleep(0.2)


@pytest.mark.torch
def test_quickstart_notebook_runs_in_a_jupyter_kernel(fresh_home, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it without outputs"
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when any cell fails

    outputs = {cell.id: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell_outputs in outputs.values() for out in cell_outputs
    )
    assert "best K:" in text
    assert any("image/svg+xml" in out.get("data", {}) for cell_outputs in outputs.values() for out in cell_outputs)
    assert (tmp_path / "quickstart-sweep" / "report.json").is_file()
