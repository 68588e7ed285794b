"""Pythia 8 + FastJet jet samples: physics sanity, JetNet conventions, parallel chunks, resume, CLI."""

import json

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from hepgen.cli import main
from hepgen.data.jets import JET_TYPES, read_jets
from hepgen.metrics.jets import jet_mass
from hepgen.simulate import pythia as pj
from hepgen.simulate.pythia import (
    JetGenConfig,
    chunk_seed,
    generate_jets,
    pythia_settings,
    simulate_jets,
)

N = 150  # jets per type: a few seconds each


@pytest.fixture(scope="module")
def samples():
    return {t: generate_jets(t, N, seed=chunk_seed(11, JET_TYPES.index(t), 0)) for t in ("g", "t")}


@pytest.mark.parametrize("t", ["g", "t"])
def test_cuts_sorting_masks(samples, t):
    d = samples[t]
    cfg = JetGenConfig()
    assert len(d) == N and set(d.jet_type) == {JET_TYPES.index(t)}
    pt, eta, mass, k = d.jet_features.T
    assert np.all((pt > cfg.jet_pt_range[0]) & (pt < cfg.jet_pt_range[1])) and np.all(np.abs(eta) < cfg.max_abs_eta)
    assert np.all(mass > 0) and np.all(k == np.round(k))
    pf, m = d.particle_features, d.mask
    # masks: the first min(k, P) slots are real, the rest zero padding
    np.testing.assert_array_equal(m.sum(axis=1), np.minimum(k, d.n_particles))
    np.testing.assert_array_equal(m, np.arange(d.n_particles)[None, :] < m.sum(axis=1)[:, None])
    assert np.all(pf[~m] == 0)
    # constituents sorted by pT, relative coordinates in range, pT fractions of the whole jet
    ptrel = pf[..., 2]
    assert np.all(np.diff(ptrel, axis=1) <= 0)
    assert np.all(np.abs(pf[..., 1]) <= np.pi)
    # Σ pT_i >= |Σ pT_i vectors| = pT_jet, equal for collinear constituents: slightly above 1 at most
    assert np.all(ptrel.sum(axis=1) < 1.05) and 0.6 < np.median(ptrel.sum(axis=1)) < 1.0
    # the pT-weighted centre of the constituents is the jet axis (small offset: only P of them)
    w = ptrel / ptrel.sum(axis=1, keepdims=True)
    assert np.median(np.abs((w * pf[..., 0]).sum(axis=1))) < 0.02
    assert np.median(np.hypot(pf[..., 0], pf[..., 1])[m]) < 0.3  # collimated: most within ΔR < 0.3


def test_top_mass_peak_and_substructure(samples):
    from hepgen.metrics.jets import jet_observables

    top, glu = samples["t"], samples["g"]
    m = top.jet_features[:, 2]
    hist, edges = np.histogram(m, bins=np.arange(0, 400, 20))
    peak = 0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1])
    assert 150 <= peak <= 200, f"top-jet mass peak at {peak} GeV"
    assert np.median(m) > np.median(glu.jet_features[:, 2]) + 40
    # three-prong tops have smaller τ32 than gluon jets, and more constituents than light quarks would
    assert np.nanmedian(jet_observables(top.particle_features)["tau32"]) < \
        np.nanmedian(jet_observables(glu.particle_features)["tau32"])
    # the relative mass of the stored constituents tracks the full jet mass / pT
    rel = jet_observables(top.particle_features)["mass_rel"]
    full = top.jet_features[:, 2] / top.jet_features[:, 0]
    assert np.corrcoef(rel, full)[0, 1] > 0.8


def test_settings_and_seeds():
    lines = pythia_settings("top", 5)
    assert "Top:gg2ttbar = on" in lines and "24:onIfAny = 1 2 3 4 5" in lines
    assert "PhaseSpace:pTHatMin = 990" in lines and "Random:seed = 5" in lines
    s = {chunk_seed(0, t, c) for t in range(5) for c in range(20)}
    assert len(s) == 100 and all(1 <= x <= 900_000_000 for x in s)
    with pytest.raises(ValueError, match="jet type 'higgs'"):
        pythia_settings("higgs", 1)
    with pytest.raises(ValueError, match="jet_pt_range"):
        JetGenConfig(jet_pt_range=(1000, 900))


