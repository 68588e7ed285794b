"""Fast → full simulation refinement of calorimeter showers, with the downstream-regression proof.

"sim" is GFlash (:mod:`hepgen.simulate.calorimeter`) with the default calorimeter and the
demo's binning (``default_binning()``: 8 layers × 6 α × 8 r = 384 voxels), photons
log-uniform in 1–100 GeV at normal incidence.  "data" is, in this order of precedence:

* ``--data FILE``: a user file of the same geometry (e.g. Geant4 showers of the ``demo`` preset);
* ``--geant4 N``: N Geant4 photon showers of the ``demo`` preset (the Geant4 twin of GFlash's
  calorimeter, docs/geant4.md), simulated here once and cached in ``--cache`` (≈ 0.1–0.3 s per
  shower on one core); without the ``hepgen[geant4]`` extra the script says so and falls
  back to the stand-in;
* otherwise the GFlash **stand-in**: GFlash with a deliberately different calorimeter —
  sampling fraction × 1.08, Molière radius × 1.3 and electronic noise (Gaussian, σ = 0.3 MeV
  per voxel, zero-suppressed below 3σ).

The first line printed, the report's setup section and ``metrics.json`` (first entry of
``notes``) say which data were used.

Writes ``OUT/metrics.json`` and ``OUT/report.html`` (before/after histograms, ROC curves,
regression residuals, bias/resolution table over seeds, gap closed, DCTR ESS, closeness scan)
and prints the headline figures.  With several ``--refiner-seeds`` each seed's run goes to
``OUT/refiner_seed_K/`` and ``OUT/summary.json`` holds the headline figures per refiner seed and
their mean ± standard deviation over refiner seeds.  Runs single-threaded.

Usage:
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_refine_showers.py -o bench_out/refine_showers
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_refine_showers.py --geant4 4000 --refiner-seeds 0,1 -o out/
    python benchmarks/bench_refine_showers.py --sim gflash.h5 --data geant4.h5 -o out/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from hepgen._extras import have
from hepgen._io import atomic_path, json_safe
from hepgen.data.formats import ShowerData, read_showers
from hepgen.refine.options import SHOWER_FLAGS, add_option_flags, options_from_flags
from hepgen.refine.proof import demonstrate, dump_json, holdout_aucs
from hepgen.refine.refiner import RefinerConfig
from hepgen.simulate.calorimeter import (
    LEAD,
    SamplingCalorimeter,
    default_calorimeter,
    simulate_dataset,
)


def stand_in_data(n: int, seed: int, noise_mev: float = 0.3) -> ShowerData:
    """GFlash with a different calorimeter and noise: the stand-in for Geant4 "data"."""
    base = default_calorimeter()
    lead = dataclasses.replace(LEAD, moliere_radius_mm=LEAD.moliere_radius_mm * 1.3)
    cal = SamplingCalorimeter(absorber=lead, sampling_fraction=base.sampling_fraction * 1.08)
    d = simulate_dataset(n, calorimeter=cal, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    s = d.showers + rng.normal(0.0, noise_mev, d.showers.shape)
    d.showers = np.where(s > 3 * noise_mev, s, 0.0).astype(np.float32)
    d.attrs.update(stand_in="GFlash, sampling fraction x1.08, Moliere radius x1.3, noise 0.3 MeV, ZS 0.9 MeV")
    return d


STAND_IN = ("data = GFlash STAND-IN for Geant4 (not Geant4): sampling fraction x1.08, Moliere radius x1.3, "
            "Gaussian noise 0.3 MeV per voxel zero-suppressed below 0.9 MeV")


def geant4_data(n: int, seed: int, cache: Path) -> tuple[ShowerData | None, str]:
    """``n`` Geant4 photon showers of the ``demo`` preset (1–100 GeV log-uniform, normal incidence),
    cached in ``cache``; ``(None, reason)`` without the ``hepgen[geant4]`` extra."""
    if not have("geant4_pybind"):
        return None, "the Geant4 engine needs the optional extra: pip install 'hepgen[geant4]'"
    from hepgen.simulate.geant4 import simulate_geant4  # optional extra (geant4-pybind), imported only when asked

    path = Path(cache) / f"geant4_demo_gamma_n{n}_seed{seed}.h5"
    if not path.is_file():  # the chunk runner resumes an interrupted simulation from its chunks
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"simulating {n} Geant4 showers (preset demo, gamma, seed {seed}) into {path} ...", flush=True)
        simulate_geant4(path, n, preset="demo", particle="gamma", energy_range=(1e3, 1e5), seed=seed)
    return read_showers(path), (f"data = Geant4 {n} photon showers, preset demo (twin of the GFlash calorimeter), "
                                f"1-100 GeV log-uniform, seed {seed}, data-free EM list; cached {path}")


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (its shower options from the table of ``hepgen refine train``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sim", help="sim showers (HDF5); default: GFlash generated here")
    p.add_argument("--data", help="data showers (HDF5, e.g. Geant4); default: --geant4 if given, else the stand-in")
    p.add_argument("--geant4", type=int, default=0, metavar="N",
                   help="data = N Geant4 showers of the demo preset simulated here (cached in --cache); 0 = no")
    p.add_argument("--geant4-seed", type=int, default=1, help="seed of the Geant4 showers (default 1)")
    p.add_argument("--holdout-geant4", type=int, default=0, metavar="N",
                   help="after the run(s): the AUCs again on N new Geant4 showers (seed --holdout-seed, cached; "
                        "half of them for the real-vs-real floor) and N/2 new GFlash showers (seed 5), "
                        "bench_refine_holdout.py; in OUT/holdout.json; needs --geant4; 0 = no")
    p.add_argument("--holdout-seed", type=int, default=None,
                   help="seed of the hold-out Geant4 showers (default --geant4-seed + 1; must differ from it)")
    p.add_argument("--cache", default="bench_out/cache", help="folder of the cached Geant4 showers")
    p.add_argument("-n", type=int, default=6000, help="events per sample when generating (default 6000)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--closeness", type=float, default=0.1)
    p.add_argument("--closeness-mean", action="store_true",
                   help="the closeness term sees the refiner's output without noise (RefinerConfig.closeness_mean)")
    p.add_argument("--lr", type=float, default=RefinerConfig.lr, help="refiner learning rate")
    p.add_argument("--critic-lr", type=float, default=RefinerConfig.critic_lr, help="critic learning rate")
    p.add_argument("--n-critic", type=int, default=RefinerConfig.n_critic, help="critic steps per refiner step")
    p.add_argument("--hidden", type=int, default=RefinerConfig.hidden, help="refiner and critic width")
    p.add_argument("--critic-hidden", type=int, default=None, help="critic width (default: --hidden)")
    p.add_argument("--batch-size", type=int, default=RefinerConfig.batch_size)
    p.add_argument("--noise-lr-factor", type=float, default=RefinerConfig.noise_lr_factor)
    p.add_argument("--ema", type=float, default=RefinerConfig.ema, help="decay of the refiner's weight average")
    p.add_argument("--deterministic", action="store_true", help="refiner without learned noise")
    add_option_flags(p, SHOWER_FLAGS)  # one table with `hepgen refine train`
    p.add_argument("--scan", default="0,1", help="other closeness weights to measure, comma-separated ('' = none)")
    p.add_argument("--seeds", default="0,1,2", help="regression seeds")
    add_classifier_seeds(p)
    p.add_argument("--refiner-seed", type=int, default=0, help="refiner seed (one run)")
    p.add_argument("--refiner-seeds", default=None,
                   help="several refiner seeds, comma-separated: one run each in OUT/refiner_seed_K, summary.json "
                        "(the closeness scan only with the first)")
    p.add_argument("-o", "--out", default="bench_out/refine_showers")
    return p


def main() -> None:
    p = build_parser()
    a = p.parse_args()
    if a.holdout_geant4 and not a.geant4:
        p.error("--holdout-geant4 needs --geant4 (Geant4 data; the hold-out is more of it)")
    if a.holdout_seed is None:
        a.holdout_seed = a.geant4_seed + 1
    if a.holdout_seed == a.geant4_seed:
        p.error(f"--holdout-seed {a.holdout_seed} is --geant4-seed: the hold-out showers would be the training showers")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if a.sim:
        sim = read_showers(a.sim)
    else:
        sim = simulate_dataset(a.n, seed=1)
    data, source = None, STAND_IN
    if a.data:
        data = read_showers(a.data)
        source = f"data = {a.data} (user file; engine {data.attrs.get('engine', 'not recorded')}" + \
            (f", preset {data.attrs['preset']})" if "preset" in data.attrs else ")")
    elif a.geant4:
        data, reason = geant4_data(a.geant4, a.geant4_seed, Path(a.cache))
        if data is None:
            print(f"--geant4 {a.geant4}: {reason}; FALLING BACK to the GFlash stand-in")
            source = f"{STAND_IN} (--geant4 asked, but {reason})"
        else:
            source = reason
    if data is None:
        data = stand_in_data(a.n, seed=2)
    t_sim = time.perf_counter() - t0
    notes = [source, f"sim = {a.sim or 'GFlash, default calorimeter and binning (generated here, seed 1)'}",
             f"reading/generation took {t_sim:.0f} s"]
    print("\n".join(notes))
    cfg = RefinerConfig(epochs=a.epochs, closeness=a.closeness, seed=a.refiner_seed, lr=a.lr, critic_lr=a.critic_lr,
                        n_critic=a.n_critic, hidden=a.hidden, critic_hidden=a.critic_hidden or a.hidden, batch_size=a.batch_size,
                        noise_lr_factor=a.noise_lr_factor, stochastic=not a.deterministic,
                        closeness_mean=a.closeness_mean, ema=a.ema, **options_from_flags(a, SHOWER_FLAGS))
    scan = [float(v) for v in a.scan.split(",") if v.strip()]
    reg_seeds = tuple(int(s) for s in a.seeds.split(","))
    clf_seeds = classifier_seeds(a)
    hist = ["E_tot_over_E_inc", "E_layer_2", "width_r_2", "EC_r_4", "sparsity_3", "shower_depth"]
    title = "Refinement fast -> full simulation (showers)"
    if a.refiner_seeds is None:
        m = demonstrate("showers", sim, data, a.out, cfg, reg_seeds=reg_seeds, closeness_scan=scan, notes=notes,
                        title=title, hist_features=hist, classifier_seeds=clf_seeds)
        print_headline(m)
        holdout(a, [Path(a.out) / "refiner_main.pt"])
        print(f"report: {a.out}/report.html  ({time.perf_counter() - t0:.0f} s total)")
        return
    per_seed = {}
    for i, rs in enumerate(int(v) for v in a.refiner_seeds.split(",")):
        out = Path(a.out) / f"refiner_seed_{rs}"
        m = demonstrate("showers", sim, data, out, dataclasses.replace(cfg, seed=rs), reg_seeds=reg_seeds,
                        closeness_scan=scan if i == 0 else [], notes=notes + [f"refiner seed {rs}"], title=title,
                        hist_features=hist, classifier_seeds=clf_seeds)
        print(f"--- refiner seed {rs}")
        print_headline(m)
        per_seed[rs] = headline(m)
    summary = {"data_source": source, "notes": notes, "refiner_seeds": list(per_seed), "per_refiner_seed": per_seed,
               "mean_std_over_refiner_seeds": {k: [float(np.mean([h[k] for h in per_seed.values()])),
                                                   float(np.std([h[k] for h in per_seed.values()]))]
                                               for k in next(iter(per_seed.values()))}}
    with atomic_path(Path(a.out) / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(json_safe(summary), indent=1, allow_nan=False))
    print("--- over refiner seeds " + ", ".join(map(str, per_seed)) + " (mean ± std):")
    for k, (mu, sd) in summary["mean_std_over_refiner_seeds"].items():
        print(f"{k}: {mu:.4f} ± {sd:.4f}")
    holdout(a, [Path(a.out) / f"refiner_seed_{rs}" / "refiner_main.pt" for rs in per_seed])
    print(f"reports: {a.out}/refiner_seed_*/report.html, {a.out}/summary.json  ({time.perf_counter() - t0:.0f} s total)")


def holdout(a: argparse.Namespace, checkpoints: list[Path]) -> None:
    """``--holdout-geant4 N``: the refiners' AUCs on new showers (:func:`hepgen.refine.proof.holdout_aucs`),
    written to ``OUT/holdout.json`` and printed; nothing without the option or the Geant4 extra."""
    if not a.holdout_geant4:
        return
    data, note = geant4_data(a.holdout_geant4, a.holdout_seed, Path(a.cache))
    if data is None:
        print(f"--holdout-geant4: {note}; no hold-out measurement")
        return
    sim = simulate_dataset(a.holdout_geant4 // 2, seed=5)
    r = holdout_aucs(checkpoints, sim, data, seeds=classifier_seeds(a), null=True)
    dump_json(Path(a.out) / "holdout.json", {**{k: v for k, v in r.items() if k != "rocs"},
                                            "notes": [note, f"sim = {len(sim)} new GFlash showers, seed 5"]})
    print(f"--- on new showers ({note}; {len(sim)} new GFlash showers, seed 5):")
    print_holdout(r)


def add_classifier_seeds(p: argparse.ArgumentParser) -> None:
    """``--classifier-seeds`` (this script and bench_refine_auger.py)."""
    p.add_argument("--classifier-seeds", default="0,1,2,3,4",
                   help="classifier seeds of the two-sample AUCs, comma-separated: the AUC is their mean "
                        "(one seed's spread is about 0.03 on the Geant4 showers; before 6 December 2026 the "
                        "benchmarks used seed 0 only)")


def classifier_seeds(a: argparse.Namespace) -> tuple[int, ...]:
    return tuple(int(s) for s in a.classifier_seeds.split(",") if s.strip())


def headline(m: dict) -> dict:
    """The figures the targets are about, from one run's metrics (regression figures: mean over regression seeds)."""
    t = m["regression"]["targets"][0]
    g = m["regression"]["gap_closed"]["refined"][t]
    return {"auc_sim_vs_data": m["auc_low_level"]["sim vs data"]["auc"],
            "auc_refined_vs_data": m["auc_low_level"]["refined vs data"]["auc"],
            "auc_refined_vs_data_std_over_classifier_seeds": m["auc_low_level"]["refined vs data"]["auc_std"],
            "auc_summaries_sim_vs_data": m["auc_high_level"]["sim vs data"]["auc"],
            "auc_summaries_refined_vs_data": m["auc_high_level"]["refined vs data"]["auc"],
            "gap_closed_bias": g["bias"], "gap_closed_resolution": g["resolution"],
            "dctr_ess_fraction": m["dctr"]["ess_fraction"], "refiner_seconds": m["refiner_seconds"]}


