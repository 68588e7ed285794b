"""Why is the generated jet substructure wrong?  Plots and numbers for issue 21.

For each jet type, compares reference jets (``--real``), a second independent reference
(``--reference``, the floor) and generated jets (``--generated FILE``, or sampled from
``--checkpoint`` at the reference jets' type, pT, η and multiplicity) in:

* the angular position of the hardest 1, 2, 3 constituents relative to the jet axis
  (Δη = η_rel, Δφ = φ_rel, ΔR), their pT fractions z1, z2, z3 and z1+z2+z3, their
  pairwise ΔR12, ΔR13, ΔR23, and the multiplicity        → ``{t}_leading.png``;
* τ21, τ32, D2, m/pT, the offset of the stored constituents' pT-weighted centroid from the
  jet axis, the number of constituents within ΔR < 0.05 of the axis (the "core"), the
  fraction of constituent pairs closer than ΔR = 0.01 (e.g. the photons of a π0) and
  Σ pT_rel of the stored constituents                     → ``{t}_substructure.png``;
* the soft constituents, which the infrared-safe observables above hardly see and the jet
  classifier (``log pT_rel`` and angles of every constituent) does: the mean and spread of
  ``log pT_rel`` per jet, ``log pT_rel`` of the hardest and the softest constituent, the
  softest one's ΔR to the axis, the mean ΔR and the (η, φ) axis ratio → ``{t}_soft.png``;
* the substructure *given the mass*: the jets binned in m/pT at the reference's quantiles,
  each sample's fraction of jets and mean τ21, τ32, D2 per bin, and the χ² per bin of each
  profile against the reference's (:func:`mass_profiles`) — a model can match τ32's marginal
  with the wrong jets (low τ32 away from the top mass)         → ``{t}_mass_profile.png``;
* with ``--classifier``: where the jet classifier's separation sits — the deep-sets AUC
  (:func:`hepgen.domains.jets.classifier.jet_classifier_auc`) reference vs generated and
  reference vs floor on views of the jets (:func:`classifier_views`): all constituents, the
  hardest 5, the next 10, the rest, the angles only (every pT_rel 1/P), log pT only
  (every angle 0);
* "independent particles": the reference jets with every pT-ordered slot shuffled across
  jets (each jet's k-th constituent taken from another random jet) — the per-slot
  marginals are exact and every correlation between constituents is gone; if the
  generated jets look like these, the model learned the marginals and not the joint
  structure (the ``mean_shuffled`` column);
* the preprocessing: the reference jets round-tripped through the model-space transform
  and back (:class:`hepgen.domains.jets.preprocessing.JetPreprocessor`; from the
  checkpoint if given) — if τ21 changes, the preprocessing is at fault;
* the sensitivity of τ21, τ32 and D2 to Gaussian noise of width σ added in model space
  (standardised units) to the angles only, or to log pT only, of the reference jets, with
  the generated means as horizontal lines: how precise the model must be, and which noise
  mimics its error                                        → ``{t}_smearing.png``.

Writes ``OUT/summary.json`` (W1 model and floor, ratio and means of every quantity, the
round-trip differences, the smearing table) and prints a table.  Usage:

    python benchmarks/diagnose_jets.py --real refA.h5 --reference refB.h5 \\
        --checkpoint runs/jets/best.pt --types g,t -o diag/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from hepgen.data.jets import JET_TYPES, read_jets
from hepgen.domains.jets.classifier import jet_classifier_auc
from hepgen.domains.jets.generator import JetGenerator
from hepgen.domains.jets.preprocessing import JetPreprocessor
from hepgen.domains.jets.report import plot_jet_histograms
from hepgen.metrics.jets import jet_observables, split_particles
from hepgen.report.style import DPI, figure_style

SMEAR_SIGMAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
SUBSTRUCTURE = ("tau21", "tau32", "d2")
MASS_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


def leading_quantities(pf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-jet quantities of the 3 hardest constituents (NaN where a jet has fewer), ``(N,)`` each."""
    parts, mask = split_particles(pf)
    pt = np.where(mask, parts[..., 2], -1.0)
    order = np.argsort(-pt, axis=1, kind="stable")[:, :3]
    lead = np.take_along_axis(parts, order[..., None], axis=1)
    ok = np.take_along_axis(mask, order, axis=1)
    lead = np.where(ok[..., None], lead, np.nan)
    out = {}
    for k in range(3):
        out[f"deta_{k + 1}"] = lead[:, k, 0]
        out[f"dphi_{k + 1}"] = lead[:, k, 1]
        out[f"dR_{k + 1}"] = np.hypot(lead[:, k, 0], lead[:, k, 1])
    for k in range(3):
        out[f"z_{k + 1}"] = lead[:, k, 2]
    out["z_123"] = np.nansum(lead[:, :, 2], axis=1)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        out[f"dR_{i + 1}{j + 1}"] = np.hypot(lead[:, i, 0] - lead[:, j, 0], lead[:, i, 1] - lead[:, j, 1])
    out["log10_dR_12"] = np.log10(np.maximum(out["dR_12"], 1e-5))
    out["multiplicity"] = mask.sum(axis=1).astype(np.float64)
    return out


