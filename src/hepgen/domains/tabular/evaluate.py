"""Quality measures of a generated tabular sample against a real one.

:func:`evaluate_tabular` splits the real sample at random into halves A and B (seeded) and
compares each measure for *generated vs A* with its *B vs A* floor (the generated sample is
subsampled to the size of B, so both sides have the same statistics):

* per variable: 1-Wasserstein distance (in the variable's unit), KS statistic, separation
  power (30 shared bins), and their means (separation) over the variables;
* ``critic_w``: Wasserstein estimate of a WGAN-GP critic trained alone (the study's "only train
  critic" measure, :func:`hepgen.domains.tabular.critic.critic_wasserstein`) on columns standardised
  with A's mean and standard deviation;
* ``fisher_z``: χ² of the Fisher-z differences of all V(V−1)/2 correlations (325 for the 26
  high-level variables) with a permutation-calibrated p-value
  (:func:`hepgen.metrics.tabular.fisher_z_calibrated`), for generated, real-vs-real, and the
  *destroyed-correlations* baseline (independent Gaussians through each variable's inverse CDF
  fitted on the real sample);
* ``benchmark``: a ttH-vs-ttbb classifier (gradient-boosted trees ``hgb`` and an MLP) trained on
  the generated events, tested on real B, against the same classifier trained on real A: AUC
  and significance improvement ε_S/√ε_B at ε_S = 0.5 (needs the processes ``tth`` and ``ttbb``,
  or any two, in both samples; the first is the signal);
* ``two_sample_auc``: a gradient-boosted classifier real vs generated
  (:func:`hepgen.metrics.classifier.classifier_two_sample_test`), 0.5 = indistinguishable;
* ``speedup``: Pythia + reconstruction CPU seconds per event (real ``attrs['cpu_seconds']``)
  over the sampling seconds per event (generated ``attrs['sample_seconds']``), when both exist.
"""

from __future__ import annotations

import numpy as np

from hepgen._io import json_safe
from hepgen.data.tabular import TabularData
from hepgen.domains.tabular.critic import critic_wasserstein
from hepgen.domains.tabular.preprocessing import CDFGaussianiser
from hepgen.metrics.classifier import classifier_two_sample_test
from hepgen.metrics.distances import binning_for, ks_statistic, separation_power, wasserstein_1d
from hepgen.metrics.tabular import benchmark_classifier, fisher_z_calibrated

__all__ = ["evaluate_tabular"]


def _per_variable(a: np.ndarray, b: np.ndarray, columns: list[str]) -> dict:
    out = {}
    for i, c in enumerate(columns):
        bins = binning_for(a[:, i], b[:, i], 30)
        out[c] = {"w1": wasserstein_1d(a[:, i], b[:, i]), "ks": ks_statistic(a[:, i], b[:, i])[0],
                  "separation": separation_power(a[:, i], b[:, i], bins)}
    return out


def _fz(a, b, n_perm, seed):
    r = fisher_z_calibrated(a, b, n_permutations=n_perm, seed=seed)
    return {k: r[k] for k in ("chi2", "ndof", "chi2_ndof", "p_value", "p_calibrated", "null_chi2_ndof_mean")}, r


