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
  as many generated events as real A (the study's protocol; also on every generated event when
  there are ≥ 2× more, ``*_all``), against the same classifier trained on real A, both tested on
  the *same* real B events: AUCs averaged over ``classifier_seeds`` trainings, ΔAUC = AUC(gen) −
  AUC(real) with its error from a paired bootstrap over the test events
  (:func:`hepgen.metrics.tabular.paired_auc_difference`) and its spread over the seeds, and the
  significance improvement ε_S/√ε_B at ε_S = 0.5 (needs the processes ``tth`` and ``ttbb``, or
  any two, in both samples; the first is the signal).  Given the generator's training events
  (``real_train``), the real-trained classifier trains on them and both are tested on all of
  the real sample;
* ``two_sample_auc``: a gradient-boosted classifier real vs generated
  (:func:`hepgen.metrics.classifier.classifier_two_sample_test`), 0.5 = indistinguishable;
* ``speedup`` (wall clock), ``speedup_cpu`` (CPU time) and ``speedup_by_process``: Pythia +
  reconstruction seconds per selected event of each process
  (:func:`hepgen.data.tabular.simulation_cost`: per process, right for merged files,
  concatenations and subsets) over the sampling seconds per event (generated
  ``attrs['sample_seconds']`` / ``attrs['sample_cpu_seconds']``); the mix weighted by the real
  sample's process counts.
