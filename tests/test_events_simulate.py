"""Pythia 8 event images: bad inputs refused before generation, a tiny grid, pile-up, resumption."""

import numpy as np
import pytest

from hepgen.data.events import PROCESSES, read_events
from hepgen.simulate import events as ev
from hepgen.simulate.chunks import chunk_seed
from hepgen.simulate.events import EventGenConfig, check_request, generate_events, simulate_events

SMALL = EventGenConfig(events_per_batch=5)


@pytest.mark.parametrize("args, message", [
    (("signal", [(800.0, 900.0)], 0.0), ("masses: the neutralino must be lighter than the gluino, found "
                                         "m_gluino=800 GeV, m_neutralino=900 GeV")),
    (("signal", [(800.0, 800.0)], 0.0), "the neutralino must be lighter than the gluino"),
    (("signal", None, 0.0), r"masses: process 'signal' needs at least one \(m_gluino, m_neutralino\) point"),
    (("signal", [(7000.0, 100.0)], 0.0), "a gluino pair needs 2 m_gluino < ecm=13000 GeV, found m_gluino=7000 GeV"),
    (("qcd", None, -1.0), "mu: expected a finite pile-up mean >= 0, found -1.0"),
    (("minbias", None, 2.5), "mu: pileup='fixed' overlays exactly mu events, expected an integer, found 2.5"),
    (("ttbar", None, 0.0), r"process: expected one of \['signal', 'qcd', 'minbias'\], found 'ttbar'"),
    (("qcd", [(1000.0, 100.0)], 0.0), "masses: process 'qcd' has no SUSY masses"),
])
def test_bad_inputs_fail_before_generation(args, message, tmp_path, monkeypatch):
    def boom(*a, **k):  # no Pythia instance may be made
        raise AssertionError("Pythia was started")

    monkeypatch.setattr(ev, "_make_pythia", boom)
    with pytest.raises(ValueError, match=message):
        check_request(*args)
    with pytest.raises(ValueError, match=message):
        simulate_events(tmp_path / "x.h5", args[0], 2, masses=args[1], mu=args[2], progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_signal_grid_in_one_call_is_seeded_and_resumable(tmp_path):
    out = tmp_path / "sig.h5"
    grid = [(1000.0, 300.0), (1400.0, 600.0)]
    d = simulate_events(out, "signal", 2, masses=grid, seed=4, config=SMALL, chunk_size=2, progress=False)
    assert len(d) == 4 and d.images.shape == (4, 1, 64, 64)
    np.testing.assert_array_equal(d.conditions[:, :2], np.repeat(grid, 2, axis=0))
    assert (d.process == PROCESSES.index("signal")).all()
    r = read_events(out)
    np.testing.assert_array_equal(r.images, d.images)
    # ten hard quarks at ~TeV: every event deposits well above a TeV and has a truth jet > 200 GeV
    assert (d.images.sum(axis=(1, 2, 3)) > 1000).all()
    assert (d.truth_jets[:, 0, 0] > 200).all()
    assert r.attrs["n_hard_events"] == 4
    # an interrupted run keeps its finished chunk and a re-run generates only the other one,
    # giving the same file as the uninterrupted run (seeds per chunk, not per worker)
    calls = []
    real_generate = ev.generate_events

    def flaky(*a, **k):
        calls.append(a[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        made = real_generate(*a, **k)
        cpu.append(made.attrs["process_seconds"])
        return made

    cpu = []

    out2 = tmp_path / "sig2.h5"
    ev.generate_events = flaky
    try:
        with pytest.raises(KeyboardInterrupt):
            simulate_events(out2, "signal", 2, masses=grid, seed=4, config=SMALL, chunk_size=2, progress=False)
        assert len(list(ev.chunk_dir_for(out2).glob("p*.h5"))) == 1 and not out2.exists()
        again = simulate_events(out2, "signal", 2, masses=grid, seed=4, config=SMALL, chunk_size=2, progress=False)
    finally:
        ev.generate_events = real_generate
    assert len(calls) == 3  # 2 in the interrupted run, 1 in the resumed one
    np.testing.assert_array_equal(again.images, d.images)
    # the CPU time of the two chunks that made the file (one per run), summed; the wall time beside it
    assert len(cpu) == 2 and min(cpu) > 0
    assert again.attrs["process_seconds"] == pytest.approx(sum(cpu), rel=1e-12)
    assert again.attrs["cpu_seconds"] > 0 and "seconds" not in again.attrs
    assert not ev.chunk_dir_for(out2).exists()


def test_pileup_images_sum_n_minbias_events_and_overlay():
    pu = generate_events("minbias", 3, seed=11, config=SMALL, mu=4)
    assert pu.attrs["n_minbias_events"] == 12 and pu.attrs["n_hard_events"] == 0
    assert (pu.process == PROCESSES.index("pileup")).all() and (pu.conditions[:, 2] == 4).all()
    poisson = generate_events("minbias", 4, seed=11, config=SMALL, mu=3.0, pileup="poisson")
    n_drawn = np.random.default_rng(chunk_seed(11, 2)).poisson(3.0, 4)  # the detector stream draws N first
    assert poisson.attrs["n_minbias_events"] == n_drawn.sum()
    # additivity: without smearing/thresholds, hard + pile-up through the detector = sum of the images
    exact = EventGenConfig(events_per_batch=5, detector={"smear": False, "ecal_energy_min": 0,
                                                       "hcal_energy_min": 0, "significance_min": 0})
    hard = generate_events("qcd", 2, seed=5, config=exact)
    both = generate_events("qcd", 2, seed=5, config=exact, mu=3)
    alone = generate_events("minbias", 2, seed=5, config=exact, mu=3)
    np.testing.assert_allclose(both.images, hard.images + alone.images, rtol=1e-5, atol=1e-4)
    assert both.images.sum() > hard.images.sum()
