"""Tabular ttH-vs-ttbb benchmark: the study's WGAN and the spline-flow baseline against Pythia.

Reads real ttH and ttbb tables (``hepgen simulate tth`` outputs, or their chunk folders while a
run is still going), splits them in half (train / reference), trains one conditional model for
both processes for a fixed wall-clock budget (manual loop through the TabularDomain — the same
calls the trainer makes), samples at the reference's process labels and prints, all measured in
this run on this machine:

* mean separation power over the variables, with the real-vs-real floor;
* Fisher-z χ²/ndof of generated, real-vs-real and the destroyed-correlations baseline;
* the ttH-vs-ttbb classifier (hgb, mlp) trained on generated vs on real, tested on real: AUC;
* the classifier two-sample AUC real vs generated, the critic-only W estimate;
* speed-up per event: Pythia + reconstruction seconds per selected event (from the files'
  ``cpu_seconds``, the workers' wall clock) over the model's sampling seconds per event (20 000
  events, one thread), and the same on CPU time (the files' ``process_seconds``, where written,
  over the sampling's ``time.process_time``) — on a loaded machine the CPU times are the cost.

Usage (single-threaded, under nice; one model per call keeps a run under ~8 minutes):

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python benchmarks/bench_tabular.py \\
        --tth tth.h5 --ttbb ttbb.h5 --family tabular_wgan --minutes 3 --out bench_wgan

Not run by the tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from hepgen.config import TrainConfig
from hepgen.data.tabular import TabularData, read_tabular
from hepgen.domains.tabular import DOMAIN
from hepgen.domains.tabular.evaluate import evaluate_tabular
from hepgen.domains.tabular.report import write_tabular_report

print = functools.partial(print, flush=True)  # progress visible in logs


def _load(path: str) -> TabularData:
    """A tabular file, or every chunk file of a (possibly unfinished) ``hepgen simulate tth`` run."""
    p = Path(path)
    if p.is_dir():
        parts = [read_tabular(f) for f in sorted(p.glob("*.h5"))]
        data = TabularData.concatenate(parts)
        data.attrs = {"cpu_seconds": sum(q.attrs.get("seconds", 0.0) for q in parts),
                      "process_seconds": sum(q.attrs.get("process_seconds", 0.0) for q in parts),
                      "n_generated": sum(q.attrs.get("n_generated", 0) for q in parts),
                      "n_vetoed": sum(q.attrs.get("n_vetoed", 0) for q in parts)}
        return data
    return read_tabular(p)


def _train(family: str, model_hparams: dict, train: TabularData, minutes: float, seed: int, batch: int, lr: float):
    cfg = TrainConfig(family=family, model=model_hparams, seed=seed, batch_size=batch, lr=lr)
    DOMAIN.check(train, cfg)
    torch.manual_seed(seed)
    pre = DOMAIN.fit_preprocessor(train, cfg)
    model = DOMAIN.build_model(cfg, train, pre)
    x = torch.as_tensor(DOMAIN.features(pre, train, None))
    c = torch.as_tensor(DOMAIN.conditions(pre, train))
    opts = model.configure_optimizers(lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    t0, step = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - t0 < 60 * minutes:
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x) - batch + 1, batch):
            idx = perm[s:s + batch]
            model.training_step(x[idx], c[idx], opts, step, grad_clip=5.0)
            step += 1
    return DOMAIN.generator(model, pre, train, DOMAIN.meta(train, cfg)), step, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tth", required=True)
    ap.add_argument("--ttbb", required=True)
    ap.add_argument("--family", default="tabular_wgan", choices=["tabular_wgan", "tabular_flow"])
    ap.add_argument("--model", default="{}", help="JSON hyper-parameters of the family")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--critic-steps", type=int, default=500)
    ap.add_argument("--out", default="bench_tabular")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tth, ttbb = _load(args.tth), _load(args.ttbb)
    real = TabularData.concatenate([tth, ttbb])
    n = {"tth": len(tth), "ttbb": len(ttbb)}
    sim_s = {"tth": tth.attrs["cpu_seconds"] / len(tth), "ttbb": ttbb.attrs["cpu_seconds"] / len(ttbb)}
    sim_cpu = {k: d.attrs.get("process_seconds", float("nan")) / len(d) for k, d in (("tth", tth), ("ttbb", ttbb))}
    print(f"real events: {n}; Pythia + reconstruction s per selected event, wall: "
          f"{ {k: round(v, 3) for k, v in sim_s.items()} }, CPU: { {k: round(v, 3) for k, v in sim_cpu.items()} }; "
          f"generated {tth.attrs.get('n_generated')} / {ttbb.attrs.get('n_generated')} "
          f"(vetoed by the b-quark filter {tth.attrs.get('n_vetoed')} / {ttbb.attrs.get('n_vetoed')})")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(real))
    train, ref = real.subset(perm[: len(real) // 2]), real.subset(perm[len(real) // 2:])
    lr = args.lr if args.lr is not None else (1e-4 if args.family == "tabular_wgan" else 1e-3)
    gen, steps, secs = _train(args.family, json.loads(args.model), train, args.minutes, args.seed, args.batch, lr)
    print(f"{args.family}: {steps} steps in {secs:.0f} s on {len(train)} events")
    fake = gen.sample_like(ref, seed=args.seed + 1)
    # sampling speed: 20k events, process labels in the real proportions
    labels = rng.choice(ref.process, 20_000)
    t0, c0 = time.perf_counter(), time.process_time()
    gen.generate(labels, seed=2)
    per_event = (time.perf_counter() - t0) / len(labels)
    per_event_cpu = (time.process_time() - c0) / len(labels)
    sim_mean = (tth.attrs["cpu_seconds"] + ttbb.attrs["cpu_seconds"]) / len(real)
    sim_mean_cpu = sum(d.attrs.get("process_seconds", float("nan")) for d in (tth, ttbb)) / len(real)
    out = Path(args.out)
    results = {}
    destroyed = DOMAIN.fit_preprocessor(train, TrainConfig(family=args.family))
    d_values = np.empty_like(ref.values)
    for p in np.unique(ref.process):  # per-process marginals, independent columns
        sel = ref.process == p
        sub = train.subset(train.process == p)
        d_values[sel] = type(destroyed)().fit(sub.values, sub.columns).sample_independent(int(sel.sum()), rng)
    d_data = TabularData(d_values, ref.columns, ref.units, ref.process, ref.process_names)
    for name, sample in ((args.family, fake), ("destroyed_correlations", d_data)):
        m, arrays = evaluate_tabular(ref, sample, seed=args.seed, n_permutations=100, critic_steps=args.critic_steps)
        m["training"] = {"steps": steps, "seconds": secs, "n_train": len(train)}
        results[name] = m
        write_tabular_report(m, arrays, out / name)
        fz = m["fisher_z"]
        print(f"\n== {name} (reference {len(ref)} real events) ==")
        print(f"mean separation power {m['mean_separation']:.4f} (real-vs-real floor {m['mean_separation_floor']:.4f})")
        print(f"Fisher-z chi2/ndof {fz['generated']['chi2_ndof']:.2f} (ndof {fz['generated']['ndof']}, calibrated p "
              f"{fz['generated']['p_calibrated']}); real-vs-real {fz['real_vs_real']['chi2_ndof']:.2f}; "
              f"destroyed {fz['destroyed']['chi2_ndof']:.2f}; ratio to floor {fz['ratio_to_floor']:.2f}")
        for model in ("hgb", "mlp"):
            b = (m.get("benchmark") or {}).get(model)
            if b:
                print(f"benchmark {model}: AUC trained on real {b['auc_real_trained']:.4f}, on generated "
                      f"{b['auc_generated_trained']:.4f} (diff {b['auc_difference']:+.4f}); SI@eps_S=0.5 "
                      f"{b['si_real_trained']:.2f} vs {b['si_generated_trained']:.2f}")
        print(f"two-sample AUC real vs generated {m['two_sample_auc']:.4f}; critic-only W "
              f"{m['critic_w']['generated']:.4f} (real-vs-real {m['critic_w']['real_vs_real']:.4f})")
    results["speed"] = {"sim_seconds_per_event": sim_mean, "gen_seconds_per_event": per_event,
                        "speedup": sim_mean / per_event,  # CPU figures: None for files without process_seconds
                        "sim_cpu_seconds_per_event": sim_mean_cpu if np.isfinite(sim_mean_cpu) else None,
                        "gen_cpu_seconds_per_event": per_event_cpu,
                        "speedup_cpu": sim_mean_cpu / per_event_cpu if np.isfinite(sim_mean_cpu) else None}
    print(f"\nspeed: Pythia+reco {sim_mean * 1e3:.1f} ms/event, {args.family} {per_event * 1e6:.2f} us/event "
          f"(1 thread, 20k events): speed-up {sim_mean / per_event:,.0f}x")
    print(f"speed on CPU time: Pythia+reco {sim_mean_cpu * 1e3:.1f} ms/event, {args.family} {per_event_cpu * 1e6:.2f} "
          f"us/event: speed-up {sim_mean_cpu / per_event_cpu:,.0f}x")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
