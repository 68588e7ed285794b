"""The command line's run records and conventions: provenance (seed, versions, command line) in
every checkpoint, file and metrics.json; -v/-q/--log-file after the sub-command; out-of-range
warnings; impossible inputs; output locks."""

import json
import logging

import h5py
import numpy as np
import pytest
import torch

from hepgen._io import provenance, set_command_line, write_metrics
from hepgen.checkpoint import load_checkpoint
from hepgen.cli import main
from hepgen.config import TrainConfig, dump_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """300 training showers (5-20 GeV), a tiny flow trained on them for one epoch."""
    d = tmp_path_factory.mktemp("adopt")
    assert main(["simulate", "showers", "-o", str(d / "train.h5"), "--n", "300", "--seed", "4",
                 "--energy-range", "5000", "20000", "-q"]) == 0
    dump_config(TrainConfig(family="flow", model={"transforms": 2, "hidden_features": 16, "n_hidden": 1}, epochs=1,
                            batch_size=100, n_eval=50, tensorboard=False, threads=1, seed=11), d / "tiny.yaml")
    assert main(["train", str(d / "train.h5"), "-o", str(d / "run"), "--config", str(d / "tiny.yaml"), "-q"]) == 0
    return d


def _attr_provenance(path):
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["hepgen_provenance"])


# --- provenance -----------------------------------------------------------------------------


def test_provenance_records_seed_versions_and_command():
    set_command_line(["hepgen", "simulate", "showers", "-o", "a b.h5"])
    try:
        p = provenance(np.int64(5))
    finally:
        set_command_line(None)
    assert p == {"seed": 5, "command": "hepgen simulate showers -o 'a b.h5'", "hepgen_version": p["hepgen_version"],
                 "torch_version": torch.__version__, "numpy_version": np.__version__,
                 "python_version": p["python_version"]}
    import hepgen

    assert p["hepgen_version"] == hepgen.__version__


def test_train_sample_simulate_store_and_log_their_provenance(workdir, tmp_path, caplog):
    meta = load_checkpoint(workdir / "run" / "best.pt")["meta"]["provenance"]
    assert meta["seed"] == 11 and meta["torch_version"] == torch.__version__
    assert meta["command"].startswith("hepgen train ") and "tiny.yaml" in meta["command"]
    sim = _attr_provenance(workdir / "train.h5")
    assert sim["seed"] == 4 and "--seed 4" in sim["command"] and sim["numpy_version"] == np.__version__

    caplog.set_level(logging.INFO)
    out = tmp_path / "gen.h5"
    assert main(["sample", str(workdir / "run" / "best.pt"), "-o", str(out), "--n", "20", "--seed", "9", "-q"]) == 0
    gen = _attr_provenance(out)
    assert gen["seed"] == 9 and gen["command"].endswith(f"-o {out} --n 20 --seed 9 -q")
    # one log line with the seed, the versions and the command
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hepgen sample: seed 9;")]
    assert len(line) == 1 and f"torch {torch.__version__}" in line[0] and "command: hepgen sample" in line[0]


def test_metrics_json_carries_provenance(tmp_path):
    path = write_metrics({"seed": 3, "auc": float("nan")}, tmp_path / "metrics.json")
    m = json.loads(path.read_text())
    assert m["auc"] is None and m["provenance"]["seed"] == 3 and m["provenance"]["numpy_version"] == np.__version__


# --- -v / -q / --log-file after the sub-command -----------------------------------------------