"""

from __future__ import annotations

import numpy as np

from hepgen._io import json_safe
from hepgen.data.tabular import TabularData, simulation_cost
from hepgen.domains.tabular.critic import critic_wasserstein
from hepgen.domains.tabular.preprocessing import CDFGaussianiser
from hepgen.metrics.classifier import classifier_two_sample_test
from hepgen.metrics.distances import binning_for, ks_statistic, separation_power, wasserstein_1d
from hepgen.metrics.tabular import benchmark_classifier, fisher_z_calibrated, paired_auc_difference

__all__ = ["evaluate_tabular"]


def _per_variable(a: np.ndarray, b: np.ndarray, columns: list[str]) -> dict:
    out = {}
    for i, c in enumerate(columns):
        bins = binning_for(a[:, i], b[:, i], 30)
        out[c] = {"w1": wasserstein_1d(a[:, i], b[:, i]), "ks": ks_statistic(a[:, i], b[:, i])[0],
                  "separation": separation_power(a[:, i], b[:, i], bins)}
    return out


def _speedups(real: TabularData, gen: TabularData) -> dict:
    """Simulation seconds per selected event (per process, :func:`hepgen.data.tabular.simulation_cost`)
    over the model's sampling seconds per event; wall clock (``sample_seconds``) and CPU time
    (``sample_cpu_seconds``) apart.  The mix is weighted by the real table's process counts.
    ``{}`` when the real table has no simulation cost or the generated one no sampling time."""
    cost, n_gen = simulation_cost(real), len(gen)
    per = {"wall": gen.attrs.get("sample_seconds"), "cpu": gen.attrs.get("sample_cpu_seconds")}
    per = {k: float(v) / n_gen for k, v in per.items() if v}
    if not cost or not per:
        return {}
    counts = {name: int((real.process == i).sum()) for i, name in enumerate(real.process_names)}
    out: dict = {"speedup_by_process": {}}
    for clock, g in per.items():
        sims = {p: c[clock] for p, c in cost.items() if c.get(clock) is not None and counts.get(p)}
        if not sims:
            continue
        mix = sum(counts[p] * s for p, s in sims.items()) / sum(counts[p] for p in sims)
        suffix = "" if clock == "wall" else "_cpu"
        out[f"seconds_per_event_simulation{suffix}"] = mix
        out[f"seconds_per_event_generation{suffix}"] = g
        out[f"speedup{suffix}"] = mix / g
        for p, s in sims.items():
            out["speedup_by_process"].setdefault(p, {})[clock] = s / g
    return out


def _fz(a, b, n_perm, seed):
    r = fisher_z_calibrated(a, b, n_permutations=n_perm, seed=seed)
    return {k: r[k] for k in ("chi2", "ndof", "chi2_ndof", "p_value", "p_calibrated", "null_chi2_ndof_mean")}, r


def evaluate_tabular(real: TabularData, gen: TabularData, seed: int = 0, n_permutations: int = 100,
                     critic_steps: int = 1000, classifiers: tuple[str, ...] = ("hgb", "mlp"),
                     signal: str | None = None, classifier_seeds: int = 3, n_bootstrap: int = 1000,
                     real_train: TabularData | None = None) -> tuple[dict, dict]:
    """All measures of the module docstring.

    Arguments:
        real, gen: tables with the same columns (≥ 8 real events).
        seed: seeds the split, subsampling, critics, classifiers and permutations.
        n_permutations: permutations of the calibrated Fisher-z p-values (0: none).
        critic_steps: training steps of each critic (0: skip the critic measure).
        classifiers: benchmark classifiers among ``"hgb"``, ``"mlp"`` (empty: skip).
        signal: the signal process of the benchmark (default ``"tth"`` if present, else the first).
        classifier_seeds: benchmark classifiers trained per training sample (seeds ``seed``,
            ``seed + 1``, …): the AUCs are averaged over them and their spread is reported.
        n_bootstrap: resamples of the paired bootstrap of ΔAUC over the test events.
        real_train: the real events the generator was trained on, when known (the benchmark's
            real-trained classifier then trains on them, the generated-trained one on as many
            generated events, and both are tested on all of ``real``, not its half B — twice
            the test events).  The other measures ignore it.

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

    # ttH-vs-ttbb benchmark classifier: trained on generated vs on real, tested on the same real events
    # train on real A, test on real B; or, given the generator's own training events, train on
    # those and test on the whole real sample (twice the test events: a smaller error of ΔAUC)
    if real_train is not None and real_train.columns != real.columns:
        raise ValueError(f"evaluate: key 'columns': expected the real columns {real.columns} in real_train, "
                         f"found {real_train.columns}")
    r_train, r_test = (ra, rb) if real_train is None else (real_train, real)
    names = real.process_names
    present = [n for n in names if n in r_train.process_names
               and (r_train.process == r_train.process_names.index(n)).any() and (r_test.process == names.index(n)).any()]
    sig = signal or ("tth" if "tth" in present else (present[0] if present else None))
    gen_names = gen.process_names
    if classifiers and sig is not None and len(present) >= 2 and sig in gen_names and len(set(gen.process)) >= 2:
        bkg = next(n for n in present if n != sig)
        def xy(d: TabularData):
            keep = (d.process == d.process_names.index(sig)) | (d.process == d.process_names.index(bkg))
            return d.values[keep], (d.process[keep] == d.process_names.index(sig)).astype(int)
        g_perm = rng.permutation(len(gen))
        g_train = gen.subset(g_perm[: min(len(gen), len(r_train))])  # the study's protocol: as many as real
        (xa, ya), (xb, yb), (xg, yg) = xy(r_train), xy(r_test), xy(g_train)
        xg_all, yg_all = xy(gen)
        more = len(gen) >= 2 * len(r_train)  # optionally: every generated event (≥ 2x the real training set)
        bench, rocs = {"signal": sig, "background": bkg, "n_test": int(len(yb)), "n_train_real": int(len(ya)),
                       "n_train_generated": int(len(yg)), "n_train_generated_all": int(len(yg_all)) if more else None,
                       "n_seeds": int(classifier_seeds), "n_bootstrap": int(n_bootstrap),
                       "real_training": "real_train" if real_train is not None else "real half A"}, {}
        if len(set(yg)) == 2:
            for model in classifiers:
                runs = {"real": [], "gen": [], "gen_all": []}
                for k in range(int(classifier_seeds)):
                    runs["real"].append(benchmark_classifier(xa, ya, xb, yb, model=model, seed=seed + k))
                    runs["gen"].append(benchmark_classifier(xg, yg, xb, yb, model=model, seed=seed + k))
                    if more and len(set(yg_all)) == 2:
                        runs["gen_all"].append(benchmark_classifier(xg_all, yg_all, xb, yb, model=model, seed=seed + k))
                scores = {k: [r["score"] for r in v] for k, v in runs.items()}
                # ΔAUC on the same test events, paired bootstrap over them (seed-averaged AUCs)
                pair = paired_auc_difference(yb, scores["real"], scores["gen"], n_bootstrap=n_bootstrap, seed=seed)
                entry = {"auc_real_trained": pair["auc_a"], "auc_generated_trained": pair["auc_b"],
                         "auc_difference": pair["diff"], "auc_difference_err": pair["diff_err"],
                         "auc_difference_ci95": pair["diff_ci95"], "auc_difference_seed_std": pair["seed_std"],
                         "auc_difference_per_seed": pair["seed_diffs"], "auc_real_trained_err": pair["auc_a_err"],
                         "si_real_trained": float(np.mean([r["significance_improvement"] for r in runs["real"]])),
                         "si_generated_trained": float(np.mean([r["significance_improvement"] for r in runs["gen"]]))}
                if runs["gen_all"]:
                    pa = paired_auc_difference(yb, scores["real"], scores["gen_all"], n_bootstrap=n_bootstrap, seed=seed)
                    entry.update(auc_generated_all_trained=pa["auc_b"], auc_difference_all=pa["diff"],
                                 auc_difference_all_err=pa["diff_err"], auc_difference_all_seed_std=pa["seed_std"])
                bench[model] = entry
                rocs[model] = {"real": runs["real"][0]["roc"], "generated": runs["gen"][0]["roc"]}
        metrics["benchmark"] = bench
        arrays["roc"] = rocs

    c2 = classifier_two_sample_test(A, G, seed=seed, model="hgb")
    metrics["two_sample_auc"] = c2["auc"]
    metrics["two_sample_auc_err"] = c2["auc_err"]

    speed = _speedups(real, gen)
    if speed:
        metrics.update(speed)
    return json_safe(metrics), arrays
