"""Does refinement help? The downstream-regression proof, two-sample AUCs and a report page.

The test of arXiv:1802.03325: a regression network is trained (a) on raw simulation,
(b) on refined simulation, (c) on data itself (the upper bound), and optionally (d) on
DCTR-weighted simulation; all are evaluated on the same *held-out data*.  For each target
the residuals ``pred − true`` give a bias (mean) and a resolution (standard deviation);
the fraction of the (a)→(c) gap that (b) closes is

    closed_bias = (|b_a| − |b_b|) / (|b_a| − |b_c|),   closed_res = (σ_a − σ_b) / (σ_a − σ_c),

1 = as good as training on data, 0 = no better than raw simulation (``None`` when the gap
is zero).  Every number is repeated over several seeds (regression weights and batches) and
reported as mean ± standard deviation.

Example:
    >>> round(gap_closed(0.10, 0.03, 0.00), 6)
    0.7
    >>> gap_closed(0.1, 0.1, 0.1) is None
    True
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from hepgen._io import atomic_path, json_safe
from hepgen.metrics.classifier import classifier_two_sample_test
from hepgen.metrics.distances import binning_for, separation_power
from hepgen.refine.adapters import check_pair, get_adapter
from hepgen.refine.critic_sums import sum_groups
from hepgen.refine.options import set_adapter_options
from hepgen.refine.refiner import (
    RefinerConfig,
    check_against_state,
    load_refiner,
    refine_arrays,
    refine_data,
    train_refiner,
)
from hepgen.refine.reweight import dctr_weights
from hepgen.report.style import figure_png_base64

__all__ = [
    "demonstrate",
    "dump_json",
    "gap_closed",
    "holdout_aucs",
    "refinement_aucs",
    "regression_study",
    "repeated_auc",
    "roc_figure",
    "separation_table",
    "table_html",
    "train_regressor",
    "two_sample_auc",
    "weighted_separation_power",
    "write_html_report",
]


def gap_closed(a: float, b: float, c: float) -> float | None:
    """``(a − b)/(a − c)``: the share of the gap between ``a`` (sim) and ``c`` (data) that ``b`` closes."""
    if not all(math.isfinite(v) for v in (a, b, c)) or abs(a - c) < 1e-12:
        return None
    return float((a - b) / (a - c))


class _MLP(nn.Module):
    def __init__(self, d_in: int, d_out: int, hidden=(128, 64)) -> None:
        super().__init__()
        layers, d = [], d_in
        for h in hidden:
            layers += [nn.Linear(d, h), nn.SiLU()]
            d = h
        layers.append(nn.Linear(d, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def train_regressor(x, t, weights=None, seed: int = 0, epochs: int = 60, batch_size: int = 128,
                    lr: float = 1e-3, weight_decay: float = 1e-4, patience: int = 8):
    """Train an MLP regressor (128-64, SiLU; weighted MSE on standardised targets); return ``predict``.

    Arguments:
        x: ``(N, D)`` inputs.  t: ``(N, K)`` targets.  weights: optional ``(N,)`` event weights.
        seed: seeds the validation split, the weights and the batches.
        epochs, patience: at most ``epochs`` passes; stops when the weighted validation loss
            (15 % of the events) has not improved for ``patience`` epochs and restores the best.

    Returns:
        ``predict(x_new: (M, D)) -> (M, K)`` float64 in target units.
    """
    x, t = np.asarray(x, np.float32), np.asarray(t, np.float64).reshape(len(x), -1)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    n_val = max(1, int(0.15 * len(x)))
    va, tr = perm[:n_val], perm[n_val:]
    sd = x[tr].std(0)
    # floor at 10 % of the rms spread: a feature (nearly) constant in training must not blow up
    # on test events where it varies
    xm, xsd = x[tr].mean(0), np.maximum(sd, max(1e-6, 0.1 * float(np.sqrt(np.mean(sd**2)))))
    tm, tsd = t[tr].mean(0), np.maximum(t[tr].std(0), 1e-12)
    xn = torch.from_numpy(((x - xm) / xsd).astype(np.float32))
    tn = torch.from_numpy(((t - tm) / tsd).astype(np.float32))
    wt = torch.from_numpy((w / w[tr].mean()).astype(np.float32))
    torch.manual_seed(seed)
    net = _MLP(x.shape[1], t.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
    best, best_state, bad = float("inf"), None, 0
    for _ in range(epochs):
        net.train()
        order = tr_t[torch.randperm(len(tr_t), generator=gen)]
        for s in range(0, len(order), batch_size):
            i = order[s:s + batch_size]
            loss = (wt[i] * ((net(xn[i]) - tn[i]) ** 2).mean(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float((wt[va_t] * ((net(xn[va_t]) - tn[va_t]) ** 2).mean(1)).mean())
        if v < best - 1e-5:
            best, bad = v, 0
            best_state = {k: p.clone() for k, p in net.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()

    def predict(x_new):
        z = torch.from_numpy(((np.asarray(x_new, np.float32) - xm) / xsd).astype(np.float32))
        with torch.no_grad():
            return net(z).numpy().astype(np.float64) * tsd + tm

    return predict


def regression_study(train_sets: dict, x_test, targets_test: dict, seeds=(0, 1, 2), target_names=None,
                     **regressor_options) -> dict:
    """Train one regressor per training set and seed; evaluate bias and resolution on held-out data.

    Arguments:
        train_sets: ``name → (x (N, D), targets {name: (N,)}, weights (N,) or None)``; the
            names ``"sim"``, ``"refined"``, ``"data"`` (and ``"reweighted"``) are used for the
            gap fractions.
        x_test: ``(M, D)`` held-out data.  targets_test: ``{name: (M,)}``.
        seeds: regression seeds.  target_names: targets to fit (default: all of targets_test).

    Returns:
        ``{"per_seed": {set: {target: {"bias": [...], "resolution": [...]}}},
        "summary": {set: {target: {"bias": m, "bias_std": s, "resolution": m, "resolution_std": s}}},
        "gap_closed": {method: {target: {"bias": m, "bias_std": s, "resolution": m, "resolution_std": s}}}}``
        with the gap fractions computed seed by seed (same seed for a, b, c), plus
        ``"residuals_first_seed": {set: (M, K) array}`` (not JSON; for plots).
    """
    names = list(target_names or targets_test)
    t_test = np.stack([np.asarray(targets_test[k], np.float64) for k in names], axis=1)
    per_seed: dict = {s: {k: {"bias": [], "resolution": []} for k in names} for s in train_sets}
    residuals: dict = {}
    for seed in seeds:
        for set_name, (x, targets, w) in train_sets.items():
            t = np.stack([np.asarray(targets[k], np.float64) for k in names], axis=1)
            pred = train_regressor(x, t, w, seed=int(seed), **regressor_options)(x_test)
            res = pred - t_test
            if seed == seeds[0]:
                residuals[set_name] = res
            for j, k in enumerate(names):
                per_seed[set_name][k]["bias"].append(float(res[:, j].mean()))
                per_seed[set_name][k]["resolution"].append(float(res[:, j].std()))

    def ms(v):
        v = [x for x in v if x is not None]
        return (float(np.mean(v)), float(np.std(v))) if v else (None, None)

    summary = {s: {k: dict(zip(("bias", "bias_std"), ms(d["bias"])))
                   | dict(zip(("resolution", "resolution_std"), ms(d["resolution"])))
                   for k, d in per.items()} for s, per in per_seed.items()}
    closed: dict = {}
    if "sim" in train_sets and "data" in train_sets:
        for method in [m for m in train_sets if m not in ("sim", "data")]:
            closed[method] = {}
            for k in names:
                a, b, c = (per_seed[m][k] for m in ("sim", method, "data"))
                fb = [gap_closed(abs(x), abs(y), abs(z)) for x, y, z in zip(a["bias"], b["bias"], c["bias"])]
                fr = [gap_closed(x, y, z) for x, y, z in zip(a["resolution"], b["resolution"], c["resolution"])]
                closed[method][k] = dict(zip(("bias", "bias_std"), ms(fb))) | \
                    dict(zip(("resolution", "resolution_std"), ms(fr)))
    return {"per_seed": per_seed, "summary": summary, "gap_closed": closed, "targets": names,
            "seeds": [int(s) for s in seeds], "residuals_first_seed": residuals}


def two_sample_auc(x_a, x_b, seed: int = 0, model: str = "mlp", max_rows: int = 20000) -> dict:
    """Classifier two-sample AUC of ``x_a`` (label 1) vs ``x_b`` (label 0): ``{"auc", "auc_err"}``
    (:func:`hepgen.metrics.classifier.classifier_two_sample_test`, single-threaded)."""
    rng = np.random.default_rng(seed)
    x_a, x_b = np.asarray(x_a, np.float64), np.asarray(x_b, np.float64)
    if len(x_a) > max_rows:
        x_a = x_a[rng.choice(len(x_a), max_rows, replace=False)]
    if len(x_b) > max_rows:
        x_b = x_b[rng.choice(len(x_b), max_rows, replace=False)]
    r = classifier_two_sample_test(x_a, x_b, seed=seed, model=model, n_threads=1)
    return {"auc": r["auc"], "auc_err": r["auc_err"], "roc": r["roc"]}


def repeated_auc(x_a, x_b, seeds=(0,), model: str = "mlp") -> dict:
    """:func:`two_sample_auc` of ``x_a`` (label 1) vs ``x_b`` (label 0) once per classifier seed.

    Each seed draws its own balanced subsample, train/test split and classifier weights, so the
    spread over seeds is the test's own noise.  On the Geant4 shower demonstration (1200 held-out
    showers, 360 per class in the test) one refiner gave 0.508–0.633 over five seeds
    (docs/refine.md, eighth round), more than the Hanley–McNeil error (0.021) of one says;
    a difference of 0.02 between two runs needs several seeds to be seen.

    Returns ``{"auc": mean, "auc_std": population std over seeds, "auc_seeds": [per seed],
    "auc_err": the first seed's Hanley–McNeil error, "roc": the first seed's ROC}``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> r = repeated_auc(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 2, seeds=(0, 1))
        >>> len(r["auc_seeds"]), r["auc"] > 0.8, bool(abs(r["auc"] - np.mean(r["auc_seeds"])) < 1e-12)
        (2, True, True)
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("classifier seeds: expected at least one seed, found none")
    runs = [two_sample_auc(x_a, x_b, seed=s, model=model) for s in seeds]
    aucs = [float(r["auc"]) for r in runs]
    return {"auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "auc_seeds": aucs,
            "auc_err": runs[0]["auc_err"], "roc": runs[0]["roc"]}