@pytest.mark.parametrize("argv, verbose, quiet", [
    (["-v", "train", "x.h5", "-o", "r"], True, False),
    (["train", "x.h5", "-o", "r", "-v"], True, False),
    (["train", "x.h5", "-o", "r"], False, False),
    (["-q", "evaluate", "a.h5", "b.h5", "-o", "o"], False, True),
    (["evaluate", "a.h5", "b.h5", "-o", "o", "--quiet"], False, True),
    (["refine", "apply", "c.pt", "s.h5", "-o", "o", "--verbose"], True, False),
    (["info", "c.pt", "-q", "-v"], True, True),
])
def test_verbose_and_quiet_are_accepted_before_and_after_the_sub_command(argv, verbose, quiet):
    from hepgen.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_log_file_gets_the_log_and_the_error_line(workdir, tmp_path, capsys):
    log = tmp_path / "hepgen.log"
    assert main(["simulate", "showers", "-o", str(tmp_path / "s.h5"), "--n", "5", "--seed", "2", "-q",
                 "--log-file", str(log), "-v"]) == 0
    lines = log.read_text().splitlines()
    assert [line.split(" hepgen INFO: ")[1] for line in lines if " hepgen INFO: hepgen simulate: " in line] == [
        f"hepgen simulate: seed 2; hepgen {provenance()['hepgen_version']}, torch {torch.__version__}, numpy "
        f"{np.__version__}, Python {provenance()['python_version']}; command: hepgen simulate showers -o "
        f"{tmp_path / 's.h5'} --n 5 --seed 2 -q --log-file {log} -v"]
    n = len(lines)
    assert main(["sample", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "g.h5"), "--n", "3",
                 "--log-file", str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hepgen: error: ") and "missing.pt: checkpoint not found" in err
    new = log.read_text().splitlines()[n:]
    assert new[-1].endswith("hepgen ERROR: " + err)  # appended, ending with the reason
    assert not logging.getLogger().handlers or all(
        getattr(h, "baseFilename", None) != str(log) for h in logging.getLogger().handlers)  # handler removed


# --- conditions outside the training range, impossible values -------------------------------


def _warnings(caplog, text):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_sampling_outside_the_training_energy_range_warns_once_naming_the_range(workdir, tmp_path, caplog):
    ckpt = workdir / "run" / "best.pt"
    lo, hi = load_checkpoint(ckpt)["meta"]["energy_range"]
    assert 5000 <= lo < hi <= 20000
    caplog.set_level(logging.INFO)
    assert main(["sample", str(ckpt), "-o", str(tmp_path / "in.h5"), "--n", "30", "--energy-range", str(lo), str(hi),
                 "-q"]) == 0
    assert _warnings(caplog, "training range") == []
    # 3 chunks of 10, energies up to 10x the training maximum: one warning for the job
    assert main(["sample", str(ckpt), "-o", str(tmp_path / "out.h5"), "--n", "30", "--energies", f"{hi * 10}",
                 "--chunk-size", "10", "-q"]) == 0
    (msg,) = _warnings(caplog, "training range")
    assert msg.startswith(f"sampling outside the training range of incident_energies [{lo:.6g}, {hi:.6g}] MeV: "
                          "10 of 10 requested rows lie outside (first: row 0, [")
    assert "\n" not in msg


def _write_raw(path, energies, showers):
    with h5py.File(path, "w") as f:
        f["incident_energies"] = np.asarray(energies, dtype=np.float32).reshape(-1, 1)
        f["showers"] = np.asarray(showers, dtype=np.float32)


@pytest.mark.parametrize("bad, found", [(-5.0, "-5"), (np.nan, "nan")])
def test_impossible_incident_energies_are_one_line_errors_naming_file_key_and_row(workdir, tmp_path, capsys, bad,
                                                                                  found):
    e = np.full(6, 1e4)
    e[3] = bad
    _write_raw(tmp_path / "bad.h5", e, np.ones((6, 384)))
    out = tmp_path / "gen.h5"
    assert main(["sample", str(workdir / "run" / "best.pt"), "-o", str(out), "--conditions-from",
                 str(tmp_path / "bad.h5"), "-q"]) == 2
    assert main(["train", str(tmp_path / "bad.h5"), "-o", str(tmp_path / "run"), "-q"]) == 2
    errs = capsys.readouterr().err.strip().splitlines()[-2:]
    for err in errs:
        assert err.startswith(f"hepgen: error: {tmp_path / 'bad.h5'}: key 'incident_energies': ")
        assert "row 3" in err and found in err.lower() and "np.float" not in err
    assert not out.exists() and not (tmp_path / "run" / "last.pt").exists()


def test_showers_depositing_far_more_than_their_incident_energy_warn_with_count_and_first_row(tmp_path, caplog):
    from hepgen.data.formats import read_showers

    showers = np.full((5, 384), 1e4 / 384 * 0.5)  # E_dep / E_inc = 0.5
    showers[[2, 4]] *= 1e30
    _write_raw(tmp_path / "hot.h5", np.full(5, 1e4), showers)
    caplog.set_level(logging.INFO)
    read_showers(tmp_path / "hot.h5")
    (msg,) = _warnings(caplog, "incident energy")
    assert msg.startswith(f"{tmp_path / 'hot.h5'}: key 'showers': 2 of 5 showers deposit more than 2 x their "
                          "incident energy (first at row 2: E_dep / E_inc = 5e+29, E_dep = 5e+33 MeV, E_inc = 10000 MeV)")


# --- output locks -----------------------------------------------------------------------------


def test_a_second_writer_of_the_same_output_is_refused_and_a_dead_writers_lock_taken_over(workdir, tmp_path,
                                                                                          capsys):
    import os
    import socket
    import subprocess

    out = tmp_path / "gen.h5"
    lock = tmp_path / "gen.h5.lock"
    live = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(f"{live.pid} {socket.gethostname()}")
        argv = ["sample", str(workdir / "run" / "best.pt"), "-o", str(out), "--n", "5", "-q"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"hepgen: error: {out}: another process (pid {live.pid}) is writing this output; wait for "
                       f"it, or delete {lock} if it is gone")
        assert not out.exists() and lock.read_text().startswith(str(live.pid))  # the holder's lock is kept
    finally:
        live.kill()
        live.wait()
    # the holder died without cleaning up (kill -9): its lock is stale and taken over
    assert main(argv) == 0
    assert out.exists() and not lock.exists()  # and released at the end
    # a training run folder is locked the same way
    lock = tmp_path / "run.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()}")
    assert main(["train", str(workdir / "train.h5"), "-o", str(tmp_path / "run"), "-q"]) == 2
    assert "run: another process" in capsys.readouterr().err and not (tmp_path / "run").exists()
    # a lock from another machine cannot be checked: respected
    lock.write_text("1 some-other-host")
    assert main(["train", str(workdir / "train.h5"), "-o", str(tmp_path / "run"), "-q"]) == 2
    assert "(pid 1 on some-other-host)" in capsys.readouterr().err


def test_tune_workers_share_their_output_folder_without_a_lock(tmp_path, monkeypatch):
    from hepgen import cli

    seen = {}

    def fake_tune(args):
        seen["lock"] = (tmp_path / "study.lock").exists()
        return 0

    monkeypatch.setattr(cli, "cmd_tune", fake_tune)
    assert main(["tune", "x.h5", "--space", "s.yaml", "-o", str(tmp_path / "study")]) == 0
    assert seen == {"lock": False}
