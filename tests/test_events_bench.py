"""benchmarks/bench_events.py helpers and the overlay numbers from observables: ``overlay_shift_observables``,
the ``overlay`` command (several stored generators on one external evaluation set), the interpolation-grid
options (mass-point parsing, cached-file names and sizes), ``figure3`` and the symmetry augmentation."""

import argparse
import doctest
import json

import numpy as np
import pytest
import torch
from scipy import stats

from _benchmarks import load_benchmark
from _toy_events import toy_events, untrained_dcgan
from hepgen.checkpoint import load_checkpoint
from hepgen.data.events import EventImages, write_events
from hepgen.domains.events import DOMAIN, EventEnsemble, overlay_shift
from hepgen.domains.events.evaluate import overlay_shift_observables
from hepgen.metrics.event_jets import event_observables
from hepgen.models.dcgan import EventDCGAN

bench = load_benchmark("bench_events")


def test_overlay_shift_observables_hand_case():
    # n_jets: real overlay adds 1 jet to every event; generated adds 1, 2, 0 → same mean shift (+1),
    # difference 0; per-event differences (0, 1, −1): std 1 (ddof 1) / √3 over the real shift 1
    o0 = {"n_jets": np.array([2.0, 3.0, 4.0]), "summed_mass": np.array([100.0, 200.0, 300.0])}
    o_r = {"n_jets": np.array([3.0, 4.0, 5.0]), "summed_mass": np.array([150.0, 250.0, 350.0])}
    o_g = {"n_jets": np.array([3.0, 5.0, 4.0]), "summed_mass": np.array([140.0, 240.0, 340.0])}
    r = overlay_shift_observables(o0, o_r, o_g)
    nj, sm = r["n_jets"], r["summed_mass"]
    assert nj["shift_real"] == pytest.approx(1.0) and nj["shift_gen"] == pytest.approx(1.0)
    assert nj["shift_rel_diff"] == pytest.approx(0.0, abs=1e-12)
    assert nj["shift_rel_diff_err"] == pytest.approx(1.0 / np.sqrt(3.0), rel=1e-12)
    assert nj["shift_gen_err"] == pytest.approx(1.0 / np.sqrt(3.0), rel=1e-12) and nj["shift_real_err"] == 0.0
    # summed mass: shifts +50 / +40 → −20 %; the overlaid means 250 vs 240 → −4 %
    assert sm["shift_rel_diff"] == pytest.approx(-0.2) and sm["shift_rel_diff_err"] == pytest.approx(0.0, abs=1e-12)
    assert sm["mean_rel_diff"] == pytest.approx(-0.04)
    with pytest.raises(ValueError, match="the generated overlay has 2 events, expected 3"):
        overlay_shift_observables(o0, o_r, {k: v[:2] for k, v in o_g.items()})


def test_overlay_shift_is_overlay_shift_observables_of_the_images():
    hard, pu_r, pu_g = toy_events(12, seed=1), toy_events(12, seed=2), toy_events(12, seed=3)
    o0 = event_observables(hard.images)
    a = overlay_shift(hard, pu_r, pu_g)
    b = overlay_shift_observables(o0, event_observables(hard.images + pu_r.images),
                                  event_observables(hard.images + pu_g.images))
    assert a == b and a["summed_mass"]["shift_real"] > 0


def _pileup_like(n, seed, mu=20.0):
    d = toy_events(n, seed=seed)
    d.conditions = np.tile([0.0, 0.0, mu], (n, 1))
    return d


def test_bench_overlay_matches_overlay_shift(tmp_path):
    hard, te = toy_events(10, seed=5), _pileup_like(12, seed=6)
    write_events(tmp_path / "hard.h5", hard)
    write_events(tmp_path / "pu.h5", te)
    gen = untrained_dcgan(te, ["mu"])
    gen.save(tmp_path / "g.pt")
    args = argparse.Namespace(hard=str(tmp_path / "hard.h5"), pileup_test=str(tmp_path / "pu.h5"), n_hard=0, mu=[20],
                              checkpoints=[str(tmp_path / "g.pt")], seed=7, target=5.0, figures=True,
                              workdir=str(tmp_path), tag="_t", chunk=2048, path="fp32",
                              select_members=False)
    bench.overlay(args)
    got = json.loads((tmp_path / "overlay_mu20_t.json").read_text())
    assert got["n"] == 10
    # independently: the stored generator's sample at the first 10 test conditions, overlay_shift on the images
    fake = DOMAIN.from_payload(load_checkpoint(tmp_path / "g.pt"), "g.pt").sample_like(te.subset(slice(0, 10)), seed=7)
    want = overlay_shift(hard, te.subset(slice(0, 10)), fake)
    res = got["results"][str(tmp_path / "g.pt")]
    assert set(res) == set(want) == {"n_jets", "summed_mass"}
    for k in want:
        assert res[k] == pytest.approx(want[k], rel=1e-9)
    assert (tmp_path / "overlay_mu20_g_t.png").stat().st_size > 1000
    # --path: the generators sample on that path (bf16 images differ from fp32's, the Pythia side does not)
    args.path, args.tag = "bf16", "_b"
    bench.overlay(args)
    got_b = json.loads((tmp_path / "overlay_mu20_b.json").read_text())
    fake_b = DOMAIN.from_payload(load_checkpoint(tmp_path / "g.pt"), "g.pt").sample_like(te.subset(slice(0, 10)), seed=7,
                                                                                          path="bf16")
    assert not np.array_equal(fake_b.images, fake.images) and got_b["path"] == "bf16"
    want_b = overlay_shift(hard, te.subset(slice(0, 10)), fake_b)
    for k in want_b:
        assert got_b["results"][str(tmp_path / "g.pt")][k] == pytest.approx(want_b[k], rel=1e-9)
    args.path = "fp32"
    args.mu = [50]
    with pytest.raises(ValueError, match=r"pu.h5 has mu \[20.0\], expected \[50\]"):
        bench.overlay(args)
    args.mu, args.n_hard = [20], 0
    write_events(tmp_path / "pu_small.h5", te.subset(slice(0, 4)))
    args.pileup_test = str(tmp_path / "pu_small.h5")
    with pytest.raises(ValueError, match="pu_small.h5 has 4 pile-up images, need >= 10"):
        bench.overlay(args)


