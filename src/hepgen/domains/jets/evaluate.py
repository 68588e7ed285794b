"""Real vs generated jets → JetNet metrics beside their real-vs-real floor (keys in docs/jets.md).

Every metric is computed twice with the same batches: between the reference and the
generated jets, and between the reference and a second, independent reference sample of the
same size (the *floor*: what a perfect generator would score with this many jets).  The
second reference is either given (``real_reference``, e.g. a second Pythia run) or made by
splitting the reference in two random halves A and B; the generated sample is then compared
with A, and B (cut to the generated sample's size) is the floor sample.

The deep-sets classifier AUC (:mod:`hepgen.domains.jets.classifier`) is trained twice with
the same seed: reference vs generated, and reference vs the floor sample; with
``classifier_kwargs={"seeds": k}`` each ``k`` times with seeds ``seed … seed + k − 1``, and the
means reported (at a few thousand jets one training's AUC moves by ±0.02 with its seed).

Metrics are computed per jet type (JetNet's metrics are per type).  A generated sample
whose types are unknown (-1) is compared with a reference of a single type.

:func:`evaluate_jets` works in memory; :func:`evaluate_jet_files` reads two JetNet-layout
files and writes ``metrics.json``, ``figures/`` and ``report.html``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hepgen._version import __version__
from hepgen._extras import require_extra
from hepgen._io import write_metrics
from hepgen._progress import Stages
from hepgen.data.jets import JetData, read_jets
from hepgen.domains.jets.classifier import MIN_JETS_PER_CLASS, jet_classifier_auc
from hepgen.domains.jets.report import save_jet_figures, write_jet_report
from hepgen.metrics.jets import (
    PARTICLE_FEATURE_NAMES,
    W1EFP_EFPS,
    _efp_columns,
    _particle_w1_batches,
    efp_features,
    jet_observables,
    w1_batches,
)
from hepgen.metrics.multivariate import fpd, kpd

__all__ = ["JET_METRICS_SCHEMA", "evaluate_jet_files", "evaluate_jets", "planned_jet_stages"]

JET_METRICS_SCHEMA = "hepgen.jet_metrics/1"
# observables from jet_features (all constituents; GeV)
_JET_FEATURE_OBS = {"jet_pt": 0, "jet_eta": 1, "jet_mass": 2, "jet_num_particles": 3}


def _entry(model: np.ndarray, floor: np.ndarray) -> dict:
    """``{"value", "error", "floor", "floor_error"}`` from per-batch values (mean, std over batches).

    None where a batch had no defined value (an observable undefined for every drawn jet).
    """
    def stat(x, fn):
        x = np.asarray(x, dtype=np.float64)
        return float(fn(x)) if np.all(np.isfinite(x)) else None

    return {"value": stat(model, np.mean), "error": stat(model, np.std),
            "floor": stat(floor, np.mean), "floor_error": stat(floor, np.std)}


def _finite_mean(x: np.ndarray) -> float | None:
    """Mean of the finite values; None when there are none (e.g. τ32 of jets with ≤ 2 constituents)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _groups(real: JetData, generated: JetData, reference: JetData | None) -> dict:
    """Type name → (real, generated, reference or None) subsets to compare."""
    out = {}
    real_types = [t for t in real.types_present if t != "unknown"]
    gen_unknown = bool(np.all(generated.jet_type < 0))
    if not real_types:  # reference of unknown type: compare everything as one group
        return {"all": (real, generated, reference)}
    for name in real_types:
        r = real.of_type(name)
        if gen_unknown and len(real_types) == 1:
            g = generated
        else:
            g = generated.of_type(name)
        ref = None
        if reference is not None:
            ref = reference if (np.all(reference.jet_type < 0) and len(real_types) == 1) else reference.of_type(name)
        if len(g) and (ref is None or len(ref)):
            out[name] = (r, g, ref)
    if not out:
        raise ValueError(f"evaluate_jets: no jet type in common: reference has {real.types_present}, "
                         f"generated has {generated.types_present}"
                         + ("" if reference is None else f", second reference has {reference.types_present}"))
    return out


