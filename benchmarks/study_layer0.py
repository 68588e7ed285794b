"""Issue 14, layer 0's outer radial bins: train the caloflow preset with and without
``deposit_bound``, or evaluate given checkpoints, and print what the two differ in.

For each run: hepgen's classifier AUCs (low / high level) and the mean separation power of 10k
generated against the test showers (:func:`hepgen.domains.showers.evaluate.evaluate`, seed 1),
the layer-0 radial-bin occupancy (fraction of voxels above 0.01 MeV) and mean energy per voxel,
the fraction of showers with a layer-0 radial width above 10 mm, the layer-0 separation powers,
and the Pearson correlations of layer 0's log-energy and radial width with every layer's
log-energy and width (generated minus real).  One JSON line per run; the numbers in
docs/models.md ("Sparse outer voxels") come from it.  Usage (demo data, one thread):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/study_layer0.py --data DIR --out runs/ \
        --train base --set epochs=8 seed=0 deposit_bound=null
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/study_layer0.py --data DIR --out runs/ \
        --train fix --set epochs=8 seed=0 deposit_bound=4.5
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/study_layer0.py --data DIR --ckpt runs/base/best.pt

``DIR`` holds ``train.h5`` and ``test.h5`` (``make demo``'s ``data/``); the geometry must be a
cylindrical binning (radial bin centres from its ``r_edges``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hepgen.config import apply_overrides, preset
from hepgen.data.formats import ShowerData, read_showers
from hepgen.domains.showers.evaluate import evaluate
from hepgen.domains.showers.generator import ShowerGenerator
from hepgen.train.trainer import train


def radial_profile(showers: np.ndarray, geometry) -> np.ndarray:
    """(N, n_voxels) MeV → (N, n_layers, n_r) MeV summed over the angular bins (cylindrical
    binning, every layer with the same ``n_r`` and ``n_alpha``; voxel order radial-fastest)."""
    layers = geometry.layers
    n_r, n_a = len(layers[0].r_edges) - 1, layers[0].n_alpha
    return np.asarray(showers, np.float64).reshape(len(showers), len(layers), n_a, n_r).sum(axis=2)


def layer_features(showers: np.ndarray, geometry) -> np.ndarray:
    """(N, 2L): log(E_l + 1e-3 MeV) of every layer, then its energy-weighted radial width (mm) from
    the radial bin centres (0 for an empty layer)."""
    edges = np.asarray(geometry.layers[0].r_edges)
    r_c = 0.5 * (edges[1:] + edges[:-1])
    prof = radial_profile(showers, geometry)
    e = prof.sum(axis=2)
    w = np.maximum(e, 1e-12)
    m1 = (prof * r_c).sum(axis=2) / w
    width = np.sqrt(np.maximum((prof * r_c ** 2).sum(axis=2) / w - m1 ** 2, 0.0))
    return np.concatenate([np.log(e + 1e-3), width], axis=1)


def compare(test: ShowerData, showers: np.ndarray) -> dict:
    geo = test.geometry
    pr, pg = radial_profile(test.showers, geo)[:, 0], radial_profile(showers, geo)[:, 0]
    n_a = geo.layers[0].n_alpha
    vr = np.asarray(test.showers, np.float64)[:, : pr.shape[1] * n_a].reshape(len(pr), n_a, -1)
    vg = np.asarray(showers, np.float64)[:, : pg.shape[1] * n_a].reshape(len(pg), n_a, -1)
    fr, fg = layer_features(test.showers, geo), layer_features(showers, geo)
    n_l = fr.shape[1] // 2
    d = np.corrcoef(fg, rowvar=False) - np.corrcoef(fr, rowvar=False)
    rows = np.abs(d[[0, n_l]])
    rows[0, 0] = rows[1, n_l] = 0.0
    return {
        "occupancy_l0_real": (vr > 0.01).mean(axis=(0, 1)).round(4).tolist(),
        "occupancy_l0_gen": (vg > 0.01).mean(axis=(0, 1)).round(4).tolist(),
        "mean_voxel_energy_l0_real": vr.mean(axis=(0, 1)).round(4).tolist(),
        "mean_voxel_energy_l0_gen": vg.mean(axis=(0, 1)).round(4).tolist(),
        "width_r0_above_10mm_real": float((fr[:, n_l] > 10).mean()),
        "width_r0_above_10mm_gen": float((fg[:, n_l] > 10).mean()),
        "pearson_l0_rows_mean_abs_diff": float(rows.mean()),
        "pearson_l0_rows_max_abs_diff": float(rows.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder with train.h5 and test.h5")
    ap.add_argument("--out", default="runs_layer0")
    ap.add_argument("--train", metavar="NAME", help="train the caloflow preset into OUT/NAME")
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides KEY=VALUE")
    ap.add_argument("--ckpt", help="evaluate this checkpoint instead of training")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if (a.train is None) == (a.ckpt is None):
        ap.error("give exactly one of --train NAME and --ckpt PATH")
    torch.set_num_threads(a.threads)
    data = Path(a.data)
    test = read_showers(data / "test.h5")
    row = {"set": a.set}
    if a.train:
        cfg = apply_overrides(preset("caloflow"), [*a.set, f"threads={a.threads}"])
        t0, c0 = time.perf_counter(), time.process_time()
        train(read_showers(data / "train.h5"), cfg, Path(a.out) / a.train, progress=False)
        row.update(name=a.train, train_min=(time.perf_counter() - t0) / 60, train_cpu_min=(time.process_time() - c0) / 60)
        ckpt = Path(a.out) / a.train / "best.pt"
    else:
        ckpt = Path(a.ckpt)
        row["name"] = str(ckpt)
    gen = ShowerGenerator.load(ckpt)
    showers = gen.sample(test.incident_energies, test.conditions, seed=1)
    generated = ShowerData(showers, test.incident_energies, dict(test.conditions), test.geometry, {})
    m = evaluate(test, generated, test.geometry, seed=1, groups=None)
    sep = m["separation_power"]
    row.update(deposit_bound=gen.preprocessor.deposit_bound,
               auc_low=m["classifier"]["low_level"]["auc"], auc_high=m["classifier"]["high_level"]["auc"],
               sep_mean=m["separation_power_mean"], sep_layer0={k: v for k, v in sep.items() if k.endswith("_0")},
               sep_top5=sorted(sep.items(), key=lambda kv: -kv[1])[:5], **compare(test, showers))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