def test_bench_overlay_joins_comma_separated_files(tmp_path):
    # two hard files and two pile-up files joined in order give exactly the overlay of the joined events:
    # overlay_shift on the concatenated images (written as one file by hepgen's writer, read back)
    hard, te = toy_events(10, seed=5), _pileup_like(10, seed=6)
    write_events(tmp_path / "h1.h5", hard.subset(slice(0, 4)))
    write_events(tmp_path / "h2.h5", hard.subset(slice(4, 10)))
    write_events(tmp_path / "p1.h5", te.subset(slice(0, 7)))
    write_events(tmp_path / "p2.h5", te.subset(slice(7, 10)))
    gen = untrained_dcgan(te, ["mu"])
    gen.save(tmp_path / "g.pt")
    args = argparse.Namespace(hard=f"{tmp_path / 'h1.h5'},{tmp_path / 'h2.h5'}",
                              pileup_test=f"{tmp_path / 'p1.h5'}, {tmp_path / 'p2.h5'}", n_hard=0, mu=[20],
                              checkpoints=[str(tmp_path / "g.pt")], seed=7, target=5.0, figures=False,
                              workdir=str(tmp_path), tag="_j", chunk=2048, path="fp32",
                              select_members=False)
    bench.overlay(args)
    got = json.loads((tmp_path / "overlay_mu20_j.json").read_text())
    assert got["n"] == 10
    joined = bench._read_joined(args.pileup_test, "--pileup-test")
    np.testing.assert_array_equal(joined.images, te.images)
    np.testing.assert_array_equal(bench._read_joined(args.hard, "--hard").images, hard.images)
    fake = DOMAIN.from_payload(load_checkpoint(tmp_path / "g.pt"), "g.pt").sample_like(te, seed=7)
    want = overlay_shift(hard, te, fake)
    res = got["results"][str(tmp_path / "g.pt")]
    for k in want:
        assert res[k] == pytest.approx(want[k], rel=1e-9)
    assert res["summed_mass"]["shift_real"] > 0
    # files made with other settings are not joined
    other = te.subset(slice(7, 10))
    other.attrs["eta_max"] = 3.0
    write_events(tmp_path / "p3.h5", other)
    args.pileup_test = f"{tmp_path / 'p1.h5'},{tmp_path / 'p3.h5'}"
    with pytest.raises(ValueError, match=r"overlay --pileup-test: .*p3.h5 has attribute 'eta_max' 3.0, expected 2.5"):
        bench.overlay(args)
    # a recorded pile-up mode must agree; a file that does not record it (merged from chunks) still joins
    other.attrs.update(eta_max=2.5, pileup="poisson")
    write_events(tmp_path / "p4.h5", other)
    te.attrs["pileup"] = "fixed"
    write_events(tmp_path / "p5.h5", te.subset(slice(0, 7)))
    with pytest.raises(ValueError, match=r"p4.h5 has attribute 'pileup' 'poisson', expected 'fixed'"):
        bench._read_joined(f"{tmp_path / 'p5.h5'},{tmp_path / 'p4.h5'}", "--pileup-test")
    assert len(bench._read_joined(f"{tmp_path / 'p1.h5'},{tmp_path / 'p4.h5'}", "--pileup-test")) == 10


