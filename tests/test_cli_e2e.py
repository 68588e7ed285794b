"""End-to-end: the ``hepgen`` command on a tiny dataset, asserting on files and metric ranges."""

import json

import h5py
import numpy as np
import pytest
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.cli import main
from hepgen.data.formats import read_showers, write_showers
from hepgen.data.geometry import load_geometry
from hepgen.data.stream import file_sha256
from hepgen.models import build_model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    common = ["--energy-range", "2000", "50000", "-q"]
    assert main(["simulate", "showers", "-o", str(d / "train.h5"), "--n", "1500", "--seed", "1",
                 "--write-binning", str(d / "binning.xml"), *common]) == 0
    assert main(["simulate", "showers", "-o", str(d / "test.h5"), "--n", "1500", "--seed", "2", *common]) == 0
    assert main(["simulate", "showers", "-o", str(d / "test2.h5"), "--n", "1500", "--seed", "3", *common]) == 0
    return d


def test_simulate_writes_calochallenge_layout(workdir):
    with h5py.File(workdir / "train.h5", "r") as f:
        assert f["showers"].shape == (1500, 384)
        assert f["incident_energies"].shape == (1500, 1)
        e = f["incident_energies"][:, 0]
    assert 2000 <= e.min() and e.max() <= 50000
    assert load_geometry(workdir / "binning.xml").n_voxels == 384


