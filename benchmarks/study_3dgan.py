"""3DGAN study (issue 23): Geant4 electrons in the ``3dgan`` preset, the 3DGAN-style GAN and
hepgen's CaloFlow at the same CPU budget, scored with the study's own measures.

The study (G. R. Khattak et al., "Fast simulation of a high granularity calorimeter by
generative adversarial networks", Eur. Phys. J. C 82 (2022) 386, arXiv:2109.07388): CLIC-like
ECAL of 25 W/Si layers, 5 mm cells, 51 × 51 × 25 images; e⁻ / γ with a flat 10–500 GeV
spectrum and incident angle θ = 60°–120° (±30° about normal incidence); a conditional 3D
convolutional GAN with an auxiliary regression of energy and angle and an ECAL-sum loss.

What this script does, and what differs:

* **Data**: Geant4 (hepgen's data-free EM list, docs/geant4.md) in the ``3dgan`` preset:
  25 × (2.8 mm W + 0.5 mm Si), a 25 × 25 × 25 grid of 5.1 mm cells (not 51 × 51: the preset's
  grid, ≈ 12.8 cm square, i.e. 2.9 Molière radii of W on each side), electrons, energies
  uniform on a 1 GeV grid in ``--energy-range`` (default 10–100 GeV: 500 GeV showers cost
  ≈ 2 s each here; the engine draws energies log-uniformly or from a list, so a fine list
  gives the flat spectrum), incident angle uniform in ±``--theta-deg`` (default 30°) about
  the calorimeter axis (an angle in one plane: φ = 0), cached under ``--data-dir``.
  The engine has no hadronic physics: no pions.
* **Models**: ``gan`` with ``arch: conv3d`` (3D convolutions), BCE loss, auxiliary regression
  of energy and angle (``aux_energy``, ``aux_conditions``) and the ECAL-sum term
  (``ecal_sum``); ``caloflow`` (hepgen's best family on Geant4 so far, docs/geant4.md) with a
  shape flow small enough for 15,625 voxels on a CPU.  Both get ``--minutes`` of training.
* **Measures**: single-cell energy spectrum (separation power of log10 cell energies above
  ``--cell-threshold``), shower shapes along x, y, z (mean energy profiles; 3DGAN's relative
  error, averaged over bins), SSIM at scales 1, 1e-2, 1e-4, 1e-6
  (:func:`hepgen.metrics.ssim_by_scale`, images in GeV), a classification accuracy score
  (:func:`hepgen.metrics.classification_accuracy_score`: low- vs high-energy electrons from
  their 25 layer energies, classifier trained on generated low-energy showers, tested on
  Geant4), ``hepgen evaluate``'s report, and the speed-up: model showers/s (one thread) over
  Geant4 showers/s (CPU time of this run's simulation).

Run (about 25–30 min on a 2-core machine with the defaults)::

    OMP_NUM_THREADS=1 python benchmarks/study_3dgan.py --data-dir runs/study_3dgan/data \
        -o runs/study_3dgan --minutes 5 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from hepgen._io import atomic_path
from hepgen.config import TrainConfig
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.domains.showers.evaluate import evaluate_files
from hepgen.metrics import classification_accuracy_score, separation_power, ssim_by_scale

#: published numbers (Khattak et al. 2022): SSIM at L = 1, 1e-2, 1e-4, 1e-6 and the speed-up
PUBLISHED = {
    "scales": [1.0, 1e-2, 1e-4, 1e-6],
    "g4_g4": [0.94, 0.21, 0.045, 0.045],
    "gan_gan": [0.95, 0.25, 0.061, 0.051],
    "speedup": "20,000x (GPU inference vs Geant4)",
}


# --- data ---------------------------------------------------------------------------------------
def flat_energies(lo_gev: float, hi_gev: float, step_gev: float = 1.0) -> np.ndarray:
    """Energies (MeV) on a ``step_gev`` grid from ``lo_gev`` to ``hi_gev``: drawn uniformly from
    this list they give a flat spectrum (the Geant4 engine's ``energy_range`` is log-uniform).

    >>> flat_energies(10, 12).tolist()
    [10000.0, 11000.0, 12000.0]
    """
    if not 0 < lo_gev <= hi_gev:
        raise ValueError(f"--energy-range: expected 0 < lo <= hi GeV, found {lo_gev}, {hi_gev}")
    n = int(round((hi_gev - lo_gev) / step_gev)) + 1
    return np.linspace(lo_gev, lo_gev + (n - 1) * step_gev, n) * 1e3


def simulate_or_load(path: Path, n: int, seed: int, energy_range, theta_deg: float, particle: str,
                     workers: int, simulate=None) -> ShowerData:
    """Geant4 showers of the ``3dgan`` preset cached at ``path`` (simulated once, resumable).

    ``simulate`` replaces :func:`hepgen.simulate.geant4.simulate_geant4` (tests pass GFlash)."""
    if path.is_file():
        data = read_showers(path)
        if len(data) != n:
            raise ValueError(f"{path}: holds {len(data)} showers, expected {n}; remove it or change --data-dir")
        return data
    if simulate is None:
        from hepgen.simulate.geant4 import simulate_geant4 as simulate  # optional extra [geant4]
    theta = np.radians(theta_deg)
    return simulate(path, n, preset="3dgan", particle=particle, energies=flat_energies(*energy_range),
                    theta_range=(-theta, theta), seed=seed, workers=workers,
                    chunk_size=max(1, min(100, n // max(workers, 1))), progress=True)


def as_images(data: ShowerData, unit_mev: float = 1e3) -> np.ndarray:
    """(N, nz, ny, nx) showers in ``unit_mev`` (default GeV) of a Cartesian grid (voxels in C
    order of (nz, ny, nx), layers along z).

    >>> from hepgen.data.geometry import CartesianGrid
    >>> g = CartesianGrid(nx=2, ny=3, nz=4)
    >>> d = ShowerData(np.arange(48.0).reshape(2, 24) * 1e3, np.ones((2, 1)), {}, g)
    >>> float(as_images(d)[1, 3, 2, 1])  # the last voxel of shower 1: 47 000 MeV = 47 GeV
    47.0
    """
    g = data.geometry
    if getattr(g, "kind", None) != "cartesian":
        raise ValueError(f"3DGAN study: expected showers on a Cartesian grid, found geometry {g!r}")
    return data.showers.reshape(len(data), g.nz, g.ny, g.nx) / unit_mev


# --- the study's measures -------------------------------------------------------------------------
def shower_shapes(images: np.ndarray) -> dict[str, np.ndarray]:
    """Mean energy profiles along x, y and z: ``{"x": (nx,), "y": (ny,), "z": (nz,)}``, the sum
    over the other two axes averaged over showers (3DGAN's shower shapes / position along z).

    >>> shower_shapes(np.ones((2, 3, 4, 5)))["z"].tolist()
    [20.0, 20.0, 20.0]
    """
    return {"z": images.sum(axis=(2, 3)).mean(0), "y": images.sum(axis=(1, 3)).mean(0),
            "x": images.sum(axis=(1, 2)).mean(0)}


def shape_errors(real: dict, gen: dict, floor: float = 1e-3) -> dict[str, float]:
    """3DGAN's profile error: mean over bins of |real − gen| / real, for bins holding at least
    ``floor`` of the profile's total (empty edge bins would divide by ~0).

    >>> shape_errors({"z": np.array([1.0, 2.0])}, {"z": np.array([1.5, 2.0])})
    {'z': 0.25}
    """
    out = {}
    for k in real:
        r, g = np.asarray(real[k], float), np.asarray(gen[k], float)
        keep = r > floor * r.sum()
        out[k] = float(np.mean(np.abs(r[keep] - g[keep]) / r[keep]))
    return out


def cell_spectrum_separation(real: np.ndarray, gen: np.ndarray, threshold_mev: float, bins: int = 40) -> float:
    """Separation power of the single-cell energy spectra (log10 of cells above ``threshold_mev``).

    Arguments: real, gen: (N, n_voxels) MeV."""
    a, b = real[real > threshold_mev], gen[gen > threshold_mev]
    if a.size == 0 or b.size == 0:
        return 1.0
    la, lb = np.log10(a), np.log10(b)
    edges = np.linspace(min(la.min(), lb.min()), max(la.max(), lb.max()), bins + 1)
    return float(separation_power(la, lb, edges))


def energy_split_cas(real_train: ShowerData, real_test: ShowerData, gen_like_train: ShowerData,
                     seed: int = 0) -> dict:
    """Classification accuracy score: low- vs high-energy electrons (split at the median incident
    energy of the training set) from their log layer energies; the classifier is trained on
    *generated* low-energy showers against real high-energy ones and tested on Geant4."""
    cut = float(np.median(real_train.incident_energies))

    def feats(d: ShowerData) -> np.ndarray:
        g = d.geometry
        layers = d.showers.reshape(len(d), g.nz, -1).sum(2)
        return np.log10(layers + 1e-3)

    low = lambda d: d.incident_energies[:, 0] < cut  # noqa: E731
    return classification_accuracy_score(
        gen_a=feats(gen_like_train)[low(gen_like_train)], real_b=feats(real_train)[~low(real_train)],
        real_a_test=feats(real_test)[low(real_test)], real_b_test=feats(real_test)[~low(real_test)], seed=seed)


# --- the models ---------------------------------------------------------------------------------
def gan_config(grid_shape, minutes: float, threads: int, seed: int = 0, channels: int = 8) -> TrainConfig:
    """The 3DGAN-style GAN: 3D convolutions, BCE, auxiliary regression of E and θ, ECAL sum."""
    return TrainConfig(family="gan", model={
        "arch": "conv3d", "grid_shape": list(grid_shape), "loss": "bce", "aux_energy": 1.0,
        "aux_conditions": 1.0, "ecal_sum": 1.0, "channels": channels, "hidden": 128, "latent_dim": 64,
        "label_smoothing": 0.1}, conditions=["incident_theta"], epochs=10_000, max_minutes=minutes,
        batch_size=64, lr=2e-4, threads=threads, seed=seed, select_by="physics", n_eval=200,
        eval_every=5, tensorboard=False)


def caloflow_config(minutes: float, threads: int, seed: int = 0, hidden: int = 64) -> TrainConfig:
    """hepgen's CaloFlow with an affine shape flow small enough for 15,625 voxels on a CPU."""
    return TrainConfig(family="caloflow", model={
        "energy_flow": {"transforms": 4, "hidden_features": 64, "n_hidden": 2, "passes": None, "spline_bins": 8},
        "shape_flow": {"transforms": 4, "hidden_features": hidden, "n_hidden": 1, "passes": 2, "spline_bins": 0}},
        conditions=["incident_theta"], epochs=10_000, max_minutes=minutes, batch_size=64, lr=1e-3,
        threads=threads, seed=seed, select_by="val_loss", tensorboard=False)


def model_rate(generator, like: ShowerData, seed: int = 0, min_time: float = 2.0) -> float:
    """Model showers/s on one thread at ``like``'s energies and conditions (best of repeats)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator.sample(like.incident_energies[:8], {k: v[:8] for k, v in like.conditions.items()}, seed=seed)
        best, spent = 0.0, 0.0
        while spent < min_time:
            t = time.perf_counter()
            generator.sample(like.incident_energies, like.conditions, seed=seed, batch_size=256)
            dt = time.perf_counter() - t
            spent += dt
            best = max(best, len(like) / dt)
        return best
    finally:
        torch.set_num_threads(threads)


# --- table ----------------------------------------------------------------------------------------
def format_table(results: dict, g4_rate: float) -> str:
    """The published SSIM table beside the reproduced one, and the speed-ups."""
    lines = ["SSIM by scale L (mean of random pairs)     " + "".join(f"{s:>10g}" for s in PUBLISHED["scales"])]
    lines.append("  published  G4 vs G4                     " + "".join(f"{v:>10.3f}" for v in PUBLISHED["g4_g4"]))
    lines.append("  published  GAN vs GAN                   " + "".join(f"{v:>10.3f}" for v in PUBLISHED["gan_gan"]))
    first = True
    for name, r in results.items():
        s = r["ssim"]
        if first:
            lines.append("  this run   G4 vs G4                     " + "".join(f"{v:>10.3f}" for v in s["g4_g4"]))
            first = False
        lines.append(f"  this run   {name + ' vs ' + name:<29}" + "".join(f"{v:>10.3f}" for v in s["gan_gan"]))
        lines.append(f"  this run   G4 vs {name:<23}" + "".join(f"{v:>10.3f}" for v in s["g4_gan"]))
    lines.append("")
    lines.append(f"{'model':<10}{'cell-E sep.':>12}{'x err':>8}{'y err':>8}{'z err':>8}{'CAS':>8}{'CAS base':>9}"
                 f"{'AUC':>8}{'showers/s':>11}{'xGeant4':>9}")
    for name, r in results.items():
        sh, cas = r["shape_error"], r.get("cas") or {}
        lines.append(f"{name:<10}{r['cell_separation']:>12.3f}{sh['x']:>8.3f}{sh['y']:>8.3f}{sh['z']:>8.3f}"
                     f"{cas.get('accuracy', float('nan')):>8.3f}{cas.get('baseline_accuracy', float('nan')):>9.3f}"
                     f"{r.get('auc', float('nan')):>8.3f}{r['showers_per_s']:>11.1f}{r['showers_per_s'] / g4_rate:>9.1f}")
    lines.append(f"Geant4: {g4_rate:.2f} showers/s (CPU time of this run's simulation); published speed-up: "
                 f"{PUBLISHED['speedup']}")
    return "\n".join(lines)


def evaluate_model(name: str, generator, train: ShowerData, test: ShowerData, out: Path, args) -> dict:
    """Every measure of the study for one trained model (writes gen_<name>.h5 and its report)."""
    gen = generator.sample_like(test, seed=args.seed + 1)
    gen_path = out / f"gen_{name}.h5"
    write_showers(gen_path, gen)
    real_img, gen_img = as_images(test), as_images(gen)
    res = {"ssim": ssim_by_scale(real_img, gen_img, n_pairs=args.ssim_pairs, seed=args.seed),
           "shape_error": shape_errors(shower_shapes(real_img), shower_shapes(gen_img)),
           "cell_separation": cell_spectrum_separation(test.showers, gen.showers, args.cell_threshold)}
    try:
        res["cas"] = energy_split_cas(train, test, generator.sample_like(train, seed=args.seed + 2), args.seed)
    except ValueError as err:  # too few showers per class at tiny settings
        res["cas"] = None
        print(f"{name}: CAS skipped ({err})")
    if not args.no_report:
        # the classifier test needs >= 50 showers per set (tiny development runs have fewer)
        metrics = evaluate_files(out / "g4_test.h5", gen_path, out_dir=out / f"evaluate_{name}", seed=args.seed,
                                 max_points=2000, classifier=len(test) >= 50, groups=args.report_groups)
        res["auc"] = float(metrics.get("classifier", {}).get("low_level", {}).get("auc", float("nan")))
    res["showers_per_s"] = model_rate(generator, test, args.seed)
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="runs/study_3dgan/data", help="Geant4 cache (reused when present)")
    p.add_argument("-o", "--out", default="runs/study_3dgan")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--energy-range", type=float, nargs=2, default=(10.0, 100.0), metavar=("LO", "HI"), help="GeV")
    p.add_argument("--theta-deg", type=float, default=30.0)
    p.add_argument("--particle", default="e-", choices=("e-", "gamma", "e+"))
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    p.add_argument("--models", nargs="+", default=["gan", "caloflow"], choices=("gan", "caloflow"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ssim-pairs", type=int, default=300)
    p.add_argument("--cell-threshold", type=float, default=0.01, help="MeV")
    p.add_argument("--no-report", action="store_true", help="skip hepgen evaluate's report")
    p.add_argument("--report-groups", default="all",
                   help="metric groups of hepgen evaluate ('all', 'fast' or names; 'all' takes minutes on 15,625 voxels)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from hepgen.train.trainer import train  # after argparse: --help stays fast

    out, data_dir = Path(args.out), Path(args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    train_data = simulate_or_load(data_dir / "g4_train.h5", args.n_train, args.seed + 11, args.energy_range,
                                  args.theta_deg, args.particle, args.workers)
    test_data = simulate_or_load(data_dir / "g4_test.h5", args.n_test, args.seed + 12, args.energy_range,
                                 args.theta_deg, args.particle, args.workers)
    write_showers(out / "g4_test.h5", test_data)
    cpu = sum(float(d.attrs.get("cpu_seconds", 0.0)) for d in (train_data, test_data))
    g4_rate = (len(train_data) + len(test_data)) / cpu if cpu > 0 else float("nan")
    g = train_data.geometry
    print(f"data: {len(train_data)} + {len(test_data)} showers, grid {g.nz}x{g.ny}x{g.nx} of {g.cell_size} mm, "
          f"{g4_rate:.2f} Geant4 showers/s (CPU), {time.perf_counter() - t:.0f} s wall")
    configs = {"gan": gan_config((g.nz, g.ny, g.nx), args.minutes, args.threads, args.seed),
               "caloflow": caloflow_config(args.minutes, args.threads, args.seed)}
    results = {}
    for name in args.models:
        t = time.perf_counter()
        generator = train(train_data, configs[name], out / f"run_{name}", progress=False)
        print(f"{name}: trained in {time.perf_counter() - t:.0f} s")
        results[name] = evaluate_model(name, generator, train_data, test_data, out, args)
    table = format_table(results, g4_rate)
    print(table)
    summary = {"published": PUBLISHED, "geant4_showers_per_s": g4_rate, "results": results,
               "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}}
    with atomic_path(out / "study_3dgan.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, default=float))
    with atomic_path(out / "study_3dgan.txt") as tmp:
        Path(tmp).write_text(table + "\n")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