def test_bench_mass_points_and_interp_file_names(tmp_path, monkeypatch):
    assert bench._masses("1000:400, 1100:400") == [(1000.0, 400.0), (1100.0, 400.0)]
    for bad in ("1000", "1000:400:1", "a:b", ""):
        with pytest.raises(ValueError, match="mass points: expected 'm_gluino:m_neutralino"):
            bench._masses(bad)
    calls = []

    def fake_data(wd, name, n_per_point, masses, **kw):  # records the request, returns that many toy events
        calls.append((name, n_per_point, masses, kw["seed"]))
        return toy_events(n_per_point * len(masses), seed=0)

    monkeypatch.setattr(bench, "_data", fake_data)
    args = argparse.Namespace(train_masses="1000:400,1100:400,1300:400", heldout_mass="1200:400", n=4, n_val=2,
                              n_test=3, data_seed=201, workers=1)
    pts, held, train, val, test = bench._interp_data(tmp_path, args)
    assert pts == [(1000.0, 400.0), (1100.0, 400.0), (1300.0, 400.0)] and held == (1200.0, 400.0)
    assert (len(train), len(val), len(test)) == (12, 6, 3)
    assert [c[0] for c in calls] == ["interp_train_1000_400-1100_400-1300_400_n4_s201",
                                     "interp_val_1000_400-1100_400-1300_400_n2_s202", "interp_test_1200_400_n3_s203"]
    calls.clear()
    bench._interp_data(tmp_path, argparse.Namespace(train_masses="1000:400,1400:400", heldout_mass="1200:400", n=8,
                                                    n_val=None, n_test=None, data_seed=1, workers=1))
    assert [c[:2] for c in calls] == [("interp_train", 8), ("interp_val", 2), ("interp_test", 8)]  # the old names
    calls.clear()
    # --test-seed: fresh held-out files (own names and seeds), pooled; training and validation files unchanged
    *_, test = bench._interp_data(tmp_path, argparse.Namespace(**{**vars(args), "test_seed": [301, 302]}))
    assert [(c[0], c[3]) for c in calls] == [("interp_train_1000_400-1100_400-1300_400_n4_s201", 201),
                                             ("interp_val_1000_400-1100_400-1300_400_n2_s202", 202),
                                             ("interp_test_1200_400_n3_s301", 301),
                                             ("interp_test_1200_400_n3_s302", 302)]
    np.testing.assert_array_equal(test.images, np.concatenate([toy_events(3, seed=0).images] * 2))
    with pytest.raises(ValueError, match=r"--test-seed: expected different seeds .*found \[301, 301\]"):
        bench._interp_data(tmp_path, argparse.Namespace(**{**vars(args), "test_seed": [301, 301]}))
    args.heldout_mass = "1100:400"
    with pytest.raises(ValueError, match="is also a training point"):
        bench._interp_data(tmp_path, args)

    def short_data(wd, name, n_per_point, masses, **kw):  # a cached file of the wrong size
        return toy_events(max(n_per_point * len(masses) - 1, 1), seed=0)

    monkeypatch.setattr(bench, "_data", short_data)
    args.heldout_mass = "1200:400"
    with pytest.raises(ValueError, match="interp_train_1000_400-1100_400-1300_400_n4_s201.h5: expected 12 events, found 11"):
        bench._interp_data(tmp_path, args)


def _figure3_inputs(monkeypatch):
    """Validation events at two mass points, test events at the held-out one (``_interp_data`` patched to
    return them) and an untrained generator: what ``figure3`` draws from."""
    val = toy_events(8, masses=((1000.0, 400.0), (1400.0, 400.0)), seed=7)
    test = toy_events(4, masses=((1200.0, 400.0),), seed=8)
    monkeypatch.setattr(bench, "_interp_data", lambda wd, args: ([(1000.0, 400.0), (1400.0, 400.0)], (1200.0, 400.0),
                                                                   None, val, test))
    return val, test, untrained_dcgan(val)


def test_bench_figure3_table(tmp_path, monkeypatch, capsys):
    val, test, gen = _figure3_inputs(monkeypatch)
    (tmp_path / "run").mkdir()
    gen.save(tmp_path / "run" / "best.pt")
    bench.figure3(argparse.Namespace(workdir=str(tmp_path), tag="_t", checkpoints=[str(tmp_path / "run" / "best.pt")]))
    out = capsys.readouterr().out
    sm = event_observables(test.images)["summed_mass"]  # the held-out row's Pythia mean, by hand
    assert f"1200/400 (held out) n=4: Pythia 8 + detector: {sm.mean():.1f} ± {sm.std(ddof=1) / 2:.1f}" in out
    sm = event_observables(val.images[0::2])["summed_mass"]  # toy_events alternates the two points
    assert f"1000/400 n=4: Pythia 8 + detector: {sm.mean():.1f} ± {sm.std(ddof=1) / 2:.1f}; dcgan (run):" in out
    assert (tmp_path / "figure3_t.png").stat().st_size > 1000
    # four generators: all five curves in the table (the plot styles used to stop at three generators)
    cks = []
    for i in range(4):
        (tmp_path / f"run{i}").mkdir()
        cks.append(str(tmp_path / f"run{i}" / "best.pt"))
        gen.save(cks[-1])
    figs = []
    real_png = bench.figure_png_base64
    monkeypatch.setattr(bench, "figure_png_base64", lambda fig: figs.append(fig) or real_png(fig))
    bench.figure3(argparse.Namespace(workdir=str(tmp_path), tag="_t4", checkpoints=cks))
    out = capsys.readouterr().out
    assert all(out.count(f"dcgan (run{i}):") == 3 for i in range(4))  # 3 mass points × 4 generators
    assert len(figs[0].axes[0].containers) == 5  # Pythia + 4 error-bar curves drawn (three before: zip of 4 styles)
    with pytest.raises(ValueError, match="figure3 --checkpoints: expected at most 5 generators, found 6"):
        bench.figure3(argparse.Namespace(workdir=str(tmp_path), tag="_t6", checkpoints=cks + cks[:2]))