_AUC_KEYS = ("auc", "auc_err", "auc_std", "auc_seeds")


def refinement_aucs(low: dict, high: dict, seeds=(0,)) -> tuple[dict, dict]:
    """Classifier two-sample AUCs against ``"data"`` (label 1) of every other sample (label 0).

    ``low`` and ``high`` map ``"data"``, and ``"sim"`` and/or ``"refined"``, to ``(N, ·)``
    arrays: the adapter's features with the event labels appended, and the adapter's summaries
    (the same columns in every sample).  Each comparison is a :func:`repeated_auc` over the
    classifier ``seeds``.

    Returns ``(aucs, rocs)``: ``aucs = {"auc_low_level": {"sim vs data" | "refined vs data":
    {"auc", "auc_err", "auc_std", "auc_seeds"}}, "auc_high_level": {...}}`` (JSON-ready) and
    ``rocs``, the low-level :func:`repeated_auc` results with their first seed's ROC curve.
    """
    others = [k for k in low if k != "data"]
    rocs = {f"{k} vs data": repeated_auc(low["data"], low[k], seeds) for k in others}
    hl = {f"{k} vs data": repeated_auc(high["data"], high[k], seeds) for k in others}
    aucs = {"auc_low_level": {k: {q: v[q] for q in _AUC_KEYS} for k, v in rocs.items()},
            "auc_high_level": {k: {q: v[q] for q in _AUC_KEYS} for k, v in hl.items()}}
    return aucs, rocs