def test_train_resume_sample_evaluate(workdir, capsys):
    run = workdir / "run"
    assert main(["train", str(workdir / "train.h5"), "-o", str(run), "--epochs", "1", "--seed", "0", "-q"]) == 0
    assert main(["train", str(workdir / "train.h5"), "-o", str(run), "--epochs", "3", "--resume", "-q"]) == 0
    log = (run / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3"]  # resumed, not restarted
    for name in ("best.pt", "last.pt", "config.yaml"):
        assert (run / name).is_file()

    gen_path = workdir / "gen.h5"
    assert main(["sample", str(run / "best.pt"), "-o", str(gen_path),
                 "--conditions-from", str(workdir / "test.h5"), "-q"]) == 0
    real, gen = read_showers(workdir / "test.h5"), read_showers(gen_path)
    assert gen.showers.shape == real.showers.shape
    np.testing.assert_array_equal(gen.incident_energies, real.incident_energies)
    assert (gen.showers >= 0).all()
    # sampled totals stay in the physical range of the training data's response
    ratio = gen.showers.sum(axis=1) / gen.incident_energies[:, 0]
    assert np.median(ratio) == pytest.approx(np.median(real.showers.sum(1) / real.incident_energies[:, 0]), rel=0.3)

    assert main(["sample", str(run / "best.pt"), "-o", str(workdir / "gen_n.h5"), "--n", "50",
                 "--energies", "5000,20000", "-q"]) == 0
    assert set(np.unique(read_showers(workdir / "gen_n.h5").incident_energies)) <= {5000.0, 20000.0}

    out = workdir / "eval"
    capsys.readouterr()
    assert main(["evaluate", str(workdir / "test.h5"), str(gen_path), "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    printed = capsys.readouterr().out
    # the headline printed is metrics.json's: both AUCs and the mean separation power
    head = json.loads(printed[: printed.index("metrics:")])
    assert head == {"separation_power_mean": metrics["separation_power_mean"],
                    "auc_low_level": metrics["classifier"]["low_level"]["auc"],
                    "auc_high_level": metrics["classifier"]["high_level"]["auc"]}
    sep = metrics["separation_power"]
    assert metrics["separation_power_mean"] == pytest.approx(np.mean(list(sep.values())), rel=1e-12)
    assert "E_tot_over_E_inc" in metrics["separation_power"]
    html = (out / "report.html").read_text()
    assert "separation" in html.lower()
    assert "report.html" in printed


def test_auc_real_vs_itself_is_half_and_broken_is_one(workdir):
    out = workdir / "eval_same"
    assert main(["evaluate", str(workdir / "test.h5"), str(workdir / "test2.h5"), "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["classifier"]["high_level"]["auc"] == pytest.approx(0.5, abs=0.06)
    assert m["classifier"]["low_level"]["auc"] == pytest.approx(0.5, abs=0.06)
    assert m["separation_power_mean"] < 0.05

    broken = read_showers(workdir / "test2.h5")
    layers = broken.geometry.layer_slices
    moved = broken.showers.copy()
    moved[:, layers[-1]] += moved[:, layers[0]]  # first layer's energy dumped into the last one
    moved[:, layers[0]] = 0.0
    broken.showers = moved
    write_showers(workdir / "broken.h5", broken)
    out = workdir / "eval_broken"
    assert main(["evaluate", str(workdir / "test.h5"), str(workdir / "broken.h5"), "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["classifier"]["high_level"]["auc"] > 0.95
    assert m["classifier"]["low_level"]["auc"] > 0.95


def test_cli_reports_bad_input_without_traceback(workdir, capsys):
    assert main(["evaluate", str(workdir / "nope.h5"), str(workdir / "test.h5"), "-o", str(workdir / "x")]) == 2
    err = capsys.readouterr().err
    assert "nope.h5" in err and "Traceback" not in err
    (workdir / "bad.h5").write_bytes(b"not hdf5 at all")
    assert main(["train", str(workdir / "bad.h5"), "-o", str(workdir / "r2"), "-q"]) == 2
    assert "bad.h5" in capsys.readouterr().err


def test_angle_conditioned_training_and_sampling(tmp_path):
    data = tmp_path / "theta.h5"
    assert main(["simulate", "showers", "-o", str(data), "--n", "400", "--theta-range", "0.0", "0.4",
                 "--energy-range", "5000", "20000", "-q"]) == 0
    assert read_showers(data).conditions["incident_theta"].shape == (400, 1)
    run = tmp_path / "run"
    assert main(["train", str(data), "-o", str(run), "--epochs", "1", "--conditions", "incident_theta", "-q"]) == 0
    out = tmp_path / "gen.h5"
    assert main(["sample", str(run / "best.pt"), "-o", str(out), "--n", "64", "-q"]) == 0
    gen = read_showers(out)
    theta = gen.conditions["incident_theta"][:, 0]
    assert theta.shape == (64,) and 0.0 <= theta.min() and theta.max() <= 0.4
    e = gen.incident_energies[:, 0]
    assert 5000 * 0.999 <= e.min() and e.max() <= 20000 * 1.001  # the training range, from the checkpoint
    assert gen.attrs["seed"] == 0 and str(run / "best.pt") in gen.attrs["checkpoint"]


def test_init_from_fine_tunes_and_rejects_a_mismatched_checkpoint(workdir, tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["train", str(workdir / "train.h5"), "-o", str(base), "--epochs", "1", "-q"]) == 0
    tuned = tmp_path / "tuned"
    assert main(["train", str(workdir / "train.h5"), "-o", str(tuned), "--epochs", "1", "--lr", "0",
                 "--init-from", str(base / "best.pt"), "-q"]) == 0
    # with a zero learning rate the fine-tuned weights are exactly the loaded ones ...
    start, tuned_w = load_checkpoint(base / "best.pt")["model"], load_checkpoint(tuned / "last.pt")["model"]
    assert start.keys() == tuned_w.keys() and all(torch.equal(start[k], tuned_w[k]) for k in start)
    # ... which are not what the same seed initialises without --init-from
    fresh = tmp_path / "fresh"
    assert main(["train", str(workdir / "train.h5"), "-o", str(fresh), "--epochs", "1", "--lr", "0", "-q"]) == 0
    fresh_w = load_checkpoint(fresh / "last.pt")["model"]
    assert any(not torch.equal(start[k], fresh_w[k]) for k in start)
    # a checkpoint of another architecture: a clear error naming the file, not a traceback
    cfg = tmp_path / "small.yaml"
    cfg.write_text("model: {transforms: 2, hidden_features: 32}\nepochs: 1\n")
    capsys.readouterr()
    assert main(["train", str(workdir / "train.h5"), "-o", str(tmp_path / "bad"), "--config", str(cfg),
                 "--init-from", str(base / "best.pt"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "best.pt: key 'model': expected weights of a flow model" in err and "Traceback" not in err


def test_geant4_options_are_refused_by_the_gflash_engine(tmp_path, capsys):
    rc = main(["simulate", "showers", "-o", str(tmp_path / "a.h5"), "--n", "5", "--preset", "ds2", "--workers", "2"])
    assert rc == 2 and not (tmp_path / "a.h5").exists()
    assert "--preset, --workers: options of --engine geant4 (the gflash engine takes none of them)" in \
        capsys.readouterr().err


def test_preset_set_overrides_and_the_model_card(workdir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(workdir / "train.h5"), "-o", str(run), "--preset", "vae", "--set", "epochs=1",
                 "--set", "model.latent_dim=4", "--set", "threads=1", "--set", "tensorboard=false", "-q"]) == 0
    payload = load_checkpoint(run / "best.pt")
    assert payload["family"] == "vae" and payload["hparams"]["latent_dim"] == 4
    assert payload["meta"]["train_config"]["epochs"] == 1
    capsys.readouterr()
    assert main(["info", str(run / "best.pt")]) == 0
    card = json.loads(capsys.readouterr().out)
    model = build_model(payload["family"], **payload["hparams"])
    assert card["kind"] == "showers" and card["family"] == "vae" and card["hparams"]["latent_dim"] == 4
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["training_data"]["train_file"] == str(workdir / "train.h5")
    assert card["training_data"]["train_file_sha256"] == file_sha256(workdir / "train.h5")
    assert card["training_data"]["energy_range"] == [float(read_showers(workdir / "train.h5").incident_energies.min()),
                                                     float(read_showers(workdir / "train.h5").incident_energies.max())]
    # bad overrides are one-line usage errors
    assert main(["train", str(workdir / "train.h5"), "-o", str(tmp_path / "x"), "--set", "epoch=1"]) == 2
    assert "--set epoch=1: unknown TrainConfig key 'epoch'" in capsys.readouterr().err
    assert main(["train", str(workdir / "train.h5"), "-o", str(tmp_path / "x"), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_exit_codes_for_interrupt_and_unexpected_errors(workdir, tmp_path, monkeypatch, capsys):
    import hepgen.simulate.calorimeter as calorimeter

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(calorimeter, "simulate_dataset", interrupted)
    assert main(["simulate", "showers", "-o", str(tmp_path / "a.h5"), "--n", "5"]) == 130
    assert capsys.readouterr().err == "hepgen: interrupted\n" and not (tmp_path / "a.h5").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("kaputt\nsecond line")

    monkeypatch.setattr(calorimeter, "simulate_dataset", broken)
    assert main(["simulate", "showers", "-o", str(tmp_path / "a.h5"), "--n", "5"]) == 1
    assert capsys.readouterr().err == ("hepgen: unexpected error: RuntimeError: kaputt "
                                       "(rerun with -v for the traceback)\n")
    with pytest.raises(RuntimeError, match="kaputt"):
        main(["-v", "simulate", "showers", "-o", str(tmp_path / "a.h5"), "--n", "5"])


def test_plain_train_uses_the_caloflow_preset_and_family_uses_its_preset(workdir, tmp_path, monkeypatch):
    import types

    import hepgen.train.trainer as trainer
    from hepgen.config import preset

    seen = []

    def fake_train(data, config, output, **kwargs):
        seen.append(config)
        return types.SimpleNamespace(model=types.SimpleNamespace(family=config.family))

    monkeypatch.setattr(trainer, "train", fake_train)
    data = str(workdir / "train.h5")
    assert main(["train", data, "-o", str(tmp_path / "a"), "-q"]) == 0
    assert main(["train", data, "-o", str(tmp_path / "b"), "--family", "gan", "--epochs", "2", "-q"]) == 0
    assert main(["train", data, "-o", str(tmp_path / "c"), "--family", "flow", "-q"]) == 0
    assert main(["train", data, "-o", str(tmp_path / "d"), "--preset", "vae", "--family", "vae",
                 "--set", "model.latent_dim=3", "-q"]) == 0
    plain, gan, flow, vae = seen
    assert plain == preset("caloflow")
    assert gan.family == "gan" and gan.model == preset("gan").model and gan.epochs == 2
    assert flow.family == "flow" and flow.model == {}          # no flow preset: the code defaults
    assert vae.model == {**preset("vae").model, "latent_dim": 3}