def test_parallel_chunks_resume_and_determinism(tmp_path, monkeypatch):
    cfg = JetGenConfig(n_particles=10, events_per_batch=20)
    out1 = tmp_path / "par.h5"
    d1 = simulate_jets(out1, ["w"], 40, seed=3, config=cfg, workers=2, chunk_size=20, progress=False)
    assert len(d1) == 40 and d1.n_particles == 10 and not (tmp_path / ".par.h5.chunks").exists()
    assert read_jets(out1).attrs["jet_types"] == "w"
    # an interrupted run left chunk 0: only chunk 1 is generated again, and the result is identical
    out2 = tmp_path / "res.h5"
    chunk_dir = tmp_path / ".res.h5.chunks"
    chunk_dir.mkdir()
    pj._run_chunk({"type": "w", "n": 20, "seed": chunk_seed(3, 3, 0), "config": cfg.to_dict(),
                   "path": str(chunk_dir / "w_00000.h5")})
    cpu = [read_jets(chunk_dir / "w_00000.h5").attrs["process_seconds"]]
    calls = []
    real_run = pj._run_chunk

    def recorded(task):
        calls.append(task["path"])
        out = real_run(task)
        cpu.append(read_jets(task["path"]).attrs["process_seconds"])
        return out

    monkeypatch.setattr(pj, "_run_chunk", recorded)
    d2 = simulate_jets(out2, ["w"], 40, seed=3, config=cfg, workers=1, chunk_size=20, progress=False)
    assert [p.split("/")[-1] for p in calls] == ["w_00001.h5"]
    # the merged file's CPU time is its chunks' (each > 0), whichever run made them
    assert min(cpu) > 0 and d2.attrs["process_seconds"] == pytest.approx(sum(cpu), rel=1e-12)
    np.testing.assert_array_equal(d1.particle_features, d2.particle_features)
    np.testing.assert_array_equal(d1.jet_features, d2.jet_features)
    # chunks of other settings are not mixed in
    chunk_dir.mkdir()
    (chunk_dir / "manifest.json").write_text(json.dumps({"seed": 99}))
    with pytest.raises(ValueError, match="other settings"):
        simulate_jets(out2, ["w"], 40, seed=3, config=cfg, chunk_size=20, progress=False)


def test_cli_simulate_and_evaluate(tmp_path, capsys):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for path, seed in ((a, 1), (b, 2)):
        rc = main(["simulate", "jets", "--type", "z", "--n", "30", "--n-particles", "12", "--chunk-size", "30",
                   "--seed", str(seed), "-q", "-o", str(path)])
        assert rc == 0
    assert "wrote 30 jets (z; 12 particles each)" in capsys.readouterr().out
    d = read_jets(a)
    assert len(d) == 30 and set(d.jet_type) == {JET_TYPES.index("z")}
    assert 60 < np.median(d.jet_features[:, 2]) < 130  # Z-jet mass
    rc = main(["evaluate-jets", str(a), str(b), "--real-reference", str(a), "--no-efp", "--num-eval-samples",
               "20000", "--num-batches", "2", "-o", str(tmp_path / "ev")])
    assert rc == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())["types"]["z"]
    # the second reference is the reference itself: its floor is exactly 0; the other sample's W1
    # (20k draws with replacement per batch) is the W1 of the two 30-jet mass samples
    exact = wasserstein_distance(jet_mass(d.particle_features), jet_mass(read_jets(b).particle_features))
    assert m["w1m"]["floor"] == 0.0 and m["w1m"]["value"] == pytest.approx(exact, rel=0.1)
    assert (tmp_path / "ev" / "report.html").exists()
    rc = main(["evaluate-jets", str(a), str(tmp_path / "missing.h5"), "-o", str(tmp_path / "ev2")])
    assert rc == 2 and "missing.h5: file not found" in capsys.readouterr().err
