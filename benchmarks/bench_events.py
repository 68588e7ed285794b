"""Event-image benchmarks: speed against Pythia + detector, interpolation to a held-out mass point,
pile-up GAN and overlay.  Prints the figures measured in one run on this machine.

    python benchmarks/bench_events.py speed
    python benchmarks/bench_events.py interpolation --minutes 6
    python benchmarks/bench_events.py interpolation --minutes 6 --family events_fm --lr 2e-3 --eval-every 250
    python benchmarks/bench_events.py interpolation --steps 3000 --minutes 40 --lr-schedule cosine --family events_fm \
        --lr 2e-3 --eval-every 400
    python benchmarks/bench_events.py pileup --minutes 8 --mu 20
    python benchmarks/bench_events.py figure3 --train-masses 1000:400,1100:400,1300:400,1400:400 --n 1500 \
        --n-val 250 --n-test 1000 --data-seed 201 --checkpoints DCGAN.pt,FM.pt
    python benchmarks/bench_events.py overlay --mu 20 --hard HARD.h5 --pileup-test PU20.h5 --checkpoints a.pt,b.pt
    python benchmarks/bench_events.py overlay --mu 20 --hard H1.h5,H2.h5 --pileup-test P1.h5,P2.h5 --checkpoints a.pt
    python benchmarks/bench_events.py overlay --mu 20 --hard H.h5 --pileup-test P.h5 --checkpoints a.pt --chunk 1024

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

from hepgen._io import atomic_path
from hepgen.bench_events import path_modules
from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig
from hepgen.data.events import EventImages, event_file_header, read_events
from hepgen.domains.events import DOMAIN, EventEnsemble, overlay_shift
from hepgen.domains.events.ensemble import select_members
from hepgen.domains.events.evaluate import evaluate_events, overlay_shift_observables
from hepgen.domains.events.report import figures, write_event_report
from hepgen.metrics.event_jets import OBSERVABLES, SELECTION_OBSERVABLES, event_observables, ks_selection_score
from hepgen.models.dcgan import symmetry_augment
from hepgen.report.style import figure_png_base64
from hepgen.simulate.events import EventGenConfig, simulate_events


def _data(workdir: Path, name: str, **kw):
    path = workdir / f"{name}.h5"
    if not path.exists():
        t0 = time.perf_counter()
        simulate_events(path, progress=False, **kw)
        print(f"  simulated {name}: {time.perf_counter() - t0:.1f} s wall")
    return read_events(path)


def _augment(x: torch.Tensor, shape, generator: torch.Generator) -> torch.Tensor:
    """Symmetry augmentation of a batch of flattened images ``x: (B, C·H·W)`` (``shape = (C, H, W)``,
    H along η, W along φ): every image is rolled along φ by a random whole number of pixels
    (0 … W−1; φ is periodic and the physics φ-invariant) and mirrored in η with probability ½
    (pp collisions are symmetric under η → −η).  Both are exact symmetries of the detector grid
    (η edges symmetric about 0, φ periodic); :func:`hepgen.models.dcgan.symmetry_augment` on the
    unflattened images.  Used against the fixed 4 × 4 lattice that
    ``events_fm``'s pixel folding (``patch: 4``) imprints on the energy (docs/events.md).

    >>> x = torch.arange(8.0).reshape(1, 8)  # one 1 × 2 × 4 image
    >>> y = _augment(x, (1, 2, 4), torch.Generator().manual_seed(0))
    >>> sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())
    True
    """
    return symmetry_augment(x.reshape(len(x), *shape), generator).reshape(len(x), -1)


def cosine_lr(lr: float, k: int, n: int) -> float:
    """Learning rate of optimiser step ``k`` (0-based) of ``n`` under the cosine decay without restarts
    of Loshchilov & Hutter, "SGDR" (arXiv:1608.03983), to zero: ``lr · ½ (1 + cos(π k / n))``
    (``lr`` at the first step, ``lr / 2`` half-way, ``lr · ½(1 − cos(π / n))`` at the last).

    >>> [round(cosine_lr(2e-3, k, 4), 8) for k in range(5)]
    [0.002, 0.00170711, 0.001, 0.00029289, 0.0]
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"cosine_lr: expected 0 <= step <= n with n > 0, found step {k}, n {n}")
    return float(lr * 0.5 * (1.0 + np.cos(np.pi * k / n)))


def standing_bn_stats(generator: torch.nn.Module, c: torch.Tensor, noise_dim: int, n_batches: int = 50,
                      batch: int = 32, seed: int = 0) -> int:
    """Recompute the batch-norm running statistics of ``generator(z, c)`` as plain averages over
    ``n_batches`` training-size batches of fresh noise and conditions drawn from ``c: (N, n_cond)``
    ("standing statistics", Brock et al., BigGAN, arXiv:1809.11096, appendix C): the statistics
    that match averaged (EMA) weights, which the live model's running statistics do not.
    Returns the number of batch-norm layers reset.

    >>> g = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    >>> class G(torch.nn.Module):
    ...     def __init__(self): super().__init__(); self.net = g
    ...     def forward(self, z, c): return self.net(torch.cat([z, c], 1))
    >>> standing_bn_stats(G(), torch.zeros(10, 1), noise_dim=2, n_batches=4)
    1
    >>> int(g[1].num_batches_tracked), g[1].momentum, g.training  # momentum restored, eval mode
    (4, 0.1, False)
    """
    bns = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    gen = torch.Generator().manual_seed(seed)
    generator.train()
    with torch.no_grad():
        for _ in range(n_batches):
            idx = torch.randint(0, len(c), (batch,), generator=gen)
            generator(torch.randn(batch, noise_dim, generator=gen), c[idx])
    for m, mo in zip(bns, momenta):
        m.momentum = mo
    generator.eval()
    return len(bns)


#: per-event observables that ``_train``'s ``select_extra`` / ``track`` accept
EXTRA_KEYS = OBSERVABLES + ("total_energy", "sparsity")


