"""HGCAL conditional-WGAN study (issue 23, study 3): Geant4 electrons in the ``hgcal`` preset,
the HGCAL-style WGAN-GP with energy and position constrainers and hepgen's CaloFlow at the
same CPU budget, scored with the study's own measures.

The study (M. Erdmann, J. Glombitza, T. Quast, "Precise simulation of electromagnetic
calorimeter showers using a Wasserstein generative adversarial network", Comput. Softw. Big
Sci. 3 (2019) 4, arXiv:1807.01954): showers of electrons at 20, 32, 50, 80 and 90 GeV with a
1 % energy spread in a CMS HGCAL prototype-like stack of 28 silicon layers of hexagonal cells,
labelled by energy and impact position (X, Y); a WGAN with gradient penalty (λ = 50, the
"GPmax" variant) and two constrainer networks (energy and impact-position regressors,
pre-trained, K_e = K_p = 0.01) whose loss terms make the generator respect its labels;
generator ≈ 672k and critic ≈ 477k parameters.  Validation: the reconstructed energy and
position of generated showers follow the labels; layer–layer energy correlations; a
speed-up table against Geant4 (1 s per shower): ×280 to ×3,750 on GPUs for several
generator architectures, ×26,670 for 3D (de)convolutions only.

What this script does, and what differs:

* **Data**: Geant4 (hepgen's data-free EM list, docs/geant4.md) in the ``hgcal`` preset
  (28 layers × 127 hexagonal 1.1 cm² cells = 3,556 voxels; an approximation of the 2018
  CE-E prototype, not its geometry), electrons at the five beam energies with a Gaussian
  1 % spread (``--spread``), impact position (X, Y) uniform in the square
  ±``--position-half-width`` mm (default ±10 mm, about one cell pitch, 11.27 mm, either
  side of the centre; a choice of this script), along the axis.  The engine draws
  energies uniformly from a list, so the 1 % spread is a list of ``--energies-per-beam``
  Gaussian draws per beam energy (:func:`beam_energies`); each shower's label is its
  exact primary energy.  Cached under ``--data-dir``.  Geant4 took ≈ 11 ms per GeV here
  (≈ 0.22 s at 20 GeV, 0.96 s at 90 GeV, one core), 0.46–0.63 s per shower on average over
  the beams in two runs: the default 750 + 200 showers are ≈ 7–10 CPU minutes (2 workers:
  ≈ 5 min wall).
* **Models** (``--minutes`` of training each): ``wgan``, hepgen's ``gan`` family as the
  HGCAL WGAN: MLP generator and critic (hidden 128 × 3 layers: 0.50 M and 0.49 M
  parameters against the paper's ≈ 672k / ≈ 477k; the paper's networks are not
  MLPs, see :func:`gan_config`), WGAN-GP with λ = 50 and ``gp: max``, constrainers
  K_e = K_p = 0.01 regressing log E and (X, Y), pre-trained for
  ``--constrainer-pretrain-steps`` steps; and ``caloflow``, hepgen's two-stage flow with
  an affine shape flow small enough for 3,556 voxels on a CPU (:func:`caloflow_config`).
* **Measures** (:func:`label_response`, :func:`layer_correlations`): the reconstructed
  energy (sum of all cells / a sampling fraction fitted on the Geant4 training showers)
  and position (energy-weighted centroid of the cell centres in the first
  ``--centroid-layers`` layers) against the labels: Pearson correlation, mean bias and
  resolution (standard deviation of the residual), overall and per beam energy, for Geant4
  (reference) and each model; the 28 × 28 layer–layer energy correlation matrices
  (Fisher-z χ²/ndof with a permutation-calibrated p-value,
  :func:`hepgen.metrics.tabular.fisher_z_calibrated`, and the mean / largest |Δr|);
  ``hepgen evaluate``'s report (``--report-groups``, default ``fast``); and the time per
  shower on CPU at batch sizes 1, 100 and 1000 (one thread) against Geant4's time per
  shower measured in this run (``--g4-timing-n`` fresh showers), beside the paper's table.

Run (≈ 20 min on a 2-core machine with the defaults when the Geant4 cache is absent:
≈ 5 min Geant4 with 2 workers, 2 × 5 min training, ≈ 3 min of measures and reports)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/study_hgcal.py --data-dir runs/study_hgcal/data \
        -o runs/study_hgcal --minutes 5 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from hepgen._io import atomic_path, json_safe
from hepgen.config import TrainConfig
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.domains.showers.evaluate import evaluate_files
from hepgen.metrics.tabular import fisher_z_calibrated

#: the study's beam energies (GeV) and the published numbers (Erdmann, Glombitza, Quast 2019)
BEAM_ENERGIES_GEV = (20.0, 32.0, 50.0, 80.0, 90.0)
PUBLISHED = {
    "geant4_s_per_shower": 1.0,
    "speedup_gpu": "x280 to x3,750 (several generator architectures, GPU)",
    "speedup_conv3d_only": "x26,670 (3D (de)convolutions only, GPU)",
    "generator_parameters": 672_000,
    "critic_parameters": 477_000,
    "gp_weight": 50.0,
    "k_energy": 0.01,
    "k_position": 0.01,
}


# --- data ---------------------------------------------------------------------------------------
def beam_energies(nominal_gev=BEAM_ENERGIES_GEV, spread: float = 0.01, per_beam: int = 200,
                  seed: int = 0) -> np.ndarray:
    """Energies (MeV) with a Gaussian relative ``spread`` about each beam energy: ``per_beam``
    draws per beam energy, concatenated beam by beam.  Drawn uniformly from this list (as the
    Geant4 engine does with ``energies=``) they give the five beams in equal parts, each with
    (a ``per_beam``-point sample of) the spread.

    >>> e = beam_energies((20.0, 50.0), spread=0.01, per_beam=4000, seed=1)
    >>> e.shape, round(float(e[:4000].mean()) / 20e3, 3), round(float(e[4000:].std()) / 50e3, 3)
    ((8000,), 1.0, 0.01)
    """
    nominal = np.asarray(nominal_gev, dtype=float)
    if nominal.ndim != 1 or nominal.size == 0 or not np.all(nominal > 0):
        raise ValueError(f"--beam-energies: expected one or more energies > 0 GeV, found {nominal_gev!r}")
    if not 0 <= spread < 0.2:
        raise ValueError(f"--spread: expected a relative spread in [0, 0.2), found {spread}")
    if per_beam < 1:
        raise ValueError(f"--energies-per-beam: expected an integer >= 1, found {per_beam}")
    rng = np.random.default_rng(seed)
    return np.concatenate([e * 1e3 * (1.0 + spread * rng.standard_normal(per_beam)) for e in nominal])


def nearest_beam(energies_mev: np.ndarray, nominal_gev=BEAM_ENERGIES_GEV) -> np.ndarray:
    """Index of the nearest beam energy of each shower (its beam), (N,) int.

    >>> nearest_beam(np.array([20.3e3, 49e3, 91e3])).tolist()
    [0, 2, 4]
    """
    e = np.asarray(energies_mev, dtype=float).reshape(-1, 1) / 1e3
    return np.argmin(np.abs(e - np.asarray(nominal_gev, dtype=float)[None]), axis=1)


def simulate_or_load(path: Path, n: int, seed: int, nominal_gev, spread: float, per_beam: int,
                     half_width_mm: float, workers: int, simulate=None) -> ShowerData:
    """Geant4 electrons of the ``hgcal`` preset cached at ``path`` (simulated once, resumable).

    ``simulate`` replaces :func:`hepgen.simulate.geant4.simulate_geant4` (tests pass GFlash)."""
    if path.is_file():
        data = read_showers(path)
        if len(data) != n:
            raise ValueError(f"{path}: holds {len(data)} showers, expected {n}; remove it or change --data-dir")
        if "impact_position" not in data.conditions:
            raise ValueError(f"{path}: expected the condition 'impact_position', found {sorted(data.conditions)}")
        return data
    if not half_width_mm > 0:
        raise ValueError(f"--position-half-width: expected > 0 mm, found {half_width_mm}")
    if simulate is None:
        from hepgen.simulate.geant4 import simulate_geant4 as simulate  # optional extra [geant4]
    return simulate(path, n, preset="hgcal", particle="e-",
                    energies=beam_energies(nominal_gev, spread, per_beam, seed),
                    position_range=(-half_width_mm, half_width_mm), seed=seed, workers=workers,
                    chunk_size=max(1, min(50, n // max(workers, 1))), progress=True)


# --- the study's measures -------------------------------------------------------------------------
def fit_sampling_fraction(showers: np.ndarray, energies_mev: np.ndarray) -> float:
    """Least-squares sampling fraction f of ``sum(cells) = f · E`` (a line through the origin):
    ``f = Σ S·E / Σ E²``.

    Arguments: showers (N, n_voxels) MeV; energies_mev (N,) or (N, 1) MeV.

    >>> fit_sampling_fraction(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([100.0, 200.0]))
    0.02
    """
    s = np.asarray(showers, dtype=float).sum(axis=1)
    e = np.asarray(energies_mev, dtype=float).reshape(-1)
    if s.shape != e.shape or not np.any(e > 0):
        raise ValueError(f"fit_sampling_fraction: expected N showers and N energies > 0, found {s.shape} and {e.shape}")
    return float(np.dot(s, e) / np.dot(e, e))


def reconstruct_energy(showers: np.ndarray, sampling_fraction: float) -> np.ndarray:
    """Reconstructed energy (N,) MeV: the sum of all cells over the sampling fraction.

    >>> reconstruct_energy(np.array([[0.5, 0.5]]), 0.01).tolist()
    [100.0]
    """
    if not sampling_fraction > 0:
        raise ValueError(f"sampling fraction: expected > 0, found {sampling_fraction}")
    return np.asarray(showers, dtype=float).sum(axis=1) / sampling_fraction


def reconstruct_position(showers: np.ndarray, geometry, n_layers: int) -> np.ndarray:
    """Impact position (N, 2) mm: the energy-weighted centroid of the cell centres in the
    first ``n_layers`` layers (linear weights; showers with no energy there give NaN).

    Arguments: showers (N, n_voxels) MeV; geometry with ``voxel_xy``, ``voxel_layer``.

    >>> from hepgen.data.geometry import HexagonalGrid
    >>> g = HexagonalGrid(n_layers=2, radius=1, pitch_mm=10.0)
    >>> s = np.zeros((1, 14)); s[0, 3] = 3.0; s[0, 4] = 1.0     # centre cell and its right neighbour
    >>> reconstruct_position(s, g, 1).tolist()
    [[2.5, 0.0]]
    """
    showers = np.asarray(showers, dtype=float)
    if showers.ndim != 2 or showers.shape[1] != geometry.n_voxels:
        raise ValueError(f"reconstruct_position: expected showers (N, {geometry.n_voxels}), found {showers.shape}")
    if not 1 <= n_layers <= geometry.n_layers:
        raise ValueError(f"--centroid-layers: expected 1 … {geometry.n_layers}, found {n_layers}")
    x, y = geometry.voxel_xy()
    keep = np.asarray(geometry.voxel_layer()) < n_layers
    w = showers[:, keep]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([w @ x[keep] / total, w @ y[keep] / total], axis=1)


def _agreement(rec: np.ndarray, label: np.ndarray, relative: bool) -> dict:
    """Pearson correlation, mean bias and resolution (std) of ``rec`` against ``label``; with
    ``relative`` the residual is ``rec / label − 1``, otherwise ``rec − label``."""
    ok = np.isfinite(rec) & np.isfinite(label)
    r, lab = rec[ok], label[ok]
    res = r / lab - 1.0 if relative else r - lab
    corr = float(np.corrcoef(r, lab)[0, 1]) if len(r) > 1 and np.std(r) > 0 and np.std(lab) > 0 else float("nan")
    return {"corr": corr, "bias": float(res.mean()) if len(r) else float("nan"),
            "resolution": float(res.std()) if len(r) > 1 else float("nan"), "n": int(ok.sum())}


def label_response(data: ShowerData, sampling_fraction: float, n_layers: int, nominal_gev=BEAM_ENERGIES_GEV) -> dict:
    """How well the showers respect their labels.

    Returns ``{"energy": {corr, bias, resolution, n, "per_beam": {"20": {...}, …}},
    "x": {...}, "y": {...}}``: energy residuals relative (E_rec / E − 1), position residuals in mm.
    """
    e = data.incident_energies[:, 0]
    e_rec = reconstruct_energy(data.showers, sampling_fraction)
    xy = reconstruct_position(data.showers, data.geometry, n_layers)
    pos = data.conditions["impact_position"]
    out = {"energy": _agreement(e_rec, e, relative=True), "x": _agreement(xy[:, 0], pos[:, 0], relative=False),
           "y": _agreement(xy[:, 1], pos[:, 1], relative=False)}
    beam = nearest_beam(e, nominal_gev)
    out["energy"]["per_beam"] = {f"{nominal_gev[k]:g}": _agreement(e_rec[beam == k], e[beam == k], relative=True)
                                 for k in range(len(nominal_gev)) if np.sum(beam == k) > 1}
    return out


def layer_energies(data: ShowerData) -> np.ndarray:
    """(N, n_layers) energy per layer, MeV."""
    return np.stack([data.showers[:, s].sum(axis=1) for s in data.geometry.layer_slices], axis=1)


def layer_correlations(real: ShowerData, gen: ShowerData, n_permutations: int = 99, seed: int = 0) -> dict:
    """Layer–layer Pearson correlations of the layer energies, real vs generated: Fisher-z
    χ²/ndof and its permutation-calibrated p-value, and the mean and largest |r_real − r_gen|
    over the pairs (layers without energy in either set are left out)."""
    res = fisher_z_calibrated(layer_energies(real), layer_energies(gen), n_permutations=n_permutations, seed=seed)
    iu = np.triu_indices(res["corr_a"].shape[0], 1)
    d = np.abs(res["corr_a"] - res["corr_b"])[iu]
    d = d[np.isfinite(d)]
    return {"chi2_ndof": res["chi2_ndof"], "p_calibrated": res["p_calibrated"],
            "null_chi2_ndof_mean": res["null_chi2_ndof_mean"],
            "mean_abs_dr": float(d.mean()) if d.size else float("nan"),
            "max_abs_dr": float(d.max()) if d.size else float("nan"),
            "corr_real": res["corr_a"], "corr_gen": res["corr_b"]}


def plot_correlations(path: Path, corr: dict[str, np.ndarray]) -> None:
    """One panel per correlation matrix (Geant4 and each model), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(corr), figsize=(4.4 * len(corr) + 1.0, 4.0), squeeze=False,
                             layout="constrained")
    for ax, (name, m) in zip(axes[0], corr.items()):
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu_r", origin="lower")
        ax.set_title(f"{name}: layer-layer corr.", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# --- the models ---------------------------------------------------------------------------------
def gan_config(minutes: float, threads: int, seed: int = 0, hidden: int = 128, n_hidden: int = 3,
               pretrain_steps: int = 200) -> TrainConfig:
    """The HGCAL-style WGAN: WGAN-GP λ = 50 with ``gp: max``, constrainers K_e = K_p = 0.01
    (energy = condition column 0, log E; position = columns 1, 2, the impact X, Y) pre-trained
    for ``pretrain_steps`` steps.

    The paper's generator and critic are convolutional networks on the hexagonal layers
    (≈ 672k / ≈ 477k parameters); hepgen's ``gan`` family has no hexagonal convolutions, so
    both are conditional MLPs on the 28 layer energies + 3,556 cells, sized to a similar
    count (hidden 128 × 3: 0.50 M / 0.49 M)."""
    return TrainConfig(family="gan", model={
        "arch": "mlp", "loss": "wgan-gp", "gp": "max", "gp_weight": PUBLISHED["gp_weight"],
        "constrainer_energy": PUBLISHED["k_energy"], "constrainer_position": PUBLISHED["k_position"],
        "position_columns": [1, 2], "constrainer_pretrain_steps": int(pretrain_steps),
        "hidden": hidden, "n_hidden": n_hidden, "latent_dim": 64}, conditions=["impact_position"],
        epochs=100_000, max_minutes=minutes, batch_size=64, lr=1e-4, threads=threads, seed=seed,
        select_by="physics", n_eval=200, eval_every=5, tensorboard=False)


def caloflow_config(minutes: float, threads: int, seed: int = 0, hidden: int = 128) -> TrainConfig:
    """hepgen's CaloFlow with an affine shape flow (4 transforms, hidden ``hidden``, 2 passes)
    for 3,556 voxels on a CPU; the preset's spline shape flow (256 hidden, 8 bins) costs
    ≈ 9× its demo time per batch here (its cost grows with transforms × voxels)."""
    return TrainConfig(family="caloflow", model={
        "energy_flow": {"transforms": 6, "hidden_features": 64, "n_hidden": 2, "passes": None, "spline_bins": 8},
        "shape_flow": {"transforms": 4, "hidden_features": hidden, "n_hidden": 1, "passes": 2, "spline_bins": 0}},
        conditions=["impact_position"], epochs=100_000, max_minutes=minutes, batch_size=64, lr=1e-3,
        threads=threads, seed=seed, select_by="val_loss", tensorboard=False)


def parameter_counts(model) -> dict[str, int]:
    """Trainable parameters of a model's generator / critic / constrainers (GAN) or in total."""
    count = lambda m: int(sum(p.numel() for p in m.parameters())) if m is not None else 0  # noqa: E731
    if hasattr(model, "critic"):
        return {"generator": count(model.generator), "critic": count(model.critic),
                "constrainers": count(getattr(model, "constrainer_energy", None))
                + count(getattr(model, "constrainer_position", None))}
    return {"total": count(model)}


def time_per_shower(generator, like: ShowerData, batches=(1, 100, 1000), min_showers: int = 50,
                    seed: int = 0) -> dict[str, float]:
    """Seconds per shower at each batch size, one thread, at ``like``'s labels (repeated to
    ``max(batch, min_showers)`` showers; the best of two repeats, after a warm-up)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for b in batches:
            n = max(int(b), int(min_showers))
            idx = np.arange(n) % len(like)
            e, c = like.incident_energies[idx], {k: v[idx] for k, v in like.conditions.items()}
            generator.sample(e[:b], {k: v[:b] for k, v in c.items()}, seed=seed, batch_size=b)  # warm-up
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                generator.sample(e, c, seed=seed, batch_size=b)
                best = min(best, time.perf_counter() - t)
            out[str(b)] = best / n
        return out
    finally:
        torch.set_num_threads(threads)


def geant4_time_per_shower(n: int, half_width_mm: float, seed: int, nominal_gev=BEAM_ENERGIES_GEV,
                           engine=None) -> float:
    """Geant4 CPU seconds per shower measured now: ``n`` electrons cycling through the beam
    energies at random impact points (one core, this process).  ``engine``: an object with
    the Geant4 engine's ``simulate`` (default :func:`hepgen.simulate.geant4.engine.get_engine`)."""
    if engine is None:
        from hepgen.simulate.geant4.engine import get_engine  # optional extra [geant4]

        engine = get_engine("hgcal")
    rng = np.random.default_rng(seed)
    e = np.resize(np.asarray(nominal_gev, dtype=float) * 1e3, n)
    xy = rng.uniform(-half_width_mm, half_width_mm, (n, 2))
    r = engine.simulate(e, "e-", impact_position=xy, seed=seed)
    return float(r["seconds"]) / n


# --- table ----------------------------------------------------------------------------------------
def format_table(results: dict, reference: dict, g4_s: float, nominal_gev=BEAM_ENERGIES_GEV) -> str:
    """The label response (Geant4 and each model), the layer correlations and the speed-up
    table beside the paper's."""
    rows = {"Geant4": reference, **{k: v["labels"] for k, v in results.items()}}
    lines = ["label response          E corr   E bias    E res   X corr X bias/mm  X res/mm   Y corr "
             "Y bias/mm  Y res/mm"]
    for name, r in rows.items():
        e, x, y = r["energy"], r["x"], r["y"]
        lines.append(f"  {name:<20}{e['corr']:>9.4f}{e['bias']:>9.4f}{e['resolution']:>9.4f}"
                     f"{x['corr']:>9.3f}{x['bias']:>10.2f}{x['resolution']:>10.2f}"
                     f"{y['corr']:>9.3f}{y['bias']:>10.2f}{y['resolution']:>10.2f}")
    lines.append("relative energy resolution per beam (sigma(E_rec/E))  " +
                 "".join(f"{e:>8g}" for e in nominal_gev) + "  GeV")
    for name, r in rows.items():
        pb = r["energy"].get("per_beam", {})
        lines.append(f"  {name:<52}" + "".join(f"{pb.get(f'{e:g}', {}).get('resolution', float('nan')):>8.4f}"
                                               for e in nominal_gev))
    lines.append("")
    lines.append("layer-layer correlations vs Geant4   mean|dr|   max|dr|  Fisher-z chi2/ndof (null)  p_calibrated")
    for name, r in results.items():
        c = r["layer_correlations"]
        null = c.get("null_chi2_ndof_mean") or float("nan")
        lines.append(f"  {name:<35}{c['mean_abs_dr']:>9.3f}{c['max_abs_dr']:>10.3f}{c['chi2_ndof']:>13.2f} "
                     f"({null:.2f}){(c.get('p_calibrated') or float('nan')):>14.3f}")
    lines.append("")
    lines.append("time per shower (CPU, 1 thread)   batch 1     batch 100    batch 1000   speed-up vs Geant4 (1/100/1000)")
    lines.append(f"  Geant4 (this run)              {g4_s * 1e3:>9.1f} ms  (published: "
                 f"{PUBLISHED['geant4_s_per_shower'] * 1e3:.0f} ms)")
    for name, r in results.items():
        t = r["seconds_per_shower"]
        ts = [t.get(b, float("nan")) for b in ("1", "100", "1000")]
        lines.append(f"  {name:<30}" + "".join(f"{v * 1e3:>10.3f} ms" for v in ts) + "   "
                     + " / ".join(f"x{g4_s / v:,.0f}" for v in ts))
    lines.append(f"  published (GPU): {PUBLISHED['speedup_gpu']}; {PUBLISHED['speedup_conv3d_only']}")
    for name, r in results.items():
        pc = r.get("parameters", {})
        if "critic" in pc:
            lines.append(f"  {name} parameters: generator {pc['generator']:,}, critic {pc['critic']:,}, "
                         f"constrainers {pc['constrainers']:,} (published: generator ~672k, critic ~477k)")
        elif pc:
            lines.append(f"  {name} parameters: {pc['total']:,}")
    return "\n".join(lines)


def evaluate_model(name: str, generator, test: ShowerData, f: float, out: Path, args) -> dict:
    """Every measure of the study for one trained model (writes gen_<name>.h5 and its report)."""
    gen = generator.sample_like(test, seed=args.seed + 1)
    gen_path = out / f"gen_{name}.h5"
    write_showers(gen_path, gen)
    res = {"labels": label_response(gen, f, args.centroid_layers, tuple(args.beam_energies)),
           "layer_correlations": layer_correlations(test, gen, args.permutations, args.seed),
           "parameters": parameter_counts(generator.model)}
    if not args.no_report:
        # the classifier test needs >= 50 showers per set (tiny development runs have fewer)
        metrics = evaluate_files(out / "g4_test.h5", gen_path, out_dir=out / f"evaluate_{name}", seed=args.seed,
                                 max_points=2000, classifier=len(test) >= 50, groups=args.report_groups)
        res["auc"] = float(metrics.get("classifier", {}).get("low_level", {}).get("auc", float("nan")))
        res["separation_power_mean"] = metrics.get("separation_power_mean")
    res["seconds_per_shower"] = time_per_shower(generator, test, seed=args.seed)
    return res


def main(argv=None, simulate=None, g4_engine=None) -> dict:
    """The study; ``simulate`` and ``g4_engine`` replace Geant4 (tests)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="runs/study_hgcal/data", help="Geant4 cache (reused when present)")
    p.add_argument("-o", "--out", default="runs/study_hgcal")
    p.add_argument("--n-train", type=int, default=750)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--beam-energies", type=float, nargs="+", default=list(BEAM_ENERGIES_GEV), help="GeV")
    p.add_argument("--spread", type=float, default=0.01, help="relative Gaussian energy spread")
    p.add_argument("--energies-per-beam", type=int, default=200, help="draws per beam energy in the energy list")
    p.add_argument("--position-half-width", type=float, default=10.0, help="impact X, Y uniform in ± this (mm)")
    p.add_argument("--centroid-layers", type=int, default=8, help="layers of the position centroid")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per model")
    p.add_argument("--models", nargs="+", default=["wgan", "caloflow"], choices=("wgan", "caloflow"))
    p.add_argument("--constrainer-pretrain-steps", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--g4-timing-n", type=int, default=10,
                   help="fresh Geant4 showers timed in this run (0: use the cache's CPU time)")
    p.add_argument("--permutations", type=int, default=99, help="Fisher-z permutations")
    p.add_argument("--no-report", action="store_true", help="skip hepgen evaluate's report")
    p.add_argument("--report-groups", default="fast", help="metric groups of hepgen evaluate ('all', 'fast' or names)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from hepgen.train.trainer import train  # after argparse: --help stays fast

    nominal = tuple(args.beam_energies)
    out, data_dir = Path(args.out), Path(args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    sim = dict(nominal_gev=nominal, spread=args.spread, per_beam=args.energies_per_beam,
               half_width_mm=args.position_half_width, workers=args.workers, simulate=simulate)
    train_data = simulate_or_load(data_dir / "g4_train.h5", args.n_train, args.seed + 21, **sim)
    test_data = simulate_or_load(data_dir / "g4_test.h5", args.n_test, args.seed + 22, **sim)
    write_showers(out / "g4_test.h5", test_data)
    cpu = sum(float(d.attrs.get("cpu_seconds", 0.0)) for d in (train_data, test_data))
    cache_s = cpu / (len(train_data) + len(test_data)) if cpu > 0 else float("nan")
    g4_s = (geant4_time_per_shower(args.g4_timing_n, args.position_half_width, args.seed + 23, nominal, g4_engine)
            if args.g4_timing_n > 0 else cache_s)
    f = fit_sampling_fraction(train_data.showers, train_data.incident_energies)
    reference = label_response(test_data, f, args.centroid_layers, nominal)
    g = train_data.geometry
    print(f"data: {len(train_data)} + {len(test_data)} showers, {g.n_layers} layers x {g.n_voxels // g.n_layers} "
          f"cells; Geant4 {g4_s:.3f} s/shower now ({args.g4_timing_n} showers), {cache_s:.3f} s/shower in the "
          f"cache's simulation (CPU); sampling fraction {f:.5f}; {time.perf_counter() - t:.0f} s wall")
    configs = {"wgan": gan_config(args.minutes, args.threads, args.seed,
                                  pretrain_steps=args.constrainer_pretrain_steps),
               "caloflow": caloflow_config(args.minutes, args.threads, args.seed)}
    results = {}
    for name in args.models:
        t = time.perf_counter()
        generator = train(train_data, configs[name], out / f"run_{name}", progress=False)
        print(f"{name}: trained in {time.perf_counter() - t:.0f} s")
        results[name] = evaluate_model(name, generator, test_data, f, out, args)
    table = format_table(results, reference, g4_s, nominal)
    print(table)
    if results:
        plot_correlations(out / "layer_correlations.png",
                          {"Geant4": next(iter(results.values()))["layer_correlations"]["corr_real"],
                           **{k: v["layer_correlations"]["corr_gen"] for k, v in results.items()}})
    summary = {"published": PUBLISHED, "geant4_s_per_shower": g4_s, "geant4_s_per_shower_cache": cache_s,
               "sampling_fraction": f, "geant4_labels": reference, "results": results,
               "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}}
    with atomic_path(out / "study_hgcal.json") as tmp:
        Path(tmp).write_text(json.dumps(json_safe(summary), indent=1, allow_nan=False))  # NaN -> null
    with atomic_path(out / "study_hgcal.txt") as tmp:
        Path(tmp).write_text(table + "\n")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