def print_headline(m: dict) -> None:
    s = m["sizes"]
    print(f"sizes: sim {s['sim']}, data train {s['data_train']}, data test {s['data_test']}, D {s['n_features']}; "
          f"refiner {m['refiner_seconds']:.0f} s")
    for k, v in m["auc_low_level"].items():
        print(f"AUC {k}: {v['auc']:.3f} ± {v['auc_std']:.3f} (low-level + labels; mean ± std over "
              f"{len(v['auc_seeds'])} classifier seeds, one seed's Hanley–McNeil ± {v['auc_err']:.3f}); "
              f"{m['auc_high_level'][k]['auc']:.3f} ± {m['auc_high_level'][k]['auc_std']:.3f} (summaries)")
    for set_name, per in m["regression"]["summary"].items():
        for t, r in per.items():
            print(f"regression trained on {set_name:10s} {t}: bias {r['bias']:+.4f} ± {r['bias_std']:.4f}, "
                  f"resolution {r['resolution']:.4f} ± {r['resolution_std']:.4f}")
    for meth, per in m["regression"]["gap_closed"].items():
        for t, g in per.items():
            fmt = lambda x: "n/a" if x is None else f"{x:.2f}"
            print(f"gap closed by {meth:10s} {t}: bias {fmt(g['bias'])} ± {fmt(g['bias_std'])}, "
                  f"resolution {fmt(g['resolution'])} ± {fmt(g['resolution_std'])}")
    d = m["dctr"]
    print(f"DCTR: ESS {d['ess']:.0f} ({100 * d['ess_fraction']:.1f} %), clipped {d['n_clipped']}")
    for k, v in m["closeness_scan"].items():
        g = next(iter(v["gap_closed"].values()))
        print(f"closeness {k}: AUC {v['auc_low_level']:.3f}, mean |dx| {v['mean_abs_change']:.3f}, "
              f"gap closed bias {g['bias']}, resolution {g['resolution']}")