def run_labels(checkpoints) -> list[str]:
    """Short names of checkpoint paths for plot legends: each path after the folder all share, without the
    file name when all files have the same name (one checkpoint: its folder's name).

    Example:
        >>> run_labels(["out/g33a/refiner_seed_0/refiner_main.pt", "out/g33b/refiner_seed_0/refiner_main.pt"])
        ['g33a/refiner_seed_0', 'g33b/refiner_seed_0']
        >>> run_labels(["runs/a.pt", "runs/b.pt"]), run_labels(["runs/x/refiner.pt"])
        (['a.pt', 'b.pt'], ['x'])
    """
    paths = [Path(c) for c in checkpoints]
    if len(paths) < 2:
        return [p.parent.name for p in paths]
    same_file = len({p.name for p in paths}) == 1
    paths = [p.parent if same_file else p for p in paths]
    n = 0  # number of leading path parts all share
    while all(len(p.parts) > n + 1 for p in paths) and len({p.parts[n] for p in paths}) == 1:
        n += 1
    return ["/".join(p.parts[n:]) for p in paths]


def _summary_matrix(summ: dict, names: list[str]) -> np.ndarray:
    """``(N, len(names))``: an adapter's summaries ``{name: (N,)}`` as columns in ``names`` order."""
    return np.stack([summ[n] for n in names], axis=1)


