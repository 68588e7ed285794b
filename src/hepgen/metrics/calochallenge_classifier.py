"""The CaloChallenge classifier protocol: inputs, split, calibration and scores (numpy only).

The CaloChallenge 2022 evaluation (``code/evaluate.py`` of github.com/CaloChallenge/homepage,
modes ``cls-low`` and ``cls-high``; Krause, Faucci Giannelli et al., arXiv:2410.21611) trains
a fully connected network to tell generated (label 0) from reference (label 1) showers and
reports the AUC and a JSD estimate of the calibrated classifier.  This module holds the
protocol's numpy parts, so that they can be tested without torch; the network and its
training loop are in :mod:`hepgen.domains.showers.calochallenge` (``metrics`` may not
import torch).

* :func:`cls_low_inputs`: ``[log10(E_inc / MeV), E_voxel / E_inc]`` (the reference's
  ``prepare_low_data_for_classifier(normed=False)``), with voxels below ``threshold`` set
  to zero first.
* :func:`cls_high_inputs`: the reference's ``prepare_high_data_for_classifier`` column
  order — ``log10 E_inc``, ``log10(E_layer + 1e-8)``, centres of energy and widths in
  x ("η") and y ("φ") / 100 mm for the layers with more than one angular bin,
  ``log10(E_tot + 1e-8)``, the fraction of empty voxels per layer, radial centre of
  energy and width / 100 mm.
* :func:`split_sizes`: 60 / 20 / 20 % per class, ``int()``-truncated as the reference.
* :func:`calibrate`: isotonic regression on the selection split, clipped to
  ``[1e-6, 1 − 1e-6]`` as the reference.
* :func:`protocol_scores`: AUC of the calibrated test predictions, and
  ``JSD = (ln 2 − BCE) / ln 2`` in bits (not clipped at 0, as the reference prints it;
  :func:`hepgen.metrics.classifier.jsd_from_probabilities` is ``max(0, JSD)``).

The reference names its splits train / test / val and uses "test" to pick the epoch and to
calibrate, "val" for the final numbers; here they are called train / val / test by their role.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from hepgen.metrics.observables import high_level_features

__all__ = [
    "CALIBRATION_CLIP",
    "SPLIT",
    "binary_cross_entropy",
    "calibrate",
    "cls_high_inputs",
    "cls_low_inputs",
    "jsd_bits",
    "protocol_scores",
    "split_sizes",
]

SPLIT = (0.6, 0.2, 0.2)  # train / val (epoch choice, calibration) / test, per class
CALIBRATION_CLIP = 1e-6  # the isotonic output is kept in [1e-6, 1 - 1e-6], as the reference


def _check(showers, incident_energies, name: str) -> tuple[np.ndarray, np.ndarray]:
    showers = np.asarray(showers, dtype=np.float64)
    e = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    if showers.ndim != 2 or len(e) != len(showers):
        raise ValueError(f"{name}: expected showers (N, n_voxels) and N incident energies, "
                         f"found {showers.shape} and {len(e)}")
    if not np.all(e > 0):
        raise ValueError(f"{name}: incident energies must be positive (MeV), found {e[~(e > 0)][:3].tolist()}")
    return showers, e


def cls_low_inputs(showers, incident_energies, threshold: float = 0.0) -> np.ndarray:
    """(N, 1 + n_voxels) ``cls-low`` inputs: ``log10(E_inc / MeV)``, then every voxel / E_inc.

    Voxels below ``threshold`` (MeV; the reference uses 1 MeV for data set 1 and
    0.5 keV / 0.033 for data sets 2 and 3) are set to zero first.  No other scaling: the
    reference feeds these numbers to the network as they are.

    >>> cls_low_inputs([[10.0, 0.5, 90.0]], [1000.0], threshold=1.0)
    array([[3.  , 0.01, 0.  , 0.09]])
    """
    showers, e = _check(showers, incident_energies, "cls_low_inputs")
    showers = np.where(showers < threshold, 0.0, showers)
    return np.concatenate([np.log10(e)[:, None], showers / e[:, None]], axis=1)


def _alpha_binned(geometry) -> list[bool]:
    """Per active layer: does it have angular bins (the reference's ``layersBinnedInAlpha``)?

    The other geometries (Cartesian, layered Cartesian, hexagonal) have no angular binning;
    all their layers count as binned (x and y are their natural coordinates).
    """
    if getattr(geometry, "kind", None) == "cylindrical":
        return [layer.n_alpha > 1 for layer in geometry.active_layers]
    return [True] * geometry.n_layers


def cls_high_inputs(showers, incident_energies, geometry, threshold: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """(N, D) ``cls-high`` inputs in the reference's column order, and the D column names.

    Columns (L active layers, L_α of them with more than one angular bin):
    ``log10_E_inc``; ``log10_E_layer_i`` = log10(E_layer / MeV + 1e-8) (L);
    ``EC_eta_i``, ``EC_phi_i``, ``width_eta_i``, ``width_phi_i`` / 100 mm (L_α each);
    ``log10_E_tot``; ``empty_fraction_i`` = share of the layer's voxels with no energy (L;
    the reference's "sparsity"); ``EC_r_i``, ``width_r_i`` / 100 mm (L each).  Voxel
    centres are (r_mid cos α_mid, r_mid sin α_mid) with r_mid the middle of the radial bin,
    as the reference's XMLHandler; features are computed after voxels below ``threshold``
    MeV are set to zero.

    >>> from hepgen.data.geometry import CylindricalBinning
    >>> g = CylindricalBinning.regular(n_layers=1, r_edges=[0.0, 10.0, 30.0], n_alpha=1)
    >>> x, names = cls_high_inputs([[0.0, 100.0]], [1000.0], g)
    >>> names
    ['log10_E_inc', 'log10_E_layer_0', 'log10_E_tot', 'empty_fraction_0', 'EC_r_0', 'width_r_0']
    >>> x.round(3).tolist()
    [[3.0, 2.0, 2.0, 0.5, 0.2, 0.0]]
    """
    showers, e = _check(showers, incident_energies, "cls_high_inputs")
    if showers.shape[1] != geometry.n_voxels:
        raise ValueError(f"cls_high_inputs: showers have {showers.shape[1]} voxels, the geometry "
                         f"{geometry.n_voxels}")
    showers = np.where(showers < threshold, 0.0, showers)
    f = high_level_features(showers, e, geometry, threshold=0.0)
    layers = range(geometry.n_layers)
    binned = [i for i, b in zip(layers, _alpha_binned(geometry)) if b]
    cols: list[tuple[str, np.ndarray]] = [("log10_E_inc", np.log10(e))]
    cols += [(f"log10_E_layer_{i}", np.log10(f[f"E_layer_{i}"] + 1e-8)) for i in layers]
    for feat in ("EC_eta", "EC_phi", "width_eta", "width_phi"):
        cols += [(f"{feat}_{i}", f[f"{feat}_{i}"] / 1e2) for i in binned]
    cols.append(("log10_E_tot", np.log10(showers.sum(axis=1) + 1e-8)))
    # hepgen's sparsity is the share of voxels with energy; the reference's is the empty share
    cols += [(f"empty_fraction_{i}", 1.0 - f[f"sparsity_{i}"]) for i in layers]
    cols += [(f"EC_r_{i}", f[f"EC_r_{i}"] / 1e2) for i in layers]
    cols += [(f"width_r_{i}", f[f"width_r_{i}"] / 1e2) for i in layers]
    return np.stack([c for _, c in cols], axis=1), [n for n, _ in cols]


def split_sizes(n: int, fractions: tuple[float, float, float] = SPLIT) -> tuple[int, int, int]:
    """Showers per class in train, val and test: ``int(n f_train)``, ``int(n f_val)``, the rest.

    >>> split_sizes(10_000)
    (6000, 2000, 2000)
    >>> split_sizes(1001)
    (600, 200, 201)
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions: expected three positive numbers summing to 1, found {fractions}")
    a, b = int(n * fractions[0]), int(n * fractions[1])
    return a, b, n - a - b


def binary_cross_entropy(y, p) -> float:
    """Mean ``−[y ln p + (1 − y) ln(1 − p)]`` in nats (logarithms floored at −100, as torch's ``BCELoss``)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lp, lq = np.maximum(np.log(p), -100.0), np.maximum(np.log1p(-p), -100.0)
    return float(-np.mean(y * lp + (1 - y) * lq))


def jsd_bits(y, p) -> float:
    """``(ln 2 − BCE(y, p)) / ln 2``: the reference's JSD estimate in bits (may be < 0).

    >>> jsd_bits([1, 0], [0.5, 0.5])
    0.0
    >>> round(jsd_bits([1, 0], [1 - 1e-6, 1e-6]), 7)  # 1 - 1e-6 / ln 2
    0.9999986
    """
    return float((np.log(2.0) - binary_cross_entropy(y, p)) / np.log(2.0))


def calibrate(p_val, y_val) -> IsotonicRegression:
    """Isotonic regression of the labels on the raw val predictions, output in [1e-6, 1 − 1e-6], clipped outside.

    >>> iso = calibrate([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])
    >>> iso.predict([0.0, 0.35, 0.9]).tolist()
    [1e-06, 0.999999, 0.999999]
    """
    return IsotonicRegression(out_of_bounds="clip", y_min=CALIBRATION_CLIP,
                              y_max=1.0 - CALIBRATION_CLIP).fit(np.asarray(p_val, dtype=np.float64),
                                                                np.asarray(y_val, dtype=np.float64))


def protocol_scores(y_test, p_test, y_val, p_val) -> dict:
    """The protocol's final numbers from raw sigmoid outputs on the test and val splits.

    Returns ``auc`` (of the calibrated test predictions, as the reference),
    ``auc_uncalibrated``, ``jsd`` (bits, :func:`jsd_bits` of the calibrated predictions),
    ``jsd_uncalibrated`` and ``accuracy`` (calibrated, threshold 0.5).
    """
    y_test, p_test = np.asarray(y_test, dtype=np.float64), np.asarray(p_test, dtype=np.float64)
    if len(np.unique(y_test)) != 2 or len(np.unique(np.asarray(y_val))) != 2:
        raise ValueError("protocol_scores: the test and val splits need both labels")
    cal = calibrate(p_val, y_val).predict(p_test)
    return {
        "auc": float(roc_auc_score(y_test, cal)),
        "auc_uncalibrated": float(roc_auc_score(y_test, p_test)),
        "jsd": jsd_bits(y_test, cal),
        "jsd_uncalibrated": jsd_bits(y_test, np.clip(p_test, CALIBRATION_CLIP, 1 - CALIBRATION_CLIP)),
        "accuracy": float(np.mean((cal > 0.5) == (y_test > 0.5))),
    }
