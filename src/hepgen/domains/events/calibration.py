"""Pixel calibration of a trained event-image generator: a monotone map of pixel energies fitted
on training images (quantile mapping).

A GAN's images can be right in their structure and still a few per cent off in the marginal
distribution of pixel energies: the μ = 20 pile-up DCGANs of ``docs/events.md`` (run I) light 5–11 %
too many pixels just above the threshold and make 3–6 % too much energy per image, and the overlay
shifts follow.  :class:`PixelQuantileMap` corrects the marginal distribution after sampling, as
quantile mapping corrects a simulation's distribution against observations (Panofsky & Brier,
"Some applications of statistics to meteorology", 1968; Maraun, J. Climate 26 (2013) 2137):

1. **occupancy**: generated pixels at or below ``cut`` are set to zero, ``cut`` being the energy
   above which the generated sample has as many lit pixels as the reference (no cut when it has
   fewer);
2. **spectrum**: the remaining pixel energies are mapped by linear interpolation between the
   quantiles of the non-empty generated and reference pixel energies at the same levels
   (``n_quantiles`` equally spaced ones, ``k / n`` from the smallest pixel on, and 30 more
   between 1 − 10⁻³ and 1 − 10⁻⁶ for the tail); below the smallest generated pixel of the fit
   the map is the smallest reference pixel; above the highest quantile it scales by the ratio
   of the highest quantiles.

Per image channel; one map for all pixel positions and conditions (fit it per μ for pile-up
models).  The map is monotone, keeps empty pixels empty and moves no energy between pixels, so it
can only fix what the pixel-energy histogram shows (occupancy, spectrum, total energy on average),
not the spatial structure.  Implemented with ``numpy.quantile`` + ``numpy.interp`` rather than
``sklearn.preprocessing.QuantileTransformer`` because the occupancy cut and the tail scaling are
not part of it and the map is stored as plain lists in a weights-only checkpoint; the spectrum part
is tested against two composed ``QuantileTransformer`` s.

Example: a generator whose images are twice the reference's, plus faint pixels the reference
never has, is mapped back exactly:

    >>> import numpy as np
    >>> ref = np.zeros((2, 1, 2, 3), np.float32)
    >>> ref[0, 0, 0, :] = [1.0, 2.0, 4.0]
    >>> ref[1, 0, 1, :2] = [3.0, 5.0]
    >>> gen = 2 * ref
    >>> gen[0, 0, 1, 0] = gen[1, 0, 0, 2] = 0.5   # two pixels too many, fainter than any other
    >>> cal = PixelQuantileMap.fit(ref, gen, n_quantiles=4)
    >>> float(cal.cut[0]), bool(np.allclose(cal(gen), ref, atol=1e-5))
    (0.5, True)
"""

from __future__ import annotations

import numpy as np

__all__ = ["PixelQuantileMap", "quantile_levels"]

_TAIL_LEVELS = 30  # extra quantile levels in the top 0.1 % (1 − 10⁻³ … 1 − 10⁻⁶)


def quantile_levels(n_quantiles: int) -> np.ndarray:
    """The quantile levels of :class:`PixelQuantileMap`: ``k / n`` for ``k < n`` (the minimum
    first) and 30 levels ``1 − 10^-t``, ``t`` equally spaced in [3, 6], sorted, duplicates removed.

    >>> lv = quantile_levels(4)
    >>> lv[:4].tolist(), len(lv), float(lv[-1])
    ([0.0, 0.25, 0.5, 0.75], 34, 0.999999)
    """
    if n_quantiles < 2:
        raise ValueError(f"PixelQuantileMap: key 'n_quantiles': expected >= 2, found {n_quantiles}")
    body = np.arange(n_quantiles) / n_quantiles
    tail = 1.0 - np.logspace(-3.0, -6.0, _TAIL_LEVELS)
    return np.unique(np.concatenate([body, tail]))