def substructure_quantities(pf: np.ndarray) -> dict[str, np.ndarray]:
    """τ21, τ32, D2, m/pT, centroid offset from the axis, constituents in the core (ΔR < 0.05)."""
    obs = jet_observables(pf)
    parts, mask = split_particles(pf)
    pt = np.where(mask, parts[..., 2], 0.0)
    s = np.maximum(pt.sum(axis=1), 1e-12)
    ceta, cphi = (pt * parts[..., 0]).sum(axis=1) / s, (pt * parts[..., 1]).sum(axis=1) / s
    core = (np.hypot(parts[..., 0], parts[..., 1]) < 0.05) & mask
    dr = np.hypot(parts[:, :, None, 0] - parts[:, None, :, 0], parts[:, :, None, 1] - parts[:, None, :, 1])
    pair = mask[:, :, None] & mask[:, None, :] & np.triu(np.ones(mask.shape[1], dtype=bool), 1)[None]
    close = ((dr < 0.01) & pair).sum(axis=(1, 2)) / np.maximum(pair.sum(axis=(1, 2)), 1)
    return {"tau21": obs["tau21"], "tau32": obs["tau32"], "d2": obs["d2"], "mass_rel": obs["mass_rel"],
            "centroid_offset": np.hypot(ceta, cphi), "n_core": core.sum(axis=1).astype(np.float64),
            "close_pair_fraction": close,
            "pt_sum": pt.sum(axis=1)}


def soft_quantities(pf: np.ndarray) -> dict[str, np.ndarray]:
    """Per-jet spectrum of the constituents, ``(N,)`` each: mean and spread (``1/n``) of
    ``log pT_rel``, ``log pT_rel`` of the hardest and the softest, the softest one's ΔR and the
    mean ΔR (to the jet axis; unweighted), and the minor-to-major axis ratio λ2/λ1 of the
    constituents' (η, φ) covariance (unweighted; 1 round, 0 on a line).  Worked by hand: three
    constituents of pT_rel 0.5, 0.3, 0.1 at ΔR 0.1, 0.5, 0.2 and one padding slot: log pT_rel −0.6931, −1.2040, −2.3026, mean
    −1.3999, spread sqrt((0.7068² + 0.1959² + 0.9027²) / 3) = 0.6715, mean ΔR 0.8 / 3; (η, φ)
    covariance [[0.02, 0.01667], [0.01667, 0.01556]]: λ = 0.01778 ± 0.01681, ratio
    0.00096 / 0.03459 = 0.0279.

    >>> pf = np.array([[[0.0, 0.1, 0.5, 1], [0.3, 0.4, 0.3, 1], [0.0, 0.2, 0.1, 1], [0, 0, 0, 0]]])
    >>> {k: round(float(v[0]), 4) for k, v in soft_quantities(pf).items()}  # doctest: +NORMALIZE_WHITESPACE
    {'mean_log_pt': -1.3999, 'std_log_pt': 0.6715, 'log_pt_hardest': -0.6931, 'log_pt_softest': -2.3026,
     'dR_softest': 0.2, 'mean_dR': 0.2667, 'axis_ratio': 0.0279}
    """
    parts, mask = split_particles(pf)
    n = np.maximum(mask.sum(axis=1), 1)
    logpt = np.log(np.where(mask, np.maximum(parts[..., 2], 1e-30), 1.0))
    mean = np.where(mask, logpt, 0.0).sum(axis=1) / n
    var = np.where(mask, (logpt - mean[:, None]) ** 2, 0.0).sum(axis=1) / n
    dr = np.hypot(parts[..., 0], parts[..., 1])
    soft = np.argmin(np.where(mask, logpt, np.inf), axis=1)
    rows = np.arange(len(pf))
    return {"mean_log_pt": mean, "std_log_pt": np.sqrt(var),
            "log_pt_hardest": np.where(mask, logpt, -np.inf).max(axis=1), "log_pt_softest": logpt[rows, soft],
            "dR_softest": dr[rows, soft], "mean_dR": np.where(mask, dr, 0.0).sum(axis=1) / n,
            "axis_ratio": _axis_ratio(parts, mask, n)}