def test_bench_augment_is_phi_roll_and_eta_mirror():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((64, 2 * 5 * 8)).astype(np.float32))
    y = bench._augment(x, (2, 5, 8), torch.Generator().manual_seed(3))
    xi, yi = x.reshape(64, 2, 5, 8).numpy(), y.reshape(64, 2, 5, 8).numpy()
    flips = 0
    for a, b in zip(xi, yi):  # each output is one of the 2 × 8 symmetry images of its input, found by search
        found = [(k, f) for k in range(8) for f in (False, True)
                 if np.array_equal(b, np.roll(a[:, ::-1] if f else a, k, axis=2))]
        assert found, "augmented image is not a phi roll / eta mirror of the input"
        flips += found[0][1]
    assert 16 < flips < 48  # mirrored with probability 1/2 (64 images)
    assert not torch.equal(x, y)
    # roll then mirror commute with the sums: total per image unchanged
    assert torch.allclose(x.sum(1), y.sum(1), rtol=1e-6)


def test_bench_cosine_lr_closed_form():
    # lr · ½(1 + cos(π k / N)) by hand for N = 8: cos(π/4) = 0.70710678, cos(7π/8) = −0.92387953
    want = {0: 1e-3, 2: 0.85355339e-3, 4: 0.5e-3, 6: 0.14644661e-3, 7: 0.03806023e-3, 8: 0.0}
    for k, v in want.items():
        assert bench.cosine_lr(1e-3, k, 8) == pytest.approx(v, rel=1e-7, abs=1e-15)
    for k, n in ((-1, 8), (9, 8), (0, 0)):
        with pytest.raises(ValueError, match=f"found step {k}, n {n}"):
            bench.cosine_lr(1e-3, k, n)


def _count_steps(monkeypatch):
    calls = []
    inner = EventDCGAN.training_step

    def counted(self, x, c, optimizers, step, grad_clip, scaler=None):
        calls.append((step, {k: o.param_groups[0]["lr"] for k, o in optimizers.items()}))
        return inner(self, x, c, optimizers, step, grad_clip, scaler)

    monkeypatch.setattr(EventDCGAN, "training_step", counted)
    return calls


def test_bench_train_cosine_schedule_and_exact_steps(monkeypatch, capsys):
    calls = _count_steps(monkeypatch)
    data, val = toy_events(64, seed=11), toy_events(8, seed=12)  # batch 32: 2 steps per epoch, 8 steps = 4 epochs
    log = {}
    bench._train(data, val, "dcgan", [], 10.0, 3, 0, {"noise_dim": 8, "filters": 4}, lr=1e-3, steps=8,
                 lr_schedule="cosine", log=log)
    # exactly 8 optimiser steps (counted at the model), selection at 3, 6 and the end (8)
    assert [s for s, _ in calls] == list(range(8)) and log["steps"] == 8
    assert [s for s, _ in log["history"]] == [3, 6, 8]
    # the rates both GAN optimisers had during steps 0, 2, 4, 6, 7: the hand-worked cosine of N = 8
    want = {0: 1e-3, 2: 0.85355339e-3, 4: 0.5e-3, 6: 0.14644661e-3, 7: 0.03806023e-3}
    for k, v in want.items():
        assert set(calls[k][1]) == {"generator", "critic"}
        for name in ("generator", "critic"):
            assert calls[k][1][name] == pytest.approx(v, rel=1e-6)
        assert log["lr"][k] == calls[k]
    assert "lr (cosine, 8 steps) at step 0: 0.001, 3: 0.000691, 6: 0.000146, 7: 3.81e-05" in capsys.readouterr().out