def _evaluate_group(real: JetData, gen: JetData, ref: JetData | None, seed: int, num_eval_samples: int,
                    num_batches: int, efps: bool, fpd_kpd: bool, fpd_kwargs: dict, kpd_kwargs: dict,
                    n_jobs: int, classifier: bool = False, classifier_kwargs: dict | None = None,
                    stages: Stages | None = None, name: str = ""):
    stages = stages or Stages(False, "")
    stages.stage(f"{name}: observables")
    rng = np.random.default_rng(seed)
    if ref is None:
        if len(real) < 4:
            raise ValueError(f"evaluate_jets: need at least 4 reference jets to split for the floor, found {len(real)}")
        perm = rng.permutation(len(real))
        half = len(real) // 2
        a, b = real.subset(np.sort(perm[:half])), real.subset(np.sort(perm[half:]))
        method = "split"
    else:
        a, b = real, ref
        method = "reference"
    n = min(len(b), len(gen))
    gen, b = gen.subset(slice(0, n)), b.subset(slice(0, n))
    samples = {"real": a, "generated": gen, "floor": b}
    obs = {k: jet_observables(v.particle_features) for k, v in samples.items()}
    # jet_features of generated jets hold the generation conditions (pT, η, multiplicity) and
    # the mass of the stored constituents only (hepgen.domains.jets.generator): comparing them with the
    # reference's all-constituent features would show either identity or a definition
    # mismatch, not the model's quality — skip them then
    from_conditions = any(v.attrs.get("jet_features_from") == "conditions" for v in samples.values())
    if all(v.jet_features is not None for v in samples.values()) and not from_conditions:
        for obs_name, col in _JET_FEATURE_OBS.items():
            for k, v in samples.items():
                obs[k][obs_name] = v.jet_features[:, col]
    kw = dict(num_eval_samples=num_eval_samples, num_batches=num_batches, seed=seed)
    res = {"n_real": len(a), "n_generated": len(gen), "n_floor": len(b), "floor_method": method,
           "jet_feature_observables": not from_conditions,
           "n_particles": int(gen.n_particles)}

    stages.stage(f"{name}: W1")
    wm = w1_batches(obs["real"]["mass_rel"], obs["generated"]["mass_rel"], **kw)[:, 0]
    wm_f = w1_batches(obs["real"]["mass_rel"], obs["floor"]["mass_rel"], **kw)[:, 0]
    res["w1m"] = _entry(wm, wm_f)

    wp = _particle_w1_batches(a.particle_features, gen.particle_features, num_eval_samples, num_batches, seed)
    wp_f = _particle_w1_batches(a.particle_features, b.particle_features, num_eval_samples, num_batches, seed)
    res["w1p"] = _entry(wp.mean(axis=1), wp_f.mean(axis=1))
    res["w1p"]["per_feature"] = {name: _entry(wp[:, k], wp_f[:, k]) for k, name in enumerate(PARTICLE_FEATURE_NAMES)}

    efp = None
    if efps:
        stages.stage(f"{name}: EFPs")
        efp = {k: efp_features(v.particle_features, n_jobs=n_jobs) for k, v in samples.items()}
        cols = _efp_columns(W1EFP_EFPS)
        we = w1_batches(efp["real"][:, cols], efp["generated"][:, cols], **kw)
        we_f = w1_batches(efp["real"][:, cols], efp["floor"][:, cols], **kw)
        res["w1efp"] = _entry(we.mean(axis=1), we_f.mean(axis=1))
        res["w1efp"]["per_efp"] = [_entry(we[:, k], we_f[:, k]) for k in range(len(cols))]
        if fpd_kpd:
            stages.stage(f"{name}: FPD, KPD")
            for metric, fn, extra in (("fpd", fpd, fpd_kwargs), ("kpd", kpd, kpd_kwargs)):
                v, e = fn(efp["real"], efp["generated"], seed=seed, **extra)
                vf, ef = fn(efp["real"], efp["floor"], seed=seed, **extra)
                res[metric] = {"value": v, "error": e, "floor": vf, "floor_error": ef}
    stages.stage(f"{name}: substructure W1")
    res["observables"] = {}
    for obs_name in obs["real"]:
        w = w1_batches(obs["real"][obs_name], obs["generated"][obs_name], **kw)[:, 0]
        wf = w1_batches(obs["real"][obs_name], obs["floor"][obs_name], **kw)[:, 0]
        res["observables"][obs_name] = {
            "w1": _entry(w, wf),
            "mean": {k: _finite_mean(obs[k][obs_name]) for k in samples},
            "n_undefined": {k: int(np.isnan(obs[k][obs_name]).sum()) for k in samples},
        }
    if classifier:
        res["classifier_auc"] = _classifier_entry(a, gen, b, seed, dict(classifier_kwargs or {}), stages, name)
    details = {"samples": samples, "observables": obs}
    return res, details