def holdout_aucs(checkpoints, sim, data, seeds=(0,), null: bool = False, refine_seed: int = 1,
                 sim_source: str = "holdout sim", data_source: str = "holdout data") -> dict:
    """Two-sample AUCs of trained refiners on samples they never saw (sizes of one's choosing).

    A demonstration holds out 30 % of its data for the classifier test, so the classifier
    trains on a few hundred events per class; on the Auger-like toy (900 held out) that
    classifier gave 0.54 where one trained on 5 500 events per class finds 0.69
    (docs/refine.md, ninth round).  Here every refiner in ``checkpoints`` (paths of
    :func:`hepgen.refine.refiner.train_refiner` checkpoints of one kind) refines ``sim``
    (noise seed ``refine_seed``; in memory, :func:`hepgen.refine.refiner.refine_data`) and
    :func:`refinement_aucs` compares it with ``data``, on the checkpoint's own features.
    Raw ``sim`` vs ``data`` is measured once (the first checkpoint's features).  ``null=True``
    splits ``data`` into halves A and B: A plays ``data`` and B vs A is the real-vs-real floor
    (0.5 for an unbiased test; its spread over seeds is the test's noise at that size).
    ``sim_source`` / ``data_source`` name the samples in error messages (e.g. their files).

    Returns ``{"kind", "sizes": {"sim", "data", "null"}, "seeds", "sim vs data": aucs,
    "refined vs data": {checkpoint: aucs}, "null": aucs or None, "over_checkpoints": {"auc_low_level"
    | "auc_high_level": [mean, std over checkpoints]}, "rocs": {label: ROC of the first seed}}``
    (``aucs``: :func:`refinement_aucs`' entries; ``rocs`` is not JSON).

    Example (an identity refiner: the refined events are sim's, so are the AUCs):
        >>> from hepgen.refine.refiner import ResidualRefiner, save_refiner
        >>> from hepgen.simulate.calorimeter import simulate_dataset
        >>> import tempfile, os
        >>> sim = simulate_dataset(150, seed=1, progress=False)
        >>> data = simulate_dataset(150, seed=2, progress=False)
        >>> state = get_adapter("showers").fit(sim)
        >>> ck = os.path.join(tempfile.mkdtemp(), "id.pt")
        >>> identity = ResidualRefiner(sim.showers.shape[1], len(state["labels"]), hidden=8, stochastic=False, clip_min=0.0)
        >>> save_refiner(ck, identity, kind="showers", preprocessing=state)
        >>> r = holdout_aucs([ck], sim, data, seeds=(0,))
        >>> r["refined vs data"][ck]["auc_high_level"]["auc"] == r["sim vs data"]["auc_high_level"]["auc"]
        True
    """
    checkpoints = [str(c) for c in checkpoints]
    if not checkpoints:
        raise ValueError("holdout AUCs: expected at least one refiner checkpoint, found none")
    seeds = tuple(int(s) for s in seeds)
    loaded = [load_refiner(c) for c in checkpoints]
    kind = loaded[0][1].get("kind")
    adapter = get_adapter(kind)
    check_pair(sim, data, kind, sim_source, data_source)
    for c, (_, payload) in zip(checkpoints, loaded):
        if payload.get("kind") != kind:
            raise ValueError(f"{c}: key 'kind': expected {kind!r} (the first checkpoint's), found {payload.get('kind')!r}")
        check_against_state(adapter, sim, payload["preprocessing"], sim_source)
    data_b = None
    if null:
        half = len(data) // 2
        data, data_b = data.subset(np.arange(half)), data.subset(np.arange(half, 2 * half))
    out = {"kind": kind, "sizes": {"sim": len(sim), "data": len(data), "null": 0 if data_b is None else len(data_b)},
           "seeds": list(seeds), "refined vs data": {}, "rocs": {}}
    # the summaries do not depend on a checkpoint's state: once per sample
    summ = {"data": adapter.summaries(data), "sim": adapter.summaries(sim)}
    names = sorted(summ["data"])
    high = {k: _summary_matrix(v, names) for k, v in summ.items()}

    def low_level(d, state):
        return np.hstack(adapter.to_arrays(d, state))

    labels = run_labels(checkpoints)
    for i, (c, (model, payload)) in enumerate(zip(checkpoints, loaded)):
        state = payload["preprocessing"]
        refined = refine_data(model, state, sim, seed=refine_seed)
        low = {"data": low_level(data, state), "refined": low_level(refined, state)}
        hi = {"data": high["data"], "refined": _summary_matrix(adapter.summaries(refined), names)}
        if i == 0:  # raw sim once, on the first checkpoint's features (data A's kept for the null)
            low["sim"], hi["sim"] = low_level(sim, state), high["sim"]
            data_low_first = low["data"]
        aucs, rocs = refinement_aucs(low, hi, seeds)
        if i == 0:
            out["sim vs data"] = {lev: aucs[lev]["sim vs data"] for lev in aucs}
            out["rocs"]["sim vs data"] = rocs["sim vs data"]
        out["refined vs data"][c] = {lev: aucs[lev]["refined vs data"] for lev in aucs}
        # numbered and named by what tells the paths apart (two runs' folders may share a name, refiner_seed_0)
        out["rocs"][f"refined #{i} ({labels[i]}) vs data"] = rocs["refined vs data"]
    out["null"] = None
    if data_b is not None:
        aucs, rocs = refinement_aucs({"data": data_low_first, "sim": low_level(data_b, loaded[0][1]["preprocessing"])},
                                     {"data": high["data"], "sim": _summary_matrix(adapter.summaries(data_b), names)},
                                     seeds)
        out["null"] = {lev: aucs[lev]["sim vs data"] for lev in aucs}
        out["rocs"]["data B vs data A (null)"] = rocs["sim vs data"]
    per = out["refined vs data"].values()
    out["over_checkpoints"] = {lev: [float(np.mean([a[lev]["auc"] for a in per])),
                                     float(np.std([a[lev]["auc"] for a in per]))]
                               for lev in ("auc_low_level", "auc_high_level")}
    return out