def test_bench_train_steps_constant_and_bad_schedule(monkeypatch):
    calls = _count_steps(monkeypatch)
    data, val = toy_events(64, seed=11), toy_events(8, seed=12)
    log = {}
    bench._train(data, val, "dcgan", [], 10.0, 100, 0, {"noise_dim": 8, "filters": 4}, lr=1e-3, steps=5, log=log)
    assert len(calls) == 5 and log["steps"] == 5 and log["history"] == [(5, log["history"][0][1])]
    assert all(lr == {"generator": 1e-3, "critic": 1e-3} for _, lr in calls)  # the default schedule: constant
    with pytest.raises(ValueError, match="lr_schedule 'cosine' needs a step budget"):
        bench._train(data, val, "dcgan", [], 10.0, 3, 0, {}, lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule: expected 'constant' or 'cosine', found 'step'"):
        bench._train(data, val, "dcgan", [], 10.0, 3, 0, {}, steps=4, lr_schedule="step")
    with pytest.raises(ValueError, match="steps: expected a positive number of optimiser steps, found 0"):
        bench._train(data, val, "dcgan", [], 10.0, 3, 0, {}, steps=0)


def test_bench_figure3_distinct_labels_for_colliding_checkpoints(tmp_path, monkeypatch, capsys):
    assert bench.curve_labels(["r1/best.pt", "r2/best.pt"], ["dcgan", "dcgan"]) == ["dcgan (r1)", "dcgan (r2)"]
    assert bench.curve_labels(["a/run/best.pt", "b/run/best.pt"], ["dcgan", "events_fm"]) == \
        ["dcgan (run)", "events_fm (run)"]
    gen = _figure3_inputs(monkeypatch)[2]
    # two folders named "run" holding best.pt (the case that used to drop a curve), and a second file in one
    cks = [tmp_path / "a" / "run" / "best.pt", tmp_path / "b" / "run" / "best.pt", tmp_path / "a" / "run" / "last.pt"]
    for ck in cks:
        ck.parent.mkdir(parents=True, exist_ok=True)
        gen.save(ck)
    figs = []
    real_png = bench.figure_png_base64
    monkeypatch.setattr(bench, "figure_png_base64", lambda fig: figs.append(fig) or real_png(fig))
    bench.figure3(argparse.Namespace(workdir=str(tmp_path), tag="_labels", checkpoints=[str(c) for c in cks]))
    out = capsys.readouterr().out
    labels = ["dcgan (run/best) #1", "dcgan (run/best) #2", "dcgan (run/last)"]
    assert all(out.count(f"{label}:") == 3 for label in labels)  # 3 mass points each
    assert len(figs[0].axes[0].containers) == 4  # Pythia + all three generators drawn
    legend = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    assert sorted(legend) == sorted(["Pythia 8 + detector", *labels, "held out (m_gluino=1200 GeV)"])


def test_bench_threshold_from_data_is_the_smallest_pixel_in_feature_units(capsys):
    img = np.zeros((2, 1, 8, 8))
    img[0, 0, 1, 2], img[0, 0, 3, 3], img[1, 0, 5, 5] = 0.5, 10.0, 100.0  # smallest pixel 0.5 GeV, largest 100
    data = EventImages(img, [[1000.0, 400.0, 0.0], [1400.0, 400.0, 0.0]])
    t = bench._threshold_from_data(data, "dcgan", [])
    # worked by hand: log(1 + 0.5 / 1 GeV) / log(1 + 100 / 1 GeV) (the domain's log scaling, scale 1 GeV)
    assert t == pytest.approx(np.log(1.5) / np.log(101.0), rel=1e-6)
    assert "smallest training pixel 0.500 GeV -> output threshold 0.0879" in capsys.readouterr().out


def test_bench_standing_bn_stats_are_the_average_of_the_batch_statistics():
    torch.manual_seed(0)
    gan = EventDCGAN(16 * 16, 2, image_shape=[1, 16, 16], noise_dim=8, filters=4)
    g = gan.generator
    bn = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    c = torch.rand(50, 2)
    # 16 × 16: 3 transposed convolutions, 2 with batch norm
    assert bench.standing_bn_stats(g, c, 8, n_batches=3, batch=5, seed=4) == len(bn) == 2
    assert not g.training and all(m.momentum == 0.1 and int(m.num_batches_tracked) == 3 for m in bn)
    got = [(m.running_mean.clone(), m.running_var.clone()) for m in bn]
    # by hand: the same three batches, each batch-norm layer's input statistics averaged over them
    # (torch keeps the unbiased variance of each batch), the layers normalised with batch statistics
    inputs = {m: [] for m in bn}
    hooks = [m.register_forward_hook(lambda mod, i, o: inputs[mod].append(i[0])) for m in bn]
    gen = torch.Generator().manual_seed(4)
    g.train()
    with torch.no_grad():
        for _ in range(3):
            idx = torch.randint(0, 50, (5,), generator=gen)
            g(torch.randn(5, 8, generator=gen), c[idx])
    for h in hooks:
        h.remove()
    for m, (got_mean, got_var) in zip(bn, got):
        mean = torch.stack([x.mean((0, 2, 3)) for x in inputs[m]]).mean(0)
        var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs[m]]).mean(0)
        torch.testing.assert_close(got_mean, mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got_var, var, rtol=1e-5, atol=1e-6)


def _run_interpolation(tmp_path, monkeypatch, capsys, val, test, from_checkpoint, tag, **options):
    """``bench.interpolation`` on the toy grid (trained at 1000 and 1400 GeV, held out at 1200) from
    stored checkpoints; returns what it printed."""
    monkeypatch.setattr(bench, "_interp_data", lambda wd, a: ([(1000.0, 400.0), (1400.0, 400.0)], (1200.0, 400.0),
                                                              val, val, test))
    args = dict(workdir=str(tmp_path), simulate_only=False, filters=4, model="{}", threshold_from_data=False,
                n_select=None, from_checkpoint=from_checkpoint, family="dcgan", tag=tag, n_samples=1, train_seed=0,
                select_members=False)
    bench.interpolation(argparse.Namespace(**{**args, **options}))
    return capsys.readouterr().out