def _classifier_entry(a: JetData, gen: JetData, b: JetData, seed: int, kwargs: dict, stages: Stages | None = None,
                      name: str = "") -> dict:
    """Deep-sets AUC reference vs generated and reference vs floor sample (same seeds, same protocol);
    ``kwargs["seeds"] = k`` trains each ``k`` times (seeds ``seed … seed + k − 1``) and reports the means."""
    if min(len(a), len(gen), len(b)) < MIN_JETS_PER_CLASS:
        return {"value": None, "error": None, "floor": None, "floor_error": None,
                "skipped": f"fewer than {MIN_JETS_PER_CLASS} jets in a sample ({len(a)}, {len(gen)}, {len(b)})"}
    kwargs = dict(kwargs)
    n_seeds = int(kwargs.pop("seeds", 1))
    if n_seeds < 1:
        raise ValueError(f"evaluate_jets: classifier seeds: expected at least 1, found {n_seeds}")
    stages = stages or Stages(False, "")
    runs = {}
    for which, other in (("classifier", gen), ("classifier floor", b)):
        stages.stage(f"{name}: {which}")
        runs[which] = [jet_classifier_auc(a.particle_features, other.particle_features, seed=seed + k,
                                          on_epoch=stages.epochs(f"{name}: {which}"), **kwargs)
                       for k in range(n_seeds)]
    m, f = runs["classifier"], runs["classifier floor"]
    out = {"value": _mean_auc(m), "error": _auc_error(m), "floor": _mean_auc(f), "floor_error": _auc_error(f),
           "n_test": m[0]["n_test"], "n_test_floor": f[0]["n_test"],
           "epochs": [m[0]["epochs"], f[0]["epochs"]] if n_seeds == 1 else [[r["epochs"] for r in m],
                                                                             [r["epochs"] for r in f]]}
    if n_seeds > 1:
        out.update(seeds=n_seeds, values=[r["auc"] for r in m], floor_values=[r["auc"] for r in f])
    return out


def _mean_auc(runs: list[dict]) -> float:
    return float(np.mean([r["auc"] for r in runs]))


def _auc_error(runs: list[dict]) -> float:
    """One run: its Hanley–McNeil error; several (seeds): the standard error of their mean,
    ``std(ddof=1) / sqrt(k)`` — the seed-to-seed spread of the training, which at 3000 jets
    is larger than the test-set error (docs/jets.md)."""
    if len(runs) == 1:
        return float(runs[0]["auc_error"])
    return float(np.std([r["auc"] for r in runs], ddof=1) / np.sqrt(len(runs)))


