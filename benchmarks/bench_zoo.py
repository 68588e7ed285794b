"""Model-zoo comparison: every family trained on the same data with the same CPU budget.

Each family trains from its preset (``src/hepgen/configs/<family>.yaml``, or the
TrainConfig defaults) for at most ``--minutes`` of wall-clock time on ``--cores`` CPU
cores, then samples the test set's conditions and is scored with ``hepgen.domains.showers.evaluate``
against the test showers.  The reference row is the simulator compared with an
independent sample of itself at the same conditions: that is what "perfect" means.

Every family runs in its own process (peak memory is that process's maximum RSS).  With
``--parallel`` the families run side by side, each pinned to its own ``--cores`` cores
(for a machine with enough cores, e.g. the lent GPU machine's 16); without it they run
one after another on the cores given.

Usage:

    python benchmarks/bench_zoo.py --minutes 8 -o bench-zoo            # all families
    python benchmarks/bench_zoo.py --families flow,gan --minutes 2 --n-train 20000 -o /tmp/z
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_FAMILIES = "flow,caloflow,flow_matching,vae,gan"
REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _data(out: Path, n_train: int, n_test: int, seed: int):
    """Simulate (or reuse) the training and test sets and the independent reference sample."""
    from hepgen.data.formats import ShowerData, read_showers, write_showers
    from hepgen.data.geometry import default_binning
    from hepgen.simulate.calorimeter import ShowerSimulator, simulate_dataset

    d = out / "data"
    d.mkdir(parents=True, exist_ok=True)
    geometry = default_binning()
    paths = {k: d / f"{k}.h5" for k in ("train", "test", "reference")}
    if not paths["train"].is_file():
        write_showers(paths["train"], simulate_dataset(n_train, geometry=geometry, seed=seed, progress=True))
    if not paths["test"].is_file():
        write_showers(paths["test"], simulate_dataset(n_test, geometry=geometry, seed=seed + 1000, progress=True))
    if not paths["reference"].is_file():
        test = read_showers(paths["test"])
        t0 = time.perf_counter()
        showers = ShowerSimulator(geometry).simulate(test.incident_energies.reshape(-1), seed=seed + 2000)
        rate = len(test) / (time.perf_counter() - t0)
        ref = ShowerData(np.asarray(showers, dtype=np.float32), test.incident_energies, {}, geometry,
                         {"generator": "reference simulator (independent seed)", "showers_per_s": rate})
        write_showers(paths["reference"], ref)
    return paths


def _score(real, generated, seed: int) -> dict:
    from hepgen.domains.showers.evaluate import evaluate

    m = evaluate(real, generated, real.geometry, seed=seed)
    clf = m.get("classifier", {})
    row = {
        "auc_low_level": clf.get("low_level", {}).get("auc"),
        "auc_high_level": clf.get("high_level", {}).get("auc"),
        "separation_power_mean": m.get("separation_power_mean"),
    }
    for key in ("fpd", "kpd"):  # present once the validation suite provides them
        value = m.get("multivariate", {}).get(key, m.get(key))
        if isinstance(value, dict):
            row[key], row[key + "_err"] = value.get("value"), value.get("error")
        elif value is not None:
            row[key] = value
    return row


def run_one(family: str, paths: dict, out: Path, minutes: float, threads: int, seed: int) -> dict:
    """Train, sample and score one family in this process; returns its table row."""
    import torch

    from hepgen.config import TrainConfig, load_config
    from hepgen.data.formats import ShowerData, read_showers
    from hepgen.domains.showers.generator import ShowerGenerator
    from hepgen.simulate.calorimeter import ShowerSimulator
    from hepgen.train.trainer import train

    torch.set_num_threads(threads)
    preset = REPO / "src" / "hepgen" / "configs" / f"{family}.yaml"
    config = load_config(preset) if preset.is_file() else TrainConfig(family=family)
    config.max_minutes = minutes
    config.threads = threads
    config.seed = seed
    run_dir = out / family
    train_data, test = read_showers(paths["train"]), read_showers(paths["test"])

    # Fit the preset's epochs to the budget, so that every family's LR schedule completes:
    # time 20 optimiser steps of a fresh model on random batches (after 3 warm-up steps) and
    # leave 15 % of the budget for the per-epoch preprocessing, validation and physics metric.
    from hepgen.domains.showers import layer_sizes, model_hparams
    from hepgen.models import build_model

    n_feat = len(layer_sizes(train_data.geometry)) + train_data.geometry.n_voxels
    probe_model = build_model(config.family, n_features=n_feat, n_conditions=1,
                              **model_hparams(config, train_data.geometry))
    opts = probe_model.configure_optimizers(config.lr, config.weight_decay)
    g = torch.Generator().manual_seed(0)
    xb, cb = torch.randn(config.batch_size, n_feat, generator=g), torch.randn(config.batch_size, 1, generator=g)
    for i in range(23):
        if i == 3:
            t_probe = time.perf_counter()
        probe_model.training_step(xb, cb, opts, i, config.grad_clip)
    sec_per_step = (time.perf_counter() - t_probe) / 20
    del probe_model, opts
    steps_per_epoch = -(-int(len(train_data) * (1 - config.val_fraction)) // config.batch_size)
    config.epochs = max(1, min(config.epochs, int(0.85 * 60 * minutes / (sec_per_step * steps_per_epoch))))
    _log(f"{family}: {sec_per_step * 1e3:.0f} ms/step → {config.epochs} epochs in ≤ {minutes} min on "
         f"{threads} threads ({preset.name if preset.is_file() else 'defaults'})")
    c0, t0 = time.process_time(), time.perf_counter()
    train(train_data, config, run_dir, progress=False)
    train_cpu_min, train_wall_min = (time.process_time() - c0) / 60, (time.perf_counter() - t0) / 60
    gen = ShowerGenerator.load(run_dir / "best.pt")
    n_params = sum(p.numel() for p in gen.model.parameters())

    e = test.incident_energies.reshape(-1)
    t0 = time.perf_counter()
    showers = gen.sample(e, test.conditions, seed=seed, batch_size=1000)
    rate_1000 = len(e) / (time.perf_counter() - t0)
    n1 = 200
    t0 = time.perf_counter()
    gen.sample(e[:n1], test.conditions and {k: v[:n1] for k, v in test.conditions.items()}, seed=seed, batch_size=1)
    rate_1 = n1 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    ShowerSimulator(test.geometry).simulate(e, seed=seed + 3000)
    sim_rate = len(e) / (time.perf_counter() - t0)

    generated = ShowerData(showers, test.incident_energies, dict(test.conditions), test.geometry,
                           {"generator": f"hepgen {family}"})
    _log(f"{family}: evaluating")
    row = {
        "family": family,
        **_score(test, generated, seed),
        "epochs": config.epochs,
        "train_cpu_minutes": train_cpu_min,
        "train_wall_minutes": train_wall_min,
        "parameters": int(n_params),
        "showers_per_s_batch1": rate_1,
        "showers_per_s_batch1000": rate_1000,
        "simulator_showers_per_s": sim_rate,
        "speedup_batch1000": rate_1000 / sim_rate,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (run_dir / "result.json").write_text(json.dumps(row, indent=2))
    _log(f"{family}: done {json.dumps({k: row[k] for k in ('auc_low_level', 'auc_high_level', 'separation_power_mean')})}")
    return row


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = ("| family | AUC low | AUC high | mean S | FPD | KPD | train CPU-min | params "
            "| showers/s b=1 | showers/s b=1000 | peak RSS MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['family']} | {_fmt(r.get('auc_low_level'), '.4f')} | {_fmt(r.get('auc_high_level'), '.4f')} "
            f"| {_fmt(r.get('separation_power_mean'), '.4f')} | {_fmt(r.get('fpd'), '.3g')} | {_fmt(r.get('kpd'), '.3g')} "
            f"| {_fmt(r.get('train_cpu_minutes'), '.1f')} | {_fmt(r.get('parameters'), ',')} "
            f"| {_fmt(r.get('showers_per_s_batch1'), '.0f')} | {_fmt(r.get('showers_per_s_batch1000'), '.0f')} "
            f"| {_fmt(r.get('peak_rss_mib'), '.0f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=DEFAULT_FAMILIES)
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget per family")
    p.add_argument("--cores", type=int, default=2, help="CPU cores (torch threads) per family")
    p.add_argument("--parallel", action="store_true", help="run the families side by side, each pinned to its own cores")
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--out", default="bench-zoo")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one family in this process
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = _data(out, args.n_train, args.n_test, args.seed)

    if args.one:
        run_one(args.one, paths, out, args.minutes, args.cores, args.seed)
        return

    from hepgen.data.formats import read_showers

    families = [f for f in args.families.split(",") if f]
    procs = []
    n_cpu = os.cpu_count() or 1
    for i, fam in enumerate(families):
        cmd = [sys.executable, __file__, "--one", fam, "--minutes", str(args.minutes), "--cores", str(args.cores),
               "--n-train", str(args.n_train), "--n-test", str(args.n_test), "--seed", str(args.seed), "-o", str(out)]
        if args.parallel:
            cores = {(i * args.cores + k) % n_cpu for k in range(args.cores)}
            cmd = ["taskset", "-c", ",".join(map(str, sorted(cores)))] + cmd
        env = dict(os.environ, OMP_NUM_THREADS=str(args.cores), PYTHONUNBUFFERED="1")
        log_fh = open(out / f"{fam}.log", "w")
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        procs.append((fam, proc, log_fh))
        if not args.parallel:
            proc.wait()
            log_fh.close()
            _log(f"{fam}: exit {proc.returncode}")
    for fam, proc, log_fh in procs:
        if args.parallel:
            proc.wait()
            log_fh.close()
            _log(f"{fam}: exit {proc.returncode}")

    test, ref = read_showers(paths["test"]), read_showers(paths["reference"])
    rows = [{"family": "simulator (reference)", **_score(test, ref, args.seed),
             "showers_per_s_batch1000": ref.attrs.get("showers_per_s")}]
    for fam in families:
        res = out / fam / "result.json"
        rows.append(json.loads(res.read_text()) if res.is_file() else {"family": f"{fam} (failed: see {fam}.log)"})
    text = table(rows)
    (out / "zoo.json").write_text(json.dumps(rows, indent=2))
    (out / "zoo.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
