"""Anomaly detection on L1 events: train the dense AE and VAE on background, evaluate every
score on the signals, scan fixed-point precisions, time ONNX at batch 1 against Pythia.

Reads files of :func:`hepgen.simulate.l1.simulate_l1` (``hepgen simulate l1``): a training
background, a statistically independent test background (one file, or several made with
different seeds, joined by :func:`join_backgrounds`) and the signals.  Trains with the
same steps as ``hepgen train`` (domain preprocessing, ``training_step`` over shuffled
batches, AdamW, one thread), writes ``metrics_<family>.json`` + ``report_<family>.html`` and
``bench_anomaly.json`` to ``--out`` and prints tables.  The last line of stdout is the JSON
summary.  Usage:

    python benchmarks/bench_anomaly.py --train bkg.h5 --test t1.h5 [t2.h5 ...] --signals s.h5 --out out/
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hepgen._io import json_safe as strict_json
from hepgen.config import TrainConfig
from hepgen.data.l1 import L1Events, read_l1
from hepgen.domains.anomaly import DOMAIN
from hepgen.domains.anomaly.deploy import (
    DEFAULT_PRECISIONS,
    FixedPointScorer,
    export_onnx,
    hls4ml_encode,
    onnx_latency,
    precision_scan,
    score_module,
)
from hepgen.domains.anomaly.evaluate import evaluate_detector, ood_fraction


_SUMMED_JSON_ATTRS = ("counts", "n_generated")


def join_backgrounds(samples: Sequence[L1Events]) -> L1Events:
    """One test background from several ``simulate l1`` files (e.g. seeds 3 and 4), in order.

    Events and process labels are :meth:`L1Events.concatenate`'s; the attributes are the first
    file's except ``cpu_seconds`` (summed, so that the bench's CPU time per accepted event stays
    right; dropped if any file lacks it), ``counts`` and ``n_generated`` (JSON dicts, summed per
    process; dropped if any file lacks them) and ``seed`` (the list of the files' seeds, JSON).
    Checking that the files are statistically independent (different seeds) is the caller's job.

    >>> import numpy as np
    >>> def empty(n, cpu, seed):
    ...     return L1Events(np.zeros((n, 19, 3), np.float32), np.zeros(n, np.int16), ("W_lnu",),
    ...                     {"cpu_seconds": cpu, "seed": seed})
    >>> a, b = empty(2, 1.5, 3), empty(3, 2.0, 4)
    >>> j = join_backgrounds([a, b])
    >>> len(j), j.attrs["cpu_seconds"], j.attrs["seed"]
    (5, 3.5, '[3, 4]')
    """
    samples = list(samples)
    if not samples:
        raise ValueError("join_backgrounds: expected at least one background sample, found none")
    if len(samples) == 1:
        return samples[0]
    attrs = dict(samples[0].attrs)
    attrs["seed"] = json.dumps([s.attrs.get("seed") for s in samples], default=int)
    if all("cpu_seconds" in s.attrs for s in samples):
        attrs["cpu_seconds"] = float(sum(float(s.attrs["cpu_seconds"]) for s in samples))
    else:
        attrs.pop("cpu_seconds", None)
    for key in _SUMMED_JSON_ATTRS:
        if all(key in s.attrs for s in samples):
            total: dict = {}
            for s in samples:
                for name, v in json.loads(s.attrs[key]).items():
                    total[name] = total.get(name, 0) + v
            attrs[key] = json.dumps(total)
        else:
            attrs.pop(key, None)
    attrs.pop("preselection_efficiency", None)  # a ratio, not summable: read it from the files
    return L1Events.concatenate(samples, attrs)


def train(family: str, data, epochs: int, seed: int, lr: float = 3e-3, batch_size: int = 256, **model):
    torch.manual_seed(seed)
    config = TrainConfig(family=family, model=model, batch_size=batch_size, lr=lr, seed=seed)
    DOMAIN.check(data, config)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(data))
    n_val = len(data) // 10
    tr, va = data.subset(np.sort(perm[n_val:])), data.subset(np.sort(perm[:n_val]))
    pre = DOMAIN.fit_preprocessor(tr, config)
    net = DOMAIN.build_model(config, tr, pre)
    x = torch.from_numpy(DOMAIN.features(pre, tr, rng))
    c = torch.from_numpy(DOMAIN.conditions(pre, tr))
    opts = net.configure_optimizers(lr, 0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opts["model"], T_max=epochs * max(1, len(x) // batch_size))
    gen = DOMAIN.generator(net, pre, tr, DOMAIN.meta(tr, config))
    best, best_state, step = np.inf, None, 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // batch_size)):
            net.training_step(x[idx], c[idx], opts, step, 5.0)
            sched.step()
            step += 1
        net.eval()
        score = DOMAIN.selection_score(gen, va, seed)
        if score < best:
            best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    return gen, {"train_seconds": time.perf_counter() - t0, "steps": step, "best_val_mse": float(best),
                 "n_train": len(tr), "n_val": len(va)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="background L1 file for training")
    p.add_argument("--test", required=True, nargs="+", help="independent background L1 file(s) for the ROC "
                   "(several: joined in order, see join_backgrounds)")
    p.add_argument("--signals", required=True, help="L1 file with the signal processes")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--families", default="l1_ae,l1_vae")
    p.add_argument("--bootstrap", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hls4ml", default="16,6", help="compile the VAE encoder with hls4ml at ap_fixed<W,I> and "
                   "compare with the numpy emulation ('' to skip; needs hepgen[anomaly] and g++)")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bkg_train, sig_all = read_l1(args.train), read_l1(args.signals)
    bkg_test = join_backgrounds([read_l1(t) for t in args.test])
    signals = {n: sig_all.of_process(n) for n in sig_all.processes}
    print(f"background: train {len(bkg_train)}, test {len(bkg_test)}; signals "
          + ", ".join(f"{n} {len(d)}" for n, d in signals.items()))
    summary: dict = {"n_train": len(bkg_train), "n_test": len(bkg_test), "test_files": list(args.test),
                     "n_signal": {n: len(d) for n, d in signals.items()}, "families": {}, "cpu_count": os.cpu_count()}
    pythia_s = float(bkg_test.attrs.get("cpu_seconds", np.nan)) / max(len(bkg_test), 1)
    gens = {}
    for family in args.families.split(","):
        gen, info = train(family, bkg_train, args.epochs, args.seed)
        gens[family] = gen
        m = evaluate_detector(gen, bkg_test, signals, out / f"report_{family}", n_bootstrap=args.bootstrap,
                              seed=args.seed)
        print(f"\n{family}: trained {info['steps']} steps in {info['train_seconds']:.0f} s; "
              f"best validation MSE {info['best_val_mse']:.4f}")
        print(f"{'score':9s} {'signal':12s} {'AUC':>15s} {'eff@1e-3':>16s} {'eff@1e-4':>16s}")
        for sname, entry in m["scores"].items():
            for sig, r in entry["signals"].items():
                e3, e4 = r["eff@0.001"], r["eff@0.0001"]
                print(f"{sname:9s} {sig:12s} {r['auc']:.3f} ± {r['auc_err']:.3f}   "
                      f"{e3['efficiency']:.4f} ± {e3['efficiency_err']:.4f}   "
                      f"{e4['efficiency']:.4f} ± {e4['efficiency_err']:.4f}{'' if e4['resolved'] else ' (unres.)'}")
        path = score_module(gen.model)
        xb = gen.preprocessor.transform(bkg_test.objects)
        xs = {n: gen.preprocessor.transform(d.objects) for n, d in signals.items()}
        scan = precision_scan(path, xb, xs, precisions=DEFAULT_PRECISIONS, fpr=1e-3)
        print(f"precision scan of the {path.kind} score (MACs {scan['macs']}, parameters {scan['parameters']}):")
        for key, v in scan.items():
            if isinstance(v, dict) and "signals" in v:
                aucs = " ".join(f"{n}={r['auc']:.3f}" for n, r in v["signals"].items())
                print(f"  {key:16s} {aucs}  max AUC loss {v.get('max_auc_loss', 0.0):+.4f}  "
                      f"weights {v['weight_bits'] / 8 / 1024:.1f} KiB")
        scan_rs = precision_scan(path, xb, xs, precisions=DEFAULT_PRECISIONS, fpr=1e-3, rounding="RND",
                                 overflow="SAT")
        print("  with AP_RND + AP_SAT instead of hls4ml's default AP_TRN + AP_WRAP:")
        for key, v in scan_rs.items():
            if isinstance(v, dict) and "max_auc_loss" in v:
                aucs = " ".join(f"{n}={r['auc']:.3f}" for n, r in v["signals"].items())
                print(f"  {key:16s} {aucs}  max AUC loss {v['max_auc_loss']:+.4f}")
        scan["rnd_sat"] = scan_rs
        if args.hls4ml and path.kind == "mu2":
            w, i = (int(v) for v in args.hls4ml.split(","))
            t0 = time.perf_counter()
            hls = hls4ml_encode(path, xb[:2000], w, i, out / f"hls4ml_{family}")
            emu = FixedPointScorer(path, w, i).encode(xb[:2000])
            scan["hls4ml_check"] = {"precision": f"ap_fixed<{w},{i}>", "events": len(hls),
                                    "max_abs_diff": float(np.abs(hls - emu).max()),
                                    "seconds": time.perf_counter() - t0}
            print(f"hls4ml C++ emulation vs numpy emulation at ap_fixed<{w},{i}> on {len(hls)} test events: "
                  f"max |diff| = {scan['hls4ml_check']['max_abs_diff']:g} "
                  f"(convert + g++ compile + run {scan['hls4ml_check']['seconds']:.0f} s)")
        onnx_path = export_onnx(path, out / f"{family}.onnx")
        lat = onnx_latency(onnx_path, xb[:256], n_runs=3000)
        print(f"ONNX batch-1 latency (onnxruntime, 1 thread): median {lat['median_us']:.1f} µs, "
              f"p99 {lat['p99_us']:.1f} µs; Pythia + L1 model per accepted event {pythia_s * 1e6:.0f} µs "
              f"(ratio {pythia_s * 1e6 / lat['median_us']:.0f})")
        lat.pop("scores")
        summary["families"][family] = {"train": info, "metrics": m, "precision_scan": scan, "onnx": lat}
        (out / f"metrics_{family}.json").write_text(json.dumps(strict_json(m), indent=1))
    # out-of-distribution check of generated events: VAE samples scored by the AE
    if {"l1_ae", "l1_vae"} <= set(gens):
        ae = gens["l1_ae"]
        fake = gens["l1_vae"].sample_like(bkg_test, seed=args.seed)
        # the file is ordered by process: split it at random into reference and control halves
        perm = np.random.default_rng(args.seed).permutation(len(bkg_test))
        half = len(bkg_test) // 2
        ref = ae.scores(bkg_test.subset(np.sort(perm[:half])))["mse"]
        control = ae.scores(bkg_test.subset(np.sort(perm[half:])))["mse"]
        ood = {"vae_samples": {q: ood_fraction(ref, ae.scores(fake)["mse"], q) for q in (0.99, 0.999)},
               "real_control": {q: ood_fraction(ref, control, q) for q in (0.99, 0.999)}}
        summary["ood_check"] = ood
        print("\nOOD check (AE MSE above the real-background quantile; expected 1 - q for in-distribution):")
        for what, d in ood.items():
            print("  " + what + ": " + ", ".join(f"q={q}: {r['fraction']:.4f} (x{r['ratio']:.1f})" for q, r in d.items()))
    (out / "bench_anomaly.json").write_text(json.dumps(strict_json(summary), indent=1))
    print(json.dumps(strict_json({f: {"auc": {s: {k: v["signals"][s]["auc"] for k, v in d["metrics"]["scores"].items()}
                                               for s in signals}, "onnx_median_us": d["onnx"]["median_us"]}
                                  for f, d in summary["families"].items()})))


if __name__ == "__main__":
    main()
