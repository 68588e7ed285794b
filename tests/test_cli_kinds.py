"""The command line of the newer kinds and tools: refine, quantum table, l1 train + evaluate-anomaly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepgen.cli import main
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import CylindricalBinning
from hepgen.data.l1 import write_l1
from hepgen.simulate.calorimeter import simulate_dataset

GEOMETRY = CylindricalBinning.regular(2, [0.0, 10.0, 40.0], n_alpha=2)


def test_cli_refine_train_and_apply_keep_conditions(tmp_path, capsys):
    sim = simulate_dataset(200, geometry=GEOMETRY, energy_range=(2e3, 2e4), seed=1, progress=False)
    data = simulate_dataset(200, geometry=GEOMETRY, energy_range=(2e3, 2e4), seed=2, progress=False)
    data.showers *= 1.1
    write_showers(tmp_path / "sim.h5", sim)
    write_showers(tmp_path / "data.h5", data)
    assert main(["refine", "train", str(tmp_path / "sim.h5"), str(tmp_path / "data.h5"), "-o", str(tmp_path / "run"),
                 "--epochs", "1", "--hidden", "16", "--critic-hidden", "16", "-q"]) == 0
    assert f"wrote {tmp_path / 'run' / 'refiner.pt'}" in capsys.readouterr().out
    assert main(["refine", "apply", str(tmp_path / "run" / "refiner.pt"), str(tmp_path / "sim.h5"),
                 "-o", str(tmp_path / "refined.h5"), "--deterministic"]) == 0
    refined = read_showers(tmp_path / "refined.h5")
    np.testing.assert_array_equal(refined.incident_energies, sim.incident_energies)
    assert refined.showers.shape == sim.showers.shape and (refined.showers >= 0).all()
    assert refined.attrs["refined_from"] == str(tmp_path / "sim.h5")


def test_cli_quantum_table_runs_a_row(tmp_path, capsys):
    pytest.importorskip("pennylane")
    out = tmp_path / "qt"
    assert main(["quantum", "table", "--rows", "normal-1", "--seeds", "2", "--steps", "3", "--baselines", "none",
                 "--noise", "none", "-o", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert "normal-1" in json.dumps(res) and "normal" in capsys.readouterr().out
    assert main(["quantum", "table", "--baselines", "x", "-o", str(out)]) == 2
    assert "--baselines: expected depths like 1,2,3 or 'none', found 'x'" in capsys.readouterr().err


def test_cli_l1_train_and_evaluate_anomaly(tmp_path, capsys):
    from _toy_l1 import toy_anomaly, toy_background

    write_l1(tmp_path / "bkg.h5", toy_background(400, seed=0))
    write_l1(tmp_path / "test.h5", toy_background(300, seed=1))
    write_l1(tmp_path / "sig.h5", toy_anomaly())
    assert main(["train", str(tmp_path / "bkg.h5"), "-o", str(tmp_path / "run"), "--family", "l1_ae",
                 "--epochs", "2", "-q"]) == 0
    assert "trained l1_ae on 400 l1" in capsys.readouterr().out
    assert main(["evaluate-anomaly", str(tmp_path / "run" / "best.pt"), str(tmp_path / "test.h5"),
                 str(tmp_path / "sig.h5"), "-o", str(tmp_path / "ev"), "--bootstrap", "5"]) == 0
    stored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    printed = json.loads(capsys.readouterr().out.split("metrics:")[0])
    assert printed == {s: {sig: round(r["auc"], 4) for sig, r in e["signals"].items()}
                       for s, e in stored["scores"].items()}
    # l1 files go to evaluate-anomaly, and the generic evaluate says so
    assert main(["evaluate", str(tmp_path / "test.h5"), str(tmp_path / "sig.h5"), "-o", str(tmp_path / "ev2")]) == 2
    assert "l1 files are evaluated against a trained detector: hepgen evaluate-anomaly" in capsys.readouterr().err


def test_cli_simulators_share_the_chunked_job_options_and_refuse_bad_requests(tmp_path, capsys):
    from hepgen.cli import build_parser

    parser = build_parser()
    for argv, chunk in ((["simulate", "events", "--process", "qcd"], 200), (["simulate", "tth", "--process", "tth"], 250),
                        (["simulate", "l1"], 500), (["simulate", "jets"], 1000)):
        args = parser.parse_args([*argv, "-o", "x.h5"])
        assert (args.workers, args.chunk_size, args.seed, args.resume, args.quiet) == (1, chunk, 0, True, False)
    # an unphysical mass point is refused before any event is generated
    assert main(["simulate", "events", "--process", "signal", "--masses", "1000:1200", "--n", "2", "-q",
                 "-o", str(tmp_path / "e.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hepgen: error:") and "1200" in err and not (tmp_path / "e.h5").exists()