def separation_table(a: dict, b: dict, bins: int = 30) -> dict[str, float]:
    """Separation power of every shared feature ``{name: (N,)}`` (:func:`hepgen.metrics.distances.separation_power`)."""
    out = {}
    for k, va in a.items():
        if k in b:
            out[k] = float(separation_power(np.asarray(va, np.float64), np.asarray(b[k], np.float64), bins))
    return out


def weighted_separation_power(a, b, weights_a, bins: int = 30) -> float:
    """Separation power ``½ Σ (p − q)²/(p + q)`` with ``a``'s histogram weighted by ``weights_a``.

    Same formula and bins (:func:`hepgen.metrics.distances.binning_for`) as
    :func:`hepgen.metrics.distances.separation_power`, which takes no weights.

    >>> weighted_separation_power([0.5, 1.5], [0.5, 0.5], [1.0, 0.0], bins=2)
    0.0
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    edges = binning_for(a, b, bins)
    p = np.histogram(np.clip(a, edges[0], edges[-1]), edges, weights=np.asarray(weights_a, np.float64))[0]
    q = np.histogram(np.clip(b, edges[0], edges[-1]), edges)[0].astype(np.float64)
    p, q = p / max(p.sum(), 1e-300), q / max(q.sum(), 1e-300)
    den = p + q
    return float(0.5 * np.sum(np.divide((p - q) ** 2, den, out=np.zeros_like(den), where=den > 0)))


def write_html_report(path, title: str, sections: list[tuple[str, str]], figures: list[tuple[str, Figure]]) -> None:
    """One self-contained HTML page: ``sections`` = [(heading, html body)], figures embedded as base64 PNG."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             ("<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f2f2f2}img{max-width:100%}</style></head><body>"),
             f"<h1>{html.escape(title)}</h1>"]
    for head, body in sections:
        parts.append(f"<h2>{html.escape(head)}</h2>{body}")
    for caption, fig in figures:
        parts.append(f"<h3>{html.escape(caption)}</h3><img src='data:image/png;base64,{figure_png_base64(fig, dpi=90)}'>")
    parts.append("</body></html>")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("\n".join(parts))