class PixelQuantileMap:
    """Monotone per-channel map of pixel energies (GeV → GeV), see the module docstring.

    Arguments:
        cut: ``(C,)`` GeV; generated pixels ``<= cut`` become 0.
        q_gen, q_ref: ``(C, L)`` GeV, the generated and reference quantiles of the non-empty pixel
            energies (non-decreasing along ``L``).
        summary: JSON-able facts of the fit (occupancies, energies per image before and after).
    """

    def __init__(self, cut, q_gen, q_ref, summary: dict | None = None) -> None:
        self.cut = np.asarray(cut, np.float64).reshape(-1)
        self.q_gen = np.asarray(q_gen, np.float64)
        self.q_ref = np.asarray(q_ref, np.float64)
        c = len(self.cut)
        if self.q_gen.ndim != 2 or self.q_gen.shape != self.q_ref.shape or self.q_gen.shape[0] != c:
            raise ValueError(f"PixelQuantileMap: keys 'q_gen', 'q_ref': expected two ({c}, L) arrays, found "
                             f"{self.q_gen.shape} and {self.q_ref.shape}")
        if (np.diff(self.q_gen, axis=1) < 0).any() or (np.diff(self.q_ref, axis=1) < 0).any():
            raise ValueError("PixelQuantileMap: keys 'q_gen', 'q_ref': expected non-decreasing quantiles")
        self.summary = dict(summary or {})

    @classmethod
    def fit(cls, reference: np.ndarray, generated: np.ndarray, n_quantiles: int = 2000) -> PixelQuantileMap:
        """The map that sends ``generated`` pixel energies onto ``reference`` ones.

        Arguments:
            reference: ``(N, C, H, W)`` GeV, e.g. the training images.
            generated: ``(M, C, H, W)`` GeV, the generator's sample at the same conditions.
            n_quantiles: equally spaced quantile levels (:func:`quantile_levels`).
        """
        reference, generated = np.asarray(reference), np.asarray(generated)
        if reference.ndim != 4 or generated.ndim != 4 or reference.shape[1:] != generated.shape[1:]:
            raise ValueError(f"PixelQuantileMap.fit: expected reference and generated images (N, C, H, W) of one "
                             f"geometry, found {reference.shape} and {generated.shape}")
        levels = quantile_levels(n_quantiles)
        cuts, qg, qr = [], [], []
        for ch in range(reference.shape[1]):
            r, g = reference[:, ch].ravel(), generated[:, ch].ravel()
            r_on = r[r > 0]
            if r_on.size == 0:
                raise ValueError(f"PixelQuantileMap.fit: channel {ch}: the reference has no non-empty pixel")
            occ_r, occ_g = r_on.size / r.size, float((g > 0).mean())
            # the largest energy among the pixels to be removed ("lower": an energy of the sample)
            cut = float(np.quantile(g, 1.0 - occ_r, method="lower")) if occ_g > occ_r else 0.0
            g_on = g[g > cut]
            if g_on.size == 0:
                raise ValueError(f"PixelQuantileMap.fit: channel {ch}: the generated sample has no non-empty pixel")
            cuts.append(cut)
            qg.append(np.quantile(g_on, levels))
            qr.append(np.quantile(r_on, levels))
        cal = cls(cuts, qg, qr)
        n_pix = reference.shape[2] * reference.shape[3]
        after = cal(generated)
        cal.summary = {
            "n_reference": int(len(reference)), "n_generated": int(len(generated)), "n_quantiles": int(n_quantiles),
            "cut_gev": [round(c, 6) for c in cuts],
            "lit_pixels_per_image": {name: round(float((x > 0).mean()) * n_pix * x.shape[1], 3)
                                     for name, x in (("reference", reference), ("generated", generated),
                                                     ("calibrated", after))},
            "energy_per_image_gev": {name: round(float(x.sum(axis=(1, 2, 3)).mean()), 4)
                                     for name, x in (("reference", reference), ("generated", generated),
                                                     ("calibrated", after))},
        }
        return cal

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``images`` ``(N, C, H, W)`` GeV mapped (float32, a new array)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != len(self.cut):
            raise ValueError(f"PixelQuantileMap: expected images (N, {len(self.cut)}, H, W), found {images.shape}")
        out = np.zeros(images.shape, np.float32)
        for ch in range(images.shape[1]):
            x = images[:, ch]
            on = x > self.cut[ch]
            v = x[on].astype(np.float64)
            qg, qr = self.q_gen[ch], self.q_ref[ch]
            y = np.interp(v, qg, qr)
            top = v > qg[-1]
            if qg[-1] > 0:
                y[top] = v[top] * (qr[-1] / qg[-1])
            out[:, ch][on] = y
        return out

    def state_dict(self) -> dict:
        """Plain lists (weights-only checkpoints)."""
        return {"cut": self.cut.tolist(), "q_gen": self.q_gen.tolist(), "q_ref": self.q_ref.tolist(),
                "summary": dict(self.summary)}

    @classmethod
    def from_state(cls, state: dict, source: str = "<checkpoint>") -> PixelQuantileMap:
        missing = [k for k in ("cut", "q_gen", "q_ref") if k not in (state or {})]
        if missing:
            raise ValueError(f"{source}: key 'calibration': expected keys cut, q_gen, q_ref, missing {missing}")
        return cls(state["cut"], state["q_gen"], state["q_ref"], state.get("summary"))
