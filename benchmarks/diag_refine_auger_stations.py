"""Diagnostic of issue #17 on the Auger-like toy: where do refined traces still differ from data, station by station?

The two-sample AUC of ``bench_refine_auger.py`` says *that* refined sim and data differ; this
script says *where*.  For fresh toy events (sim ``SeedSequence([11, 777])``, data
``SeedSequence([12, 777])``, independent of the benchmark's samples) it refines sim with a
refiner checkpoint (noise seed 3) and compares every triggered station of sim and refined sim
with those of data, in bins of the station integral I (3–10, 10–30, 30–100, ≥ 100 VEM):

* separation power (:func:`hepgen.metrics.separation_power`, 30 bins) and means of the
  per-station quantities of :func:`station_features` — peak/I, rise time t10→t50 and t90 (bins),
  share of the signal in the first 4 bins, rms of the last 10 bins (noise only in both samples),
  Σ|second difference|/I and the number of rises > 0.3 VEM between bins (spikiness);
* a station-level classifier (sklearn ``HistGradientBoostingClassifier``, 30 % of the *events* held
  out: stations of one event share its labels) on
  feature subsets: all, shape only, size and position only (log10 I, distance to the core
  estimate, labels), the tail rms alone;
* per event: stations per event, mean log10(S_tot / E) in bins of sec θ, mean log10(I/E) in bins
  of the distance to the core estimate (grid steps).

And on *paired* events (``--paired N``, default 1500): sim and data simulated from one seed in a single
batch share every shower's energy, direction and core (the toy draws them first), so data say what
the refiner should have done to each sim event: per bin of sec θ, the gain of the event's total
signal (Σ S_x / Σ S_sim over the bin's events, x = data or refined) and the stations turned on
(triggered in x, silent in sim) and off (the reverse) per event.

Usage (≈ 20 s on one thread):
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diag_refine_auger_stations.py RUN/refiner_main.pt [-n 1000]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

from hepgen.metrics import separation_power
from hepgen.refine.refiner import load_refiner, refine_data
from hepgen.refine.stations import core_distance
from hepgen.simulate.auger_toy import simulate_auger

#: station integral bins, VEM
I_BINS = (3.0, 10.0, 30.0, 100.0, np.inf)
SEC_BINS = (1.0, 1.2, 1.4, 1.7, 2.0)
R_BINS = (0.0, 1.0, 2.0, 3.0, np.inf)
SHAPE = ("peak_over_I", "rise_10_50", "t90", "early4", "abs_d2_over_I", "n_jumps")
SUBSETS = {"all": None, "shape": ("log10_I",) + SHAPE, "size_position": ("log10_I", "r_core", "sec", "log10E"),
           "tail": ("log10_I", "tail_rms")}


def station_features(traces: np.ndarray, energy: np.ndarray, zenith: np.ndarray) -> dict[str, np.ndarray]:
    """Per triggered station (any non-zero bin) of ``traces`` ``(N, n_x, n_y, n_t)`` VEM, with the
    events' ``energy`` ``(N, 1)`` EeV and ``zenith`` ``(N, 1)`` rad: a dict of ``(M,)`` arrays
    (module docstring; ``r_core`` in grid steps from the signal-weighted centroid of the
    triggered stations; ``event`` the event index).

    Example (one 2 × 1 event: a station with 1, 3, 0, 0 VEM and a silent one):
        >>> t = np.zeros((1, 2, 1, 4)); t[0, 0, 0] = [1.0, 3.0, 0.0, 0.0]
        >>> f = station_features(t, np.ones((1, 1)), np.zeros((1, 1)))
        >>> float(f["peak_over_I"][0]), float(f["early4"][0]), int(f["n_jumps"][0]), float(f["rise_10_50"][0])
        (0.75, 1.0, 1, 1.0)
    """
    n, n_t = traces.shape[0], traces.shape[-1]
    s = np.asarray(traces, np.float64).reshape(n, -1, n_t)
    tot = s.sum(-1)
    live = np.any(s != 0, axis=-1)
    ev, st = np.nonzero(live)
    x, i = s[ev, st], tot[ev, st]
    c = np.cumsum(x, -1) / np.maximum(i, 1e-9)[:, None]
    t10, t50, t90 = (c < 0.1).sum(1), (c < 0.5).sum(1), (c < 0.9).sum(1)
    # the refiner's core estimate (signal-weighted centroid of the triggered stations), in grid steps
    r_core = 4.0 * core_distance(torch.from_numpy(tot * live), traces.shape[1:3]).numpy()
    return {"log10_I": np.log10(np.maximum(i, 1e-9)), "peak_over_I": x.max(1) / i,
            "rise_10_50": (t50 - t10).astype(np.float64), "t90": t90.astype(np.float64),
            "early4": x[:, :4].sum(1) / i, "tail_rms": x[:, -10:].std(1),
            "abs_d2_over_I": np.abs(np.diff(x, 2, axis=-1)).sum(-1) / np.maximum(i, 1.0),
            "n_jumps": (np.diff(x, axis=-1) > 0.3).sum(-1).astype(np.float64),
            "r_core": r_core[ev, st], "sec": 1.0 / np.cos(zenith[ev, 0]),
            "log10E": np.log10(energy[ev, 0]), "event": ev}


def compare(f: dict, ref: dict) -> dict:
    """Per bin of I: separation power and means of each quantity of ``f`` against ``ref`` (data),
    and the station-level classifier AUC per feature subset."""
    out = {}
    for lo, hi in zip(I_BINS[:-1], I_BINS[1:]):
        ma = (10 ** f["log10_I"] >= lo) & (10 ** f["log10_I"] < hi)
        mb = (10 ** ref["log10_I"] >= lo) & (10 ** ref["log10_I"] < hi)
        if not (ma.any() and mb.any()):
            out[f"I {lo:g}-{hi:g} VEM"] = None  # no station of one sample in this bin
            continue
        out[f"I {lo:g}-{hi:g} VEM"] = {
            q: {"sep": round(float(separation_power(f[q][ma], ref[q][mb], bins=30)), 3),
                "mean": round(float(f[q][ma].mean()), 4), "data": round(float(ref[q][mb].mean()), 4)}
            for q in SHAPE + ("tail_rms", "r_core")}
    for name, cols in SUBSETS.items():
        cols = cols or tuple(k for k in ref if k != "event")
        xa, xb = np.stack([f[c] for c in cols], 1), np.stack([ref[c] for c in cols], 1)
        x, y = np.vstack([xa, xb]), np.r_[np.zeros(len(xa)), np.ones(len(xb))]
        # split by event: the stations of one event share its labels, so a split by station would
        # let the classifier recognise test stations by their event's exact energy and zenith
        groups = np.r_[f["event"], ref["event"] + f["event"].max() + 1]
        tr, te = next(GroupShuffleSplit(n_splits=1, test_size=0.3, random_state=0).split(x, y, groups))
        xtr, xte, ytr, yte = x[tr], x[te], y[tr], y[te]
        clf = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(xtr, ytr)
        out[f"station_auc_{name}"] = round(float(roc_auc_score(yte, clf.predict_proba(xte)[:, 1])), 3)
    return out


def _mean(a: np.ndarray) -> float | None:
    return round(float(a.mean()), 3) if a.size else None


def event_table(d, f) -> dict:
    """Stations per event, mean log10(S_tot/E) per bin of sec θ, mean log10(I/E) per bin of r_core
    (``None`` for an empty bin)."""
    sec = 1.0 / np.cos(d.zenith[:, 0])
    k = np.digitize(sec, SEC_BINS) - 1
    ratio = np.log10(np.maximum(d.traces.sum(axis=(1, 2, 3)), 1e-3) / d.energy[:, 0])
    kr = np.digitize(f["r_core"], R_BINS) - 1
    lat = f["log10_I"] - f["log10E"]
    return {"stations_per_event": round(len(f["log10_I"]) / d.traces.shape[0], 3),
            "log10_stot_over_e_by_sec": [_mean(ratio[k == j]) for j in range(len(SEC_BINS) - 1)],
            "log10_i_over_e_by_r_core": [_mean(lat[kr == j]) for j in range(len(R_BINS) - 1)]}


def paired_table(sim, others: dict) -> dict:
    """Per bin of sec θ, for each sample of ``others`` (name → data object with the events of
    ``sim``, e.g. data of the same showers, refined sim): total gain Σ S_x / Σ S_sim, stations
    turned on and off per event against ``sim``.

    Example (two one-event samples, 1 × 2 stations: sim 4 VEM and silent; x 6 VEM and 3 VEM):
        >>> from types import SimpleNamespace as N
        >>> z = np.zeros((1, 1))
        >>> sim = N(traces=np.array([[[[4.0], [0.0]]]]), zenith=z)
        >>> x = N(traces=np.array([[[[6.0], [3.0]]]]), zenith=z)
        >>> paired_table(sim, {"x": x})["x"][0]
        {'total_gain': 2.25, 'on_per_event': 1.0, 'off_per_event': 0.0}
    """
    sec = 1.0 / np.cos(sim.zenith[:, 0])
    k = np.digitize(sec, SEC_BINS) - 1
    i_sim = sim.traces.sum(-1).reshape(len(sec), -1)
    out = {}
    for name, d in others.items():
        i_x = d.traces.sum(-1).reshape(len(sec), -1)
        rows = []
        for j in range(len(SEC_BINS) - 1):
            m = k == j
            if not m.any():
                rows.append(None)
                continue
            on, off = (i_x[m] != 0) & (i_sim[m] == 0), (i_x[m] == 0) & (i_sim[m] != 0)
            rows.append({"total_gain": round(float(i_x[m].sum() / max(i_sim[m].sum(), 1e-9)), 3),
                         "on_per_event": round(float(on.sum(1).mean()), 3),
                         "off_per_event": round(float(off.sum(1).mean()), 3)})
        out[name] = rows
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("-n", type=int, default=1000, help="fresh toy events per sample")
    p.add_argument("--paired", type=int, default=1500, help="paired events (same showers in sim and data; 0: none)")
    a = p.parse_args()
    torch.set_num_threads(1)
    model, payload = load_refiner(a.checkpoint)

    def rng(base):
        return np.random.default_rng(np.random.SeedSequence([base, 777]))

    sim, data = simulate_auger(a.n, mode="sim", seed=rng(11)), simulate_auger(a.n, mode="data", seed=rng(12))
    refined = refine_data(model, payload["preprocessing"], sim, seed=3)
    feats = {k: station_features(d.traces, d.energy, d.zenith) for k, d in
             (("sim", sim), ("data", data), ("refined", refined))}
    out = {"events": {k: event_table(d, feats[k]) for k, d in (("sim", sim), ("data", data), ("refined", refined))},
           "sim_vs_data": compare(feats["sim"], feats["data"]),
           "refined_vs_data": compare(feats["refined"], feats["data"])}
    if a.paired > 0:
        # one batch each from the same seed: the same showers (energy, direction, core) in both modes
        sim_p = simulate_auger(a.paired, mode="sim", seed=rng(13), batch_size=a.paired)
        data_p = simulate_auger(a.paired, mode="data", seed=rng(13), batch_size=a.paired)
        out["paired_by_sec"] = {"sec_bins": list(SEC_BINS), **paired_table(sim_p, {
            "data": data_p, "refined": refine_data(model, payload["preprocessing"], sim_p, seed=3)})}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