def table_html(rows: list[list], header: list[str]) -> str:
    """A small HTML table (floats with 4 significant digits, ``None`` as –)."""
    def fmt(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else "–"
        return html.escape(str(v))

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


def dump_json(path, obj) -> None:
    """Write ``obj`` as strict JSON (NaN/Inf → null), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(json_safe(obj), f, indent=1, allow_nan=False)


def _hist_figure(summ: dict, names: list[str], weights=None) -> Figure:
    """Before/after histograms: sim, refined, held-out data (and DCTR-weighted sim)."""
    n = len(names)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        allv = np.concatenate([summ[k][name] for k in ("sim", "refined", "data")])
        lo, hi = np.percentile(allv, [0.5, 99.5])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 41)
        for key, style in (("sim", {"color": "tab:blue", "histtype": "step", "lw": 1.5}),
                           ("refined", {"color": "tab:red", "histtype": "step", "lw": 1.5}),
                           ("data", {"color": "k", "histtype": "stepfilled", "alpha": 0.2})):
            ax.hist(np.clip(summ[key][name], lo, hi), edges, density=True, label=key, **style)
        if weights is not None:
            ax.hist(np.clip(summ["sim"][name], lo, hi), edges, density=True, weights=weights, histtype="step",
                    ls="--", color="tab:green", label="sim, DCTR-weighted")
        ax.set_xlabel(name)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def roc_figure(rocs: dict) -> Figure:
    """ROC curves of :func:`repeated_auc` results ``{label: result}`` (each its first seed's curve)."""
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    for label, r in rocs.items():
        # the curve is the first classifier seed's; its AUC is the first of auc_seeds, the mean beside it
        first = r.get("auc_seeds", [r["auc"]])[0]
        ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], label=f"{label}: AUC {first:.3f} (mean over seeds {r['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _residual_figure(residuals: dict, target: str, j: int) -> Figure:
    fig = Figure(figsize=(5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    allv = np.concatenate([r[:, j] for r in residuals.values()])
    lo, hi = np.percentile(allv, [0.5, 99.5])
    edges = np.linspace(lo, hi, 50)
    for name, r in residuals.items():
        ax.hist(np.clip(r[:, j], lo, hi), edges, histtype="step", lw=1.4,
                label=f"trained on {name}: bias {r[:, j].mean():+.3g}, res {r[:, j].std():.3g}")
    ax.set_xlabel(f"{target}: prediction − truth (held-out data)")
    ax.legend(fontsize=7)
    return fig


def _history_figure(histories: dict) -> Figure:
    fig = Figure(figsize=(9, 3.2))
    for i, key in enumerate(("critic_w", "closeness")):
        ax = fig.add_subplot(1, 2, i + 1)
        for label, h in histories.items():
            ax.plot(h["epoch"], h[key], label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel({"critic_w": "critic Wasserstein estimate", "closeness": "mean |x' − x| / s"}[key])
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def demonstrate(kind: str, sim, data, out_dir, config=None, reg_seeds=(0, 1, 2), test_fraction: float = 0.3,
                closeness_scan=(), hist_features=None, split_seed: int = 0, progress: bool = True,
                notes: list[str] | None = None, title: str = "Refinement", adapter_options: dict | None = None,
                fresh=None, classifier_seeds=(0,)) -> dict:
    """The whole demonstration on in-memory sim and data of one kind; writes metrics.json and report.html.

    Steps: split data into a refiner/regression training part and a held-out test part;
    train the refiner on (all sim, data train) and refine all sim; classifier AUCs (sim vs
    held-out data, refined vs held-out data) on the adapter's features with the labels
    appended; per-feature separation power of the adapter's summaries; DCTR weights of sim
    towards data train (in the summaries + labels); the regression study (sim, refined, DCTR-weighted sim, data train →
    held-out data); optionally the same with other closeness weights (one regression seed).

    ``adapter_options``: options of the kind's adapter state (:func:`hepgen.refine.options.set_adapter_options`;
    traces: ``critic_min_vem``, ``noise_vem``, ``trigger_vem``, ``fill_silent``), set on this run's
    state only (the registered adapter is not changed).

    ``classifier_seeds``: the two-sample AUCs are means over these classifier seeds
    (:func:`repeated_auc`; the metrics keep each seed's AUC and the spread).

    ``fresh``: for a source that can generate events (a toy), ``fresh(epoch) -> (sim, data)``
    new samples of the kind for refiner epoch ``epoch >= 1`` (``train_refiner``'s ``refresh``);
    they train the refiner only — the regressions, classifiers and held-out data use the
    samples above, so ``fresh`` must draw events independent of them.

    Returns the metrics dict (also written to ``out_dir/metrics.json``, strict JSON).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = config or RefinerConfig()
    adapter = get_adapter(kind)
    check_pair(sim, data, kind)
    rng = np.random.default_rng(split_seed)
    perm = rng.permutation(len(data))
    n_test = round(test_fraction * len(data))
    data_test, data_train = data.subset(np.sort(perm[:n_test])), data.subset(np.sort(perm[n_test:]))
    state = set_adapter_options(adapter.fit(sim), adapter_options, sim, data_train)
    xs, ys = adapter.to_arrays(sim, state)
    xd, yd = adapter.to_arrays(data_train, state)
    xt, yt = adapter.to_arrays(data_test, state)
    keep = adapter.keep_mask(sim, state)

    def refresh(epoch):
        f_sim, f_data = fresh(epoch)
        check_pair(f_sim, f_data, kind)
        return (*adapter.to_arrays(f_sim, state), *adapter.to_arrays(f_data, state), adapter.keep_mask(f_sim, state))

    def run_refiner(cfg, tag):
        model, hist = train_refiner(xs, ys, xd, yd, cfg, checkpoint=out_dir / f"refiner_{tag}.pt", progress=progress,
                                    keep_sim=keep, clip_min=adapter.clip_min,
                                    group_size=adapter.group_size(state),
                                    architecture=adapter.architecture(state), payload_extra={"kind": kind, "preprocessing": state,
                                                                  "meta": {"demonstration": title}},
                                    sum_groups=sum_groups(adapter, sim), refresh=None if fresh is None else refresh,
                                    azimuthal_grid=adapter.azimuthal_grid(state))
        xr = refine_arrays(model, xs, ys, seed=cfg.seed + 1, keep=keep)
        refined = adapter.from_arrays(xr, sim, state, attrs={"refined": tag})
        xr_phys, _ = adapter.to_arrays(refined, state)  # after the physical clipping of the inverse map
        return hist, refined, xr_phys

    t0 = time.perf_counter()
    hist, refined, xr = run_refiner(config, "main")
    t_refiner = time.perf_counter() - t0
    metrics: dict = {"kind": kind, "title": title, "sizes": {"sim": len(sim), "data_train": len(data_train),
                                                             "data_test": len(data_test), "n_features": xs.shape[1]},
                     "refiner_config": {k: v for k, v in vars(config).items()}, "refiner_seconds": t_refiner,
                     "history": hist, "notes": notes or []}
    # classifier two-sample tests on low-level features + labels, and on the summaries
    summ = {"sim": adapter.summaries(sim), "refined": adapter.summaries(refined), "data": adapter.summaries(data_test)}
    names = sorted(summ["sim"])
    hl = {k: _summary_matrix(summ[k], names) for k in summ}
    cs = tuple(classifier_seeds)
    aucs, rocs = refinement_aucs({"data": np.hstack([xt, yt]), "sim": np.hstack([xs, ys]),
                                  "refined": np.hstack([xr, ys])}, hl, cs)
    metrics.update(aucs)
    metrics["separation_power"] = {"sim_vs_data": separation_table(summ["sim"], summ["data"]),
                                   "refined_vs_data": separation_table(summ["refined"], summ["data"])}
    # DCTR
    t0 = time.perf_counter()
    # DCTR in the summaries + labels (the observables an analysis would reweight in)
    summ_train = adapter.summaries(data_train)
    dctr = dctr_weights(np.hstack([hl["sim"], ys]), np.hstack([_summary_matrix(summ_train, names), yd]),
                        seed=0, n_folds=3)
    w = dctr["weights"]
    metrics["dctr"] = {"ess": dctr["ess"], "ess_fraction": dctr["ess_fraction"], "n_clipped": dctr["n_clipped"],
                       "cap": dctr["cap"], "seconds": time.perf_counter() - t0,
                       "separation_power_weighted": {
                           n: weighted_separation_power(summ["sim"][n], summ["data"][n], w) for n in names}}
    # regression proof
    ts, tt, td = adapter.targets(sim), adapter.targets(data_test), adapter.targets(data_train)
    rs, rr = adapter.regression_inputs(sim, state), adapter.regression_inputs(refined, state)
    rd, rt = adapter.regression_inputs(data_train, state), adapter.regression_inputs(data_test, state)
    sets = {"sim": (rs, ts, None), "refined": (rr, ts, None), "reweighted": (rs, ts, w), "data": (rd, td, None)}
    reg = regression_study(sets, rt, tt, seeds=reg_seeds)
    residuals = reg.pop("residuals_first_seed")
    metrics["regression"] = reg
    # closeness scan
    scan = {}
    histories = {f"closeness {config.closeness:g}": hist}
    for lam in closeness_scan:
        cfg = RefinerConfig(**{**vars(config), "closeness": float(lam)})
        h2, ref2, xr2 = run_refiner(cfg, f"closeness_{lam:g}")
        histories[f"closeness {lam:g}"] = h2
        r2 = regression_study({"sim": sets["sim"], "refined": (adapter.regression_inputs(ref2, state), ts, None),
                               "data": sets["data"]}, rt, tt, seeds=reg_seeds[:1])
        r2.pop("residuals_first_seed")
        scan[f"{lam:g}"] = {"auc_low_level": repeated_auc(np.hstack([xt, yt]), np.hstack([xr2, ys]), cs)["auc"],
                            "mean_abs_change": float(np.mean(np.abs(xr2 - xs))),
                            "gap_closed": r2["gap_closed"]["refined"]}
    scan[f"{config.closeness:g} (main)"] = {"auc_low_level": metrics["auc_low_level"]["refined vs data"]["auc"],
                                            "mean_abs_change": float(np.mean(np.abs(xr - xs))),
                                            "gap_closed": reg["gap_closed"]["refined"]}
    metrics["closeness_scan"] = scan
    dump_json(out_dir / "metrics.json", metrics)

    # report
    targets = reg["targets"]
    rows = []
    for set_name, per in reg["summary"].items():
        for t in targets:
            s = per[t]
            rows.append([set_name, t, s["bias"], s["bias_std"], s["resolution"], s["resolution_std"]])
    gap_rows = [[m, t, g[t]["bias"], g[t]["bias_std"], g[t]["resolution"], g[t]["resolution_std"]]
                for m, g in reg["gap_closed"].items() for t in targets]
    sep_rows = [[n, metrics["separation_power"]["sim_vs_data"][n], metrics["separation_power"]["refined_vs_data"][n]]
                for n in names]
    auc_rows = [[k, metrics["auc_low_level"][k]["auc"], metrics["auc_low_level"][k]["auc_std"],
                 metrics["auc_low_level"][k]["auc_err"], metrics["auc_high_level"][k]["auc"],
                 metrics["auc_high_level"][k]["auc_std"]] for k in rocs]
    scan_rows = [[k, v["auc_low_level"], v["mean_abs_change"]] + [v["gap_closed"][t][q] for t in targets[:1]
                                                                  for q in ("bias", "resolution")]
                 for k, v in scan.items()]
    size = metrics["sizes"]
    sections = [
        ("Setup", "<p>" + "<br>".join(html.escape(n) for n in (notes or [])) + "</p>" +
         f"<p>kind {kind}; sim {size['sim']} events, data {size['data_train']} for training + {size['data_test']} "
         f"held out; D = {size['n_features']} features; refiner {config.epochs} epochs "
         f"({t_refiner:.0f} s on one CPU thread); regression seeds {list(reg_seeds)}.</p>"),
        (f"Classifier two-sample AUC against held-out data (mean over classifier seeds {list(cs)})",
         table_html(auc_rows, ["sample", "AUC (low-level + labels)", "± std over seeds", "± (Hanley–McNeil, one seed)",
                               "AUC (summaries)", "± std over seeds"])),
        ("Regression on held-out data (mean ± std over seeds)",
         table_html(rows, ["trained on", "target", "bias", "±", "resolution", "±"])),
        ("Fraction of the sim→data gap closed",
         table_html(gap_rows, ["method", "target", "bias gap closed", "±", "resolution gap closed", "±"])),
        ("DCTR reweighting", (f"<p>ESS {dctr['ess']:.0f} of {len(sim)} ({100 * dctr['ess_fraction']:.1f} %), "
         f"{dctr['n_clipped']} weights clipped at {dctr['cap']:g}× the mean.</p>")),
        ("Per-feature separation power against held-out data",
         table_html(sep_rows, ["feature", "sim", "refined"])),
        ("Closeness weight", table_html(scan_rows, ["λ_close", "AUC refined vs data", "mean |x' − x|",
                                                    f"{targets[0]} bias gap closed", "resolution gap closed"])),
    ]
    show = hist_features or names[:6]
    figures = [("Summaries: sim, refined, held-out data, DCTR-weighted sim", _hist_figure(summ, show, w)),
               ("ROC curves (low-level features + labels)", roc_figure(rocs)),
               ("Refiner training", _history_figure(histories))]
    figures += [(f"Regression residuals, {t} (seed {reg_seeds[0]})", _residual_figure(residuals, t, j))
                for j, t in enumerate(targets)]
    write_html_report(out_dir / "report.html", title, sections, figures)
    return metrics