def planned_jet_stages(types, efps: bool = True, fpd_kpd: bool = True, classifier: bool = True) -> list[str]:
    """The stage names :func:`evaluate_jets` reports for the jet ``types`` compared (in order).

    >>> planned_jet_stages(["t"], efps=False, classifier=False)
    ['t: observables', 't: W1', 't: substructure W1']
    """
    out = []
    for t in types:
        out += [f"{t}: observables", f"{t}: W1"]
        out += [f"{t}: EFPs"] * bool(efps) + [f"{t}: FPD, KPD"] * bool(efps and fpd_kpd)
        out += [f"{t}: substructure W1"] + [f"{t}: classifier", f"{t}: classifier floor"] * bool(classifier)
    return out


def evaluate_jets(real: JetData, generated: JetData, real_reference: JetData | None = None, seed: int = 0,
                  num_eval_samples: int = 50_000, num_batches: int = 5, efps: bool = True, fpd_kpd: bool = True,
                  fpd_kwargs: dict | None = None, kpd_kwargs: dict | None = None, n_jobs: int = 1,
                  classifier: bool = True, classifier_kwargs: dict | None = None, return_details: bool = False,
                  progress=False):
    """JetNet metrics of ``generated`` against ``real``, each beside its real-vs-real floor.

    Arguments:
        real: reference jets (one or several types).
        generated: generated jets, same ``n_particles``.
        real_reference: an independent second reference sample for the floor; default:
            split ``real`` in two halves (see the module docstring).
        seed: seeds the split and every batch draw (model and floor use the same draws).
        num_eval_samples, num_batches: W1 batches (jetnet defaults 50 000 and 5).
        efps: compute EFPs (W1efp, FPD, KPD); the slow part (~2 ms per 30-particle jet).
        fpd_kpd: compute FPD and KPD on the EFPs.
        fpd_kwargs, kpd_kwargs: passed to :func:`hepgen.metrics.multivariate.fpd` / ``kpd``
            (e.g. smaller ``min_samples``/``max_samples``/``batch_size`` for small samples).
        n_jobs: energyflow worker processes.
        classifier: train the deep-sets classifier (:func:`~hepgen.domains.jets.classifier.jet_classifier_auc`)
            reference vs generated and reference vs floor sample (``classifier_auc``; skipped,
            with a note, when a sample has fewer than 50 jets).
        classifier_kwargs: passed to ``jet_classifier_auc`` (``epochs``, ``max_jets``, …), except
            ``seeds``: train each classifier that many times (seeds ``seed``, ``seed + 1``, …) and
            report the mean AUCs, their standard errors and the single ``values`` (default 1).
        return_details: also return, per type, the samples and observables behind the numbers.
        progress: report the stages per jet type (observables, W1, EFPs, FPD/KPD, classifier
            epochs): False, True (a bar on stderr) or a callable taking the message
            (:class:`hepgen._progress.Stages`).

    Returns:
        the JSON-able metrics dict (schema ``hepgen.jet_metrics/1``, keys in docs/jets.md),
        and with ``return_details`` the tuple ``(metrics, details)``.
    """
    for name, d in (("generated", generated), ("real_reference", real_reference)):
        if d is not None and d.n_particles != real.n_particles:
            raise ValueError(f"evaluate_jets: the {name} jets have {d.n_particles} particles per jet, "
                             f"the reference {real.n_particles}; expected the same")
    if len(real) == 0 or len(generated) == 0:
        raise ValueError(f"evaluate_jets: empty sample ({len(real)} reference, {len(generated)} generated jets)")
    # substructure needs FastJet, the EFP metrics EnergyFlow: say so before minutes of work, not after
    require_extra("jets", "jet evaluation (FastJet, EnergyFlow)",
                  ("fastjet", "awkward", *(("energyflow",) if efps else ())))
    metrics = {
        "schema": JET_METRICS_SCHEMA,
        "hepgen_version": __version__,
        "seed": int(seed),
        "num_eval_samples": int(num_eval_samples),
        "num_batches": int(num_batches),
        "types": {},
    }
    details = {}
    groups = _groups(real, generated, real_reference)
    stages = Stages.of(progress, "evaluate jets", planned_jet_stages(list(groups), efps, fpd_kpd, classifier))
    try:
        for i, (name, (r, g, ref)) in enumerate(groups.items()):
            metrics["types"][name], details[name] = _evaluate_group(
                r, g, ref, int(seed) + 7919 * i, num_eval_samples, num_batches, efps, fpd_kpd,
                dict(fpd_kwargs or {}), dict(kpd_kwargs or {}), n_jobs, classifier, classifier_kwargs, stages, name)
    finally:
        stages.close()
    return (metrics, details) if return_details else metrics