def test_bench_interpolation_from_checkpoint_evaluates_without_training(tmp_path, monkeypatch, capsys):
    val, test, gen = _figure3_inputs(monkeypatch)
    ck = tmp_path / "saved" / "best.pt"
    ck.parent.mkdir()
    gen.save(ck)
    monkeypatch.setattr(bench, "_train", lambda *a, **k: pytest.fail("--from-checkpoint must not train"))
    out = _run_interpolation(tmp_path, monkeypatch, capsys, val, test, str(ck), "_again")
    assert f"evaluating {ck}" in out
    # the table is the saved generator's sample of the held-out events (seed 5), as after training
    o_r, o_g = event_observables(test.images), event_observables(gen.sample_like(test, seed=5).images)
    ms_r, ms_g = o_r["summed_mass"].mean(), o_g["summed_mass"].mean()
    assert f"summed-jet-mass mean: Pythia {ms_r:.1f} GeV, generated {ms_g:.1f} GeV" in out
    # each training point: its validation events against the generator's sample of them (seed 6)
    for point in [(1000.0, 400.0), (1400.0, 400.0)]:
        sub = val.subset(np.all(val.conditions[:, :2] == point, axis=1))
        o_s, o_f = event_observables(sub.images), event_observables(gen.sample_like(sub, seed=6).images)
        assert (f"trained point {point}: summed-mass mean Pythia {o_s['summed_mass'].mean():.1f}, generated "
                f"{o_f['summed_mass'].mean():.1f} GeV; leading-jet pT mean Pythia {np.nanmean(o_s['leading_pt']):.1f}, "
                f"generated {np.nanmean(o_f['leading_pt']):.1f} GeV") in out
    folder = tmp_path / "interp_report_dcgan_again"
    assert (folder / "report.html").is_file() and not (folder / "best.pt").exists()  # nothing saved over


