"""Transfer-learning study (issue 23; 3DGAN, Khattak et al., arXiv:2109.07388): pre-train at
100–200 GeV, then extend the energy range with twice the data for 3 epochs, with and without
the pre-trained start; print the fidelity after every epoch for both.

Scaled to a CPU: the showers come from hepgen's GFlash reference simulator
(:func:`hepgen.simulate.calorimeter.simulate_dataset`, the default binning of 8 layers ×
48 voxels; Geant4 at 100–500 GeV costs ≈ 1–2 s per shower here, far too slow for thousands of
showers), energies uniform on a 1 GeV grid (3DGAN's flat spectrum), electrons at normal incidence.
The family is ``--family`` (default ``caloflow``, hepgen's best; ``gan`` for the 3DGAN-like
case).  The pre-trained start uses the trainer's ``init_from`` (weights only, new optimiser;
the preprocessing is refitted to the full-range data, so the pre-trained weights start from
conditions and features standardised over the new range — as 3DGAN's do, whose energy input
is scaled by a fixed constant, not refitted).

Fidelity per epoch, against ``--n-test`` independent full-range showers: the AUC of a
classifier (gradient boosting) separating generated from GFlash showers on the CaloChallenge
high-level features (0.5 = indistinguishable), and the mean separation power of those features.
"Epoch 0" of the pre-trained start is the pre-trained model itself (its own preprocessing).

Run (about 15–20 min on a 2-core machine with the defaults)::

    OMP_NUM_THREADS=1 python benchmarks/study_transfer.py -o runs/study_transfer
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hepgen._io import atomic_path
from hepgen.config import TrainConfig
from hepgen.data.formats import ShowerData
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.metrics import classifier_two_sample_test, high_level_features, high_level_inputs, separation_power
from hepgen.simulate.calorimeter import simulate_dataset


def flat(lo_gev: float, hi_gev: float) -> np.ndarray:
    """Energies (MeV) on a 1 GeV grid from ``lo_gev`` to ``hi_gev``.

    >>> flat(100, 102).tolist()
    [100000.0, 101000.0, 102000.0]
    """
    if not 0 < lo_gev <= hi_gev:
        raise ValueError(f"energy range: expected 0 < lo <= hi GeV, found {lo_gev}, {hi_gev}")
    return np.arange(round(lo_gev), round(hi_gev) + 1, dtype=float) * 1e3


def fidelity(real: ShowerData, gen: ShowerData, seed: int = 0) -> dict:
    """Classifier AUC (high-level features, gradient boosting) and the mean separation power
    of the high-level features between ``real`` and ``gen`` (same geometry)."""
    fr = high_level_features(real.showers, real.incident_energies, real.geometry)
    fg = high_level_features(gen.showers, gen.incident_energies, gen.geometry)
    seps = []
    for k in fr:
        a, b = fr[k], fg[k]
        ok = np.isfinite(a)
        okb = np.isfinite(b)
        if not ok.any() or not okb.any():
            continue
        edges = np.histogram_bin_edges(np.concatenate([a[ok], b[okb]]), bins=30)
        if edges[0] == edges[-1]:
            continue
        seps.append(separation_power(a[ok], b[okb], edges))
    xr = np.nan_to_num(high_level_inputs(fr, real.incident_energies))
    xg = np.nan_to_num(high_level_inputs(fg, gen.incident_energies))
    clf = classifier_two_sample_test(xr, xg, seed=seed, model="hgb")
    return {"auc": float(clf["auc"]), "auc_err": float(clf["auc_err"]), "separation": float(np.mean(seps))}


def config(family: str, epochs: int, minutes: float | None, threads: int, seed: int,
           model: dict | None = None) -> TrainConfig:
    """The training configuration of every run of the study (only the epochs differ)."""
    return TrainConfig(family=family, model=dict(model or {}), epochs=epochs, max_minutes=minutes,
                       batch_size=256, lr=1e-3, threads=threads, seed=seed, tensorboard=False, n_eval=500)


def fine_tune(train_fn, data: ShowerData, test: ShowerData, cfg: TrainConfig, out_dir: Path,
              init_from=None, seed: int = 0) -> list[dict]:
    """Train on ``data`` with ``cfg`` (from ``init_from`` if given) and score ``last.pt`` on
    ``test`` after every epoch; returns one row per epoch."""
    rows: list[dict] = []

    def after_epoch(epoch: int, record: dict) -> None:  # epoch: 1, 2, …
        gen = ShowerGenerator.load(out_dir / "last.pt").sample_like(test, seed=seed + 100 + epoch)
        rows.append({"epoch": int(epoch), **fidelity(test, gen, seed)})  # the trainer counts from 1

    train_fn(data, cfg, out_dir, init_from=init_from, progress=False, callbacks=[after_epoch])
    return rows


def format_table(rows_pre: list[dict], rows_scratch: list[dict], start: dict | None) -> str:
    """Fidelity vs epoch, pre-trained start beside random start."""
    lines = [f"{'epoch':>5} | {'pre-trained: AUC':>17} {'sep.':>7} | {'from scratch: AUC':>18} {'sep.':>7}"]
    if start is not None:
        lines.append(f"{0:>5} | {start['auc']:>17.3f} {start['separation']:>7.3f} | {'-':>18} {'-':>7}")
    for a, b in zip(rows_pre, rows_scratch):
        lines.append(f"{a['epoch']:>5} | {a['auc']:>17.3f} {a['separation']:>7.3f} | "
                     f"{b['auc']:>18.3f} {b['separation']:>7.3f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="runs/study_transfer")
    p.add_argument("--family", default="caloflow")
    p.add_argument("--pretrain-range", type=float, nargs=2, default=(100.0, 200.0), metavar=("LO", "HI"), help="GeV")
    p.add_argument("--full-range", type=float, nargs=2, default=(10.0, 500.0), metavar=("LO", "HI"), help="GeV")
    p.add_argument("--n-pretrain", type=int, default=3000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--pretrain-minutes", type=float, default=6.0)
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (3DGAN: 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from hepgen.train.trainer import train  # after argparse: --help stays fast

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pre = simulate_dataset(args.n_pretrain, energies=flat(*args.pretrain_range), seed=args.seed + 1)
    full = simulate_dataset(2 * args.n_pretrain, energies=flat(*args.full_range), seed=args.seed + 2)
    test = simulate_dataset(args.n_test, energies=flat(*args.full_range), seed=args.seed + 3)
    print(f"GFlash: {len(pre)} pre-training showers ({args.pretrain_range} GeV), {len(full)} full-range "
          f"({args.full_range} GeV), {len(test)} test; {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    train(pre, config(args.family, args.pretrain_epochs, args.pretrain_minutes, args.threads, args.seed),
          out / "pretrain", progress=False)
    start = fidelity(test, ShowerGenerator.load(out / "pretrain" / "best.pt").sample_like(test, seed=args.seed + 99),
                     args.seed)
    print(f"pre-training: {time.perf_counter() - t:.0f} s; on the full range: AUC {start['auc']:.3f}")
    cfg = config(args.family, args.epochs, None, args.threads, args.seed)
    rows = {}
    for name, init in (("pretrained", out / "pretrain" / "best.pt"), ("scratch", None)):
        t = time.perf_counter()
        rows[name] = fine_tune(train, full, test, cfg, out / f"finetune_{name}", init_from=init, seed=args.seed)
        print(f"{name}: {time.perf_counter() - t:.0f} s")
    table = format_table(rows["pretrained"], rows["scratch"], start)
    print(table)
    summary = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
               "pretrained_model_on_full_range": start, **rows}
    with atomic_path(out / "study_transfer.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1))
    with atomic_path(out / "study_transfer.txt") as tmp:
        Path(tmp).write_text(table + "\n")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
