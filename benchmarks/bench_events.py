"""Event-image benchmarks: speed against Pythia + detector, interpolation to a held-out mass point,
pile-up GAN and overlay.  Prints the figures measured in one run on this machine.

    python benchmarks/bench_events.py speed
    python benchmarks/bench_events.py interpolation --minutes 6
    python benchmarks/bench_events.py interpolation --minutes 6 --family events_fm --lr 2e-3 --eval-every 250
    python benchmarks/bench_events.py pileup --minutes 6

Data are simulated once into ``--workdir`` (kept for re-runs).  Training here is a plain loop
over the event domain's methods (features → ``training_step``; every ``--eval-every`` steps the
paper's Σ −log p KS score on held-in validation events selects the best weights) so that it
runs before the trainer is wired to the events kind; sizes are small because the CPU is shared.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from hepgen.config import TrainConfig
from hepgen.data.events import EventImages, read_events
from hepgen.domains.events import DOMAIN, overlay_shift
from hepgen.domains.events.evaluate import evaluate_events
from hepgen.domains.events.report import figures, write_event_report
from hepgen.metrics.event_jets import event_observables, ks_selection_score
from hepgen.report.style import figure_png_base64
from hepgen.simulate.events import EventGenConfig, simulate_events


def _data(workdir: Path, name: str, **kw):
    path = workdir / f"{name}.h5"
    if not path.exists():
        t0 = time.perf_counter()
        simulate_events(path, progress=False, **kw)
        print(f"  simulated {name}: {time.perf_counter() - t0:.1f} s wall")
    return read_events(path)


def _train(data, val, family, conditions, minutes, eval_every, seed, model_kw, lr=2e-4):
    torch.manual_seed(seed)
    cfg = TrainConfig(family=family, model=model_kw, conditions=conditions, batch_size=32, lr=lr, seed=seed)
    DOMAIN.check(data, cfg)
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    gen = DOMAIN.generator(model, pre, data, DOMAIN.meta(data, cfg))
    x = torch.from_numpy(DOMAIN.features(pre, data, np.random.default_rng(seed)))
    c = torch.from_numpy(DOMAIN.conditions(pre, data))
    opts = model.configure_optimizers(cfg.lr, 0.0)
    rng = np.random.default_rng(seed)
    best, best_state, step, t0, history = np.inf, None, 0, time.perf_counter(), []
    while time.perf_counter() - t0 < 60 * minutes:
        for idx in np.array_split(rng.permutation(len(x)), max(len(x) // cfg.batch_size, 1)):
            model.train()
            model.training_step(x[idx], c[idx], opts, step, cfg.grad_clip)
            step += 1
            if step % eval_every == 0:
                score = DOMAIN.selection_score(gen, val, seed=seed)
                history.append((step, round(score, 2)))
                if score < best:
                    best, best_state = score, copy.deepcopy(model.state_dict())
            if time.perf_counter() - t0 >= 60 * minutes:
                break
    if step % eval_every:  # the weights at the end of the budget are a candidate too
        score = DOMAIN.selection_score(gen, val, seed=seed)
        history.append((step, round(score, 2)))
        if score < best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    print(f"  {family}: {step} steps in {time.perf_counter() - t0:.0f} s; best validation KS score {best:.2f}; "
          f"history (step, score) {history}")
    return gen


def speed(args):
    wd = Path(args.workdir)
    cfg = EventGenConfig()
    def timed(n, **kw):
        t0 = time.perf_counter()
        d = simulate_events(wd / "speed.h5", seed=9, config=cfg, progress=False, resume=False, **kw)
        return time.perf_counter() - t0, d

    # marginal cost per image (the Pythia initialisation, seconds, cancels in the difference)
    timed(2, process="signal", n_per_point=2, masses=[(1400.0, 400.0)])  # one-time costs of the process
    timed(1, process="minbias", n_per_point=1, mu=20)
    (t_a, _), (t_b, sig) = (timed(n, process="signal", n_per_point=n, masses=[(1400.0, 400.0)]) for n in (10, 110))
    t_sig = (t_b - t_a) / 100
    (u_a, _), (u_b, _) = (timed(n, process="minbias", n_per_point=n, mu=20) for n in (5, 105))
    t_pu = (u_b - u_a) / 100
    print(f"  Pythia init + 10 signal events: {t_a:.1f} s; min-bias init + 5 pile-up images: {u_a:.1f} s "
          f"(the soft-QCD initialisation alone takes ~10 s and varies by seconds)")
    data = sig
    tc = TrainConfig(family="dcgan", model={"filters": args.filters})
    pre = DOMAIN.fit_preprocessor(data, tc)
    model = DOMAIN.build_model(tc, data, pre)
    gen = DOMAIN.generator(model, pre, data, DOMAIN.meta(data, tc))
    cond = np.tile([[1400.0, 400.0, 0.0]], (512, 1))
    gen.sample(cond[:64], seed=0)  # warm-up
    t0 = time.perf_counter()
    gen.sample(cond, seed=1, batch_size=128)
    t_gan = (time.perf_counter() - t0) / len(cond)
    print(f"torch threads {torch.get_num_threads()}; Pythia + detector: {1e3 * t_sig:.1f} ms per signal event "
          f"(marginal, init excluded), {1e3 * t_pu:.1f} ms per pile-up image at mu=20 (20 min-bias events); "
          f"DCGAN (filters={args.filters}): {1e3 * t_gan:.2f} ms per image")
    print(f"speed-up: {t_sig / t_gan:.0f}x per signal event, {t_pu / t_gan:.0f}x per mu=20 pile-up image")


def interpolation(args):
    wd = Path(args.workdir)
    grid = [(1000.0, 400.0), (1200.0, 400.0), (1400.0, 400.0)]
    held = grid[1]
    train = _data(wd, "interp_train", process="signal", n_per_point=args.n, masses=[grid[0], grid[2]], seed=1,
                  workers=args.workers)
    val = _data(wd, "interp_val", process="signal", n_per_point=args.n // 4, masses=[grid[0], grid[2]], seed=2,
                workers=args.workers)
    test = _data(wd, "interp_test", process="signal", n_per_point=args.n, masses=[held], seed=3, workers=args.workers)
    model_kw = {"filters": args.filters, **json.loads(args.model)}
    gen = _train(train, val, args.family, [], args.minutes, args.eval_every, 0, model_kw, lr=args.lr)
    out = Path(args.workdir) / f"interp_report_{args.family}{args.tag}"
    out.mkdir(exist_ok=True)
    gen.save(out / "best.pt")  # for sampling scans afterwards (hepgen sample, steps/solver)
    gen.sample_like(test.subset(np.arange(8)), seed=4)  # warm-up
    t0 = time.perf_counter()
    fake = gen.sample_like(test, seed=5)
    print(f"  sampling: {1e3 * (time.perf_counter() - t0) / len(test):.1f} ms per image ({args.family} {model_kw}, "
          f"batch 256, {torch.get_num_threads()} thread(s))")
    o_r, o_g = event_observables(test.images), event_observables(fake.images)
    print(f"held-out point m_gluino={held[0]:g}, m_neutralino={held[1]:g} GeV: {len(test)} Pythia events vs "
          f"{len(fake)} generated; trained on {len(train)} events at {[grid[0], grid[2]]}")
    for k in ("n_jets", "jet_pt", "summed_mass"):
        a, b = o_r[k], o_g[k]
        p = stats.ks_2samp(a, b).pvalue if len(a) and len(b) else float("nan")
        w1 = stats.wasserstein_distance(a, b) if len(a) and len(b) else float("nan")
        print(f"  {k:12s} KS p = {p:.3g}   W1 = {w1:.3g}   mean Pythia {np.mean(a) if len(a) else np.nan:.4g}"
              f"   generated {np.mean(b) if len(b) else np.nan:.4g}")
    ms_r, ms_g = o_r["summed_mass"].mean(), o_g["summed_mass"].mean()
    print(f"  summed-jet-mass mean: Pythia {ms_r:.1f} GeV, generated {ms_g:.1f} GeV ({100 * (ms_g / ms_r - 1):+.1f} %)")
    print(f"  KS score (Σ −log p): {ks_selection_score(o_r, o_g):.2f}")
    for point in [grid[0], grid[2]]:
        sub = val.subset(np.all(val.conditions[:, :2] == point, axis=1))
        f = gen.sample_like(sub, seed=6)
        print(f"  trained point {point}: summed-mass mean Pythia {event_observables(sub.images)['summed_mass'].mean():.1f}"
              f", generated {event_observables(f.images)['summed_mass'].mean():.1f} GeV")
    real = EventImages.concatenate([val, test])
    fake = gen.sample_like(real, seed=8)
    metrics, extras = evaluate_events(real, fake, seed=0)
    write_event_report(metrics, figures(real, fake, extras, metrics), out, title="interpolation to m_gluino=1200 GeV")
    print(f"  report: {out / 'report.html'}; classifier AUC {metrics.get('classifier_auc')}, FPD {metrics.get('fpd')}"
          f" (floor {metrics.get('fpd_floor')})")


def _figure5(hard, real_pu, gen_pu, path, mu):
    """The paper's Figure 5 style: fat-jet multiplicity and summed jet mass, hard scatter alone
    and with real or generated pile-up overlaid."""
    n = len(hard)
    obs = {"no pile-up": event_observables(hard.images),
           f"+ Pythia pile-up (mu={mu})": event_observables(hard.images + real_pu.images[:n]),
           f"+ generated pile-up (mu={mu})": event_observables(hard.images + gen_pu.images[:n])}
    fig = Figure(figsize=(10, 4))
    for i, (k, label) in enumerate((("n_jets", "fat-jet multiplicity"), ("summed_mass", "summed jet mass [GeV]"))):
        ax = fig.add_subplot(1, 2, i + 1)
        allv = np.concatenate([o[k] for o in obs.values()])
        edges = np.arange(-0.5, allv.max() + 1.5) if k == "n_jets" else np.linspace(0, allv.max() + 1, 30)
        for (name, o), color in zip(obs.items(), ("k", "tab:blue", "tab:red")):
            ax.hist(o[k], edges, histtype="step", density=True, label=name, color=color)
        ax.set_xlabel(label)
        ax.legend(fontsize=7)
    path.write_bytes(base64.b64decode(figure_png_base64(fig)))


def pileup(args):
    wd = Path(args.workdir)
    hard = _data(wd, "pu_hard", process="signal", n_per_point=args.n // 2, masses=[(1400.0, 400.0)], seed=11,
                 workers=args.workers)
    res = {}
    for mu in (20, 50):
        tr = _data(wd, f"pu{mu}_train", process="minbias", n_per_point=args.n, mu=mu, seed=12 + mu, workers=args.workers)
        te = _data(wd, f"pu{mu}_test", process="minbias", n_per_point=args.n // 2, mu=mu, seed=13 + mu,
                   workers=args.workers)
        print(f"mu={mu}: training on {len(tr)} pile-up images ({args.minutes / 2:.1f} min)")
        gen = _train(tr, te.subset(slice(0, max(len(te) // 2, 2))), args.family, ["mu"], args.minutes / 2,
                     args.eval_every, 0, {"filters": args.filters})
        fake = gen.sample_like(te, seed=7)
        res[mu] = overlay_shift(hard, te, fake)
        _figure5(hard, te, fake, Path(args.workdir) / f"pileup_mu{mu}.png", mu)
        for k, v in res[mu].items():
            print(f"  {k:12s} hard {v['mean_hard']:.3g}; shift with real pile-up {v['shift_real']:+.3g} ± "
                  f"{v['shift_real_err']:.2g}, with generated {v['shift_gen']:+.3g} ± {v['shift_gen_err']:.2g} (shift differs by {100 * (v['shift_rel_diff'] or 0):+.1f} %); "
                  f"overlaid means differ by {100 * (v['mean_rel_diff'] or 0):+.1f} %")
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["speed", "interpolation", "pileup"])
    ap.add_argument("--workdir", default=os.environ.get("HEPGEN_BENCH_DIR", "/tmp/hepgen_bench_events"))
    ap.add_argument("--n", type=int, default=300, help="events per mass point / pile-up images (training)")
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget")
    ap.add_argument("--eval-every", type=int, default=40, help="steps between KS-score evaluations")
    ap.add_argument("--filters", type=int, default=16, help="base filter count (DCGAN; events_fm: the U-Net base width)")
    ap.add_argument("--family", default="dcgan")
    ap.add_argument("--model", default="{}", help="interpolation: further model hyper-parameters, JSON")
    ap.add_argument("--lr", type=float, default=2e-4, help="interpolation: learning rate")
    ap.add_argument("--tag", default="", help="interpolation: suffix of the report folder")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    {"speed": speed, "interpolation": interpolation, "pileup": pileup}[args.what](args)


if __name__ == "__main__":
    main()