def evaluate_tabular(real: TabularData, gen: TabularData, seed: int = 0, n_permutations: int = 100,
                     critic_steps: int = 1000, classifiers: tuple[str, ...] = ("hgb", "mlp"),
                     signal: str | None = None) -> tuple[dict, dict]:
    """All measures of the module docstring.

    Arguments:
        real, gen: tables with the same columns (≥ 8 real events).
        seed: seeds the split, subsampling, critics, classifiers and permutations.
        n_permutations: permutations of the calibrated Fisher-z p-values (0: none).
        critic_steps: training steps of each critic (0: skip the critic measure).
        classifiers: benchmark classifiers among ``"hgb"``, ``"mlp"`` (empty: skip).
        signal: the signal process of the benchmark (default ``"tth"`` if present, else the first).

    Returns:
        ``(metrics, arrays)``: ``metrics`` is JSON-able (NaN → None via :func:`json_safe`);
        ``arrays`` holds what the report plots (real A, generated, correlation matrices,
        z map, ROC curves).
    """
    if gen.columns != real.columns:
        raise ValueError(f"evaluate: key 'columns': expected the real columns {real.columns}, found {gen.columns}")
    if len(real) < 8 or len(gen) < 4:
        raise ValueError(f"evaluate: expected >= 8 real and >= 4 generated events, found {len(real)} and {len(gen)}")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(real))
    ra, rb = real.subset(idx[: len(real) // 2]), real.subset(idx[len(real) // 2:])
    g_sub = gen.subset(rng.permutation(len(gen))[: min(len(gen), len(rb))])
    cols = real.columns
    A, B, G = ra.values, rb.values, g_sub.values
    metrics: dict = {"kind": "tabular", "n_real": len(real), "n_generated": len(gen), "columns": cols,
                     "units": real.units, "seed": int(seed)}
    pv_g, pv_r = _per_variable(A, G, cols), _per_variable(A, B, cols)
    metrics["per_variable"] = {c: {"w1": pv_g[c]["w1"], "w1_floor": pv_r[c]["w1"], "ks": pv_g[c]["ks"],
                                   "ks_floor": pv_r[c]["ks"], "separation": pv_g[c]["separation"],
                                   "separation_floor": pv_r[c]["separation"]} for c in cols}
    metrics["mean_separation"] = float(np.mean([pv_g[c]["separation"] for c in cols]))
    metrics["mean_separation_floor"] = float(np.mean([pv_r[c]["separation"] for c in cols]))
    metrics["mean_ks"] = float(np.mean([pv_g[c]["ks"] for c in cols]))
    metrics["mean_ks_floor"] = float(np.mean([pv_r[c]["ks"] for c in cols]))
    arrays: dict = {"real": A, "generated": G, "columns": cols, "units": real.units}

    # correlations
    destroyed = CDFGaussianiser().fit(real.values, cols).sample_independent(len(B), rng)
    fz_g, full_g = _fz(A, G, n_permutations, seed)
    fz_r, _ = _fz(A, B, n_permutations, seed + 1)
    fz_d, _ = _fz(A, destroyed, n_permutations, seed + 2)
    metrics["fisher_z"] = {"generated": fz_g, "real_vs_real": fz_r, "destroyed": fz_d,
                           "ratio_to_floor": fz_g["chi2_ndof"] / fz_r["chi2_ndof"] if fz_r["chi2_ndof"] else None}
    arrays.update(corr_real=full_g["corr_a"], corr_gen=full_g["corr_b"], z=full_g["z"])

    # critic-only Wasserstein estimate on standardised columns
    if critic_steps:
        mu, sd = A.mean(0), A.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        w_g = critic_wasserstein((A - mu) / sd, (G - mu) / sd, steps=critic_steps, seed=seed)
        w_r = critic_wasserstein((A - mu) / sd, (B - mu) / sd, steps=critic_steps, seed=seed)
        metrics["critic_w"] = {"generated": w_g["w"], "real_vs_real": w_r["w"]}

    # ttH-vs-ttbb benchmark classifier: trained on generated vs on real, tested on real B
    names = real.process_names
    present = [n for n in names if (ra.process == names.index(n)).any() and (rb.process == names.index(n)).any()]
    sig = signal or ("tth" if "tth" in present else (present[0] if present else None))
    gen_names = gen.process_names
    if classifiers and sig is not None and len(present) >= 2 and sig in gen_names and len(set(gen.process)) >= 2:
        bkg = next(n for n in present if n != sig)
        def xy(d: TabularData):
            keep = (d.process == d.process_names.index(sig)) | (d.process == d.process_names.index(bkg))
            return d.values[keep], (d.process[keep] == d.process_names.index(sig)).astype(int)
        g_train = gen.subset(rng.permutation(len(gen))[: min(len(gen), len(ra))])
        (xa, ya), (xb, yb), (xg, yg) = xy(ra), xy(rb), xy(g_train)
        bench, rocs = {"signal": sig, "background": bkg}, {}
        if len(set(yg)) == 2:
            for model in classifiers:
                r_real = benchmark_classifier(xa, ya, xb, yb, model=model, seed=seed)
                r_gen = benchmark_classifier(xg, yg, xb, yb, model=model, seed=seed)
                bench[model] = {"auc_real_trained": r_real["auc"], "auc_generated_trained": r_gen["auc"],
                                "auc_difference": r_gen["auc"] - r_real["auc"],
                                "si_real_trained": r_real["significance_improvement"],
                                "si_generated_trained": r_gen["significance_improvement"]}
                rocs[model] = {"real": r_real["roc"], "generated": r_gen["roc"]}
        metrics["benchmark"] = bench
        arrays["roc"] = rocs

    c2 = classifier_two_sample_test(A, G, seed=seed, model="hgb")
    metrics["two_sample_auc"] = c2["auc"]
    metrics["two_sample_auc_err"] = c2["auc_err"]

    cpu, smp = real.attrs.get("cpu_seconds"), gen.attrs.get("sample_seconds")
    if cpu and smp:
        metrics["seconds_per_event_simulation"] = float(cpu) / len(real)
        metrics["seconds_per_event_generation"] = float(smp) / len(gen)
        metrics["speedup"] = metrics["seconds_per_event_simulation"] / metrics["seconds_per_event_generation"]
    return json_safe(metrics), arrays