def _train(data, val, family, conditions, minutes, eval_every, seed, model_kw, lr=2e-4, init_state=None, ema=0.0,
           augment=False, steps=None, lr_schedule="constant", log=None, ema_bn="copy", select_extra=(), track=()):
    """Train ``family`` on ``data``; every ``eval_every`` steps (and at the end) the KS selection
    score on ``val`` picks the kept weights.  Stops after ``minutes`` of wall clock or, with
    ``steps``, after exactly that many optimiser steps (``minutes`` then only a safety stop).
    ``lr_schedule="cosine"`` (needs ``steps``): :func:`cosine_lr` set on every optimiser of
    ``model.configure_optimizers`` (the GAN's two) before each step, through
    ``torch.optim.lr_scheduler.LambdaLR``.  ``log``, a dict, receives ``steps`` (done),
    ``history`` [(step, score)] and ``lr`` [(step, {optimiser: lr used at that step})].
    With ``ema``, ``ema_bn`` says where the averaged generator's batch-norm statistics come from:
    ``"copy"`` the live model's (as before), ``"standing"`` :func:`standing_bn_stats` before each
    selection evaluation.

    ``select_extra``: further :func:`event_observables` keys whose KS −log p (on ``val`` against the
    generated sample of the same seed) is added to the domain's selection score, e.g.
    ``("leading_pt",)``; ``track``: keys whose generated-vs-``val`` mean difference (%) is recorded
    at every evaluation (a third element of each ``history`` entry, a dict that also holds each extra
    term as ``"-log p KEY"``) without entering the score.
    With either, the score is computed here from the same observables (the domain's keys,
    :meth:`~hepgen.domains.events.EventDomain.selection_keys`, plus ``select_extra``), the
    validation events' jets found once for the whole run."""
    for k in (*select_extra, *track):
        if k not in EXTRA_KEYS:
            raise ValueError(f"select_extra / track: expected keys among {EXTRA_KEYS}, found {k!r}")
    if ema_bn not in ("copy", "standing"):
        raise ValueError(f"ema_bn: expected 'copy' or 'standing', found {ema_bn!r}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule: expected 'constant' or 'cosine', found {lr_schedule!r}")
    if steps is not None and steps <= 0:
        raise ValueError(f"steps: expected a positive number of optimiser steps, found {steps}")
    if lr_schedule == "cosine" and steps is None:
        raise ValueError("lr_schedule 'cosine' needs a step budget (steps / --steps), found none")
    torch.manual_seed(seed)
    cfg = TrainConfig(family=family, model=model_kw, conditions=conditions, batch_size=32, lr=lr, seed=seed)
    DOMAIN.check(data, cfg)
    pre = DOMAIN.fit_preprocessor(data, cfg)
    model = DOMAIN.build_model(cfg, data, pre)
    if init_state is not None:  # continue from saved weights (the optimiser starts afresh)
        model.load_state_dict(init_state)
    gen = DOMAIN.generator(model, pre, data, DOMAIN.meta(data, cfg))
    # ema > 0: selection and the result use an exponential moving average of the weights
    # (batch-norm statistics copied, or recomputed with ema_bn="standing"), which damps the GAN's
    # step-to-step oscillation
    avg = copy.deepcopy(model) if ema > 0 else model
    sel = DOMAIN.generator(avg, pre, data, DOMAIN.meta(data, cfg)) if ema > 0 else gen
    x = torch.from_numpy(DOMAIN.features(pre, data, np.random.default_rng(seed)))
    c = torch.from_numpy(DOMAIN.conditions(pre, data))
    opts = model.configure_optimizers(cfg.lr, 0.0)
    scheds = ([torch.optim.lr_scheduler.LambdaLR(o, lambda k: cosine_lr(1.0, k, steps)) for o in opts.values()]
              if lr_schedule == "cosine" else [])
    lr_log = []
    rng = np.random.default_rng(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    best, best_state, step, t0, history = np.inf, None, 0, time.perf_counter(), []
    o_val = event_observables(val.images, val.eta_max) if (select_extra or track) else None

    def consider(at, best, best_state):
        """One selection evaluation of the kept (or averaged) weights at step ``at``."""
        if ema > 0 and ema_bn == "standing":
            standing_bn_stats(avg.generator, c, avg.generator.noise_dim, seed=seed)
        if select_extra or track:  # the domain's score on the sample it would draw (same seed), and more
            fake = sel.sample_like(val, seed=seed)
            o_f = event_observables(fake.images, fake.eta_max)
            extra = {k: ks_selection_score(o_val, o_f, (k,)) for k in select_extra}
            score = ks_selection_score(o_val, o_f, DOMAIN.selection_keys(val)) + sum(extra.values())
            means = {k: round(float(100 * (np.nanmean(o_f[k]) / np.nanmean(o_val[k]) - 1)), 1) for k in track}
            history.append((at, round(score, 2), {**means, **{f"-log p {k}": round(v, 2) for k, v in extra.items()}}))
        else:
            score = DOMAIN.selection_score(sel, val, seed=seed)
            history.append((at, round(score, 2)))
        return (score, copy.deepcopy(avg.state_dict())) if score < best else (best, best_state)

    while time.perf_counter() - t0 < 60 * minutes and (steps is None or step < steps):
        for idx in np.array_split(rng.permutation(len(x)), max(len(x) // cfg.batch_size, 1)):
            model.train()
            xb = _augment(x[idx], pre.image_shape, aug_gen) if augment else x[idx]
            lr_log.append((step, {name: o.param_groups[0]["lr"] for name, o in opts.items()}))
            model.training_step(xb, c[idx], opts, step, cfg.grad_clip)
            step += 1
            for sch in scheds:  # the rate of the next step
                sch.step()
            if ema > 0:
                with torch.no_grad():
                    for pa, pm in zip(avg.parameters(), model.parameters()):
                        pa.lerp_(pm, 1.0 - ema)
                    if ema_bn == "copy":
                        for ba, bm in zip(avg.buffers(), model.buffers()):
                            ba.copy_(bm)
            if step % eval_every == 0:
                best, best_state = consider(step, best, best_state)
            if time.perf_counter() - t0 >= 60 * minutes or step == steps:
                break
    if steps is not None and step < steps:
        print(f"  warning: the {minutes:g}-minute safety stop ended training at step {step} of --steps {steps}"
              + (f" (lr {lr_log[-1][1]} at the last step, not decayed to 0)" if scheds and lr_log else ""))
    if step % eval_every:  # the weights at the end of the budget are a candidate too
        best, best_state = consider(step, best, best_state)
    if best_state is not None:
        avg.load_state_dict(best_state)
    print(f"  {family}: {step} steps in {time.perf_counter() - t0:.0f} s; best validation KS score {best:.2f}; "
          f"history (step, score{', {key: generated vs validation mean, %}' if track or select_extra else ''}) "
          f"{history}")
    if scheds:
        at = sorted({0, *(h[0] for h in history if h[0] < step), step - 1})
        print(f"  lr ({lr_schedule}, {steps} steps) at step " + ", ".join(
            f"{s}: {lr_log[s][1][next(iter(opts))]:.3g}" for s in at))
    if log is not None:
        log.update(steps=step, history=history, lr=lr_log)
    return sel


def _clock():
    return time.perf_counter(), time.process_time()


def _simulator_cost(wd: Path) -> dict:
    """Marginal wall and CPU seconds per image of Pythia 8 + detector (one process, one core):
    the Pythia initialisation cancels in the difference of runs of 10/110 signal events and
    5/105 pile-up images."""
    cfg = EventGenConfig()

    def timed(**kw):
        w0, c0 = _clock()
        simulate_events(wd / "speed.h5", seed=9, config=cfg, progress=False, resume=False, **kw)
        w1, c1 = _clock()
        return w1 - w0, c1 - c0

    timed(process="signal", n_per_point=2, masses=[(1400.0, 400.0)])  # one-time costs of the process
    timed(process="minbias", n_per_point=1, mu=20)
    sa, sb = (timed(process="signal", n_per_point=n, masses=[(1400.0, 400.0)]) for n in (10, 110))
    pa, pb = (timed(process="minbias", n_per_point=n, mu=20) for n in (5, 105))
    return {"signal_wall": (sb[0] - sa[0]) / 100, "signal_cpu": (sb[1] - sa[1]) / 100,
            "pileup_wall": (pb[0] - pa[0]) / 100, "pileup_cpu": (pb[1] - pa[1]) / 100}


def _fidelity(gen, paths, cond, hard, batch_size):
    """Each path's images vs fp32's on the same noise: pixels crossing the threshold (empty in
    one, not in the other), max |dE|, total energy, the pile-up KS selection score between the
    two samples, and the overlay shift on ``hard`` (fp32's sample standing for 'real')."""
    keys = ("n_jets", "jet_pt", "summed_mass", "total_energy", "sparsity")
    ref = gen.sample(cond, seed=3, batch_size=batch_size, path="fp32")
    o_ref = event_observables(ref.images)
    print(f"fidelity vs fp32 on the same noise ({len(cond)} images at the benchmark's conditions):")
    for path in paths:
        if path == "fp32":
            continue
        img = gen.sample(cond, seed=3, batch_size=batch_size, path=path).images
        d = np.abs(img.astype(np.float64) - ref.images)
        per_image = d.reshape(len(d), -1).max(1)
        cross = float(((img == 0) != (ref.images == 0)).mean())
        o = event_observables(img)
        e_rel = o["total_energy"].mean() / o_ref["total_energy"].mean() - 1
        line = (f"  {path:13s} pixels crossing the threshold {cross:.2e}; max |dE| per image: median "
                f"{np.median(per_image):.3g}, max {per_image.max():.3g} GeV; total energy {100 * e_rel:+.3f} %; "
                f"KS score vs fp32 sample {ks_selection_score(o_ref, o, keys):.2f}")
        if hard is not None:
            v = overlay_shift(hard, ref.subset(slice(0, len(hard))), EventImages(img[:len(hard)], ref.conditions[:len(hard)]))
            line += (f"; overlay on {len(hard)} hard events: n_jets shift {100 * (v['n_jets']['shift_rel_diff'] or 0):+.2f} %, "
                     f"summed-mass shift {100 * (v['summed_mass']['shift_rel_diff'] or 0):+.2f} % vs fp32")
        print(line)


def speed(args):
    """Simulator ms per image, each model sampling path's ms per image (wall and CPU), the ratios.

    Model timings: whole ``EventGenerator.sample`` calls (noise, conditions, network, inverse
    scaling, numpy copy) of ``--n-images`` images, interleaved over paths and batch sizes
    (A, B, C, A, B, C, …; ``--reps`` rounds; medians), per thread count.  ``numpy-inverse`` is the
    pipeline before the sampling paths (``model.sample`` + the float64 numpy inverse);
    ``inference_mode`` is fp32 under ``torch.inference_mode`` instead of ``no_grad``.
    """
    wd = Path(args.workdir)
    sim = _simulator_cost(wd)
    if args.checkpoint:
        gen = DOMAIN.from_payload(load_checkpoint(args.checkpoint), args.checkpoint)
        what = f"checkpoint {args.checkpoint} ({gen.model.family}, filters={gen.model.hparams.get('filters')})"
    else:
        data = read_events(wd / "speed.h5")
        tc = TrainConfig(family="dcgan", model={"filters": args.filters})
        pre = DOMAIN.fit_preprocessor(data, tc)
        gen = DOMAIN.generator(DOMAIN.build_model(tc, data, pre), pre, data, DOMAIN.meta(data, tc))
        what = f"untrained dcgan (filters={args.filters})"
    cond = np.tile([[1400.0, 400.0, 20.0]], (args.n_images, 1))
    pre = gen.preprocessor

    def numpy_inverse(bs):  # the pipeline before: model.sample, then the float64 numpy inverse
        c = torch.from_numpy(pre.transform_conditions(cond))
        g = torch.Generator()
        with torch.no_grad():
            return [pre.inverse(gen.model.sample(c[i:i + bs], g.manual_seed(1 + i)).numpy()) for i in range(0, len(c), bs)]

    def inference_mode(bs):  # fp32 under torch.inference_mode instead of no_grad
        with torch.inference_mode():
            return gen.sample(cond, seed=1, batch_size=bs, path="fp32", **modules["fp32"])

    mixture = not hasattr(gen, "sampler")  # an EventEnsemble: no single network for the two baselines
    modules = path_modules(gen, sorted({"fp32", *args.paths}))  # compiled once per shape
    paths = ([] if mixture else ["numpy-inverse", "inference_mode"]) + list(args.paths)
    if getattr(gen, "calibration", None) is not None:  # hepgen calibrate: every path maps pixels; fp32 without too
        paths.append("fp32-uncalibrated")
        what += " with its pixel calibration"
    rows = {}
    for nt in args.thread_list:
        torch.set_num_threads(nt)
        calls = {}
        for bs in args.batch_sizes:
            for p in paths:
                if p == "numpy-inverse":
                    calls[(p, bs)] = lambda bs=bs: numpy_inverse(bs)
                elif p == "inference_mode":
                    calls[(p, bs)] = lambda bs=bs: inference_mode(bs)
                elif p == "fp32-uncalibrated":
                    calls[(p, bs)] = lambda bs=bs: gen.sample(cond, seed=1, batch_size=bs, path="fp32", calibrated=False,
                                                              **modules["fp32"])
                else:
                    calls[(p, bs)] = lambda bs=bs, p=p: gen.sample(cond, seed=1, batch_size=bs, path=p, **modules[p])
                w0, c0 = _clock()
                calls[(p, bs)]()  # warm-up (compiles the compiled paths for this batch shape)
                w1, _ = _clock()
                if w1 - w0 > 5:
                    print(f"  threads {nt} {p} batch {bs}: first call {w1 - w0:.1f} s (compilation)")
        times = {k: [] for k in calls}
        for _ in range(args.reps):
            for k, fn in calls.items():
                w0, c0 = _clock()
                fn()
                w1, c1 = _clock()
                times[k].append((w1 - w0, c1 - c0))
        for (p, bs), t in times.items():
            t = np.asarray(t) / len(cond)
            rows[(nt, p, bs)] = (float(np.median(t[:, 0])), float(np.median(t[:, 1])))
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}; model: {what}; {args.n_images} images per call, {args.reps} interleaved rounds")
    print(f"Pythia 8 + detector (one core): {1e3 * sim['signal_wall']:.1f} ms wall / {1e3 * sim['signal_cpu']:.1f} ms CPU "
          f"per signal event, {1e3 * sim['pileup_wall']:.1f} ms wall / {1e3 * sim['pileup_cpu']:.1f} ms CPU per mu=20 "
          f"pile-up image (marginal, initialisation excluded)")
    base = {nt: rows[(nt, "fp32", args.batch_sizes[0])][0] if (nt, "fp32", args.batch_sizes[0]) in rows else None
            for nt in args.thread_list}
    print(f"{'threads':>7s} {'path':14s} {'batch':>5s} {'ms/img wall':>11s} {'ms/img CPU':>10s} {'vs fp32':>7s} "
          f"{'x pile-up (wall)':>16s} {'x pile-up (CPU s)':>17s}")
    for (nt, p, bs), (w, c) in sorted(rows.items(), key=lambda kv: (kv[0][0], paths.index(kv[0][1]), kv[0][2])):
        vs = base[nt] / w if base[nt] else float("nan")
        print(f"{nt:7d} {p:14s} {bs:5d} {1e3 * w:11.3f} {1e3 * c:10.3f} {vs:7.2f} {sim['pileup_wall'] / w:16.0f} "
              f"{sim['pileup_cpu'] / c:17.0f}")
    best = min(rows.items(), key=lambda kv: kv[1][1])
    (nt, p, bs), (w, c) = best
    print(f"best per CPU-second: {p} batch {bs} threads {nt}: {sim['pileup_cpu'] / c:.0f}x per mu=20 pile-up image, "
          f"{sim['signal_cpu'] / c:.0f}x per signal event (CPU s per image, model vs Pythia + detector)")
    hard = read_events(args.hard) if args.hard else None
    _fidelity(gen, args.paths, cond[:args.n_fidelity], hard.subset(slice(0, args.n_fidelity)) if hard else None, 256)


def _masses(text: str) -> list[tuple[float, float]]:
    """``"1000:400,1400:400"`` → ``[(1000.0, 400.0), (1400.0, 400.0)]`` (m_gluino:m_neutralino, GeV)."""
    try:
        pts = [tuple(float(v) for v in p.split(":")) for p in text.split(",") if p.strip()]
    except ValueError:
        pts = [()]
    if not pts or any(len(p) != 2 for p in pts):
        raise ValueError(f"mass points: expected 'm_gluino:m_neutralino,...' in GeV, found {text!r}")
    return pts


def _interp_data(wd: Path, args):
    """Training / validation / held-out test files of the interpolation test.  The default grid
    keeps the original file names (``interp_train.h5`` …); any other grid, size or seed gets its
    own names, so that a cached file is never re-used for a different request."""
    train_pts, held = _masses(args.train_masses), _masses(args.heldout_mass)
    if len(held) != 1:
        raise ValueError(f"--heldout-mass: expected one point, found {args.heldout_mass!r}")
    held = held[0]
    if held in train_pts:
        raise ValueError(f"--heldout-mass {held} is also a training point ({args.train_masses})")
    n_val = args.n // 4 if args.n_val is None else args.n_val
    n_test = args.n if args.n_test is None else args.n_test
    test_seeds = getattr(args, "test_seed", None) or [args.data_seed + 2]
    if len(set(test_seeds)) != len(test_seeds):
        raise ValueError(f"--test-seed: expected different seeds (one held-out file each), found {test_seeds}")
    default = (train_pts == [(1000.0, 400.0), (1400.0, 400.0)] and held == (1200.0, 400.0) and n_val == args.n // 4
               and n_test == args.n and args.data_seed == 1 and test_seeds == [3])
    grid = "-".join(f"{g:g}_{x:g}" for g, x in train_pts)
    names = (("interp_train", "interp_val", "interp_test") if default else
             (f"interp_train_{grid}_n{args.n}_s{args.data_seed}", f"interp_val_{grid}_n{n_val}_s{args.data_seed + 1}",
              *(f"interp_test_{held[0]:g}_{held[1]:g}_n{n_test}_s{t}" for t in test_seeds)))
    s = args.data_seed
    train = _data(wd, names[0], process="signal", n_per_point=args.n, masses=train_pts, seed=s, workers=args.workers)
    val = _data(wd, names[1], process="signal", n_per_point=n_val, masses=train_pts, seed=s + 1, workers=args.workers)
    tests = [_data(wd, name, process="signal", n_per_point=n_test, masses=[held], seed=t, workers=args.workers)
             for name, t in zip(names[2:], test_seeds)]
    for d, name, want in ((train, names[0], args.n * len(train_pts)), (val, names[1], n_val * len(train_pts)),
                          *((t, name, n_test) for t, name in zip(tests, names[2:]))):
        if len(d) != want:
            raise ValueError(f"{wd / name}.h5: expected {want} events, found {len(d)}")
    test = tests[0] if len(tests) == 1 else EventImages.concatenate(tests)  # several seeds: one pooled held-out set
    return train_pts, held, train, val, test


def interpolation(args):
    """Train on ``--train-masses``, generate at ``--heldout-mass``, compare with Pythia there.

    Selection (``--eval-every``) uses only the validation events at the training points; the
    held-out test events are used once, for the final table and the report."""
    if args.n_samples < 1:
        raise ValueError(f"--n-samples: expected a number of generated samples >= 1, found {args.n_samples}")
    wd = Path(args.workdir)
    train_pts, held, train, val, test = _interp_data(wd, args)
    if args.simulate_only:
        print(f"  data: {len(train)} training, {len(val)} validation events at {train_pts}; {len(test)} at {held}")
        return
    model_kw = {"filters": args.filters, **json.loads(args.model)}
    if args.threshold_from_data:
        model_kw["threshold"] = _threshold_from_data(train, args.family, [])
    sel_val = val
    if args.n_select:  # the first n_select validation events of every training point select the checkpoint
        keep = np.concatenate([np.flatnonzero(np.all(val.conditions[:, :2] == p, axis=1))[:args.n_select]
                               for p in train_pts])
        sel_val = val.subset(np.sort(keep))
        print(f"  selection on {len(sel_val)} of the {len(val)} validation events")
    if args.from_checkpoint and "," in args.from_checkpoint:  # several: their equal-weight mixture
        paths = args.from_checkpoint.split(",")
        gen = EventEnsemble.from_checkpoints(paths)
        print(f"  evaluating the mixture of {len(paths)} generators ({', '.join(paths)}); not trained here")
        for p, m in zip(paths, gen.members):  # the selection score of each member and of the mixture
            print(f"  validation KS score {DOMAIN.selection_score(m, sel_val, seed=args.train_seed):.2f}: {p}")
        print(f"  validation KS score {DOMAIN.selection_score(gen, sel_val, seed=args.train_seed):.2f}: the mixture")
        if args.select_members:  # greedy ensemble selection on the validation events (mean score of 3 samples)
            def score(ks):
                ens = EventEnsemble([gen.members[k] for k in ks])
                return float(np.mean([DOMAIN.selection_score(ens, sel_val, seed=args.train_seed + r) for r in range(3)]))
            chosen, hist = select_members(len(paths), score)
            print("  member selection (validation KS score, mean of 3 samples): "
                  + ", ".join(f"{'+'.join(str(k) for k in ks)}: {v:.2f}" for ks, v in hist))
            print(f"  chosen: {len(chosen)} of {len(paths)}: " + ", ".join(paths[k] for k in chosen))
            gen = EventEnsemble([gen.members[k] for k in chosen])
    elif args.from_checkpoint:  # evaluate a saved generator again (e.g. after a sampler change), no training
        gen = DOMAIN.from_payload(load_checkpoint(args.from_checkpoint), args.from_checkpoint)
        print(f"  evaluating {args.from_checkpoint} ({gen.model.family} {gen.model.hparams}); not trained here")
    else:
        gen = _train(train, sel_val, args.family, [], args.minutes, args.eval_every, args.train_seed, model_kw,
                     lr=args.lr, augment=args.augment, steps=args.steps, lr_schedule=args.lr_schedule, ema=args.ema,
                     ema_bn=args.ema_bn, select_extra=args.select_extra, track=args.track)
    out = Path(args.workdir) / f"interp_report_{args.family}{args.tag}"
    out.mkdir(exist_ok=True)
    if not args.from_checkpoint:
        gen.save(out / "best.pt")  # for sampling scans afterwards (hepgen sample, steps/solver)
    gen.sample_like(test.subset(np.arange(min(8, len(test)))), seed=4)  # warm-up
    t0 = time.perf_counter()
    fake = gen.sample_like(test, seed=5)
    print(f"  sampling: {1e3 * (time.perf_counter() - t0) / len(test):.1f} ms per image ({args.family} {model_kw}, "
          f"batch 256, {torch.get_num_threads()} thread(s))")
    o_r, o_g = event_observables(test.images), event_observables(fake.images)
    print(f"held-out point m_gluino={held[0]:g}, m_neutralino={held[1]:g} GeV: {len(test)} Pythia events vs "
          f"{len(fake)} generated; trained on {len(train)} events at {train_pts}")
    for k in ("n_jets", "jet_pt", "summed_mass"):
        a, b = o_r[k], o_g[k]
        p = stats.ks_2samp(a, b).pvalue if len(a) and len(b) else float("nan")
        w1 = stats.wasserstein_distance(a, b) if len(a) and len(b) else float("nan")
        print(f"  {k:12s} KS p = {p:.3g}   W1 = {w1:.3g}   mean Pythia {np.mean(a) if len(a) else np.nan:.4g}"
              f"   generated {np.mean(b) if len(b) else np.nan:.4g}")
    ms_r, ms_g = o_r["summed_mass"].mean(), o_g["summed_mass"].mean()
    print(f"  summed-jet-mass mean: Pythia {ms_r:.1f} GeV, generated {ms_g:.1f} GeV ({100 * (ms_g / ms_r - 1):+.1f} %)")
    for k in ("leading_pt", "leading_mass", "ht", "total_energy"):
        a, b = o_r[k][np.isfinite(o_r[k])], o_g[k][np.isfinite(o_g[k])]
        print(f"  {k:12s} mean Pythia {a.mean():.4g}, generated {b.mean():.4g}; 99th percentile {np.percentile(a, 99):.4g}"
              f" / {np.percentile(b, 99):.4g}; max {a.max():.4g} / {b.max():.4g}")
    print(f"  non-empty pixels per image: Pythia {(1 - o_r['sparsity']).mean() * 4096:.0f}, generated "
          f"{(1 - o_g['sparsity']).mean() * 4096:.0f}")
    print(f"  KS score (Σ −log p): {ks_selection_score(o_r, o_g):.2f}")
    if args.n_samples > 1:  # the same weights, other noise: how much the p-values move from sample to sample
        o_more = [o_g] + [event_observables(gen.sample_like(test, seed=1000 + i).images)
                          for i in range(1, args.n_samples)]
        _print_sample_spread(o_r, o_more, seed=args.train_seed)
    for point in train_pts:
        sub = val.subset(np.all(val.conditions[:, :2] == point, axis=1))
        o_s, o_f = event_observables(sub.images), event_observables(gen.sample_like(sub, seed=6).images)
        print(f"  trained point {point}: summed-mass mean Pythia {o_s['summed_mass'].mean():.1f}"
              f", generated {o_f['summed_mass'].mean():.1f} GeV; leading-jet pT mean Pythia "
              f"{np.nanmean(o_s['leading_pt']):.1f}, generated {np.nanmean(o_f['leading_pt']):.1f} GeV")
    real = EventImages.concatenate([val, test])
    fake = gen.sample_like(real, seed=8)
    metrics, extras = evaluate_events(real, fake, seed=0)
    write_event_report(metrics, figures(real, fake, extras, metrics), out,
                       title=f"interpolation to m_gluino={held[0]:g} GeV")
    print(f"  report: {out / 'report.html'}; classifier AUC {metrics.get('classifier_auc')}, FPD {metrics.get('fpd')}"
          f" (floor {metrics.get('fpd_floor')})")


def _event_rows(o: dict, idx: np.ndarray) -> dict:
    """The :data:`SELECTION_OBSERVABLES` of the events ``idx`` of an :func:`event_observables`
    dict: per-event arrays indexed, ``jet_pt`` (flat, event by event) gathered through ``n_jets``.

    >>> o = {"n_jets": np.array([2., 0, 1]), "jet_pt": np.array([300., 250, 400]), "summed_mass": np.zeros(3)}
    >>> _event_rows(o, np.array([2, 0]))["jet_pt"].tolist()
    [400.0, 300.0, 250.0]
    """
    n = o["n_jets"].astype(np.int64)
    start = np.concatenate([[0], np.cumsum(n)])
    if start[-1] != len(o["jet_pt"]):
        raise ValueError(f"_event_rows: expected {start[-1]} jets (sum of n_jets), found {len(o['jet_pt'])}")
    jets = [o["jet_pt"][start[i]:start[i + 1]] for i in idx]
    return {"n_jets": o["n_jets"][idx], "summed_mass": o["summed_mass"][idx],
            "jet_pt": np.concatenate(jets) if jets else np.zeros(0)}


def sample_spread(o_real: dict, o_samples: list[dict], n_splits: int = 200, seed: int = 0) -> dict:
    """KS p-values of the selection observables, real against each of several generated samples
    (the same generator, other noise), and the real-vs-real reference: the same test on random
    halves of the real events (whole events kept together, so the jets of one event stay in one
    half).  A model that reproduced the real distribution exactly would give p-values uniform on
    [0, 1] (median 0.5, p > 0.05 in 95 % of samples) up to the discreteness of the fat-jet count,
    which the reference shows.

    Returns ``{observable: {"p": [p per sample], "median": m, "pass": fraction > 0.05,
    "null_pass": fraction > 0.05 over the splits, "null_median": m}}``.

    >>> rng = np.random.default_rng(1)
    >>> mk = lambda n: {"n_jets": np.ones(n), "jet_pt": rng.normal(500, 50, n), "summed_mass": rng.normal(700, 70, n)}
    >>> r = sample_spread(mk(400), [mk(400) for _ in range(20)], n_splits=50)
    >>> 0.8 <= r["jet_pt"]["pass"] <= 1.0 and 0.8 <= r["summed_mass"]["null_pass"] <= 1.0
    True
    >>> sample_spread(mk(400), [{**mk(400), "jet_pt": rng.normal(530, 50, 400)}])["jet_pt"]["pass"]
    0.0
    """
    rng = np.random.default_rng(seed)
    n = len(o_real["n_jets"])
    splits = [rng.permutation(n) for _ in range(n_splits)]
    halves = [(_event_rows(o_real, s[: n // 2]), _event_rows(o_real, s[n // 2:])) for s in splits]
    out = {}
    for k in SELECTION_OBSERVABLES:
        ps = [float(stats.ks_2samp(o_real[k], o[k]).pvalue) for o in o_samples]
        null = [float(stats.ks_2samp(a[k], b[k]).pvalue) for a, b in halves]
        out[k] = {"p": ps, "median": float(np.median(ps)), "pass": float(np.mean(np.array(ps) > 0.05)),
                  "null_pass": float(np.mean(np.array(null) > 0.05)), "null_median": float(np.median(null))}
    return out


def _print_sample_spread(o_r: dict, o_samples: list[dict], seed: int = 0) -> None:
    spread = sample_spread(o_r, o_samples, seed=seed)
    print(f"  {len(o_samples)} generated samples of {len(o_r['n_jets'])} events (seeds 5, 1001 …) against the same "
          f"Pythia events; reference: Pythia half vs half, 200 random splits by event")
    for k, v in spread.items():
        print(f"  {k:12s} KS p median {v['median']:.3g}, p > 0.05 in {100 * v['pass']:.0f} % of samples "
              f"[{' '.join(f'{p:.2g}' for p in v['p'])}]; Pythia halves: median {v['null_median']:.2f}, "
              f"p > 0.05 in {100 * v['null_pass']:.0f} %")
    dm = [100 * (o["summed_mass"].mean() / o_r["summed_mass"].mean() - 1) for o in o_samples]
    print(f"  summed-jet-mass mean vs Pythia over the samples: {np.mean(dm):+.1f} % (sample to sample "
          f"{np.std(dm, ddof=1):.1f} %; [{' '.join(f'{d:+.1f}' for d in dm)}])")


def _figure5_obs(o_hard, o_real, o_gen, path, mu, gen_label="generated"):
    """The paper's Figure 5 style: fat-jet multiplicity and summed jet mass, hard scatter alone
    and with real or generated pile-up overlaid (``event_observables`` of the three samples)."""
    obs = {"no pile-up": o_hard, f"+ Pythia pile-up (mu={mu})": o_real, f"+ {gen_label} pile-up (mu={mu})": o_gen}
    fig = Figure(figsize=(10, 4))
    for i, (k, label) in enumerate((("n_jets", "fat-jet multiplicity"), ("summed_mass", "summed jet mass [GeV]"))):
        ax = fig.add_subplot(1, 2, i + 1)
        allv = np.concatenate([o[k] for o in obs.values()])
        edges = np.arange(-0.5, allv.max() + 1.5) if k == "n_jets" else np.linspace(0, allv.max() + 1, 30)
        for (name, o), color in zip(obs.items(), ("k", "tab:blue", "tab:red")):
            ax.hist(o[k], edges, histtype="step", density=True, label=name, color=color)
        ax.set_xlabel(label)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # headroom: the legend sits above the histograms
        ax.legend(fontsize=7, loc="upper right")
    path.write_bytes(base64.b64decode(figure_png_base64(fig)))


def _images_alone(o_real: dict, o_gen: dict) -> str:
    """The pile-up images themselves, Pythia vs generated (``event_observables`` of each)."""
    return (f"total energy {o_real['total_energy'].mean():.1f} vs {o_gen['total_energy'].mean():.1f} GeV; non-empty "
            f"pixels {(1 - o_real['sparsity']).mean() * 4096:.0f} vs {(1 - o_gen['sparsity']).mean() * 4096:.0f}; "
            f"pixel energy mean {_pixel_energy_mean(o_real):.2f} vs {_pixel_energy_mean(o_gen):.2f} GeV")


def _pixel_floor(data) -> float:
    """The smallest non-empty pixel energy of ``data`` (GeV): below it no simulated pixel exists
    (the detector's EnergyMin / significance thresholds)."""
    e = data.images[data.images > 0]
    return float(e.min()) if e.size else 0.0


def _threshold_from_data(train, family: str, conditions: list[str]) -> float:
    """The DCGAN's output threshold (in the log-scaled pixel feature of the domain's preprocessor)
    at the smallest simulated pixel energy of ``train`` (:func:`_pixel_floor`): below it the
    detector writes no pixel, so neither should the model."""
    pre = DOMAIN.fit_preprocessor(train, TrainConfig(family=family, conditions=conditions))
    floor = _pixel_floor(train)
    threshold = float(pre.transform(np.full((1, 1, 1, 1), floor))[0, 0])
    print(f"  smallest training pixel {floor:.3f} GeV -> output threshold {threshold:.4f}")
    return threshold


def pileup(args):
    """Pile-up GAN per mu and the overlay on the same hard events (the paper's Figure 5).

    Validation (checkpoint selection) is the last ``--n-val`` images of the training file, held
    out from training; the overlay uses a separate test file of ``--n-test`` >= ``--n-hard``
    Pythia pile-up images and as many generated ones.
    """
    wd = Path(args.workdir)
    n_hard = args.n_hard
    hard = _data(wd, f"pu_hard_n{n_hard}", process="signal", n_per_point=n_hard, masses=[(1400.0, 400.0)], seed=11,
                 workers=args.workers)
    res = {}
    for mu in args.mu:
        full = _data(wd, f"pu{mu}_train_n{args.n_train}", process="minbias", n_per_point=args.n_train, mu=mu,
                     seed=12 + mu, workers=args.workers)
        n_val = 250 if args.n_val is None else args.n_val
        n_tr = len(full) - n_val
        tr, val = full.subset(slice(0, n_tr)), full.subset(slice(n_tr, len(full)))
        model_kw = {"filters": args.filters, **json.loads(args.model)}
        if args.threshold_from_data:
            model_kw["threshold"] = _threshold_from_data(tr, args.family, ["mu"])
        ckpt = wd / f"pileup_mu{mu}{args.tag}.pt"
        if args.reuse and ckpt.exists():
            gen = DOMAIN.from_payload(load_checkpoint(ckpt), str(ckpt))
            print(f"mu={mu}: generator from {ckpt} (--reuse)")
        else:
            print(f"mu={mu}: training on {len(tr)} pile-up images, validating on {len(val)} ({args.minutes:.1f} min)")
            init = None
            if args.init:
                init = load_checkpoint(args.init.format(mu=mu))["model"]
                print(f"  continuing from {args.init.format(mu=mu)}")
            gen = _train(tr, val, args.family, ["mu"], args.minutes, args.eval_every, args.train_seed, model_kw,
                         lr=args.lr, init_state=init, ema=args.ema, steps=args.steps, lr_schedule=args.lr_schedule)
            gen.save(ckpt)
        if args.train_only:
            continue
        n_test = 1000 if args.n_test is None else args.n_test
        te = _data(wd, f"pu{mu}_test_n{n_test}", process="minbias", n_per_point=n_test, mu=mu,
                   seed=13 + mu, workers=args.workers)
        fake = gen.sample_like(te, seed=7)
        n = len(hard)
        if len(te) < n:
            raise ValueError(f"pileup: need >= {n} test pile-up images (one per hard event), found {len(te)} "
                             "(--n-test >= --n-hard)")
        # the jets of each sample once, for the shifts (as overlay_shift computes them) and the figure
        o0 = event_observables(hard.images, hard.eta_max)
        o_r = event_observables(hard.images + te.images[:n], hard.eta_max)
        o_g = event_observables(hard.images + fake.images[:n], hard.eta_max)
        res[mu] = overlay_shift_observables(o0, o_r, o_g)
        o_t, o_f = event_observables(te.images), event_observables(fake.images)
        print(f"  pile-up images alone (test {len(te)}): {_images_alone(o_t, o_f)} "
              f"(smallest {_pixel_floor(te):.3f} vs {_pixel_floor(fake):.3f})")
        _figure5_obs(o0, o_r, o_g, Path(args.workdir) / f"pileup_mu{mu}{args.tag}.png", mu)
        for k, v in res[mu].items():
            err = v["shift_rel_diff_err"] or np.nan  # paired over the same hard events (overlay_shift)
            print(f"  {k:12s} hard {v['mean_hard']:.4g}; shift with real pile-up {v['shift_real']:+.4g} ± "
                  f"{v['shift_real_err']:.2g}, with generated {v['shift_gen']:+.4g} ± {v['shift_gen_err']:.2g} "
                  f"(shift differs by {100 * (v['shift_rel_diff'] or 0):+.1f} ± {100 * err:.1f} %); "
                  f"overlaid means differ by {100 * (v['mean_rel_diff'] or 0):+.1f} %")
    print(json.dumps(res))


def _joined_files(spec: str, option: str) -> tuple[list[str], list[int]]:
    """The files of ``spec`` (one path or several, comma-separated) and their event counts, from
    the file headers only (no image is read).

    The files must have been made with the same settings: one ``eta_max`` and, where both files
    record them, one generation/detector ``config`` and ``pileup`` mode (a file merged from chunk
    files has no ``config``); else ``ValueError`` naming the option and file."""
    paths = [t.strip() for t in spec.split(",") if t.strip()]
    heads = [event_file_header(p) for p in paths]
    first = heads[0][1]
    for p, (_, attrs) in zip(paths[1:], heads[1:]):
        for key in ("eta_max", "config", "pileup"):
            if key != "eta_max" and (key not in attrs or key not in first):
                continue
            if str(attrs.get(key)) != str(first.get(key)):
                raise ValueError(f"overlay {option}: {p} has attribute {key!r} {attrs.get(key)!r}, expected "
                                 f"{first.get(key)!r} (as {paths[0]}): files of one set must share settings")
    return paths, [n for n, _ in heads]


def _read_joined(spec: str, option: str) -> EventImages:
    """The event files of ``spec`` concatenated in that order, read whole (checks: :func:`_joined_files`)."""
    paths, counts = _joined_files(spec, option)
    return _read_rows(paths, counts, 0, sum(counts))


def _read_rows(paths: list[str], counts: list[int], start: int, stop: int) -> EventImages:
    """Events ``start … stop − 1`` of the files ``paths`` (``counts`` events each) joined in order,
    reading only those rows of each file (``read_events(path, rows=slice)``)."""
    parts, offset = [], 0
    for path, n in zip(paths, counts):
        a, b = max(start - offset, 0), min(stop - offset, n)
        if a < b:
            parts.append(read_events(path, rows=slice(a, b)))
        offset += n
    return parts[0] if len(parts) == 1 else EventImages.concatenate(parts)


#: the flat (not per-event) keys of ``event_observables``, not kept across chunks
_FLAT_KEYS = ("jet_pt", "pixel_energy")


def _per_event(images: np.ndarray, eta_max: float) -> dict:
    """``event_observables`` of ``images`` (``(N, C, H, W)`` GeV) without its flat keys (``jet_pt``,
    ``pixel_energy``: one entry per jet / non-empty pixel, which would grow with the sample), plus
    ``n_pixels`` ``(N,)``, the non-empty pixels per image, so that the mean pixel energy of a
    sample is still ``Σ total_energy / Σ n_pixels`` (:func:`_pixel_energy_mean`)."""
    o = event_observables(images, eta_max)
    out = {k: v for k, v in o.items() if k not in _FLAT_KEYS}
    out["n_pixels"] = np.rint((1.0 - o["sparsity"]) * (images.shape[-2] * images.shape[-1]))
    return out


def _concat(parts: list[dict]) -> dict:
    """The per-event observables of consecutive chunks joined (key by key, in order)."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _pixel_energy_mean(o: dict) -> float:
    """The mean energy of the non-empty pixels (GeV): of ``pixel_energy`` where present, else pooled
    from the per-event totals over the per-event counts (:func:`_per_event`; the two agree up to
    rounding: an empty pixel adds nothing to the total)."""
    if "pixel_energy" in o:
        return float(o["pixel_energy"].mean())
    return float(o["total_energy"].sum() / o["n_pixels"].sum())


def chunk_seed(seed: int, start: int) -> int:
    """The generator's sampling seed for the overlay chunk that starts at event ``start`` (0-based,
    ``start = index · --chunk``) of a run with ``--seed seed``: ``seed + start``.

    ``EventGenerator.sample`` seeds the noise of each batch of ``batch_size`` (256) images from
    ``seed + (the batch's first row)``, so with a chunk size that is a multiple of 256 every image
    gets exactly the noise of the whole-file call ``sample_like(all, seed)`` (the runs before
    ``--chunk`` existed), and in any case chunk ``index``'s draw depends only on ``seed``, the
    chunk's start and its conditions, not on how many events follow; no noise batch is used twice
    within a run (each is seeded by its own first event's global row).

    >>> [chunk_seed(7, c * 2048) for c in range(3)]
    [7, 2055, 4103]
    """
    return int(seed) + int(start)


def mixture_overlay_difference(o_hard: dict, o_real: dict, o_gens: list[dict]) -> float:
    """The larger |relative difference| of the two overlay shifts (fat-jet multiplicity, summed jet
    mass; :func:`overlay_shift_observables`) for the equal-weight mixture of the generators whose
    per-event overlay observables are ``o_gens`` (each on the same hard events as ``o_real``).

    A mixture draws each event's pile-up from one member at random (:class:`EventEnsemble`), so the
    expected overlaid observable of event i is the members' mean at i; this is that expectation,
    without the draw's noise.  Two members, shifts +1 and +3 jets on one event whose real shift
    is +2 (and an exact summed mass): 0.

    >>> o0 = {"n_jets": np.array([4.0]), "summed_mass": np.array([500.0])}
    >>> o_r = {"n_jets": np.array([6.0]), "summed_mass": np.array([600.0])}
    >>> g1 = {"n_jets": np.array([5.0]), "summed_mass": np.array([600.0])}
    >>> g2 = {"n_jets": np.array([7.0]), "summed_mass": np.array([600.0])}
    >>> mixture_overlay_difference(o0, o_r, [g1, g2]), mixture_overlay_difference(o0, o_r, [g1])
    (0.0, 0.5)
    """
    mix = {k: np.mean([o[k] for o in o_gens], axis=0) for k in ("n_jets", "summed_mass")}
    r = overlay_shift_observables(o_hard, o_real, mix)
    return max(abs(r[k]["shift_rel_diff"]) for k in ("n_jets", "summed_mass"))


def overlay_select_members(o_hard: dict, o_real: dict, o_gens: list[dict]):
    """Greedy ensemble selection (:func:`select_members`) of pile-up generators on an overlay set:
    the score of a mixture is :func:`mixture_overlay_difference`.  Meant for a validation set; the
    chosen mixture is then tested on events it was not chosen on.  Returns ``select_members``'s
    (chosen indices, history)."""
    return select_members(len(o_gens), lambda ks: mixture_overlay_difference(o_hard, o_real, [o_gens[k] for k in ks]))


def overlay(args):
    """Overlay several already-trained pile-up generators on one evaluation set (no training).

    ``--hard`` (signal events) and ``--pileup-test`` (Pythia pile-up images at ``--mu``, at least
    as many) are external files, each one path or several comma-separated ones that are joined in
    order (:func:`_joined_files`); every checkpoint of ``--checkpoints`` samples as many pile-up
    images (conditions of the test file) and is overlaid on the same hard events.

    Bounded memory: the events are read, overlaid and reduced to per-event observables in chunks
    of ``--chunk`` (hard alone, + Pythia pile-up, Pythia pile-up alone; per generator: + generated,
    generated alone), sampling each generator per chunk with :func:`chunk_seed` (``--seed`` plus
    the chunk's first event: the whole-file draw when ``--chunk`` is a multiple of 256); only the
    per-event observables are kept (:func:`_per_event`, a few numbers per event), so the peak
    memory is set by ``--chunk``, not by the number of events.  Prints, per generator, both shifts,
    their difference relative to the real shift with its paired error, and whether the 95 % interval
    of that difference lies within ±``--target`` %.
    """
    if args.chunk < 1:
        raise ValueError(f"overlay --chunk: expected a positive number of events per chunk, found {args.chunk}")
    h_paths, h_counts = _joined_files(args.hard, "--hard")
    p_paths, p_counts = _joined_files(args.pileup_test, "--pileup-test")
    n = min(args.n_hard or sum(h_counts), sum(h_counts))
    if sum(p_counts) < n:
        raise ValueError(f"overlay: {args.pileup_test} has {sum(p_counts)} pile-up images, need >= {n} "
                         "(one per hard event)")
    gens = {ck: DOMAIN.from_payload(load_checkpoint(ck), ck) for ck in args.checkpoints}
    t0 = time.perf_counter()
    o0, o_r, o_t = [], [], []
    o_g, o_f = {ck: [] for ck in gens}, {ck: [] for ck in gens}
    for start in range(0, n, args.chunk):
        stop = min(start + args.chunk, n)
        te = _read_rows(p_paths, p_counts, start, stop)
        mu_chunk = sorted({float(v) for v in np.round(te.conditions[:, 2], 6)})
        if mu_chunk != [float(args.mu[0])]:
            raise ValueError(f"overlay: {args.pileup_test} has mu {mu_chunk}, expected [{args.mu[0]}] (--mu; "
                             f"events {start}-{stop - 1})")
        hard = _read_rows(h_paths, h_counts, start, stop)
        o0.append(_per_event(hard.images, hard.eta_max))
        o_r.append(_per_event(hard.images + te.images, hard.eta_max))
        o_t.append(_per_event(te.images, te.eta_max))
        for ck, gen in gens.items():
            fake = gen.sample_like(te, seed=chunk_seed(args.seed, start), path=args.path)
            o_f[ck].append(_per_event(fake.images, fake.eta_max))
            o_g[ck].append(_per_event(hard.images + fake.images, hard.eta_max))
        del hard, te
    o0, o_r, o_t = _concat(o0), _concat(o_r), _concat(o_t)
    n_chunks = -(-n // args.chunk)
    print(f"mu={args.mu[0]}: {n} hard events from {args.hard}, {n} Pythia pile-up images from {args.pileup_test} "
          f"({n_chunks} chunk{'s' if n_chunks > 1 else ''} of <= {args.chunk} events; sampling path {args.path}; "
          f"observables and sampling "
          f"{time.perf_counter() - t0:.0f} s)")
    res, o_gen = {}, {}
    for ck in gens:
        o_fk, o_gk = _concat(o_f[ck]), _concat(o_g[ck])
        o_gen[ck] = o_gk  # kept for --select-members
        r = overlay_shift_observables(o0, o_r, o_gk)
        res[ck] = r
        name = Path(ck).stem
        print(f"  {name}: pile-up images alone (Pythia vs generated): {_images_alone(o_t, o_fk)}")
        for k, v in r.items():
            d, e = 100 * (v["shift_rel_diff"] or 0), 100 * (v["shift_rel_diff_err"] or np.nan)
            verdict = ("within" if abs(d) + 1.96 * e < args.target else
                       "outside" if abs(d) - 1.96 * e > args.target else "undecided vs")
            print(f"    {k:12s} hard {v['mean_hard']:.4g}; shift real {v['shift_real']:+.4g} ± {v['shift_real_err']:.2g}, "
                  f"generated {v['shift_gen']:+.4g} ± {v['shift_gen_err']:.2g}; difference {d:+.1f} ± {e:.1f} % "
                  f"(95 % interval [{d - 1.96 * e:+.1f}, {d + 1.96 * e:+.1f}] %: {verdict} ±{args.target:g} %)")
        if args.figures:
            _figure5_obs(o0, o_r, o_gk, Path(args.workdir) / f"overlay_mu{args.mu[0]}_{name}{args.tag}.png", args.mu[0],
                         gen_label=f"generated ({name})")
    chosen = None
    if args.select_members and len(gens) > 1:  # greedy choice of a mixture on this (validation) set
        names = list(gens)
        chosen, hist = overlay_select_members(o0, o_r, [o_gen[ck] for ck in names])
        print("  member selection (larger |difference| of the two shifts of the mixture, %): "
              + ", ".join(f"{'+'.join(str(k) for k in ks)}: {100 * v:.2f}" for ks, v in hist))
        print(f"  chosen: {len(chosen)} of {len(names)}: " + ",".join(names[k] for k in chosen))
        chosen = [names[k] for k in chosen]
    out = Path(args.workdir) / f"overlay_mu{args.mu[0]}{args.tag}.json"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps({"hard": args.hard, "pileup_test": args.pileup_test, "n": n, "seed": args.seed,
                                         "chunk": args.chunk, "path": args.path, "results": res, "chosen": chosen},
                                        indent=1))
    print(f"  written {out}")


def pixel_histograms(images: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image pixel-energy spectrum and lit-pixel counts of ``images`` ``(N, C, H, W)`` GeV: the
    non-empty pixels' counts in the bins ``edges`` (GeV) divided by N, and the ``(N,)`` non-empty
    pixels per image.

    >>> img = np.zeros((2, 1, 2, 2)); img[0, 0, 0, 0], img[0, 0, 1, 1], img[1, 0, 0, 1] = 1.5, 20.0, 2.5
    >>> per_image, lit = pixel_histograms(img, np.array([1.0, 2.0, 10.0, 100.0]))
    >>> per_image.tolist(), lit.tolist()
    ([0.5, 0.5, 0.5], [2, 1])
    """
    on = images > 0
    counts, _ = np.histogram(images[on], edges)
    return counts / len(images), on.reshape(len(images), -1).sum(1)


def pixels(args):
    """The pile-up images themselves: pixel-energy spectrum per image and lit pixels per image of
    the first ``--n-images`` Pythia images of ``--pileup-test`` and of each ``--checkpoints``
    generator at their conditions (seed ``--seed``); a calibrated generator (``hepgen calibrate``)
    is shown calibrated and without its map. Prints the means, writes ``pixels_mu<mu><tag>.png``."""
    paths, counts = _joined_files(args.pileup_test, "--pileup-test")
    n = min(args.n_images, sum(counts))
    te = _read_rows(paths, counts, 0, n)
    edges = np.logspace(np.log10(max(_pixel_floor(te), 1e-3)) - 0.05, np.log10(te.images.max()) + 0.3, 60)
    samples = {"Pythia": te.images}
    for ck in args.checkpoints:
        gen = DOMAIN.from_payload(load_checkpoint(ck), ck)
        name = Path(ck).stem
        samples[name] = gen.sample_like(te, seed=args.seed).images
        if getattr(gen, "calibration", None) is not None:
            samples[f"{name} without its map"] = gen.sample_like(te, seed=args.seed, calibrated=False).images
    hists = {k: pixel_histograms(v, edges) for k, v in samples.items()}
    for k, v in samples.items():
        print(f"  {k:32s} energy per image {v.sum(axis=(1, 2, 3)).mean():8.1f} GeV, lit pixels {hists[k][1].mean():6.1f}, "
              f"below 1 GeV {hists[k][0][edges[1:] <= 1.0].sum():6.1f} per image")
    fig = Figure(figsize=(13, 4))
    ax1, ax2, ax3 = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    centres = np.sqrt(edges[1:] * edges[:-1])
    lit_edges = np.linspace(min(h[1].min() for h in hists.values()), max(h[1].max() for h in hists.values()) + 1, 40)
    ref = hists["Pythia"][0]
    for (k, (spec, lit)), style in zip(hists.items(), ("k-", "r-", "r--", "b-", "b--", "g-", "g--", "m-", "m--")):
        ax1.step(centres, spec / np.diff(edges), style, where="mid", label=k)
        ax2.hist(lit, lit_edges, histtype="step", density=True, color=style[0], linestyle=style[1:], label=k)
        if k != "Pythia":
            with np.errstate(divide="ignore", invalid="ignore"):
                ax3.step(centres, spec / ref, style, where="mid", label=k)
    ax1.set(xscale="log", yscale="log", xlabel="pixel energy [GeV]", ylabel="pixels per image per GeV")
    ax2.set(xlabel="lit pixels per image", ylabel="density")
    ax3.set(xscale="log", xlabel="pixel energy [GeV]", ylabel="generated / Pythia", ylim=(0.4, 1.8))
    ax3.axhline(1.0, color="k", lw=0.5)
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=6)
    fig.suptitle(f"pile-up images alone (mu={args.mu[0]}, {n} images each)", fontsize=9)
    fig.tight_layout()
    out = Path(args.workdir) / f"pixels_mu{args.mu[0]}{args.tag}.png"
    out.write_bytes(base64.b64decode(figure_png_base64(fig)))
    print(f"  written {out}")


def curve_labels(checkpoints: list[str], families: list[str]) -> list[str]:
    """One distinct legend / table label per checkpoint: ``family (folder)``; where that repeats,
    ``family (folder/file stem)``; where even that repeats (one file given twice, or equal folder
    and file names in different places), `` #k`` in order of appearance — so that no curve of
    ``figure3`` overwrites another in its dict of curves.

    >>> curve_labels(["r1/best.pt", "r2/best.pt"], ["dcgan", "dcgan"])
    ['dcgan (r1)', 'dcgan (r2)']
    >>> curve_labels(["run/a.pt", "run/b.pt", "x/run/a.pt", "run/c.pt"], ["dcgan", "dcgan", "dcgan", "events_fm"])
    ['dcgan (run/a) #1', 'dcgan (run/b)', 'dcgan (run/a) #2', 'events_fm (run)']
    """
    base = [f"{fam} ({Path(ck).parent.name})" for ck, fam in zip(checkpoints, families)]
    labels = [b if base.count(b) == 1 else f"{fam} ({Path(ck).parent.name}/{Path(ck).stem})"
              for b, ck, fam in zip(base, checkpoints, families)]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        if labels.count(label) > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label} #{seen[label]}"
        out.append(label)
    return out


def figure3(args):
    """The paper's Figure 3: summed-jet-mass mean (± its standard error) against m_gluino, Pythia and
    each stored generator of ``--checkpoints``, at the training points (the validation events'
    conditions) and at the held-out point (the test events'); the held-out point is marked.
    Writes ``figure3<tag>.png`` into ``--workdir`` and prints the table."""
    styles = ("o-k", "s--", "^--", "v--", "D--", "P--")  # Pythia, then up to five generators
    if len(args.checkpoints) > len(styles) - 1:
        raise ValueError(f"figure3 --checkpoints: expected at most {len(styles) - 1} generators, found "
                         f"{len(args.checkpoints)}")
    _, held, _, val, test = _interp_data(Path(args.workdir), args)
    real = EventImages.concatenate([val, test])
    pts = sorted({tuple(p) for p in real.conditions[:, :2].tolist()})

    def means(data):
        sm = event_observables(data.images, data.eta_max)["summed_mass"]
        rows = []
        for p in pts:
            v = sm[np.all(data.conditions[:, :2] == p, axis=1)]
            rows.append((float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))), len(v)))
        return rows

    curves = {"Pythia 8 + detector": means(real)}
    gens = [DOMAIN.from_payload(load_checkpoint(ck), ck) for ck in args.checkpoints]
    for label, gen in zip(curve_labels(args.checkpoints, [g.model.family for g in gens]), gens):
        curves[label] = means(gen.sample_like(real, seed=8))
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    mg = np.array([p[0] for p in pts])
    for (name, rows), style in zip(curves.items(), styles):
        m, e = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        ax.errorbar(mg, m, e, fmt=style, label=name, capsize=3, ms=5)
    ax.axvline(held[0], color="0.6", ls=":", label=f"held out (m_gluino={held[0]:g} GeV)")
    ax.set_xlabel(f"m(gluino) [GeV]  (m(neutralino) = {held[1]:g} GeV)")
    ax.set_ylabel("mean summed jet mass [GeV]")
    ax.legend(fontsize=7)
    out = Path(args.workdir) / f"figure3{args.tag}.png"
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(base64.b64decode(figure_png_base64(fig)))
    print("summed-jet-mass mean ± standard error [GeV] per point (events):")
    for i, p in enumerate(pts):
        cells = [f"{name}: {rows[i][0]:.1f} ± {rows[i][1]:.1f}" + (
            "" if j == 0 else f" ({100 * (rows[i][0] / curves['Pythia 8 + detector'][i][0] - 1):+.1f} %)")
            for j, (name, rows) in enumerate(curves.items())]
        print(f"  {p[0]:g}/{p[1]:g}{' (held out)' if p == held else ''} n={curves['Pythia 8 + detector'][i][2]}: "
              + "; ".join(cells))
    print(f"  written {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["speed", "interpolation", "pileup", "overlay", "figure3", "pixels"])
    ap.add_argument("--workdir", default=os.environ.get("HEPGEN_BENCH_DIR", "/tmp/hepgen_bench_events"))
    ap.add_argument("--n", type=int, default=300, help="events per mass point / pile-up images (training)")
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget")
    ap.add_argument("--steps", type=int, default=None,
                    help="interpolation, pileup: train exactly this many optimiser steps (--minutes stays as a safety stop)")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                    help="interpolation, pileup: learning rate per step; cosine: lr * (1 + cos(pi k / --steps)) / 2")
    ap.add_argument("--eval-every", type=int, default=40, help="steps between KS-score evaluations")
    ap.add_argument("--filters", type=int, default=16, help="base filter count (DCGAN; events_fm: the U-Net base width)")
    ap.add_argument("--family", default="dcgan")
    ap.add_argument("--model", default="{}", help="interpolation, pileup: further model hyper-parameters, JSON")
    ap.add_argument("--lr", type=float, default=2e-4, help="interpolation, pileup: learning rate")
    ap.add_argument("--tag", default="", help="interpolation: suffix of the report folder; pileup: of the saved "
                    "checkpoint and figure names")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--train-masses", default="1000:400,1400:400",
                    help="interpolation: training mass points m_gluino:m_neutralino (GeV), comma-separated")
    ap.add_argument("--heldout-mass", default="1200:400", help="interpolation: the held-out mass point")
    ap.add_argument("--n-val", type=int, default=None,
                    help="interpolation: validation events per training point (default --n / 4); pileup: images of "
                    "the training file held out for checkpoint selection (default 250)")
    ap.add_argument("--data-seed", type=int, default=1,
                    help="interpolation: seed of the training file (validation +1, test +2)")
    ap.add_argument("--test-seed", type=lambda t: [int(v) for v in t.split(",")], default=None,
                    help="interpolation: seed(s) of the held-out file(s) instead of --data-seed + 2 (a fresh held-out "
                    "sample for models already compared on the first); several, comma-separated: one pooled "
                    "held-out set of --n-test events per seed")
    ap.add_argument("--simulate-only", action="store_true", help="interpolation: make the data files and stop")
    ap.add_argument("--augment", action="store_true",
                    help="interpolation: random phi rolls and eta mirroring of every training batch (_augment)")
    ap.add_argument("--n-select", type=int, default=0,
                    help="interpolation: validation events per training point used for checkpoint selection "
                    "(0 = all; fewer make each evaluation cheaper)")
    ap.add_argument("--mu", type=lambda t: [int(v) for v in t.split(",")], default=[20, 50],
                    help="pileup: pile-up levels, comma-separated (default 20,50)")
    ap.add_argument("--n-hard", type=int, default=1000, help="pileup / overlay: hard (signal) events overlaid "
                    "(overlay: the first N of --hard; 0 = all)")
    ap.add_argument("--n-train", type=int, default=2000, help="pileup: Pythia pile-up images per mu (training file)")

    ap.add_argument("--n-test", type=int, default=None,
                    help="pileup: Pythia pile-up images per mu overlaid (default 1000); interpolation: held-out "
                    "Pythia events (default --n)")
    ap.add_argument("--threshold-from-data", action="store_true",
                    help="pileup, interpolation: DCGAN output threshold at the smallest simulated pixel energy")
    ap.add_argument("--checkpoint", help="speed: an events checkpoint (default: an untrained DCGAN, --filters)")
    ap.add_argument("--paths", type=lambda t: t.split(","), default=["fp32", "channels_last", "bf16", "bf16-compile"],
                    help="speed: sampling paths (hepgen.domains.events.inference.EVENT_SAMPLING_PATHS)")
    ap.add_argument("--batch-sizes", type=lambda t: [int(v) for v in t.split(",")], default=[128, 256, 512, 1024])
    ap.add_argument("--thread-list", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2],
                    help="speed: torch thread counts timed")
    ap.add_argument("--n-images", type=int, default=1024, help="speed: images per timed call; pixels: images "
                    "per sample")
    ap.add_argument("--reps", type=int, default=5, help="speed: interleaved rounds")
    ap.add_argument("--n-fidelity", type=int, default=1000, help="speed: images per path for the fidelity check")
    ap.add_argument("--hard", help="speed: hard events (h5) to overlay for the fidelity check; overlay: the hard events "
                    "(several files: comma-separated, joined in order)")
    ap.add_argument("--reuse", action="store_true", help="pileup: load pileup_mu<mu><tag>.pt if it exists")
    ap.add_argument("--init", help="pileup: continue training from this checkpoint ({mu} is replaced by mu)")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="pileup, interpolation: select and keep an exponential moving average of the weights "
                    "(decay, e.g. 0.999)")
    ap.add_argument("--from-checkpoint", help="interpolation: evaluate this saved generator (several, comma-separated:"
                    " their equal-weight mixture, EventEnsemble) at the held-out point "
                    "(table, trained points, report in the --tag folder) instead of training one")
    ap.add_argument("--select-members", action="store_true",
                    help="interpolation, with several --from-checkpoint: keep the members chosen by greedy ensemble "
                         "selection on the validation events (select_members) instead of all; overlay: print the "
                         "greedy choice of a mixture of --checkpoints by the larger |difference| of its two shifts "
                         "(use it on a validation set, not on the test set)")
    ap.add_argument("--n-samples", type=int, default=1,
                    help="interpolation: generated samples of the held-out point (other noise) whose KS p-values "
                         "are printed side by side with Pythia half-vs-half splits; 1: the single table only")
    ap.add_argument("--ema-bn", choices=["copy", "standing"], default="copy",
                    help="interpolation with --ema: the averaged generator's batch-norm statistics copied from the "
                    "live model (default) or recomputed over 50 batches before each evaluation (standing_bn_stats)")
    ap.add_argument("--train-only", action="store_true", help="pileup: train and save, no overlay")
    ap.add_argument("--pileup-test", help="overlay, pixels: Pythia pile-up images (h5) at --mu, one per hard event "
                    "(several files: comma-separated, joined in order)")
    ap.add_argument("--checkpoints", type=lambda t: t.split(","), default=[],
                    help="overlay, pixels: pile-up generator checkpoints; figure3: event generators; comma-separated")
    ap.add_argument("--target", type=float, default=5.0, help="overlay: target on the shift difference, %%")
    ap.add_argument("--path", default="fp32", help="overlay: the generators' sampling path (fp32, channels_last, bf16, "
                    "compile, bf16-compile; hepgen.domains.events.inference)")
    ap.add_argument("--seed", type=int, default=7, help="overlay: sampling seed of the generators")
    ap.add_argument("--train-seed", type=int, default=0,
                    help="interpolation, pileup: seed of the weights, the batches and the selection samples (default 0)")
    ap.add_argument("--figures", action="store_true", help="overlay: a Figure 5 PNG per generator")
    ap.add_argument("--chunk", type=int, default=2048,
                    help="overlay: events read, overlaid and reduced at a time (peak memory ~ chunk, not N); the "
                    "generators sample each chunk with seed --seed + its first event (a multiple of 256 keeps the "
                    "whole-file draw)")
    ap.add_argument("--select-extra", type=lambda t: tuple(t.split(",")), default=(),
                    help="interpolation: observables whose KS -log p is added to the selection score, e.g. leading_pt "
                         f"(among {', '.join(EXTRA_KEYS)})")
    ap.add_argument("--track", type=lambda t: tuple(t.split(",")), default=(),
                    help="interpolation: observables whose generated-vs-validation mean difference (%%) is printed at "
                         "every selection evaluation")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    {"speed": speed, "interpolation": interpolation, "pileup": pileup, "overlay": overlay, "figure3": figure3,
     "pixels": pixels}[args.what](args)


if __name__ == "__main__":
    main()
