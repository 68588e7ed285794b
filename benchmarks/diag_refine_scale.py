"""Diagnostic of issue #17: can the shower refiner learn a pure energy scale?

sim = GFlash (default calorimeter and binning, photons 1–100 GeV, seed 1), data = *other*
GFlash showers (seed 2) with every voxel energy multiplied by ``--scale`` (default 1.065, the
Geant4/GFlash response ratio of the demo geometry): the only difference is the energy scale.
A refiner that works must bring the response E_tot/E_inc of refined sim to data's in every
energy bin.  The script trains a refiner in stages (``--stages``; the run resumes from its
checkpoint, so the stages are one uninterrupted training) and prints after each stage:

* the response E_tot/E_inc of refined sim (moving-average weights and the raw last weights) in
  bins of ln E_inc, against sim and data;
* the critic's gradient with respect to a global scale α of the refined events,
  ``dC(log1p(α E'))/dα`` at α = 1, averaged over sim: > 0 means the critic rewards a larger
  energy (the right direction here), and its value on sim and data;
* the closeness term's gradient on the same scale, ``λ · d closeness/dα`` at α = 1 from the
  identity (its pull against scaling up).

It also prints the size of the scale in the refiner's standardised units (the per-voxel shift
``log1p(1.065 E) − log1p(E)`` over the voxel's spread), the quantity the first suspect is about.

Usage (one thread, ≈ 1–3 min per configuration):
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diag_refine_scale.py --lr 1e-3 --critic-lr 1e-3 \
        --closeness 1 --deterministic --critic-sums --stages 10,20,40 -o /tmp/diag
    (+ ``--scale 1``: the control without any difference; + ``--response total``: the refiner with
    the response factor of :mod:`hepgen.refine.response`).  Findings: docs/refine.md, "Why the pure
    scale fails".
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.refine.adapters import get_adapter
from hepgen.refine.critic_sums import SumsCritic, sum_groups
from hepgen.refine.refiner import Critic, RefinerConfig, _critic_input, refine_arrays, train_refiner
from hepgen.simulate.calorimeter import simulate_dataset

BINS = np.array([6.9, 8.0, 9.2, 10.4, 11.6])  # ln(E_inc / MeV): 1, 3, 10, 33, 110 GeV


def response_by_bin(showers: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
    """Mean E_tot/E_inc in the bins of ln E_inc (``BINS``): ``(len(BINS) - 1,)``."""
    r = showers.sum(axis=1) / e_inc
    k = np.digitize(np.log(e_inc), BINS) - 1
    return np.array([r[k == i].mean() for i in range(len(BINS) - 1)])


def spread_by_bin(showers: np.ndarray, e_inc: np.ndarray) -> np.ndarray:
    """Relative spread std/mean of E_tot/E_inc in the bins of ln E_inc."""
    r = showers.sum(axis=1) / e_inc
    k = np.digitize(np.log(e_inc), BINS) - 1
    return np.array([r[k == i].std() / r[k == i].mean() for i in range(len(BINS) - 1)])


def critic_scale_gradient(critic, model, x: np.ndarray, y: np.ndarray) -> float:
    """Mean over events of dC(x(α))/dα at α = 1 with x(α) = log1p(α · expm1(x)) (a global energy scale)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    alpha = torch.ones(1, requires_grad=True)
    xa = torch.log1p(alpha * torch.expm1(xt))
    c = critic(_critic_input(model, xa, yt, True)).mean()
    g, = torch.autograd.grad(c, alpha)
    return float(g)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sim", type=int, default=1500)
    p.add_argument("--n-data", type=int, default=800)
    p.add_argument("--scale", type=float, default=1.065)
    p.add_argument("--stages", default="10,20,40", help="epochs after which to print the diagnostics")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--critic-lr", type=float, default=1e-3)
    p.add_argument("--closeness", type=float, default=1.0)
    p.add_argument("--ema", type=float, default=RefinerConfig.ema)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--critic-sums", action="store_true")
    p.add_argument("--response", choices=("off", "total", "layers"), default="off", help="RefinerConfig.response")
    p.add_argument("--critic-hidden", type=int, default=RefinerConfig.critic_hidden)
    p.add_argument("--n-critic", type=int, default=RefinerConfig.n_critic)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sim = simulate_dataset(a.n_sim, seed=1)
    dat = simulate_dataset(a.n_data, seed=2)
    dat.showers = (dat.showers * a.scale).astype(np.float32)
    ad = get_adapter("showers")
    st = ad.fit(sim)
    xs, ys = ad.to_arrays(sim, st)
    xd, yd = ad.to_arrays(dat, st)
    groups = sum_groups(ad, sim)
    e_s, e_d = sim.incident_energies[:, 0], dat.incident_energies[:, 0]
    pool = np.concatenate([xs, xd])
    # fresh samples of the same two distributions, never seen in training: W on them = what the
    # critic learned about the distributions, W on the training samples minus it = memorised samples
    sim_f, dat_f = simulate_dataset(a.n_sim, seed=3), simulate_dataset(a.n_data, seed=4)
    dat_f.showers = (dat_f.showers * a.scale).astype(np.float32)
    xs_f, ys_f = ad.to_arrays(sim_f, st)
    xd_f, yd_f = ad.to_arrays(dat_f, st)
    s_pool = torch.log1p(torch.expm1(torch.from_numpy(pool)) @ torch.from_numpy(groups).T).numpy() - \
        np.concatenate([ys, yd])[:, :1]
    s_sim = torch.log1p(torch.expm1(torch.from_numpy(xs)) @ torch.from_numpy(groups).T).numpy() - ys[:, :1]
    print("critic-sum features (log response per layer 0-7, total): shift of the scale in units of their "
          "pooled spread", np.round(np.log(a.scale) / s_pool.std(0), 3).tolist(),
          "; spread of sim's total log response", round(float(s_sim[:, -1].std()), 4))
    shift = np.log1p(a.scale * np.expm1(xs)) - xs
    print(f"pure scale x{a.scale}: per-voxel shift mean {shift.mean():.4f} (non-zero voxels "
          f"{shift[xs > 0].mean():.4f}) in log1p(E/MeV); in units of the voxel spread "
          f"{(shift / np.maximum(pool.std(0), 1e-3)).mean():.4f} (non-zero {(shift / np.maximum(pool.std(0), 1e-3))[xs > 0].mean():.4f})")
    print("bins of ln E_inc:", BINS.tolist())
    print("response sim ", np.round(response_by_bin(sim.showers, e_s), 4).tolist(),
          " rel. spread", np.round(spread_by_bin(sim.showers, e_s), 4).tolist())
    print("response data", np.round(response_by_bin(dat.showers, e_d), 4).tolist(),
          " rel. spread", np.round(spread_by_bin(dat.showers, e_d), 4).tolist())
    cfg = RefinerConfig(lr=a.lr, critic_lr=a.critic_lr, closeness=a.closeness, ema=a.ema,
                        stochastic=not a.deterministic, critic_sums=a.critic_sums, seed=a.seed,
                        critic_hidden=a.critic_hidden, n_critic=a.n_critic, response=a.response)
    ck = out / "refiner.pt"
    t0 = time.perf_counter()
    for ep in (int(v) for v in a.stages.split(",")):
        model, hist = train_refiner(xs, ys, xd, yd, dataclasses.replace(cfg, epochs=ep), checkpoint=ck,
                                    progress=False, clip_min=ad.clip_min, sum_groups=groups)
        payload = load_checkpoint(ck)
        raw = type(model)(**_ctor(model))
        raw.load_state_dict(payload["trainer"]["raw_model"])
        raw.eval()
        d, n_lab = xs.shape[1], ys.shape[1]
        base = Critic(d + n_lab + (len(groups) if a.critic_sums else 0), cfg.critic_hidden)
        critic = SumsCritic(base, groups, model.x_mean, model.x_std, n_lab, pool, model.y_mean, model.y_std,
                            np.concatenate([ys, yd])) if a.critic_sums else base
        critic.load_state_dict(payload["trainer"]["critic"])
        for p_ in critic.parameters():
            p_.requires_grad_(False)
        xr = refine_arrays(model, xs, ys, seed=1)
        xr_raw = refine_arrays(raw, xs, ys, seed=1)
        er, er_raw = ad.from_arrays(xr, sim, st).showers, ad.from_arrays(xr_raw, sim, st).showers
        xs_t, xr_t = torch.from_numpy(xs), torch.from_numpy(xr)
        print(f"--- after {ep} epochs ({time.perf_counter() - t0:.0f} s): critic W {hist['critic_w'][-1]:.3f}, "
              f"closeness {hist['closeness'][-1]:.4f}")
        print("response refined (EMA)", np.round(response_by_bin(er, e_s), 4).tolist(),
              " rel. spread", np.round(spread_by_bin(er, e_s), 4).tolist())
        print("response refined (raw)", np.round(response_by_bin(er_raw, e_s), 4).tolist())
        print(f"critic dC/d(scale) at alpha=1: on sim {critic_scale_gradient(critic, model, xs, ys):+.3f}, "
              f"on refined {critic_scale_gradient(critic, model, xr, ys):+.3f}, "
              f"on data {critic_scale_gradient(critic, model, xd, yd):+.3f}; "
              f"E[C(data)] - E[C(refined)] {float(critic(_critic_input(model, torch.from_numpy(xd), torch.from_numpy(yd), True)).mean() - critic(_critic_input(model, xr_t, torch.from_numpy(ys), True)).mean()):.3f}")
        def w_of(x_a, y_a, x_b, y_b, critic=critic, model=model):
            def c(x_, y_):
                return critic(_critic_input(model, torch.from_numpy(x_), torch.from_numpy(y_), True)).mean()
            return float(c(x_b, y_b) - c(x_a, y_a))
        print(f"critic's W of unrefined sim vs data: training samples {w_of(xs, ys, xd, yd):.3f}, "
              f"fresh samples {w_of(xs_f, ys_f, xd_f, yd_f):.3f}")
        alpha = torch.tensor([1.0 + 1e-3])
        moved = torch.log1p(alpha * torch.expm1(xs_t))
        close = float(model.closeness(xs_t, moved)) / 1e-3
        print(f"closeness term per unit of global scale: lambda * d close/d alpha = {a.closeness * close:.3f}")


def _ctor(model) -> dict:
    """Constructor arguments of a ResidualRefiner like ``model`` (to hold the raw weights)."""
    kw = {"n_features": model.n_features, "n_labels": model.n_labels, "hidden": model.inp.out_features,
          "n_blocks": len(model.blocks), "stochastic": model.stochastic, "clip_min": model.clip_min}
    if model.response is not None:
        kw["response_groups"] = model.response.n_groups
    return kw


if __name__ == "__main__":
    main()
