"""Tabular ttH-vs-ttbb benchmark: the study's WGAN and the spline-flow baseline against Pythia.

Reads real ttH and ttbb tables (``hepgen simulate tth`` outputs, or their chunk folders while a
run is still going; several of each: ``--tth a.h5 b.h5 --ttbb c.h5 .d.h5.chunks``), splits them
in half (train / reference), trains one conditional model for
both processes for a fixed wall-clock budget (manual loop through the TabularDomain — the same
calls the trainer makes), samples at the reference's process labels and prints, all measured in
this run on this machine:

* mean separation power over the variables, with the real-vs-real floor;
* Fisher-z χ²/ndof of generated, real-vs-real and the destroyed-correlations baseline;
* the ttH-vs-ttbb classifier (hgb, mlp) trained on generated events vs on the real events the
  model was trained on, both tested on the same real reference events (the whole reference half): AUCs over ``--classifier-seeds`` trainings, ΔAUC with its paired-bootstrap error over
  the test events and its spread over the seeds; trained on as many generated events as real
  ones (the study's protocol) and on ``--gen-factor`` times more;
* the classifier two-sample AUC real vs generated, the critic-only W estimate;
* speed-up per event, per process (ttH alone, ttbb alone) and for the sample mix: Pythia +
  reconstruction seconds per selected event (from the files' ``cpu_seconds``, the workers' wall
  clock, and ``process_seconds``, their CPU time) over the model's sampling seconds per event
  (20 000 events, one thread, the default sampling path — the fast MADE spline sampler for
  ``tabular_flow`` — and the model's own ``sample`` for comparison) — on a loaded machine the
  CPU times are the cost.

Usage (single-threaded, under nice; one model per call keeps a run under ~8 minutes):

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python benchmarks/bench_tabular.py \\
        --tth tth.h5 tth_s11.h5 --ttbb ttbb.h5 ttbb_s3.h5 --family tabular_wgan --minutes 3 --out bench_wgan

Not run by the tests.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from hepgen.config import TrainConfig
from hepgen.data.tabular import TabularData, read_tabular, simulation_cost
from hepgen.domains.tabular import DOMAIN
from hepgen.domains.tabular.evaluate import evaluate_tabular
from hepgen.domains.tabular.report import write_tabular_report

print = functools.partial(print, flush=True)  # progress visible in logs


def _load(paths: list[str]) -> TabularData:
    """Tabular files and/or chunk folders of ``hepgen simulate tth`` runs (every finished chunk
    file), concatenated; ``attrs`` sum the counts and keep the simulation cost per selected event
    (:func:`hepgen.data.tabular.simulation_cost`, per file → per process)."""
    parts = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            chunks = [read_tabular(f) for f in sorted(p.glob("*.h5"))]
            if not chunks:
                raise ValueError(f"{p}: expected chunk files *.h5, found none")
            parts.append(TabularData.concatenate(chunks))  # chunk 'seconds' → cost per event
        else:
            parts.append(read_tabular(p))
    return TabularData.concatenate(parts)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _train(family: str, model_hparams: dict, train: TabularData, minutes: float, seed: int, batch: int, lr: float,
           weight_decay: float = 0.0, val_fraction: float = 0.1, eval_every: int = 25):
    """Train for ``minutes`` of wall clock.  Likelihood models (``tabular_flow``) hold out
    ``val_fraction`` of ``train`` and keep the weights of the best validation loss, checked every
    ``eval_every`` steps (on ~2 700 events the flow's held-out NLL is lowest after ~300 steps and
    rises after: it over-fits, measured); the WGAN trains on all of ``train`` and keeps the last."""
    cfg = TrainConfig(family=family, model=model_hparams, seed=seed, batch_size=batch, lr=lr)
    DOMAIN.check(train, cfg)
    torch.manual_seed(seed)
    pre = DOMAIN.fit_preprocessor(train, cfg)
    model = DOMAIN.build_model(cfg, train, pre)
    x = torch.as_tensor(DOMAIN.features(pre, train, None))
    c = torch.as_tensor(DOMAIN.conditions(pre, train))
    g = torch.Generator().manual_seed(seed)
    early = bool(getattr(model, "has_log_prob", False)) and val_fraction > 0
    xv = cv = None
    if early:
        order = torch.randperm(len(x), generator=g)
        n_val = max(1, int(val_fraction * len(x)))
        xv, cv, x, c = x[order[:n_val]], c[order[:n_val]], x[order[n_val:]], c[order[n_val:]]
    opts = model.configure_optimizers(lr=lr, weight_decay=weight_decay)
    t0, step = time.perf_counter(), 0
    best = {"loss": float("inf"), "step": 0, "state": None}

    def check() -> None:
        model.eval()
        with torch.no_grad():
            v = float(model.loss(xv, cv))
        if v < best["loss"]:
            best.update(loss=v, step=step, state=copy.deepcopy(model.state_dict()))
        model.train()

    model.train()
    while time.perf_counter() - t0 < 60 * minutes:
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x) - batch + 1, batch):
            idx = perm[s:s + batch]
            model.training_step(x[idx], c[idx], opts, step, grad_clip=5.0)
            step += 1
            if early and step % eval_every == 0:
                check()
    info = {"steps": step, "seconds": time.perf_counter() - t0}
    if early:
        check()
        model.load_state_dict(best["state"])
        info.update(best_step=best["step"], best_val_loss=best["loss"], n_val=len(xv))
    model.eval()
    return DOMAIN.generator(model, pre, train, DOMAIN.meta(train, cfg)), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tth", required=True, nargs="+", help="ttH tabular files or chunk folders")
    ap.add_argument("--ttbb", required=True, nargs="+", help="ttbb tabular files or chunk folders")
    ap.add_argument("--family", default="tabular_wgan", choices=["tabular_wgan", "tabular_flow"])
    ap.add_argument("--model", default="{}", help="JSON hyper-parameters of the family")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    ap.add_argument("--val-fraction", type=float, default=0.1,
                    help="held out of the training half for early stopping (likelihood models; 0: off)")
    ap.add_argument("--critic-steps", type=int, default=500)
    ap.add_argument("--classifier-seeds", type=int, default=3, help="benchmark classifiers per training sample")
    ap.add_argument("--gen-factor", type=int, default=5,
                    help="generated events for the benchmark's 'all' training set, x the reference size")
    ap.add_argument("--out", default="bench_tabular")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tth, ttbb = _load(args.tth), _load(args.ttbb)
    real = TabularData.concatenate([tth, ttbb])
    cost = simulation_cost(real)
    n = {"tth": len(tth), "ttbb": len(ttbb)}
    print(f"real events: {n} from {len(args.tth)} ttH and {len(args.ttbb)} ttbb inputs; generated "
          f"{tth.attrs.get('n_generated')} / {ttbb.attrs.get('n_generated')} (vetoed by the b-quark filter "
          f"{tth.attrs.get('n_vetoed')} / {ttbb.attrs.get('n_vetoed')})")
    for p, c in cost.items():
        print(f"Pythia + reconstruction per selected {p} event: CPU {c['cpu']:.4f} s, wall {c['wall']:.4f} s "
              f"({c['events']} events)")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(real))
    train, ref = real.subset(perm[: len(real) // 2]), real.subset(perm[len(real) // 2:])
    lr = args.lr if args.lr is not None else (1e-4 if args.family == "tabular_wgan" else 1e-3)
    gen, info = _train(args.family, json.loads(args.model), train, args.minutes, args.seed, args.batch, lr,
                       weight_decay=args.weight_decay, val_fraction=args.val_fraction)
    print(f"{args.family}: {info['steps']} steps in {info['seconds']:.0f} s on {len(train)} events"
          + (f"; kept step {info['best_step']} (best validation loss {info['best_val_loss']:.4f} on "
             f"{info['n_val']} held-out events)" if "best_step" in info else ""))
    # generated: gen_factor x the reference's labels (the benchmark trains on |A| of them and on all)
    big = TabularData(np.tile(ref.values, (args.gen_factor, 1)), ref.columns, ref.units,
                      np.tile(ref.process, args.gen_factor), ref.process_names)
    fake = gen.sample_like(big, seed=args.seed + 1)
    # sampling speed: 20k events, process labels in the real proportions, one thread
    labels = rng.choice(ref.process, 20_000)
    speed = {}
    for path in ("auto", "model"):
        t0, c0 = time.perf_counter(), time.process_time()
        gen.generate(labels, seed=2, path=path)
        speed[path] = {"wall": (time.perf_counter() - t0) / len(labels), "cpu": (time.process_time() - c0) / len(labels)}
    counts = {p: int((real.process == real.process_names.index(p)).sum()) for p in cost}
    speed_report = {"sampling_seconds_per_event": speed, "simulation_seconds_per_event": cost, "speedup": {}}
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
        m, arrays = evaluate_tabular(ref, sample, seed=args.seed, n_permutations=100, critic_steps=args.critic_steps,
                                     classifier_seeds=args.classifier_seeds, real_train=train)
        m["training"] = {**info, "n_train": len(train)}
        results[name] = m
        write_tabular_report(m, arrays, out / name)
        fz = m["fisher_z"]
        print(f"\n== {name} (reference {len(ref)} real events, generated {len(sample)}) ==")
        print(f"mean separation power {m['mean_separation']:.4f} (real-vs-real floor {m['mean_separation_floor']:.4f}); "
              f"mean KS {m['mean_ks']:.4f} (floor {m['mean_ks_floor']:.4f})")
        print(f"Fisher-z chi2/ndof {fz['generated']['chi2_ndof']:.2f} (ndof {fz['generated']['ndof']}, calibrated p "
              f"{fz['generated']['p_calibrated']}); real-vs-real {fz['real_vs_real']['chi2_ndof']:.2f}; "
              f"destroyed {fz['destroyed']['chi2_ndof']:.2f}; ratio to floor {fz['ratio_to_floor']:.2f}")
        bench = m.get("benchmark") or {}
        if bench:
            print(f"benchmark ttH vs ttbb: test {bench['n_test']} real events; trained on {bench['n_train_real']} real, "
                  f"{bench['n_train_generated']} generated (all: {bench['n_train_generated_all']}); "
                  f"{bench['n_seeds']} seeds each; paired bootstrap {bench['n_bootstrap']}")
        for model in ("hgb", "mlp"):
            b = bench.get(model)
            if b:
                line = (f"benchmark {model}: AUC trained on real {b['auc_real_trained']:.4f} "
                        f"(+-{b['auc_real_trained_err']:.4f}), on generated {b['auc_generated_trained']:.4f}: "
                        f"dAUC {b['auc_difference']:+.4f} +- {b['auc_difference_err']:.4f} (paired bootstrap), "
                        f"seed spread {_fmt(b['auc_difference_seed_std'])}")
                if "auc_difference_all" in b:
                    line += (f"; on all generated {b['auc_generated_all_trained']:.4f}: dAUC "
                             f"{b['auc_difference_all']:+.4f} +- {b['auc_difference_all_err']:.4f}")
                print(line + f"; SI@eps_S=0.5 {b['si_real_trained']:.2f} vs {b['si_generated_trained']:.2f}")
        print(f"two-sample AUC real vs generated {m['two_sample_auc']:.4f} +- {m['two_sample_auc_err']:.4f}; "
              f"critic-only W {m['critic_w']['generated']:.4f} (real-vs-real {m['critic_w']['real_vs_real']:.4f})")
    print()
    for path, sp in speed.items():
        print(f"sampling, path {path!r}: {sp['cpu'] * 1e6:.1f} us CPU ({sp['wall'] * 1e6:.1f} us wall) per event "
              f"(1 thread, 20k events)")
    for clock in ("cpu", "wall"):
        per = {p: c[clock] / speed["auto"][clock] for p, c in cost.items() if c.get(clock)}
        if not per:
            continue
        mix_sim = sum(counts[p] * cost[p][clock] for p in per) / sum(counts[p] for p in per)
        speed_report["speedup"][clock] = {**per, "mix": mix_sim / speed["auto"][clock],
                                          "mix_model_path": mix_sim / speed["model"][clock]}
        print(f"speed-up on {clock} time ({args.family}, fast path): "
              + ", ".join(f"{p} {v:,.0f}x" for p, v in per.items())
              + f", sample mix {mix_sim / speed['auto'][clock]:,.0f}x (Pythia+reco {mix_sim * 1e3:.1f} ms/event); "
              f"model's own sample: " + ", ".join(f"{p} {cost[p][clock] / speed['model'][clock]:,.0f}x" for p in per))
    results["speed"] = speed_report
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
