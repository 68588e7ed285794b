"""The core install without any optional extra: shower commands work, the extras' commands stop with
the one-line missing-extra message (hepgen._extras).

The extras are made unimportable in a subprocess by ``sys.modules[name] = None`` (Python then raises
``ModuleNotFoundError`` on import and ``importlib.util.find_spec`` answers None, as for a package
that is not installed), so the test runs in the full test environment too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hepgen._extras import EXTRAS, MissingExtraError, have, missing_extra_message, needs_extra, require_extra

SRC = Path(__file__).resolve().parents[1] / "src"

# every module of every extra, blocked in the subprocess
BLOCKED = sorted({m for mods in EXTRAS.values() for m in mods})

PRELUDE = textwrap.dedent("""
    import sys
    for _name in {blocked!r}:
        sys.modules[_name] = None  # as if not installed
    import contextlib, io, json, logging
    import torch
    torch.set_num_threads(1)
    from hepgen.cli import main

    def run(argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        return {{"rc": rc, "err": err.getvalue()}}
""")

SCRIPT = """
d = sys.argv[1]
log = io.StringIO()
handler = logging.StreamHandler(log)
logging.getLogger().addHandler(handler)
out = {}
out["simulate"] = run(["simulate", "showers", "-o", f"{d}/s.h5", "--n", "200", "--energy-range", "2000", "20000",
                       "--seed", "1", "-q"])
out["simulate_test"] = run(["simulate", "showers", "-o", f"{d}/t.h5", "--n", "200", "--energy-range", "2000",
                            "20000", "--seed", "2", "-q"])
out["train"] = run(["train", f"{d}/s.h5", "-o", f"{d}/run", "--family", "vae", "--epochs", "1", "--batch-size",
                    "100", "--set", "n_eval=50", "--set", "model.hidden_features=32", "--set", "tensorboard=true", "-q"])
out["sample"] = run(["sample", f"{d}/run/best.pt", "-o", f"{d}/g.h5", "--conditions-from", f"{d}/t.h5", "-q"])
out["evaluate"] = run(["evaluate", f"{d}/t.h5", f"{d}/g.h5", "-o", f"{d}/ev", "--fast", "-q"])
out["info"] = run(["info", f"{d}/run/best.pt"])
out["modules"] = sorted(m for m in sys.modules if m.startswith("hepgen.domains.") and sys.modules[m] is not None)
out["simulate_jets"] = run(["simulate", "jets", "-o", f"{d}/j.h5", "--n", "10", "-q"])
out["simulate_events"] = run(["simulate", "events", "-o", f"{d}/e.h5", "--process", "qcd", "--n", "2", "-q"])
out["export"] = run(["export", f"{d}/run/best.pt", "-o", f"{d}/m.onnx"])
out["tune"] = run(["tune", f"{d}/s.h5", "--space", f"{d}/space.yaml", "-o", f"{d}/tune"])
out["convert"] = run(["convert", f"{d}/t.h5", "-o", f"{d}/t.root"])
out["log"] = log.getvalue()
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def light_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("light")
    (d / "space.yaml").write_text("lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    code = PRELUDE.format(blocked=BLOCKED) + SCRIPT
    proc = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=d)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return d, json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("step", ["simulate", "simulate_test", "train", "sample", "evaluate", "info"])
def test_shower_commands_work_without_any_extra(light_run, step):
    d, out = light_run
    assert out[step]["rc"] == 0, out[step]["err"]


def test_shower_files_are_written_and_training_logs_csv_without_tensorboard(light_run):
    d, out = light_run
    for name in ("s.h5", "t.h5", "g.h5", "run/best.pt", "ev/metrics.json", "ev/report.html"):
        assert (d / name).is_file(), name
    rows = (d / "run" / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and rows[1].startswith("1,")  # the one epoch, logged to CSV
    assert not (d / "run" / "tb").exists()  # no TensorBoard event files
    assert ("tensorboard is not installed (pip install 'hepgen[tensorboard]'); the training curves go to "
            "train_log.csv only") in out["log"]


def test_a_shower_run_imports_no_other_kind_of_data(light_run):
    _, out = light_run
    # after simulate, train, sample, evaluate, info: the kinds' packages imported (base and evaluation are shared)
    packages = {"showers", "jets", "events", "tabular", "anomaly"}  # hepgen/domains/__init__.py's declarations
    assert {m.split(".")[2] for m in out["modules"]} & packages == {"showers"}, out["modules"]


@pytest.mark.parametrize(("step", "message"), [
    ("simulate_jets", "jet simulation (Pythia 8 + FastJet) needs the optional extra: pip install 'hepgen[jets]'"),
    ("simulate_events", "event simulation (Pythia 8 + FastJet) needs the optional extra: pip install 'hepgen[jets]'"),
    ("export", "ONNX export (hepgen export) needs the optional extra: pip install 'hepgen[onnx]'"),
    ("tune", "hepgen tune (Optuna) needs the optional extra: pip install 'hepgen[tune]'"),
    ("convert", "ROOT output (uproot) needs the optional extra: pip install 'hepgen[root]'"),
])
def test_an_extras_command_stops_with_one_line_naming_the_extra(light_run, step, message):
    d, out = light_run
    assert out[step] == {"rc": 2, "err": f"hepgen: error: {message}\n"}
    output = {"simulate_jets": "j.h5", "simulate_events": "e.h5", "export": "m.onnx", "tune": "tune",
              "convert": "t.root"}[step]
    assert not (d / output).exists() and not list(d.glob(f".{output}*"))  # nothing left behind


def test_needs_extra_converts_only_the_extras_own_modules():
    with pytest.raises(MissingExtraError, match=r"^x needs the optional extra: pip install 'hepgen\[jets\]'$"):
        with needs_extra("jets", "x"):
            raise ModuleNotFoundError("No module named 'fastjet._swig'", name="fastjet._swig")
    with pytest.raises(ModuleNotFoundError, match="numpy_core_broken"):  # not the extra's: passes unchanged
        with needs_extra("jets", "x"):
            raise ModuleNotFoundError("No module named 'numpy_core_broken'", name="numpy_core_broken")
    with pytest.raises(ValueError, match=r"^unknown extra 'jet'; known: \['anomaly', "):
        missing_extra_message("x", "jet")
    with pytest.raises(MissingExtraError):
        require_extra("tune", "x", ("optuna", "no_such_module_anywhere"))
    require_extra("root", "x", ("json",))
    assert have("json") and not have("no_such_module_anywhere.sub")


def test_the_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    (everything,) = extras["all"]
    assert set(everything[len("hepgen["):-1].split(",")) == set(EXTRAS)  # all = every extra
    for extra in EXTRAS:
        assert extra in extras, extra
    core = " ".join(project["dependencies"]).lower()
    for mods in EXTRAS.values():
        for m in mods:
            assert m.replace("_", "-") not in core, f"{m} is in the core dependencies"