def test_bench_train_ema_with_standing_statistics():
    data, val = toy_events(64, seed=11), toy_events(8, seed=12)
    log = {}
    sel = bench._train(data, val, "dcgan", [], 10.0, 2, 0, {"noise_dim": 8, "filters": 4}, lr=1e-3, steps=4,
                       ema=0.9, ema_bn="standing", log=log)
    assert [s for s, _ in log["history"]] == [2, 4] and all(np.isfinite(v) for _, v in log["history"])
    # the kept averaged generator carries statistics of the 50 standing batches, not the live model's
    bn = [m for m in sel.model.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(int(m.num_batches_tracked) == 50 for m in bn)
    with pytest.raises(ValueError, match="ema_bn: expected 'copy' or 'standing', found 'mean'"):
        bench._train(data, val, "dcgan", [], 10.0, 2, 0, {}, steps=2, ema=0.9, ema_bn="mean")


def test_bench_events_doctests():
    # benchmarks/ is outside the suite's doctest collection (testpaths): run this script's here
    res = doctest.testmod(bench)
    assert res.attempted >= 8 and res.failed == 0


def test_event_rows_keeps_the_jets_of_each_event_together():
    ev = toy_events(12, seed=21)
    o = event_observables(ev.images)
    idx = np.array([7, 2, 11, 0])
    sub = bench._event_rows(o, idx)
    direct = event_observables(ev.images[idx])
    assert o["n_jets"].sum() > 4  # the toy events have jets to gather
    np.testing.assert_array_equal(sub["jet_pt"], direct["jet_pt"])
    np.testing.assert_array_equal(sub["n_jets"], direct["n_jets"])
    np.testing.assert_allclose(sub["summed_mass"], direct["summed_mass"], rtol=1e-12)
    with pytest.raises(ValueError, match="expected .* jets .* found"):
        bench._event_rows({**o, "jet_pt": o["jet_pt"][:-1]}, idx)


def test_sample_spread_p_values_are_scipy_ks_per_sample():
    rng = np.random.default_rng(3)
    mk = lambda n, shift=0.0: {"n_jets": rng.integers(2, 5, n).astype(float), "summed_mass": rng.normal(700, 70, n)}
    real = mk(300)
    real["jet_pt"] = rng.normal(500, 50, int(real["n_jets"].sum()))
    same = {k: v.copy() for k, v in real.items()}
    shifted = {**same, "jet_pt": same["jet_pt"] + 40.0}  # 0.8 sigma: KS p far below 0.05 with ~900 jets
    r = bench.sample_spread(real, [same, shifted], n_splits=30, seed=0)
    # p per sample is scipy's two-sample KS, in the order given; identical → 1
    assert r["jet_pt"]["p"] == [1.0, pytest.approx(stats.ks_2samp(real["jet_pt"], shifted["jet_pt"]).pvalue)]
    assert r["jet_pt"]["p"][1] < 1e-6 and r["jet_pt"]["pass"] == 0.5
    assert r["jet_pt"]["median"] == pytest.approx((1.0 + r["jet_pt"]["p"][1]) / 2)  # numpy median of two
    assert r["summed_mass"]["p"] == [1.0, 1.0] and r["summed_mass"]["pass"] == 1.0
    # the reference: halves of the same (random) events pass at about the nominal rate
    for k in ("jet_pt", "summed_mass"):
        assert 0.8 <= r[k]["null_pass"] <= 1.0 and 0.15 < r[k]["null_median"] < 0.9


def test_bench_interpolation_n_samples_prints_the_spread(tmp_path, monkeypatch, capsys):
    val, test, gen = _figure3_inputs(monkeypatch)
    ck = tmp_path / "saved" / "best.pt"
    ck.parent.mkdir()
    gen.save(ck)
    out = _run_interpolation(tmp_path, monkeypatch, capsys, val, test, str(ck), "_spread", n_samples=3)
    assert "3 generated samples of" in out
    # the first of the three is the table's sample (seed 5), the others seeds 1001, 1002
    o_r = event_observables(test.images)
    p = [stats.ks_2samp(o_r["summed_mass"], event_observables(gen.sample_like(test, seed=s).images)["summed_mass"])
         .pvalue for s in (5, 1001, 1002)]
    assert f"[{' '.join(f'{v:.2g}' for v in p)}]" in out.split("summed_mass  KS p median")[1].splitlines()[0]


def test_bench_interpolation_from_several_checkpoints_evaluates_their_mixture(tmp_path, monkeypatch, capsys):
    val, test, gen = _figure3_inputs(monkeypatch)
    paths = []
    for i in range(2):
        torch.manual_seed(50 + i)
        g = untrained_dcgan(val)
        paths.append(str(tmp_path / f"m{i}.pt"))
        g.save(paths[-1])
    monkeypatch.setattr(bench, "_train", lambda *a, **k: pytest.fail("--from-checkpoint must not train"))
    out = _run_interpolation(tmp_path, monkeypatch, capsys, val, test, ",".join(paths), "_mix", train_seed=3)
    ens = EventEnsemble.from_checkpoints(paths)
    # the validation score of each member and of the mixture, with the selection's seed
    for p, m in zip(paths, ens.members):
        assert f"validation KS score {DOMAIN.selection_score(m, val, seed=3):.2f}: {p}" in out
    assert f"validation KS score {DOMAIN.selection_score(ens, val, seed=3):.2f}: the mixture" in out
    # the held-out table is the mixture's sample (seed 5)
    o_r, o_g = event_observables(test.images), event_observables(ens.sample_like(test, seed=5).images)
    assert (f"summed-jet-mass mean: Pythia {o_r['summed_mass'].mean():.1f} GeV, generated "
            f"{o_g['summed_mass'].mean():.1f} GeV") in out


def test_bench_interpolation_select_members_keeps_the_greedy_choice(tmp_path, monkeypatch, capsys):
    val, test, _ = _figure3_inputs(monkeypatch)
    paths = []
    for i in range(3):
        torch.manual_seed(60 + i)
        paths.append(str(tmp_path / f"m{i}.pt"))
        untrained_dcgan(val).save(paths[-1])
    out = _run_interpolation(tmp_path, monkeypatch, capsys, val, test, ",".join(paths), "_sel", select_members=True)
    members = EventEnsemble.from_checkpoints(paths).members
    # the same greedy selection, scored as documented: mean of 3 validation samples (seeds 0, 1, 2)
    chosen, hist = bench.select_members(3, lambda ks: float(np.mean(
        [DOMAIN.selection_score(EventEnsemble([members[k] for k in ks]), val, seed=r) for r in range(3)])))
    assert f"chosen: {len(chosen)} of 3: " + ", ".join(paths[k] for k in chosen) in out
    assert len(hist) >= 3 and f"{chosen[0]}: {hist[chosen[0]][1]:.2f}" in out
    o_r = event_observables(test.images)
    o_g = event_observables(EventEnsemble([members[k] for k in chosen]).sample_like(test, seed=5).images)
    assert (f"summed-jet-mass mean: Pythia {o_r['summed_mass'].mean():.1f} GeV, generated "
            f"{o_g['summed_mass'].mean():.1f} GeV") in out


def test_bench_pileup_passes_its_training_options_to_train(tmp_path, monkeypatch):
    """``pileup`` trains with the interpolation's options (seed, model JSON, lr, steps, cosine) on the
    training file less its last ``--n-val`` images, and saves the result under ``--tag``."""
    full = _pileup_like(12, seed=6)
    monkeypatch.setattr(bench, "_data", lambda wd, name, **kw: full if "train" in name else toy_events(4, seed=5))
    seen = {}

    def fake_train(tr, val, family, conditions, minutes, eval_every, seed, model_kw, **kw):
        seen.update(n_tr=len(tr), n_val=len(val), family=family, conditions=conditions, seed=seed, model=model_kw, **kw)
        return untrained_dcgan(tr, ["mu"])

    monkeypatch.setattr(bench, "_train", fake_train)
    args = argparse.Namespace(workdir=str(tmp_path), n_hard=4, mu=[20], n_train=12, n_val=3, filters=8,
                              model='{"critic_augment": true}', threshold_from_data=False, tag="_t", reuse=False,
                              init=None, minutes=1.0, eval_every=50, train_seed=4, lr=5e-4, ema=0.999, steps=300,
                              lr_schedule="cosine", family="dcgan", train_only=True, workers=1)
    bench.pileup(args)
    assert seen == dict(n_tr=9, n_val=3, family="dcgan", conditions=["mu"], seed=4,
                        model={"filters": 8, "critic_augment": True}, lr=5e-4, init_state=None, ema=0.999, steps=300,
                        lr_schedule="cosine")
    assert (tmp_path / "pileup_mu20_t.pt").is_file()


def test_bench_overlay_select_members_scores_are_the_shift_differences(tmp_path, capsys):
    """``overlay --select-members``: each single generator's selection score is the larger |difference|
    of its two shifts as ``overlay_shift`` gives them on the images; a pair's is that of the mean of
    the two generators' per-event overlays; the greedy choice is written to the JSON."""
    hard, te = toy_events(10, seed=5), _pileup_like(10, seed=6)
    write_events(tmp_path / "hard.h5", hard)
    write_events(tmp_path / "pu.h5", te)
    cks = []
    for i in range(2):
        torch.manual_seed(i)
        g = untrained_dcgan(te, ["mu"])
        cks.append(str(tmp_path / f"g{i}.pt"))
        g.save(cks[-1])
    args = argparse.Namespace(hard=str(tmp_path / "hard.h5"), pileup_test=str(tmp_path / "pu.h5"), n_hard=0, mu=[20],
                              checkpoints=cks, seed=7, target=5.0, figures=False, workdir=str(tmp_path), tag="_s",
                              chunk=2048, select_members=True, path="fp32")
    bench.overlay(args)
    out = capsys.readouterr().out
    keys = ("n_jets", "summed_mass")
    singles, shifts = [], []
    for ck in cks:
        fake = DOMAIN.from_payload(load_checkpoint(ck), ck).sample_like(te, seed=7)
        r = overlay_shift(hard, te, fake)
        singles.append(max(abs(r[k]["shift_rel_diff"]) for k in keys))
        shifts.append(r)
    # the pair's shift is the mean of the two generated shifts, compared with the real one (by hand)
    pair = max(abs((np.mean([s[k]["shift_gen"] for s in shifts]) - shifts[0][k]["shift_real"]) / shifts[0][k]["shift_real"])
               for k in keys)
    best = int(np.argmin(singles))
    assert f"0: {100 * singles[0]:.2f}, 1: {100 * singles[1]:.2f}, {best}+{1 - best}: {100 * pair:.2f}" in out
    chosen = json.loads((tmp_path / "overlay_mu20_s.json").read_text())["chosen"]
    assert chosen == ([cks[best], cks[1 - best]] if pair < singles[best] else [cks[best]])


def test_bench_train_select_extra_adds_the_ks_term_and_track_records_mean_differences():
    data, val = toy_events(64, seed=11), toy_events(16, seed=12)
    log = {}
    sel = bench._train(data, val, "dcgan", [], 10.0, 2, 0, {"noise_dim": 8, "filters": 4}, lr=1e-3, steps=2, log=log,
                       select_extra=("total_energy",), track=("total_energy", "sparsity"))
    (step, score, means), = log["history"]  # one evaluation, at step 2: its weights are the ones returned
    # independently: the domain's score plus scipy's KS -log p on the per-image total energy, same sample (seed 0)
    fake = sel.sample_like(val, seed=0)
    e_val, e_fake = val.images.reshape(len(val), -1).sum(1), fake.images.reshape(len(fake), -1).sum(1)
    extra = -np.log(stats.ks_2samp(e_val, e_fake).pvalue)
    assert step == 2 and score == pytest.approx(DOMAIN.selection_score(sel, val, seed=0) + extra, abs=0.006)
    assert means["-log p total_energy"] == pytest.approx(extra, abs=0.006)  # history rounds to 2 decimals
    assert means["total_energy"] == pytest.approx(100 * (e_fake.mean() / e_val.mean() - 1), abs=0.06)
    s_val, s_fake = (val.images.reshape(len(val), -1) <= 0).mean(1), (fake.images.reshape(len(fake), -1) <= 0).mean(1)
    assert means["sparsity"] == pytest.approx(100 * (s_fake.mean() / s_val.mean() - 1), abs=0.06)
    with pytest.raises(ValueError, match=r"expected keys among .*found 'jet_pt'"):
        bench._train(data, val, "dcgan", [], 10.0, 2, 0, {}, steps=2, track=("jet_pt",))


def test_bench_pixels_prints_the_calibrated_and_raw_images(tmp_path, capsys):
    te = _pileup_like(16, seed=8)
    write_events(tmp_path / "pu.h5", te)
    gen = untrained_dcgan(te, ["mu"])
    raw = gen.sample_like(te, seed=3).images
    DOMAIN.calibrate(gen, EventImages(0.5 * raw, te.conditions, None, te.process, {"eta_max": 2.5}), seed=3,
                     n_quantiles=50)
    gen.save(tmp_path / "cal.pt")
    args = argparse.Namespace(pileup_test=str(tmp_path / "pu.h5"), n_images=16, seed=3, mu=[20],
                              checkpoints=[str(tmp_path / "cal.pt")], workdir=str(tmp_path), tag="_t")
    bench.pixels(args)
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        if "energy per image" in line:
            name, rest = line.split("energy per image")
            rows[name.strip()] = (float(rest.split("GeV")[0]), float(rest.split("lit pixels")[1].split(",")[0]))
    assert set(rows) == {"Pythia", "cal", "cal without its map"}
    # the calibrated sample is half the raw one at this seed (the map was fitted on exactly that pair)
    e_raw = raw.sum(axis=(1, 2, 3)).mean()
    assert rows["cal without its map"][0] == pytest.approx(e_raw, abs=0.06)
    assert rows["cal"][0] == pytest.approx(0.5 * e_raw, abs=0.06)
    lit = (raw > 0).reshape(16, -1).sum(1).mean()
    assert rows["cal"][1] == rows["cal without its map"][1] == pytest.approx(lit, abs=0.06)
    want = (te.images.sum(axis=(1, 2, 3)).mean(), (te.images > 0).reshape(16, -1).sum(1).mean())
    assert rows["Pythia"] == pytest.approx(want, abs=0.06)
    assert (tmp_path / "pixels_mu20_t.png").stat().st_size > 1000
