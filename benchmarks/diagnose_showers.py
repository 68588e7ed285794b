"""Where do generated showers differ from the reference, energy by energy?  Numbers and a plot for issue 14.

Compares reference showers (``TEST``) with generated ones (``GEN``, e.g. sampled at the test
showers' incident energies) in bins of the incident energy E_inc (log-spaced, ``--bins``):

* the shower-to-shower **spread** of each layer's radial centre of energy ``EC_r`` and radial
  width ``width_r`` (:func:`hepgen.metrics.observables.high_level_features`): standard deviation
  of the generated over that of the reference, per layer and bin (:func:`spread_ratios`);
  1 where the model is right, below 1 where its showers scatter too little;
* the **lumpiness**: the share of a layer's energy in its brightest cell
  (:func:`largest_share`), its 90th percentile per layer and bin, both samples;
* the **correlations given the energy**: per bin, the Fisher-z test of the normal-score
  correlation matrices of log10 E_layer, EC_r and width_r (:func:`binned_correlations`), its
  χ²/ndof beside that of two random halves of the reference (the floor), and the pairs with the
  largest |z|;
* with ``--classifier-seeds K`` (K > 0): hepgen's high-level classifier per bin
  (:func:`binned_auc`), mean and standard deviation over seeds 1..K — where the showers are told apart;
* with ``--layer-seeds K`` (K > 0): hepgen's classifier on **one layer's** high-level features (with
  E_inc) over all energies, per layer (:func:`layer_auc`), mean and sd over seeds 1..K.  With every
  feature at once the classifier is starved at 50k showers per side: on the lone-cell demo model the
  first layer's features alone separate at 0.545 against 0.533 for all of them (docs/models.md,
  "Lone cells"), which the whole-shower AUC hides;
* with ``--checkpoint`` (a flow checkpoint of the ``caloflow`` family, the one that made GEN):
  the reference showers **encoded** through the flow (preprocessing, then ``model.transform``),
  which gives standard normal latents where the flow fits.  Per bin: the rate of shape latents
  beyond ``|z| = 4`` over a normal's (:func:`tail_rate`), and the variance of the energy latents;
  with a preprocessor that keeps lit-cell counts, whether the **shape flow agrees with the energy
  flow's count** (:func:`layer_count_agreement`: how often its shares put another number of cells
  above the threshold than the k the inverse keeps);
* with ``--true-energies TRAIN.h5`` (and ``--checkpoint``): the shape flow sampled on the **true**
  layer energies and counts of those showers (:func:`true_energy_showers`), against the test
  showers, all features and layer by layer, beside those showers themselves (the floor): how much of
  the AUC the shape flow makes alone.

Writes ``OUT/summary.json`` (every number printed) and ``OUT/spread_ratios.png`` (the ratios per
layer against E_inc), and prints the tables.  Usage:

    python benchmarks/diagnose_showers.py test.h5 generated.h5 --checkpoint run/best.pt -o diag/

On the 6-bin demo model (docs/models.md, "Six spline bins"): given the energy the correlations
are off below 2.5 GeV (χ²/ndof 8.2 against the floor's 1.29), and the classifier tells that bin
apart at 0.561 (10k per side) against 0.519-0.526 in the others.

On the lone-cell demo model (docs/models.md, "Where the rest sits"): the shape flow on the true
energies and counts scores 0.528 on all features against 0.533 for the model's own showers and 0.500
for the training showers themselves (the first layer alone 0.538), and its shares put another number
of cells above the threshold than the count in 72-83 % of the layers with two or more lit cells.

What it showed on the demo's model (docs/models.md, "Where the radial centres go wrong"): below
2.5 GeV the radial centres of layers 2-5 scatter 9-13 % too little, the lumpy showers (one cell
holding most of a layer's energy) are missing, and the encoded real showers have 3x a normal's
rate of latents beyond |z| = 4.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from hepgen.data.formats import read_showers
from hepgen.domains.showers import ShowerGenerator, layer_sizes
from hepgen.domains.showers.evaluate import normal_scores
from hepgen.domains.showers.preprocessing import keep_largest
from hepgen.metrics.classifier import MIN_PER_CLASS, classifier_two_sample_test, high_level_inputs
from hepgen.metrics.correlation import fisher_z_test
from hepgen.metrics.observables import high_level_features

__all__ = ["binned_auc", "binned_correlations", "correlation_inputs", "count_agreement", "encode", "largest_share",
           "layer_auc", "layer_count_agreement", "spread_ratios", "tail_rate", "true_energy_showers"]


def _layers(features: dict[str, np.ndarray]) -> list[int]:
    """The layer indices of :func:`high_level_features` keys (``E_layer_<l>``), sorted."""
    return sorted(int(k.rsplit("_", 1)[1]) for k in features if k.startswith("E_layer_"))


def _seed_aucs(ref: np.ndarray, gen: np.ndarray, seeds, threads: int | None) -> dict:
    """``{"aucs", "mean", "sd"}``: the classifier's AUC for each seed, their mean and sd (ddof 1; 0 for one seed)."""
    aucs = [float(classifier_two_sample_test(ref, gen, seed=s, n_threads=threads)["auc"]) for s in seeds]
    return {"aucs": aucs, "mean": float(np.mean(aucs)), "sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0}


def _binned(ref: np.ndarray, gen: np.ndarray, e_ref: np.ndarray, e_gen: np.ndarray, edges: np.ndarray):
    """Per bin ``[edges[i], edges[i+1])`` of E_inc: the rows of ``ref`` and of ``gen`` in it, as ``(r, g)``."""
    for lo, hi in zip(edges[:-1], edges[1:]):
        yield ref[(e_ref >= lo) & (e_ref < hi)], gen[(e_gen >= lo) & (e_gen < hi)]


def spread_ratios(ref: np.ndarray, gen: np.ndarray, e_ref: np.ndarray, e_gen: np.ndarray,
                  edges: np.ndarray) -> np.ndarray:
    """Standard deviation of ``gen`` over that of ``ref`` in bins of the incident energy.

    Arguments:
        ref, gen: ``(N_r,)``, ``(N_g,)`` one observable per shower; e_ref, e_gen: their incident
            energies (MeV); edges: ``(B + 1,)`` bin edges (MeV), a shower in ``[edges[i], edges[i+1])``.

    Returns:
        ``(B,)`` ratios (population standard deviations, ``ddof = 0``); NaN where a bin holds
        fewer than two showers of either sample or the reference does not vary.

    Example (worked by hand: in the first bin the reference is 0, 2 (sd 1) and the generated
    0, 4 (sd 2); in the second 1, 3 (sd 1) against 2, 2 (sd 0)):
        >>> e = np.array([1.0, 1.5, 10.0, 15.0])
        >>> spread_ratios(np.array([0, 2, 1, 3.]), np.array([0, 4, 2, 2.]), e, e, np.array([1, 5, 20.]))
        array([2., 0.])
    """
    out = np.full(len(edges) - 1, np.nan)
    for i, (r, g) in enumerate(_binned(ref, gen, e_ref, e_gen, edges)):
        if len(r) > 1 and len(g) > 1 and r.std() > 0:
            out[i] = g.std() / r.std()
    return out


def correlation_inputs(features: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """``(names, (N, 3 L))``: log10(E_layer / MeV + 1e-3), EC_r and width_r of every layer, the
    features whose correlations the binned Fisher-z test compares.

    Example:
        >>> names, x = correlation_inputs({"E_layer_0": np.array([999.999]), "EC_r_0": np.array([2.0]),
        ...                                "width_r_0": np.array([1.5]), "EC_eta_0": np.array([0.0])})
        >>> names, x.round(6).tolist()
        (['E_layer_0', 'EC_r_0', 'width_r_0'], [[3.0, 2.0, 1.5]])
    """
    names = [f"{key}_{l}" for key in ("E_layer", "EC_r", "width_r") for l in _layers(features)]
    cols = [np.log10(features[n] + 1e-3) if n.startswith("E_layer") else features[n] for n in names]
    return names, np.stack([np.asarray(c, dtype=np.float64).reshape(-1) for c in cols], axis=1)


def binned_correlations(ref: np.ndarray, gen: np.ndarray, e_ref: np.ndarray, e_gen: np.ndarray, edges: np.ndarray,
                        names: list[str], top: int = 3, seed: int = 0) -> list[dict | None]:
    """Per bin of E_inc: the Fisher-z test of the two samples' normal-score correlation matrices.

    Arguments:
        ref, gen: ``(N_r, k)``, ``(N_g, k)`` features (:func:`correlation_inputs`); e_ref, e_gen:
            incident energies (MeV); edges: ``(B + 1,)`` bin edges (MeV); names: the k column names;
            top: pairs with the largest |z| listed per bin; seed: the random halves of the floor.

    Returns:
        per bin ``{"n_ref", "n_gen", "chi2_per_ndof", "floor_chi2_per_ndof", "top": [[name_i, name_j,
        r_ref, r_gen, z], ...]}`` (:func:`hepgen.metrics.correlation.fisher_z_test` on
        :func:`hepgen.domains.showers.evaluate.normal_scores` of the bin's rows; the floor is the
        same test between two random halves of the bin's reference rows; z > 0: the generated
        correlation lies below the reference's), or None where a sample has fewer than 8 rows.
    """
    rng = np.random.default_rng(seed)
    out: list[dict | None] = []
    iu = np.triu_indices(len(names), 1)
    for r, g in _binned(ref, gen, e_ref, e_gen, edges):
        if min(len(r), len(g)) < 8:
            out.append(None)
            continue
        res = fisher_z_test(*normal_scores(r, g))
        perm = rng.permutation(len(r))
        half = fisher_z_test(*normal_scores(r[perm[: len(r) // 2]], r[perm[len(r) // 2:]]))
        z = np.nan_to_num(res["z"][iu])
        pairs = [[names[iu[0][o]], names[iu[1][o]], float(res["corr_a"][iu[0][o], iu[1][o]]),
                  float(res["corr_b"][iu[0][o], iu[1][o]]), float(z[o])] for o in np.argsort(-np.abs(z))[:top]]
        out.append({"n_ref": int(len(r)), "n_gen": int(len(g)), "chi2_per_ndof": res["chi2"] / max(res["ndof"], 1),
                    "floor_chi2_per_ndof": half["chi2"] / max(half["ndof"], 1), "top": pairs})
    return out


def binned_auc(ref: np.ndarray, gen: np.ndarray, e_ref: np.ndarray, e_gen: np.ndarray, edges: np.ndarray,
               seeds, threads: int | None = 1) -> list[dict | None]:
    """Per bin of E_inc: hepgen's classifier two-sample AUC, mean and standard deviation over ``seeds``.

    Arguments:
        ref, gen: ``(N_r, d)``, ``(N_g, d)`` classifier inputs (e.g. :func:`high_level_inputs`);
            e_ref, e_gen: incident energies (MeV); edges: ``(B + 1,)`` bin edges (MeV); seeds: the
            classifier seeds (:func:`hepgen.metrics.classifier.classifier_two_sample_test`).

    Returns:
        per bin ``{"n": showers per side, "aucs": [...], "mean", "sd"}`` (sd with ddof 1, 0 for
        one seed), or None where a sample has fewer than the classifier's minimum rows.
    """
    out: list[dict | None] = []
    for r, g in _binned(ref, gen, e_ref, e_gen, edges):
        if min(len(r), len(g)) < MIN_PER_CLASS:
            out.append(None)
            continue
        out.append({"n": int(min(len(r), len(g))), **_seed_aucs(r, g, seeds, threads)})
    return out


def layer_auc(ref: dict[str, np.ndarray], gen: dict[str, np.ndarray], e_ref: np.ndarray, e_gen: np.ndarray,
              seeds, threads: int | None = 1) -> dict[int, dict]:
    """Per layer: hepgen's classifier two-sample AUC on that layer's features alone, with E_inc.

    Arguments:
        ref, gen: :func:`hepgen.metrics.observables.high_level_features` of the two samples (keys
            ``<name>_<layer>`` and ``E_tot_over_E_inc``); e_ref, e_gen: incident energies (MeV);
            seeds: the classifier seeds.

    Returns:
        ``{layer: {"aucs": [...], "mean", "sd"}}`` over the layers in the keys (sd with ddof 1, 0 for
        one seed); the inputs are :func:`high_level_inputs` of the layer's keys and E_inc.
    """
    out = {}
    for l in _layers(ref):
        keys = [k for k in ref if k.endswith(f"_{l}") and k != "E_tot_over_E_inc"]
        out[l] = _seed_aucs(high_level_inputs({k: ref[k] for k in keys}, e_ref),
                            high_level_inputs({k: gen[k] for k in keys}, e_gen), seeds, threads)
    return out


def largest_share(showers: np.ndarray, layer_sizes) -> np.ndarray:
    """``(N, L)``: each layer's brightest cell over the layer's energy (0 for an empty layer).

    Example (worked by hand: layer 0 holds 1 + 3, its brightest cell 3/4; layer 1 is empty):
        >>> largest_share(np.array([[1.0, 3.0, 0.0, 0.0]]), [2, 2])
        array([[0.75, 0.  ]])
    """
    showers = np.asarray(showers, dtype=np.float64)
    bounds = np.cumsum([0, *layer_sizes])
    out = np.zeros((len(showers), len(layer_sizes)))
    for l, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        cells = showers[:, a:b]
        total = cells.sum(axis=1)
        np.divide(cells.max(axis=1), total, out=out[:, l], where=total > 0)
    return out


def tail_rate(z: np.ndarray, cut: float = 4.0) -> tuple[float, float]:
    """``(rate, ratio)``: the share of the entries of ``z`` beyond ``|z| = cut``, and that share over
    a standard normal's, ``2 Φ(−cut)`` (6.33e-5 at 4).

    Example (worked by hand: 1 of 4 entries beyond 4; a normal has 2 Φ(−4) = 6.334e-5 there):
        >>> rate, ratio = tail_rate(np.array([[0.0, 5.0], [-1.0, 3.9]]))
        >>> rate, round(ratio)
        (0.25, 3947)
    """
    z = np.asarray(z)
    rate = float((np.abs(z) > cut).mean())
    return rate, rate / float(2.0 * stats.norm.sf(cut))


def count_agreement(shares: np.ndarray, e_layer: np.ndarray, k: np.ndarray, threshold: float):
    """Does a layer's shape agree with its lit-cell count?  Per row: how many cells the shares put at or
    above ``threshold`` once scaled to the layer energy, minus the count ``k`` the inverse keeps; and
    the share of the layer's mass that keeping the ``k`` largest cuts off (which the inverse then
    gives back to the kept cells).  ``shares (N, n)``, ``e_layer (N,)`` MeV, ``k (N,)`` →
    ``(excess (N,) int, cut (N,) in [0, 1])``.

    Example (worked by hand: 0.1 MeV over shares 0.5, 0.3, 0.15, 0.05 is 0.05, 0.03, 0.015, 0.005 MeV,
    three cells at or above 0.01 MeV; k = 2 keeps 0.5 + 0.3 and cuts 0.2 off):
        >>> excess, cut = count_agreement(np.array([[0.5, 0.3, 0.15, 0.05]]), np.array([0.1]), np.array([2]), 0.01)
        >>> int(excess[0]), round(float(cut[0]), 6)
        (1, 0.2)
    """
    shares = np.asarray(shares, dtype=np.float64)
    total = shares.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    above = (shares / safe[:, None] * np.asarray(e_layer, dtype=np.float64).reshape(-1, 1) >= threshold).sum(axis=1)
    cut = np.where(total > 0, 1.0 - keep_largest(shares, k).sum(axis=1) / safe, 0.0)
    return above - np.asarray(k, dtype=np.int64), cut


@torch.no_grad()
def layer_count_agreement(generator: ShowerGenerator, energies: np.ndarray, seed: int = 0,
                          batch_size: int = 1000) -> dict[int, dict]:
    """Per layer, over showers the model samples at ``energies`` (MeV): :func:`count_agreement` of the
    shape flow's shares with the energy flow's count, over the layers with two or more kept cells (a lone
    cell is placed by its own law): the share of them where the two disagree, where by three or more,
    the mean excess, and the mean and 99th percentile of the mass cut off.  Needs a preprocessor with
    ``occupancy``."""
    pre = generator.preprocessor
    if not pre.occupancy:
        raise ValueError("key 'occupancy': expected a checkpoint whose preprocessor keeps lit-cell counts, found none")
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)
    c = torch.as_tensor(pre.transform_conditions(energies))
    gen = torch.Generator().manual_seed(int(seed))
    model = generator.model.eval()
    x = np.concatenate([model.sample(c[i : i + batch_size], generator=gen).double().numpy()
                        for i in range(0, len(c), batch_size)])
    parts = pre.decode_parts(x, energies)
    out = {}
    for l, shares in enumerate(np.split(parts["shapes"], np.cumsum(pre.layer_sizes)[:-1], axis=1)):
        k = parts["lit"][:, l]
        excess, cut = count_agreement(shares, parts["e_layer"][:, l], k, pre.threshold)
        m = k >= 2
        if m.sum() == 0:
            continue
        out[l] = {"n": int(m.sum()), "differ": float(np.mean(excess[m] != 0)), "far": float(np.mean(np.abs(excess[m]) >= 3)),
                  "mean_excess": float(excess[m].mean()), "cut_mean": float(cut[m].mean()),
                  "cut_p99": float(np.quantile(cut[m], 0.99))}
    return out


@torch.no_grad()
def true_energy_showers(generator: ShowerGenerator, showers: np.ndarray, energies: np.ndarray, seed: int = 0,
                        batch_size: int = 1000) -> np.ndarray:
    """Showers whose layer energies and lit-cell counts are those of the given (e.g. training) showers and
    whose shapes the model's shape flow draws given them: the preprocessing's forward transform (its noise
    from ``seed``), the shape flow sampled on ``[conditions, true energy features]``, the usual inverse,
    and a random orientation where the preprocessor has them.  Against reference showers, the classifier
    then sees the shape flow's errors alone.  ``(N, n_voxels)`` MeV, ``(N,)`` MeV → ``(N, n_voxels)``
    float32 MeV.  Needs a ``caloflow`` model and no extra conditions."""
    model, pre = generator.model, generator.preprocessor
    if model.family != "caloflow":
        raise ValueError(f"key 'family': expected a caloflow checkpoint (a shape flow to sample), found {model.family!r}")
    energies = np.asarray(energies, dtype=np.float64).reshape(-1)
    x = pre.transform(showers, energies, np.random.default_rng(seed))
    n_e = pre.n_energy_features
    c = torch.as_tensor(pre.transform_conditions(energies))
    e = torch.as_tensor(x[:, :n_e])
    gen = torch.Generator().manual_seed(int(seed))
    s = torch.cat([model.shape_flow.eval().sample(torch.cat([c[i : i + batch_size], e[i : i + batch_size]], dim=1),
                                                  generator=gen) for i in range(0, len(c), batch_size)])
    out = pre.inverse(np.concatenate([x[:, :n_e], s.numpy()], axis=1), energies)
    return pre.orient(out, torch.rand(len(out), generator=gen, dtype=torch.float64).numpy())


@torch.no_grad()
def encode(generator: ShowerGenerator, showers: np.ndarray, energies: np.ndarray, conditions=None,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference showers → the flow's latents ``(energy part (N, n_energy_features), shape part (N, n_voxels))``.

    The preprocessing's forward transform (its dequantisation noise drawn from ``seed``), then
    ``model.transform``: standard normal where the model fits.  Needs a ``caloflow`` model.
    """
    model = generator.model
    if model.family != "caloflow":
        raise ValueError(f"key 'family': expected a caloflow checkpoint (two flows to encode with), found {model.family!r}")
    pre = generator.preprocessor
    x = torch.as_tensor(pre.transform(showers, energies, np.random.default_rng(seed)))
    c = torch.as_tensor(pre.transform_conditions(energies, conditions))
    z = model.eval().transform(x, c).double().numpy()
    return z[:, : model.n_layers], z[:, model.n_layers :]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("test", help="reference showers (HDF5)")
    ap.add_argument("generated", help="generated showers (HDF5, same geometry)")
    ap.add_argument("--checkpoint", help="the caloflow checkpoint, to encode the reference showers")
    ap.add_argument("--bins", type=int, default=5, help="log-spaced bins of E_inc over the test showers' range")
    ap.add_argument("--encode-per-bin", type=int, default=4000, help="reference showers encoded per bin")
    ap.add_argument("--classifier-seeds", type=int, default=0,
                    help="K > 0: the high-level classifier per bin, seeds 1..K (0: skip)")
    ap.add_argument("--layer-seeds", type=int, default=0,
                    help="K > 0: the classifier on each layer's features alone (with E_inc), seeds 1..K (0: skip)")
    ap.add_argument("--true-energies", metavar="TRAIN.h5",
                    help="with --checkpoint: the shape flow sampled on the true layer energies and counts of these "
                         "showers (as many as TEST has), scored against TEST, all features and layer by layer")
    ap.add_argument("--true-energies-seeds", type=int, default=3, help="classifier seeds 1..K of --true-energies")
    ap.add_argument("--threads", type=int, default=1, help="threads of the classifier")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    if args.true_energies and not args.checkpoint:
        ap.error("--true-energies needs --checkpoint (the model whose shape flow is sampled)")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    ref, gen = read_showers(args.test), read_showers(args.generated)
    e_r, e_g = ref.incident_energies.reshape(-1), gen.incident_energies.reshape(-1)
    edges = np.geomspace(e_r.min(), e_r.max() * (1 + 1e-9), args.bins + 1)
    fr = high_level_features(ref.showers, e_r, ref.geometry)
    fg = high_level_features(gen.showers, e_g, ref.geometry)
    x_ref = high_level_inputs(fr, e_r)  # the reference's classifier inputs, for every comparison below
    layers = _layers(fr)
    summary = {"edges_MeV": edges.tolist(), "layers": layers, "spread_ratio": {}, "largest_share_p90": {}}
    for key in ("EC_r", "width_r"):
        summary["spread_ratio"][key] = {l: spread_ratios(fr[f"{key}_{l}"], fg[f"{key}_{l}"], e_r, e_g, edges).tolist()
                                        for l in layers}
    sizes = layer_sizes(ref.geometry)
    share_r, share_g = largest_share(ref.showers, sizes), largest_share(gen.showers, sizes)
    for name, share, e in (("reference", share_r, e_r), ("generated", share_g, e_g)):
        masks = [(e >= lo) & (e < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        summary["largest_share_p90"][name] = [[float(np.quantile(share[m, l], 0.9)) if m.any() else None for m in masks]
                                              for l in range(len(sizes))]
    bins = [f"{lo / 1e3:.3g}-{hi / 1e3:.3g}" for lo, hi in zip(edges[:-1], edges[1:])]
    print("E_inc bins (GeV):", "  ".join(bins))
    for key in ("EC_r", "width_r"):
        print(f"sd({key}) generated / reference")
        for l in layers:
            print(f"  layer {l}: " + "  ".join(f"{v:.3f}" for v in summary["spread_ratio"][key][l]))
    print("90th percentile of the brightest cell's share of its layer, reference / generated")
    for l in range(len(sizes)):
        pr, pg = summary["largest_share_p90"]["reference"][l], summary["largest_share_p90"]["generated"][l]
        print(f"  layer {l}: " + "  ".join(f"{a:.3f}/{b:.3f}" if a is not None and b is not None else "-"
                                         for a, b in zip(pr, pg)))
    names, xr = correlation_inputs(fr)
    summary["correlations"] = binned_correlations(xr, correlation_inputs(fg)[1], e_r, e_g, edges, names)
    print("Fisher-z of the normal-score correlations (log10 E_layer, EC_r, width_r) per bin: chi2/ndof "
          "(floor: two halves of the reference); the largest |z|")
    for b, row in zip(bins, summary["correlations"]):
        if row is not None:
            worst = ", ".join(f"{i} x {j} {ra:+.2f}/{rg:+.2f}" for i, j, ra, rg, _ in row["top"])
            print(f"  {b} GeV: {row['chi2_per_ndof']:.2f} (floor {row['floor_chi2_per_ndof']:.2f}); {worst}")
    if args.classifier_seeds > 0:
        seeds = range(1, args.classifier_seeds + 1)
        summary["high_level_auc"] = binned_auc(x_ref, high_level_inputs(fg, e_g), e_r, e_g,
                                               edges, seeds, threads=args.threads)
        print(f"high-level classifier AUC per bin (seeds 1-{args.classifier_seeds}): mean ± sd")
        for b, row in zip(bins, summary["high_level_auc"]):
            if row is not None:
                print(f"  {b} GeV ({row['n']} per side): {row['mean']:.4f} ± {row['sd']:.4f}")
    if args.layer_seeds > 0:
        summary["layer_auc"] = layer_auc(fr, fg, e_r, e_g, range(1, args.layer_seeds + 1), threads=args.threads)
        print(f"classifier AUC on one layer's features with E_inc, all energies (seeds 1-{args.layer_seeds}): mean ± sd")
        for l, row in summary["layer_auc"].items():
            print(f"  layer {l}: {row['mean']:.4f} ± {row['sd']:.4f}")
    if args.checkpoint:
        generator = ShowerGenerator.load(args.checkpoint)
        summary["latents"] = []
        print(f"encoded reference showers (≤ {args.encode_per_bin} per bin): shape latents beyond |z| = 4 "
              "over a normal's rate; energy latents' variance")
        for b, (lo, hi) in zip(bins, zip(edges[:-1], edges[1:])):
            rows = np.flatnonzero((e_r >= lo) & (e_r < hi))[: args.encode_per_bin]
            if len(rows) < 2:
                continue
            try:
                ze, zs = encode(generator, ref.showers[rows], e_r[rows], {k: v[rows] for k, v in ref.conditions.items()})
            except ValueError as err:  # encode's one check of the model, with the file's name
                ap.error(f"{args.checkpoint}: {err}")
            rate, ratio = tail_rate(zs)
            row = {"bin_GeV": b, "n": int(len(rows)), "shape_tail_rate": rate, "shape_tail_ratio": ratio,
                   "energy_latent_var": float(ze.var(axis=0).mean()), "shape_latent_var": float(zs.var(axis=0).mean())}
            summary["latents"].append(row)
            print(f"  {b} GeV: tail ratio {ratio:.2f}, energy latent variance {row['energy_latent_var']:.3f}, "
                  f"shape latent variance {row['shape_latent_var']:.3f}")
        if generator.preprocessor.occupancy:
            summary["count_agreement"] = layer_count_agreement(generator, e_r, seed=1)
            print("the shape flow's cells above the threshold against the energy flow's count k (layers with k ≥ 2, "
                  "sampled at the test energies): share that differ, by ≥ 3, mean excess; mass cut by keeping k, mean / p99")
            for l, row in summary["count_agreement"].items():
                print(f"  layer {l}: {row['differ']:.3f}, {row['far']:.3f}, {row['mean_excess']:+.2f}; "
                      f"{row['cut_mean']:.4f} / {row['cut_p99']:.4f}")
        if args.true_energies:
            train = read_showers(args.true_energies)
            n = min(len(train.showers), len(ref.showers))
            e_t = train.incident_energies.reshape(-1)[:n]
            try:
                oracle = true_energy_showers(generator, train.showers[:n], e_t, seed=1)
            except ValueError as err:
                ap.error(f"{args.checkpoint}: {err}")
            seeds = range(1, args.true_energies_seeds + 1)
            fo, ft = high_level_features(oracle, e_t, ref.geometry), high_level_features(train.showers[:n], e_t, ref.geometry)
            summary["true_energies"] = {
                "n": n, "floor": _seed_aucs(x_ref, high_level_inputs(ft, e_t), seeds, args.threads),
                "all": _seed_aucs(x_ref, high_level_inputs(fo, e_t), seeds, args.threads),
                "layers": layer_auc(fr, fo, e_r, e_t, seeds, threads=args.threads)}
            te = summary["true_energies"]
            print(f"shape flow on the true layer energies and counts of {n} showers of {args.true_energies} against "
                  f"the test showers, high-level classifier (seeds 1-{args.true_energies_seeds}): all features "
                  f"{te['all']['mean']:.4f} ± {te['all']['sd']:.4f} (those showers themselves: {te['floor']['mean']:.4f} "
                  f"± {te['floor']['sd']:.4f}); one layer with E_inc:")
            for l, row in te["layers"].items():
                print(f"  layer {l}: {row['mean']:.4f} ± {row['sd']:.4f}")
    centres = np.sqrt(edges[:-1] * edges[1:]) / 1e3
    fig = Figure(figsize=(10, 4))
    for ax, key in zip(fig.subplots(1, 2), ("EC_r", "width_r")):
        for l in layers:
            ax.plot(centres, summary["spread_ratio"][key][l], marker="o", label=f"layer {l}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(centres, [f"{c:.3g}" for c in centres])
        ax.set_xlabel("E_inc [GeV]")
        ax.set_ylabel(f"sd({key}) generated / reference")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "spread_ratios.png", dpi=110)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
