"""Diagnostic of issue #17 on the Auger-like toy: does the trained critic memorise its training samples?

The Wasserstein critic ``C`` of a refiner run (the checkpoint's ``trainer.critic``) gives the
estimate ``W = E[C(data)] − E[C(x)]``.  Evaluated on the samples the refiner was trained on and on
*fresh* samples of the same two distributions (new toy events, never seen in training), the two
estimates agree when the critic learned the distributions; when ``W_train ≫ W_fresh`` it
memorised the finite samples (the shower diagnostic ``diag_refine_scale.py`` found W 2.8–4 on
training samples, ≈ 0 on fresh ones).  Printed for unrefined sim and for refined sim (the
checkpoint's moving-average refiner, noise seed 1).

The training samples are rebuilt as ``bench_refine_auger.py`` draws them: sim = toy seed 11,
data = toy seed 12 without its held-out 30 % (``demonstrate``'s split, split seed 0).  Fresh
samples: ``numpy.random.SeedSequence([11 or 12, 999])`` (independent of every benchmark stream).

Usage (≈ 1 min on one thread):
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diag_refine_auger_memo.py RUN/refiner_main.pt [-n 3000]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from hepgen.checkpoint import load_checkpoint
from hepgen.refine.adapters import get_adapter
from hepgen.refine.refiner import _critic_input, load_refiner, refine_arrays, refine_data
from hepgen.refine.stations import StationCritic
from hepgen.simulate.auger_toy import simulate_auger

#: salt of the fresh diagnostic samples (the fresh-per-epoch samples of the benchmark use 1000 + refiner seed)
FRESH_SALT = 999


def training_samples(n: int, test_fraction: float = 0.3, split_seed: int = 0):
    """``(sim, data_train)`` of ``bench_refine_auger.py -n n`` (toy seeds 11, 12; ``demonstrate``'s split)."""
    sim, data = simulate_auger(n, mode="sim", seed=11), simulate_auger(n, mode="data", seed=12)
    perm = np.random.default_rng(split_seed).permutation(len(data))
    n_test = round(test_fraction * len(data))
    return sim, data.subset(np.sort(perm[n_test:]))


def fresh_samples(n_sim: int, n_data: int, salt: int = FRESH_SALT):
    """New toy events: sim from ``SeedSequence([11, salt])``, data from ``SeedSequence([12, salt])``."""
    return (simulate_auger(n_sim, mode="sim", seed=np.random.default_rng(np.random.SeedSequence([11, salt]))),
            simulate_auger(n_data, mode="data", seed=np.random.default_rng(np.random.SeedSequence([12, salt]))))


def critic_w(checkpoint, pairs: dict, batch: int = 500) -> dict:
    """``{name: {"unrefined": W, "refined": W}}`` for ``pairs = {name: (sim, data)}`` (TraceData),
    with the critic and refiner of ``checkpoint`` (a ``train_refiner`` checkpoint of kind traces)."""
    payload = load_checkpoint(checkpoint)
    model, _ = load_refiner(checkpoint)
    hp, state = payload["hparams"], payload["preprocessing"]
    critic = StationCritic.from_architecture(hp["refiner_architecture"], hp["n_labels"], hp["critic_hidden"])
    critic.load_state_dict(payload["trainer"]["critic"])
    critic.eval()
    ad = get_adapter("traces")

    def mean_c(x, y):
        with torch.no_grad():
            return float(np.mean(np.concatenate([
                critic(_critic_input(model, torch.from_numpy(x[s:s + batch]), torch.from_numpy(y[s:s + batch]),
                                     True)).numpy() for s in range(0, len(x), batch)])))

    out = {}
    for name, (sim, data) in pairs.items():
        xs, ys = ad.to_arrays(sim, state)
        xd, yd = ad.to_arrays(data, state)
        xr = refine_arrays(model, xs, ys, seed=1, keep=ad.keep_mask(sim, state))
        c_data = mean_c(xd, yd)
        out[name] = {"unrefined": c_data - mean_c(xs, ys), "refined": c_data - mean_c(xr, ys)}
    return out


SEC_BINS = np.array([1.0, 1.2, 1.4, 1.7, 2.0])


def footprint_table(checkpoint, n: int = 1000) -> dict:
    """Triggered stations per event and mean log10(S_tot / E) in bins of sec θ (``SEC_BINS``) for
    sim (toy seed 11), data (toy seed 12) and refined sim (noise seed 1), as in docs/refine.md."""
    model, payload = load_refiner(checkpoint)
    sim, data = simulate_auger(n, mode="sim", seed=11), simulate_auger(n, mode="data", seed=12)
    refined = refine_data(model, payload["preprocessing"], sim, seed=1)
    out = {}
    for name, d in (("sim", sim), ("data", data), ("refined", refined)):
        live = np.any(d.traces != 0, axis=-1)
        stot = d.traces.sum(axis=(1, 2, 3))
        sec = 1.0 / np.cos(d.zenith[:, 0])
        k = np.digitize(sec, SEC_BINS) - 1
        ratio = np.log10(np.maximum(stot, 1e-3) / d.energy[:, 0])
        out[name] = {"stations_per_event": float(live.sum(axis=(1, 2)).mean()),
                     "log10_stot_over_e_by_sec": [float(ratio[k == i].mean()) for i in range(len(SEC_BINS) - 1)]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("-n", type=int, default=3000, help="the benchmark's -n")
    a = p.parse_args()
    torch.set_num_threads(1)
    sim, data_train = training_samples(a.n)
    res = critic_w(a.checkpoint, {"training samples": (sim, data_train),
                                  "fresh samples": fresh_samples(len(sim), len(data_train))})
    print(json.dumps(res, indent=1))
    print(json.dumps(footprint_table(a.checkpoint), indent=1))


if __name__ == "__main__":
    main()