def _axis_ratio(parts: np.ndarray, mask: np.ndarray, n: np.ndarray) -> np.ndarray:
    """λ2 / λ1 of each jet's unweighted (η, φ) covariance (``np.linalg.eigvalsh``)."""
    ang = np.where(mask[..., None], parts[..., :2], 0.0)
    d = np.where(mask[..., None], ang - (ang.sum(axis=1) / n[:, None])[:, None, :], 0.0)
    lam = np.linalg.eigvalsh(np.einsum("npi,npj->nij", d, d) / n[:, None, None])
    return lam[:, 0] / np.maximum(lam[:, 1], 1e-30)


def classifier_views(pf: np.ndarray, hard: int = 5, middle: int = 10) -> dict[str, np.ndarray]:
    """Views of jets ``(N, P, 4)`` for :func:`classifier_localisation`: ``all``; ``hardest``
    (the ``hard`` highest-pT constituents), ``middle`` (the next ``middle``), ``softest`` (the
    rest; each with the other slots padded and the kept ones first); ``angles`` (every real
    constituent's pT_rel set to ``1 / P``, the same in every sample, so only (η, φ) differ);
    ``log_pt`` (every angle 0).

    >>> pf = np.array([[[0.1, 0.0, 0.2, 1], [0.2, 0.1, 0.5, 1], [0.3, 0.0, 0.1, 1], [0, 0, 0, 0]]])
    >>> v = classifier_views(pf, hard=1, middle=1)
    >>> v["hardest"][0, :, 2].tolist(), v["softest"][0, :, 2].tolist(), v["angles"][0, :, 2].round(4).tolist()
    ([0.5, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.0])
    """
    _, mask = split_particles(pf)
    order = np.argsort(-np.where(mask, pf[..., 2], -1.0), axis=1, kind="stable")
    ordered = np.take_along_axis(pf, order[..., None], axis=1)

    def keep(lo, hi):
        out = np.zeros_like(ordered)
        out[:, : max(0, min(hi, pf.shape[1]) - lo)] = ordered[:, lo:hi]
        return out

    angles = ordered.copy()
    angles[..., 2] = np.where(ordered[..., 3] > 0, 1.0 / pf.shape[1], 0.0)
    log_pt = ordered.copy()
    log_pt[..., :2] = 0.0
    return {"all": ordered, "hardest": keep(0, hard), "middle": keep(hard, hard + middle),
            "softest": keep(hard + middle, pf.shape[1]), "angles": angles, "log_pt": log_pt}


def classifier_localisation(real: np.ndarray, generated: np.ndarray, floor: np.ndarray, seed: int = 0) -> dict:
    """Deep-sets AUC, reference vs generated and reference vs floor, on every view of
    :func:`classifier_views` (same seed and protocol as ``evaluate-jets``)."""
    views = [classifier_views(x) for x in (real, generated, floor)]
    return {k: {"auc": jet_classifier_auc(views[0][k], views[1][k], seed=seed)["auc"],
                "floor": jet_classifier_auc(views[0][k], views[2][k], seed=seed)["auc"]} for k in views[0]}


