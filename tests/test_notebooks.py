"""The example notebooks run top to bottom (nbclient, the python3 kernel, a temporary working folder) and
are stored with their outputs."""

import os
from pathlib import Path

import pytest

import hepgen

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (the test extra)")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient and ipykernel (the test extra)")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, workdir: Path, monkeypatch) -> "nbformat.NotebookNode":
    # the kernel imports the hepgen this test imports (a source checkout or the installed package)
    src = str(Path(hepgen.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    stored = [c for c in nb.cells if c.cell_type == "code"]
    assert stored and all(c.execution_count for c in stored), f"examples/{name}.ipynb: not saved executed"
    assert sum(len(c.outputs) for c in stored) >= len(stored) - 1, f"examples/{name}.ipynb: saved without outputs"
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_showers_notebook(tmp_path, monkeypatch):
    nb = _run("showers", tmp_path, monkeypatch)
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "run" / "best.pt").is_file()
    assert "mean separation power:" in _text(nb)
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_jets_notebook(tmp_path, monkeypatch):
    pytest.importorskip("pythia8mc", reason="examples/jets.ipynb needs the jets extra (pythia8mc)")
    pytest.importorskip("fastjet", reason="examples/jets.ipynb needs the jets extra (fastjet)")
    nb = _run("jets", tmp_path, monkeypatch)
    assert (tmp_path / "eval" / "report.html").is_file() and (tmp_path / "gen_t.h5").is_file()
    assert "w1m" in _text(nb) and "floor" in _text(nb)
