"""Geant4's cost per shower on a model's own geometry, for the speed-up of ``hepgen bench`` and ``hepgen demo``.

A surrogate's speed-up against full simulation is only meaningful on the same calorimeter,
the same energies and the same machine.  :func:`time_geant4_showers` finds the Geant4 preset
whose binning *is* the model's geometry (:func:`twin_preset`; for the demo's binning that is
the ``demo`` preset, :func:`hepgen.simulate.geant4.presets.gflash_twin` of the demo's GFlash
calorimeter), simulates a few showers in this process (one Geant4 run manager per process,
:func:`hepgen.simulate.geant4.engine.get_engine`) and returns the mean wall-clock seconds
per shower, or the one-line reason why it could not (no ``hepgen[geant4]`` extra, no preset
with this binning, timing disabled, another preset already running in this process).

**Estimator.**  Geant4's time grows about linearly with the incident energy (≈ 0.01 s/GeV
on one core in the ``demo`` calorimeter), so the mean over a model's energy spectrum is
what a speed-up must use.  For a log-uniform spectrum on ``[lo, hi]`` the energies timed are
the midpoints (in ln E) of ``n`` equal-probability strata, ``E_i = lo (hi/lo)^((i + ½)/n)``,
one shower each: their mean time is the midpoint-rule estimate of ``⟨t(E)⟩`` over the
spectrum (for ``t ∝ E`` it is low by the factor ``x / sinh(x)``, ``x = ln(hi/lo) / 2n``:
0.22 % for ``n = 20`` over 1–100 GeV).  The showers are simulated one Geant4 run each, in a fixed shuffled order, after one
untimed warm-up shower; if ``max_seconds`` is reached the estimate is the mean over the
strata done so far (a random subset of them), and the result says so.  Times are the event
loop's wall-clock seconds (``G4RunManager::BeamOn``) on one core (serial run manager),
primaries along the calorimeter axis at its centre, the default production cut and this
engine's data-free EM physics list (docs/geant4.md).

Example:
    >>> from hepgen.data.geometry import default_binning
    >>> twin_preset(default_binning())
    'demo'
    >>> [round(e) for e in stratified_log_energies(1000.0, 100000.0, 4)]
    [1778, 5623, 17783, 56234]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np

from hepgen.simulate.geant4 import engine as _engine
from hepgen.simulate.geant4.engine import PARTICLES, get_engine
from hepgen.simulate.geant4.presets import PRESETS

__all__ = ["METHOD", "describe", "stratified_log_energies", "time_geant4_showers", "twin_preset"]

log = logging.getLogger(__name__)

#: How the mean cost per shower is estimated (recorded with every result).
METHOD = ("mean wall-clock s/shower of Geant4 (one core, serial run manager, data-free EM list) over showers at the "
          "midpoints in ln E of n equal-probability strata of the log-uniform energy spectrum, one run each, "
          "along the axis; midpoint-rule estimate of the spectrum's mean cost")


def twin_preset(geometry) -> str | None:
    """The name of the Geant4 preset whose binning equals ``geometry`` (compared as
    ``to_dict()``), or ``None``.

    >>> from hepgen.data.geometry import CartesianGrid
    >>> twin_preset(CartesianGrid(nx=25, ny=25, nz=25, cell_size=5.1)), twin_preset(CartesianGrid(3, 3, 3, 1.0))
    ('3dgan', None)
    """
    if geometry is None or not hasattr(geometry, "to_dict"):
        return None
    wanted = json.dumps(geometry.to_dict(), sort_keys=True)
    for name, make in PRESETS.items():
        if json.dumps(make().geometry.to_dict(), sort_keys=True) == wanted:
            return name
    return None


def stratified_log_energies(lo: float, hi: float, n: int) -> np.ndarray:
    """(n,) MeV: the midpoints in ln E of ``n`` equal-probability strata of log-uniform on [lo, hi]."""
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise ValueError(f"energy_range: expected 0 < lo <= hi MeV, found ({lo!r}, {hi!r})")
    if int(n) < 1:
        raise ValueError(f"n: expected >= 1 showers, found {n!r}")
    u = (np.arange(int(n)) + 0.5) / int(n)
    return float(lo) * (float(hi) / float(lo)) ** u


def _unavailable() -> str | None:
    """Why Geant4 cannot run in this process, or None."""
    if _engine.g4 is None:
        return "the optional extra is not installed (pip install 'hepgen[geant4]')"
    return None


def time_geant4_showers(geometry, energy_range: Sequence[float], n: int = 20, particle: str | None = None,
                        max_seconds: float | None = None, seed: int = 1) -> dict:
    """Mean Geant4 seconds per shower over a log-uniform spectrum, in the preset twin of ``geometry``.

    Arguments:
        geometry: the model's voxel geometry (a :mod:`hepgen.data.geometry` object).
        energy_range: (lo, hi) MeV of the log-uniform spectrum (a checkpoint's ``energy_range``,
            the demo's ``DemoConfig.energy_range``).
        n: showers (strata) to time; 0 skips the timing.
        particle: ``gamma``, ``e-`` or ``e+``; default the binning's particle (``photon`` →
            ``gamma``, ``electron`` → ``e-``, ``positron`` → ``e+``, otherwise ``gamma``).
        max_seconds: stop timing once this many seconds of showers are done (at least one).
        seed: any integer; orders the strata and seeds Geant4 (run ``k`` uses
            ``1 + |seed| mod 10⁹ + k``, the warm-up ``k = 0``).

    Returns:
        a JSON-able dict.  ``available`` False: ``reason`` (one line).  ``available`` True:
        ``preset``, ``particle``, ``energy_range_mev``, ``n_requested``, ``n_showers`` (timed),
        ``stopped_at_budget``, ``seconds`` (sum), ``s_per_shower`` (= seconds / n_showers),
        ``showers`` ([[E MeV, seconds], …] in the order run), ``method`` (:data:`METHOD`),
        ``geant4_version``.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n: expected >= 0 Geant4 showers to time, found {n}")
    if n == 0:
        return {"available": False, "reason": "Geant4 timing disabled (0 showers requested)"}
    reason = _unavailable()
    if reason is None:
        preset = twin_preset(geometry)
        if preset is None:
            n_vox = getattr(geometry, "n_voxels", "?")
            reason = (f"no Geant4 preset has this binning ({n_vox} voxels); presets with a twin geometry: "
                      f"{', '.join(sorted(PRESETS))}")
    if reason is not None:
        return {"available": False, "reason": reason}
    lo, hi = (float(x) for x in energy_range)
    energies = stratified_log_energies(lo, hi, n)
    order = np.random.default_rng(abs(int(seed))).permutation(n)
    if particle is None:
        particle = {"photon": "gamma", "electron": "e-", "positron": "e+"}.get(
            str(getattr(geometry, "particle", "photon")), "gamma")
    if particle not in PARTICLES:
        raise ValueError(f"particle: expected one of {sorted(PARTICLES)}, found {particle!r}")
    try:
        engine = get_engine(preset)
    except RuntimeError as err:  # another preset runs in this process, or no compiler for the C++ part
        return {"available": False, "reason": str(err).splitlines()[0]}
    g4_seed = 1 + abs(int(seed)) % 1_000_000_000  # Geant4 wants 1 … 2**31 - 1
    engine.simulate([lo], particle, seed=g4_seed)  # warm-up: first-event caches, not timed
    done: list[list[float]] = []
    total = 0.0
    stopped = False
    for k, i in enumerate(order):
        sec = float(engine.simulate([energies[i]], particle, seed=g4_seed + 1 + k)["seconds"])
        done.append([float(energies[i]), sec])
        total += sec
        if max_seconds is not None and total >= max_seconds and len(done) < n:
            stopped = True
            break
    out = {"available": True, "preset": preset, "particle": PARTICLES[particle], "energy_range_mev": [lo, hi],
           "n_requested": n, "n_showers": len(done), "stopped_at_budget": stopped, "seconds": total,
           "s_per_shower": total / len(done), "showers": done, "method": METHOD,
           "geant4_version": _engine.geant4_version()}
    log.info("Geant4 (%s, %s): %.4f s/shower over %d showers in %.0f-%.0f MeV", preset, out["particle"],
             out["s_per_shower"], len(done), lo, hi)
    return out


def describe(result: dict) -> str:
    """One line saying what was timed (or why not), for the command line's output.

    >>> describe({"available": False, "reason": "no Geant4 preset has this binning (10 voxels)"})
    'Geant4: not timed: no Geant4 preset has this binning (10 voxels)'
    """
    if not result.get("available"):
        return f"Geant4: not timed: {result['reason']}"
    lo, hi = result["energy_range_mev"]
    budget = f" (stopped at the time budget after {result['n_showers']} of {result['n_requested']})" \
        if result["stopped_at_budget"] else ""
    return (f"Geant4 (preset {result['preset']}, {result['particle']}, same binning, one core): "
            f"{result['s_per_shower']:.4g} s/shower, mean of {result['n_showers']} showers stratified log-uniform "
            f"in {lo / 1000:.3g}-{hi / 1000:.3g} GeV{budget}")