def _jets(source, n_particles: int | None) -> JetData:
    """A file read (:func:`~hepgen.data.jets.read_jets`), or in-memory jets cut to ``n_particles``."""
    if not isinstance(source, JetData):
        return read_jets(source, n_particles=n_particles)
    if n_particles is None or n_particles == source.n_particles:
        return source
    if n_particles > source.n_particles:
        raise ValueError(f"n_particles: expected at most the {source.n_particles} particles per jet held, "
                         f"found {n_particles}")
    return JetData(source.particle_features[:, :n_particles], source.jet_features, source.jet_type,
                   dict(source.attrs))


def evaluate_jet_files(real_path: str | os.PathLike, generated_path: str | os.PathLike, out_dir=None,
                       real_reference_path: str | os.PathLike | None = None, report: bool = True,
                       n_particles: int | None = None, progress=False, **kwargs) -> dict:
    """Read two (or three) JetNet-layout files, evaluate, write ``out_dir/metrics.json`` (+ report).

    Arguments:
        real_path, generated_path: JetNet-layout HDF5 files (:func:`hepgen.data.jets.read_jets`), or
            :class:`~hepgen.data.jets.JetData` already in memory (notebooks).
        out_dir: output folder; nothing is written when None.
        real_reference_path: a second, independent reference file for the floor.
        report: also write ``report.html`` and ``figures/`` (only with ``out_dir``).
        n_particles: keep the leading ``n_particles`` constituents of every file.
        progress: report the stages (reading, per jet type the metrics and classifier epochs, figures,
            report): False, True (a bar on stderr) or a callable taking the message.
        kwargs: passed to :func:`evaluate_jets`.

    Returns:
        the metrics dict, with ``inputs`` = the paths of the files read.
    """
    stages = Stages.of(progress, "evaluate jets")
    try:
        return _evaluate_jet_files(real_path, generated_path, out_dir, real_reference_path, report, n_particles,
                                   stages, kwargs)
    finally:
        stages.close()


def _evaluate_jet_files(real_path, generated_path, out_dir, real_reference_path, report, n_particles, stages,
                        kwargs) -> dict:
    stages.stage("read")
    paths = {key: str(p) for key, p in (("real", real_path), ("generated", generated_path),
                                        ("real_reference", real_reference_path))
             if p is not None and not isinstance(p, JetData)}
    real, gen = _jets(real_path, n_particles), _jets(generated_path, n_particles)
    ref = None if real_reference_path is None else _jets(real_reference_path, n_particles)
    real_path = paths.get("real", "the reference jets")
    for name, d, p in (("generated", gen, generated_path), ("second reference", ref, real_reference_path)):
        if d is not None and d.n_particles != real.n_particles:
            raise ValueError(f"{p}: the {name} file holds {d.n_particles} particles per jet but {real_path} "
                             f"holds {real.n_particles}; pass --n-particles to cut both to the same number")
    metrics, details = evaluate_jets(real, gen, ref, return_details=True, progress=stages, **kwargs)
    if paths:  # the files compared (in-memory samples have no path)
        metrics["inputs"] = {"real": paths.get("real", "(in memory)"),
                             "generated": paths.get("generated", "(in memory)"),
                             "real_reference": paths.get("real_reference",
                                                         None if real_reference_path is None else "(in memory)")}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_metrics(metrics, out / "metrics.json")
        if report:
            stages.stage("figures")
            figures = save_jet_figures(out, details)
            stages.stage("report")
            write_jet_report(metrics, out, figures)
    return metrics