def mass_profiles(samples: dict[str, dict], reference: str = "real",
                  quantiles=MASS_QUANTILES) -> dict:
    """Substructure given the mass: the jets binned in ``mass_rel`` (m/pT) at the ``reference``
    sample's ``quantiles`` (``centres``: the reference's median m/pT per bin); per sample
    (``{name: substructure_quantities(...)}``) and bin the fraction of jets and the mean and
    standard error of τ21, τ32 and D2, and per quantity
    ``chi2_per_bin``: ``mean_b (μ_b − μ_b^ref)² / (se_b² + se_b^ref²)`` over the bins both
    samples fill (≈ 1 for a sample drawn like the reference; the fraction's term uses
    binomial errors).

    Worked by hand: reference masses 0.1, 0.2, 0.3, 0.4 with τ32 0.6, 0.6, 0.4, 0.4 and the
    median as the one edge; a sample with the same masses and τ32 0.4, 0.4, 0.6, 0.6 has the
    same τ32 marginal, means 0.6 / 0.4 against 0.4 / 0.6 per bin, and, since every bin's
    spread is 0, a χ² that is infinite:

    >>> ref = {"mass_rel": np.array([0.1, 0.2, 0.3, 0.4]), "tau32": np.array([0.6, 0.6, 0.4, 0.4])}
    >>> gen = {"mass_rel": ref["mass_rel"], "tau32": ref["tau32"][::-1]}
    >>> prof = mass_profiles({"real": ref, "generated": gen}, quantiles=(0.5,))
    >>> prof["edges"], prof["samples"]["generated"]["tau32"]["mean"], prof["samples"]["generated"]["fraction"]["mean"]
    ([0.25], [0.4, 0.6], [0.5, 0.5])
    >>> [round(c, 4) for c in prof["centres"]]           # the reference's median mass in each bin
    [0.15, 0.35]
    >>> prof["samples"]["generated"]["tau32"]["chi2_per_bin"], prof["samples"]["generated"]["fraction"]["chi2_per_bin"]
    (inf, 0.0)
    """
    mass = samples[reference]["mass_rel"]
    edges = [float(e) for e in np.quantile(mass, quantiles)]
    bins = range(len(edges) + 1)
    centres = [float(np.median(mass[np.digitize(mass, edges) == i])) for i in bins]
    out = {"edges": edges, "centres": centres, "samples": {}}
    for name, q in samples.items():
        b = np.digitize(q["mass_rel"], edges)
        rows = {"fraction": _profile([(b == i).astype(float) for i in bins], binomial=len(b))}
        for k in (k for k in SUBSTRUCTURE if k in q):
            rows[k] = _profile([q[k][b == i] for i in bins])
        out["samples"][name] = rows
    ref = out["samples"][reference]
    out["quantities"] = list(ref)
    for rows in out["samples"].values():
        for k, r in rows.items():
            m, e, m0, e0 = (np.asarray(v, float) for v in (r["mean"], r["error"], ref[k]["mean"], ref[k]["error"]))
            ok = np.isfinite(m) & np.isfinite(m0)
            with np.errstate(divide="ignore", invalid="ignore"):
                terms = np.where(m[ok] == m0[ok], 0.0, (m[ok] - m0[ok]) ** 2 / (e[ok] ** 2 + e0[ok] ** 2))
            r["chi2_per_bin"] = float(terms.mean()) if ok.any() else float("nan")
    return out


