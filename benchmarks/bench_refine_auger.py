"""The refiner study's own experiment on an Auger-like surface-detector toy.

"sim" and "data" come from :mod:`hepgen.simulate.auger_toy` (a toy reproducing the mismatch
structure of arXiv:1802.03325, not a physics simulation of Auger): 9 × 9 stations × 80-bin
traces; sim 70 % EM / 30 % muons, data 30 % / 70 % and more noise; labels energy and zenith.
Files can be passed instead (``--sim``/``--data``, traces layout of :mod:`hepgen.data.traces`).

Writes ``OUT/metrics.json`` and ``OUT/report.html`` (before/after histograms, ROC curves,
regression residuals, bias/resolution table over seeds, gap closed, DCTR ESS) and prints the
headline figures.  Runs single-threaded.  The refiner is the per-station refiner with the grid
critic of :mod:`hepgen.refine.stations` (``--architecture mlp``: the residual MLP), with the
critic's signal gate at ``--critic-min-vem`` (docs/refine.md; 10 VEM here).  The adapter options
are the flags of ``hepgen refine train`` (one table, :data:`hepgen.refine.options.TRACE_FLAGS`);
with ``--fill-silent`` and no ``--trigger-vem`` the toy's trigger threshold (3 VEM) applies.

Usage:
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_refine_auger.py -o bench_out/refine_auger
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from bench_refine_holdout import toy_samples
from bench_refine_showers import add_classifier_seeds, classifier_seeds, print_headline, print_holdout
from diag_refine_auger_memo import critic_w, fresh_samples, training_samples

from hepgen.data.traces import read_traces
from hepgen.refine.options import TRACE_FLAGS, add_option_flags, options_from_flags
from hepgen.refine.proof import demonstrate, dump_json, holdout_aucs
from hepgen.refine.refiner import RefinerConfig
from hepgen.simulate.auger_toy import AugerToyConfig, simulate_auger


class FreshToy:
    """``fresh(epoch) -> (sim, data)``: new toy events for refiner epoch ``epoch`` (``demonstrate``'s
    ``fresh``), ``n_sim`` sim from ``SeedSequence([11, salt, epoch])`` and ``n_data`` data from
    ``SeedSequence([12, salt, epoch])`` with ``salt = 1000 + refiner_seed``: independent of the
    benchmark's samples (integer seeds 11 and 12), of each other and between epochs."""

    def __init__(self, n_sim: int, n_data: int, refiner_seed: int = 0) -> None:
        self.n_sim, self.n_data, self.salt = int(n_sim), int(n_data), 1000 + int(refiner_seed)

    def __call__(self, epoch: int):
        def rng(base):
            return np.random.default_rng(np.random.SeedSequence([base, self.salt, int(epoch)]))
        return (simulate_auger(self.n_sim, mode="sim", seed=rng(11)),
                simulate_auger(self.n_data, mode="data", seed=rng(12)))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (its adapter options from :data:`hepgen.refine.options.TRACE_FLAGS`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", help="sim traces (HDF5); default: the toy in mode 'sim'")
    p.add_argument("--data", help="data traces (HDF5); default: the toy in mode 'data'")
    p.add_argument("-n", type=int, default=3000, help="events per sample when generating (default 3000)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--closeness", type=float, default=0.1)
    p.add_argument("--closeness-mean", action="store_true",
                   help="the closeness term sees the refiner's output without noise (the added noise is not penalised)")
    p.add_argument("--lr", type=float, default=1e-3, help="refiner learning rate")
    p.add_argument("--critic-lr", type=float, default=1e-3)
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--noise-lr-factor", type=float, default=10.0)
    # the adapter options: one table with `hepgen refine train` (critic gate on by default here)
    add_option_flags(p, TRACE_FLAGS, defaults={"critic_min_vem": 10.0})
    p.add_argument("--measured-noise", action="store_true",
                   help="the refiner adds a fixed noise measured from the baselines (tails) instead of learning it")
    p.add_argument("--architecture", default="auto", choices=("auto", "mlp"),
                   help="auto: per-station refiner + grid critic (hepgen.refine.stations); mlp: residual MLP")
    p.add_argument("--scan", default="", help="other closeness weights to measure, comma-separated")
    p.add_argument("--seeds", default="0,1,2", help="regression seeds")
    add_classifier_seeds(p)
    p.add_argument("--refiner-seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true",
                   help="no learned noise amplitude (the refiner's mean correction only)")
    p.add_argument("--fresh-per-epoch", action="store_true",
                   help="the refiner sees new toy events every epoch (against memorisation); the regression, "
                        "classifier and held-out data stay the -n samples")
    p.add_argument("--memo", action="store_true",
                   help="after the run: the critic's W on the training samples and on fresh ones (diag_refine_auger_memo.py)")
    p.add_argument("--holdout-events", type=int, default=0, metavar="N",
                   help="after the run: the AUCs again on N new sim and 2N new data toy events (half of the data "
                        "for the real-vs-real floor; bench_refine_holdout.py), in OUT/holdout.json; 0 = no")
    p.add_argument("-o", "--out", default="bench_out/refine_auger")
    return p


def main() -> None:
    p = build_parser()
    a = p.parse_args()
    if a.holdout_events and (a.sim or a.data):
        p.error("--holdout-events needs the toy (no --sim/--data)")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    sim = read_traces(a.sim) if a.sim else simulate_auger(a.n, mode="sim", seed=11)
    data = read_traces(a.data) if a.data else simulate_auger(a.n, mode="data", seed=12)
    notes = [f"sim = {a.sim or 'Auger-like toy, mode sim (70 % EM / 30 % muons, noise 0.03 VEM)'}",
             f"data = {a.data or 'Auger-like toy, mode data (30 % EM / 70 % muons, noise 0.08 VEM)'}",
             "the toy reproduces the mismatch structure of arXiv:1802.03325; it is not an Auger simulation",
             f"generation took {time.perf_counter() - t0:.0f} s"]
    print("\n".join(notes))
    cfg = RefinerConfig(epochs=a.epochs, hidden=a.hidden, critic_hidden=a.hidden, batch_size=64, n_critic=a.n_critic,
                        lr=a.lr, critic_lr=a.critic_lr, noise_lr_factor=a.noise_lr_factor, closeness=a.closeness,
                        closeness_mean=a.closeness_mean,
                        seed=a.refiner_seed, stochastic=not a.deterministic, architecture=a.architecture)
    # options of this run's adapter state (recorded in the checkpoint); the registered adapter is not changed
    options = options_from_flags(a, TRACE_FLAGS)
    trigger = a.trigger_vem if a.trigger_vem is not None else (AugerToyConfig().trigger_vem if a.fill_silent else None)
    if trigger is not None:
        options["trigger_vem"] = trigger
        notes.append(f"refined stations pass the trigger rule (>= {trigger:g} VEM); "
                     f"silent stations may be turned on: {a.fill_silent}")
    if a.measured_noise:
        # baseline noise from the last 10 bins of triggered stations (late enough that EM and
        # muons have arrived in the toy): the refiner adds √(σ_data² − σ_sim²), fixed
        def tail_std(d):
            t = d.traces[np.any(d.traces != 0, axis=-1)][:, -10:]
            return float(t.std())
        s_sim, s_data = tail_std(sim), tail_std(data.subset(np.arange(len(data) // 2)))
        options["noise_vem"] = float(np.sqrt(max(s_data**2 - s_sim**2, 0.0)))
        notes.append(f"added noise fixed at {options['noise_vem']:.4f} VEM (baseline σ sim {s_sim:.4f}, data {s_data:.4f})")
        print(notes[-1])
    scan = [float(v) for v in a.scan.split(",") if v.strip()]
    fresh = None
    if a.fresh_per_epoch:
        if a.sim or a.data:
            p.error("--fresh-per-epoch needs the toy (no --sim/--data)")
        fresh = FreshToy(len(sim), len(data) - round(0.3 * len(data)), a.refiner_seed)
        notes.append(f"fresh samples every refiner epoch >= 1: {fresh.n_sim} sim + {fresh.n_data} data toy events "
                     f"(seeds SeedSequence([11 | 12, {fresh.salt}, epoch]))")
    m = demonstrate("traces", sim, data, a.out, cfg, reg_seeds=tuple(int(s) for s in a.seeds.split(",")),
                    closeness_scan=scan, notes=notes, title="Refinement on the Auger-like surface-detector toy",
                    adapter_options=options, fresh=fresh, classifier_seeds=classifier_seeds(a))
    print_headline(m)
    if a.memo and not (a.sim or a.data):
        sim_t, data_t = training_samples(a.n)
        w = critic_w(f"{a.out}/refiner_main.pt", {"training samples": (sim_t, data_t),
                                                   "fresh samples": fresh_samples(len(sim_t), len(data_t))})
        print("critic W (data − x) with the final critic:", json.dumps(w))
    if a.holdout_events:
        h_sim, h_data = toy_samples(a.holdout_events, null=True)
        r = holdout_aucs([f"{a.out}/refiner_main.pt"], h_sim, h_data, seeds=classifier_seeds(a), null=True)
        dump_json(f"{a.out}/holdout.json", {k: v for k, v in r.items() if k != "rocs"})
        print(f"--- on {a.holdout_events} new toy events per sample (bench_refine_holdout.py):")
        print_holdout(r)
    print(f"report: {a.out}/report.html  ({time.perf_counter() - t0:.0f} s total)")


if __name__ == "__main__":
    main()