def print_holdout(r: dict) -> None:
    """Print :func:`hepgen.refine.proof.holdout_aucs` figures (this script, bench_refine_auger.py, bench_refine_holdout.py)."""
    s = r["sizes"]
    print(f"kind {r['kind']}; sim {s['sim']}, data {s['data']}" + (f", null data B {s['null']}" if s["null"] else "")
          + f"; classifier seeds {r['seeds']} (mean ± std over seeds; of each balanced pair 55 % trains, 15 % calibrates, 30 % tests)")

    def line(label, a):
        lo, hi = a["auc_low_level"], a["auc_high_level"]
        print(f"{label}: AUC {lo['auc']:.3f} ± {lo['auc_std']:.3f} (low-level + labels; one seed's Hanley–McNeil "
              f"± {lo['auc_err']:.3f}), {hi['auc']:.3f} ± {hi['auc_std']:.3f} (summaries)")

    line("sim vs data", r["sim vs data"])
    for c, a in r["refined vs data"].items():
        line(f"refined vs data [{c}]", a)
    if r["null"] is not None:
        line("data B vs data A (null)", r["null"])
    for lev, (mu, sd) in r["over_checkpoints"].items():
        print(f"refined vs data over {len(r['refined vs data'])} refiners, {lev}: {mu:.3f} ± {sd:.3f}")


if __name__ == "__main__":
    main()