def _profile(bins: list, binomial: int | None = None) -> dict:
    """Per bin: ``mean`` and its ``error`` (standard error; ``binomial = N``: the fraction's
    binomial error, each bin an indicator array over all N jets)."""
    mean = [float(np.mean(x)) if len(x) else float("nan") for x in bins]
    if binomial is not None:
        err = [float(np.sqrt(m * (1 - m) / binomial)) for m in mean]
    else:
        err = [float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan") for x in bins]
    return {"mean": [round(m, 12) for m in mean], "error": err}


def plot_mass_profiles(path, prof: dict, title: str) -> None:
    """One panel per profiled quantity: each sample's per-bin mean with its standard error, at
    the reference's median m/pT of the bin."""
    names = prof["quantities"]
    with figure_style():
        fig = Figure(figsize=(3.6 * len(names), 3.6))
        axes = np.atleast_1d(fig.subplots(1, len(names)))
        for ax, k in zip(axes, names):
            for j, (label, rows) in enumerate(prof["samples"].items()):
                shift = (j - 1) * 0.002  # side by side, not on top of each other
                ax.errorbar(np.asarray(prof["centres"]) + shift, rows[k]["mean"], yerr=rows[k]["error"], fmt="o-",
                            ms=3, capsize=2, label=f"{label} (χ²/bin {rows[k]['chi2_per_bin']:.1f})")
            for e in prof["edges"]:
                ax.axvline(e, color="0.85", lw=0.8, zorder=0)
            ax.set_xlabel("m / pT (bin median of the reference; bins at its quantiles)")
            ax.set_ylabel("fraction of jets" if k == "fraction" else f"mean {k}")
            ax.legend(fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)


def _w1(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(stats.wasserstein_distance(a, b)) if a.size and b.size else float("nan")


def _mean(x):
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def shuffled_slots(pf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every pT-ordered slot permuted across jets: exact per-slot marginals, no correlations."""
    out = pf.copy()
    for k in range(pf.shape[1]):
        out[:, k] = pf[rng.permutation(len(pf)), k]
    # keep each jet's constituents in the slots 0 … n−1 (a shuffled padding slot may precede a real one)
    _, mask = split_particles(out)
    order = np.argsort(~mask, axis=1, kind="stable")
    return np.take_along_axis(out, order[..., None], axis=1)


def compare(real: dict, gen: dict, floor: dict, shuffled: dict) -> dict:
    """Per quantity: W1 generated vs reference, floor (2nd reference vs reference), ratio, means."""
    out = {}
    for k in real:
        w, f = _w1(real[k], gen[k]), _w1(real[k], floor[k])
        out[k] = {"w1": w, "floor": f, "ratio": w / f if f > 0 else float("nan"),
                  "mean_real": _mean(real[k]), "mean_generated": _mean(gen[k]), "mean_floor": _mean(floor[k]),
                  "mean_shuffled": _mean(shuffled[k])}
    return out


def roundtrip(pre: JetPreprocessor, data) -> dict:
    """Reference jets → model space → back: largest change of each substructure observable."""
    z = pre.transform(data)
    back = pre.inverse(z, data.mask.sum(axis=1))
    a, b = substructure_quantities(data.particle_features), substructure_quantities(back)
    out = {}
    for k in (*SUBSTRUCTURE, "mass_rel"):
        d = np.abs(a[k] - b[k])
        out[k] = {"max_abs_diff": float(np.nanmax(d)), "mean_before": _mean(a[k]), "mean_after": _mean(b[k])}
    parts, mask = split_particles(data.particle_features)
    bparts, _ = split_particles(back)
    out["max_abs_diff_particle_features"] = float(np.max(np.abs(parts - bparts)[mask]))
    # the scale of the core in model space: |η_rel| of the hardest constituent in standardised units
    out["leading_abs_eta_std_units_median"] = float(np.median(np.abs(parts[:, 0, 0]) / pre.feature_std[0]))
    out["feature_std"] = [float(v) for v in pre.feature_std]
    return out


def smearing(pre: JetPreprocessor, data, rng: np.random.Generator) -> dict:
    """Mean τ21, τ32, D2 of the reference jets after model-space noise σ on angles or on log pT."""
    z = pre.transform(data).reshape(len(data), data.n_particles, 3)
    n = data.mask.sum(axis=1)
    m = data.mask[..., None]
    out = {"sigma": list(SMEAR_SIGMAS), "angles": {k: [] for k in SUBSTRUCTURE}, "log_pt": {k: [] for k in SUBSTRUCTURE}}
    for target, cols in (("angles", [0, 1]), ("log_pt", [2])):
        for sigma in SMEAR_SIGMAS:
            zz = z.copy()
            noise = rng.normal(0.0, sigma, zz.shape).astype(np.float32) * m
            zz[..., cols] += noise[..., cols]
            obs = substructure_quantities(pre.inverse(zz.reshape(len(data), -1), n))
            for k in SUBSTRUCTURE:
                out[target][k].append(_mean(obs[k]))
    return out


def plot_smearing(path, table: dict, gen_means: dict, real_means: dict, title: str) -> None:
    with figure_style():
        fig = Figure(figsize=(12, 3.8))
        axes = fig.subplots(1, 3)
        for ax, k in zip(axes, SUBSTRUCTURE):
            for target, style in (("angles", "o-"), ("log_pt", "s--")):
                ax.plot(table["sigma"], table[target][k], style, label=f"noise on {target.replace('_', ' ')}")
            ax.axhline(gen_means[k], color="tab:red", lw=1.5, label="generated")
            ax.axhline(real_means[k], color="black", lw=1.0, ls=":", label="reference")
            ax.set_xscale("symlog", linthresh=0.01)
            ax.set_xlim(left=0)
            ax.set_xlabel(r"noise $\sigma$ (standardised model-space units)")
            ax.set_ylabel(f"mean {k}")
        axes[0].legend(fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", required=True, help="reference jets (JetNet-layout HDF5)")
    p.add_argument("--reference", required=True, help="independent second reference (the floor)")
    p.add_argument("--generated", help="generated jets (JetNet-layout HDF5)")
    p.add_argument("--checkpoint", help="jets checkpoint: sample at the reference jets' conditions")
    p.add_argument("--types", default="g,t", help="comma-separated jet types")
    p.add_argument("--n", type=int, default=3000, help="jets per type and sample (at most)")
    p.add_argument("--steps", type=int, help="sampler steps for flow-matching checkpoints")
    p.add_argument("--label", default="generated", help="name of the generated sample in the summary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--classifier", action="store_true",
                   help="also the classifier AUC on views of the jets (hardest, softest, angles only, …)")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    if (args.generated is None) == (args.checkpoint is None):
        p.error("give exactly one of --generated and --checkpoint")
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    real_all, ref_all = read_jets(args.real), read_jets(args.reference)
    gen_model = JetGenerator.load(args.checkpoint) if args.checkpoint else None
    if gen_model is not None and args.steps and hasattr(gen_model.model, "sample_steps"):
        gen_model.model.sample_steps = args.steps
    gen_all = read_jets(args.generated) if args.generated else None
    summary = {"label": args.label, "inputs": vars(args), "types": {}}
    rng = np.random.default_rng(args.seed)
    for t in args.types.split(","):
        real = real_all.of_type(t).subset(slice(0, args.n))
        floor = ref_all.of_type(t).subset(slice(0, len(real)))
        if gen_model is not None:
            gen = gen_model.sample_like(real, seed=args.seed + 11)
            pre = gen_model.preprocessor
        else:
            gen = gen_all.of_type(t) if np.any(gen_all.jet_type >= 0) else gen_all
            gen = gen.subset(slice(0, len(real)))
            pre = JetPreprocessor(real.n_particles, ("type",)).fit(real)
        shuffled = shuffled_slots(real.particle_features, rng)
        clouds = {"real": real.particle_features, "generated": gen.particle_features,
                  "floor": floor.particle_features, "shuffled": shuffled}
        lead = {k: leading_quantities(v) for k, v in clouds.items()}
        sub = {k: substructure_quantities(v) for k, v in clouds.items()}
        soft = {k: soft_quantities(v) for k, v in clouds.items()}
        shown = ("real", "generated", "floor")
        plot_jet_histograms(out / f"{t}_leading.png", {k: {s: lead[s][k] for s in shown} for k in lead["real"]},
                            f"{t} jets ({args.label}): hardest 3 constituents (k = 1, 2, 3 by pT)")
        plot_jet_histograms(out / f"{t}_substructure.png", {k: {s: sub[s][k] for s in shown} for k in sub["real"]},
                            f"{t} jets ({args.label}): substructure")
        plot_jet_histograms(out / f"{t}_soft.png", {k: {s: soft[s][k] for s in shown} for k in soft["real"]},
                            f"{t} jets ({args.label}): the constituents' pT spectrum and spread")
        prof = mass_profiles({s: sub[s] for s in shown})
        plot_mass_profiles(out / f"{t}_mass_profile.png", prof, f"{t} jets ({args.label}): substructure given the mass")
        res = {"n": len(real), "leading": compare(lead["real"], lead["generated"], lead["floor"], lead["shuffled"]),
               "mass_profile": prof,
               "substructure": compare(sub["real"], sub["generated"], sub["floor"], sub["shuffled"]),
               "soft": compare(soft["real"], soft["generated"], soft["floor"], soft["shuffled"]),
               "roundtrip": roundtrip(pre, real), "smearing": smearing(pre, real, rng)}
        plot_smearing(out / f"{t}_smearing.png", res["smearing"],
                      {k: res["substructure"][k]["mean_generated"] for k in SUBSTRUCTURE},
                      {k: res["substructure"][k]["mean_real"] for k in SUBSTRUCTURE},
                      f"{t} jets: substructure of reference jets with model-space noise")
        if args.classifier:
            res["classifier"] = classifier_localisation(real.particle_features, gen.particle_features,
                                                        floor.particle_features, seed=args.seed)
        summary["types"][t] = res
        print(f"\n== {t} jets ({JET_TYPES.index(t) if t in JET_TYPES else '?'}), {len(real)} per sample, {args.label}")
        print(f"{'quantity':>19} {'mean ref':>9} {'mean gen':>9} {'mean shuf':>9} {'W1 gen':>9} {'floor':>9} "
              f"{'ratio':>6}")
        for block in ("leading", "substructure", "soft"):
            for k, r in res[block].items():
                print(f"{k:>19} {r['mean_real']:9.4f} {r['mean_generated']:9.4f} {r['mean_shuffled']:9.4f} "
                      f"{r['w1']:9.4g} {r['floor']:9.3g} {r['ratio']:6.1f}")
        print("given the mass (bins at the reference's m/pT quantiles " + ", ".join(f"{e:.3f}" for e in prof["edges"])
              + "), χ² per bin against the reference: " + "; ".join(
                  f"{k} generated {prof['samples']['generated'][k]['chi2_per_bin']:.1f}, floor "
                  f"{prof['samples']['floor'][k]['chi2_per_bin']:.1f}" for k in prof["quantities"]))
        for k in ("tau32", "tau21"):
            print(f"  mean {k} per bin: " + " | ".join(
                f"{s} " + " ".join(f"{v:.3f}" for v in prof["samples"][s][k]["mean"]) for s in shown))
        for k, r in res.get("classifier", {}).items():
            print(f"classifier AUC, {k:>8} view: generated {r['auc']:.3f}, floor {r['floor']:.3f}")
        rt = res["roundtrip"]
        print("round trip through the preprocessing: max |Δ| " + ", ".join(
            f"{k} {rt[k]['max_abs_diff']:.2g}" for k in (*SUBSTRUCTURE, "mass_rel"))
              + f"; particle features {rt['max_abs_diff_particle_features']:.2g}; hardest constituent's |η_rel| "
              f"median {rt['leading_abs_eta_std_units_median']:.3f} std units (feature std {rt['feature_std']})")
        sm = res["smearing"]
        for target in ("angles", "log_pt"):
            print(f"noise on {target:>7}: σ = " + ", ".join(f"{s:g}" for s in sm["sigma"]) + " → mean τ21 "
                  + ", ".join(f"{v:.3f}" for v in sm[target]["tau21"]) + "; τ32 "
                  + ", ".join(f"{v:.3f}" for v in sm[target]["tau32"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
